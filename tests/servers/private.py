"""A server of the test's own (not the session's), for tests that stop, freeze or kill it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers.common import fresh_name
from tests.servers.ftp import FtpServer, ftp_process, ftp_server_in
from tests.servers.s3 import S3Server, s3_process, s3_server_in
from tests.servers.sftp import SftpServer, sftp_process, sftp_server_in
from tests.servers.webdav import WebdavServer, webdav_process, webdav_server_in

Server = S3Server | SftpServer | FtpServer | WebdavServer


@contextmanager
def private_server(kind: str, base: Path) -> Iterator[Server]:
    """A fresh ``kind`` server ("s3", "sftp", "ftp" or "webdav") with its files under ``base``, stopped on exit."""
    base.mkdir(parents=True, exist_ok=True)
    if kind == "s3":
        with s3_process(base / "moto.log") as proc:
            yield s3_server_in(proc, fresh_name())
    elif kind == "sftp":
        with sftp_process(base / "sshd") as (proc, client, known_hosts):
            yield sftp_server_in(proc, client, known_hosts, base / "served")
    elif kind == "ftp":
        with ftp_process(base / "home", base / "ftp.log") as proc:
            yield ftp_server_in(proc, base / "home", "/served")
    elif kind == "webdav":
        with webdav_process(base / "share", base) as proc:
            yield webdav_server_in(proc, base / "share", "served")
    else:
        raise ValueError(f"no loopback server for {kind!r}")


def sibling(server: Server, name: str) -> Server:
    """Another bucket or folder ``name`` on the same server process as ``server``."""
    if isinstance(server, S3Server):
        return s3_server_in(server.process, name, server.key, server.secret)
    if isinstance(server, SftpServer):
        return sftp_server_in(server.process, server.key_file, server.known_hosts, server.directory.parent / name)
    if isinstance(server, FtpServer):
        return ftp_server_in(server.process, server.home, "/" + name)
    return webdav_server_in(server.process, server.directory.parent, name)
