"""One folder on five services under ``onitu start``: local, S3 (moto), SFTP (OpenSSH), FTP (pyftpdlib) and WebDAV
(wsgidav). Changes are made on each kind of replica, straight in the servers' storage (boto3, the served
directories), and every replica is read back the same way, never through the drivers under test.

``ONITU_REMOTE_BIG_MIB`` sets the size of the largest file (50 MiB by default)."""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import FtpServer, S3Server, SftpServer, WebdavServer
from tests.sync.remote_hub import RemoteHub

BIG = int(os.environ.get("ONITU_REMOTE_BIG_MIB", "50")) << 20
CONFLICT = re.compile(r"\.conflict-\d{8}-\d{6}-[^./]+?(?:-\d+)?(?=\.[^./]*$|$)")
pytestmark = pytest.mark.timeout(600)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub(tmp_path: Path, s3_server: S3Server, sftp_server: SftpServer, ftp_server: FtpServer,
        webdav_server: WebdavServer) -> Iterator[RemoteHub]:
    h = RemoteHub(tmp_path, {"s3": s3_server, "sftp": sftp_server, "ftp": ftp_server, "webdav": webdav_server})
    yield h
    try:
        h.stop()
    finally:
        h.kill_everything()


def seed(root: Path) -> dict[str, bytes]:
    """The files the local replica holds before ``onitu start``: 0 bytes to BIG, unicode names, deep folders."""
    rng = random.Random(15)
    files = {
        "empty.txt": b"",
        "été/naïve ☃.txt": "crème brûlée".encode(),
        "日本語/ファイル.txt": rng.randbytes(3000),
        "deep/a/b/c/d/e.txt": rng.randbytes(70_000),
        "dir1/x.txt": b"x",
        "dir1/sub/y.txt": rng.randbytes(1 << 20),
        "big.bin": rng.randbytes(BIG),
        **{f"keep/{i}.txt": f"keep {i}".encode() for i in range(8)},
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


def test_five_services_converge_through_every_kind_of_change(hub: RemoteHub, s3_server: S3Server,
                                                              sftp_server: SftpServer, ftp_server: FtpServer,
                                                              webdav_server: WebdavServer) -> None:
    hub.local.mkdir(parents=True)
    files = seed(hub.local)
    hub.start()
    tree = hub.wait_converged(300)
    assert tree == {path: sha(data) for path, data in files.items()}

    # modified on the SFTP server's disk, and on S3 with boto3
    (sftp_server.directory / "été/naïve ☃.txt").write_bytes(b"changed over sftp")
    hub.wait_converged(expect=lambda t: t["été/naïve ☃.txt"] == sha(b"changed over sftp"))
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="deep/a/b/c/d/e.txt", Body=b"changed on s3")
    hub.wait_converged(expect=lambda t: t["deep/a/b/c/d/e.txt"] == sha(b"changed on s3"))

    # a file renamed on the WebDAV server's disk; created on the FTP server's
    os.rename(webdav_server.directory / "日本語/ファイル.txt", webdav_server.directory / "日本語/名前.txt")
    (ftp_server.directory / "from ftp ✓.txt").write_bytes(b"ftp")
    hub.wait_converged(expect=lambda t: "日本語/名前.txt" in t and "日本語/ファイル.txt" not in t
                       and t.get("from ftp ✓.txt") == sha(b"ftp"))

    # a directory renamed locally: object stores get per-file moves, the others lose the old directory too
    os.rename(hub.local / "dir1", hub.local / "dir2")
    hub.wait_converged(expect=lambda t: {"dir2/x.txt", "dir2/sub/y.txt"} <= set(t)
                       and not any(p.startswith("dir1/") for p in t))
    servers = {"sftp": sftp_server, "ftp": ftp_server, "webdav": webdav_server}

    def left() -> dict[str, list[str]]:  # what is still at dir1 on each server's disk (once seen left empty in CI)
        return {name: sorted(str(p.relative_to(r.directory)) for p in (r.directory / "dir1").rglob("*"))
                for name, r in servers.items() if (r.directory / "dir1").exists()}
    try:
        hub.wait_for(lambda: not left(), what="dir1 gone from the servers' disks")
    except AssertionError as exc:
        raise AssertionError(f"dir1 still on {left()}\n{exc}") from None

    # deleted on the FTP server's disk
    (ftp_server.directory / "empty.txt").unlink()
    hub.wait_converged(expect=lambda t: "empty.txt" not in t)

    # the same file changed on two replicas before either change reached the other: both versions are kept
    (hub.local / "keep/0.txt").write_bytes(b"local side")
    (sftp_server.directory / "keep/0.txt").write_bytes(b"sftp side")

    def both_kept(t: dict[str, str]) -> bool:
        versions = {h for p, h in t.items() if CONFLICT.sub("", p) == "keep/0.txt"}
        return {sha(b"local side"), sha(b"sftp side")} <= versions

    tree = hub.wait_converged(expect=both_kept)
    assert any(CONFLICT.search(p) for p in tree), tree
    assert tree["big.bin"] == sha(files["big.bin"])
    assert all(row["state"] == "in sync" for row in hub.rows().values()), hub.rows()
