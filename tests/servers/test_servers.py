"""Each loopback server answers a client that is not Onitu's (boto3, OpenSSH's sftp, ftplib, httpx), refuses wrong
credentials, and does not outlive the process that started it."""

from __future__ import annotations

import ftplib
import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import FtpServer, S3Server, SftpServer, WebdavServer
from tests.servers.sftp import keygen


def test_s3_put_list_get(s3_server: S3Server) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="d/é.txt", Body=b"hello")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=s3_server.bucket)["Contents"]] == ["d/é.txt"]
    assert client.get_object(Bucket=s3_server.bucket, Key="d/é.txt")["Body"].read() == b"hello"
    assert set(s3_server.files()) == {"d/é.txt"}
    assert s3_server.options["bucket"] == s3_server.bucket
    assert s3_server.options["endpoint_url"] == f"http://127.0.0.1:{s3_server.process.port}"


def _sftp(server: SftpServer, commands: str, key: Path | None = None, known_hosts: Path | None = None
          ) -> subprocess.CompletedProcess:
    """OpenSSH's own sftp client in batch mode, trusting only ``known_hosts``."""
    return subprocess.run(
        ["sftp", "-b", "-", "-P", str(server.port), "-i", str(key or server.key_file),
         "-o", f"UserKnownHostsFile={known_hosts or server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", f"{server.username}@{server.host}"],
        input=commands, capture_output=True, text=True, timeout=30)


def test_sftp_put_list_get(sftp_server: SftpServer, tmp_path: Path) -> None:
    (tmp_path / "up.txt").write_bytes(b"hello")
    out = _sftp(sftp_server, f"cd {sftp_server.directory}\nput {tmp_path / 'up.txt'} é.txt\nls\n"
                             f"get é.txt {tmp_path / 'down.txt'}\n")
    assert out.returncode == 0, out.stderr
    assert (sftp_server.directory / "é.txt").read_bytes() == b"hello" == (tmp_path / "down.txt").read_bytes()
    assert set(sftp_server.files()) == {"é.txt"}
    assert sftp_server.options["known_hosts"] == str(sftp_server.known_hosts)


def test_sftp_refuses_unknown_host_and_wrong_key(sftp_server: SftpServer, tmp_path: Path) -> None:
    (tmp_path / "empty_known_hosts").write_text("")
    out = _sftp(sftp_server, "ls\n", known_hosts=tmp_path / "empty_known_hosts")
    assert out.returncode != 0 and "Host key verification failed" in out.stderr
    out = _sftp(sftp_server, "ls\n", key=keygen(tmp_path / "stranger"))
    assert out.returncode != 0 and "Permission denied" in out.stderr


def test_ftp_put_list_get(ftp_server: FtpServer) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
        ftp.login(ftp_server.username, ftp_server.password)
        ftp.cwd(ftp_server.root)
        ftp.storbinary("STOR é.txt", io.BytesIO(b"hello"))
        assert ftp.nlst() == ["é.txt"]
        got: list[bytes] = []
        ftp.retrbinary("RETR é.txt", got.append)
    assert b"".join(got) == b"hello" == (ftp_server.directory / "é.txt").read_bytes()
    with ftplib.FTP() as ftp, pytest.raises(ftplib.error_perm, match="530"):
        ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
        ftp.login(ftp_server.username, "wrong")


def test_webdav_put_list_get(webdav_server: WebdavServer) -> None:
    auth = (webdav_server.username, webdav_server.password)
    with httpx.Client(auth=auth, timeout=10) as http:
        assert http.put(webdav_server.url + "%C3%A9.txt", content=b"hello").status_code == 201
        listing = http.request("PROPFIND", webdav_server.url, headers={"Depth": "1"})
        assert listing.status_code == 207 and "%C3%A9.txt" in listing.text
        assert http.get(webdav_server.url + "%C3%A9.txt").content == b"hello"
    assert (webdav_server.directory / "é.txt").read_bytes() == b"hello"
    assert httpx.get(webdav_server.url, auth=(webdav_server.username, "wrong")).status_code == 401


def test_stop_then_start_serves_the_same_port_and_files(ftp_server: FtpServer) -> None:
    """What the outage tests rely on: the server is really gone while stopped, and comes back where it was."""
    (ftp_server.directory / "kept.txt").write_bytes(b"kept")
    port = ftp_server.process.port
    ftp_server.process.stop()
    with pytest.raises(OSError):
        ftplib.FTP().connect(ftp_server.host, port, timeout=2)
    ftp_server.process.start()
    assert ftp_server.process.port == port
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, port, timeout=10)
        ftp.login(ftp_server.username, ftp_server.password)
        assert ftp.nlst(ftp_server.root) == ["kept.txt"]


ORPHAN = """
import sys, time
from pathlib import Path
from tests.servers.ftp import ftp_process
with ftp_process(Path(sys.argv[1]) / "home", Path(sys.argv[1]) / "ftp.log") as proc:
    print(proc.proc.pid, flush=True)
    time.sleep(600)
"""


def test_a_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", ORPHAN, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert owner.stdout is not None
    server = psutil.Process(int(owner.stdout.readline()))
    assert server.is_running()
    owner.kill()  # kill -9: no finally clause runs
    owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    gone = not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert gone, f"server {server.pid} outlived {owner.pid}"
