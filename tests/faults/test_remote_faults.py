"""Faults on remote services under ``onitu start``: a remote service's plug killed with SIGKILL mid-transfer, a
server gone for 10 s, wrong credentials. Every replica is read through the servers' own storage (boto3, the served
directories), never through the drivers under test.

``ONITU_REMOTE_KILL_MIB`` sets the size of the file in flight when the plug is killed (40 MiB by default);
``ONITU_REMOTE_ALL=1`` runs the outage on every backend (CI: S3 and FTP)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import S3Server
from tests.servers.common import files_under, fresh_name
from tests.servers.private import Server, private_server
from tests.servers.s3 import s3_process, s3_server_in, s3_user
from tests.sync.remote_hub import RemoteHub, visible

KILL_SIZE = int(os.environ.get("ONITU_REMOTE_KILL_MIB", "40")) << 20
OUTAGE = 10.0  # seconds a server stays down
KINDS = ["s3", "sftp", "ftp", "webdav"]
# an outage costs ~35 s per backend: CI takes the object store and one of the stopped servers
OUTAGE_KINDS = KINDS if os.environ.get("ONITU_REMOTE_ALL") else ["s3", "ftp"]
pytestmark = pytest.mark.timeout(300)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., RemoteHub]]:
    hubs: list[RemoteHub] = []

    def make(remotes: dict[str, Server], **kwargs: object) -> RemoteHub:
        hub = RemoteHub(tmp_path, remotes, **kwargs)  # type: ignore[arg-type]
        hub.local.mkdir(parents=True, exist_ok=True)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        try:
            hub.stop()
        finally:
            hub.kill_everything()


def seed(root: Path, count: int = 10) -> dict[str, str]:
    files = {f"f/{i}.txt": f"file {i}".encode() for i in range(count)}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return {path: sha(data) for path, data in files.items()}


def in_flight(remote: Server, known: set[str]) -> bool:
    """Whether part of a transfer is on the server: a staged file with bytes in it, or an S3 upload with a part."""
    if isinstance(remote, S3Server):
        client = remote.client()
        uploads = client.list_multipart_uploads(Bucket=remote.bucket).get("Uploads", [])
        for upload in uploads:
            try:  # an upload listed a moment ago may be complete by now
                if client.list_parts(Bucket=remote.bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts"):
                    return True
            except client.exceptions.NoSuchUpload:
                continue
        return False
    for dirpath, _, filenames in os.walk(remote.directory):
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(remote.directory).as_posix()
            if rel not in known and name != ".onitu-root" and path.stat().st_size > 0:
                return True
    return False


class Watch(threading.Thread):
    """Reads ``path`` on the server until stopped and keeps every content seen there that is not ``final``."""

    def __init__(self, remote: Server, path: str, final: str) -> None:
        super().__init__(daemon=True)
        self.remote, self.path, self.final = remote, path, final
        self.wrong: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            seen = visible(self.remote.files()).get(self.path)
            if seen is not None and seen != self.final:
                self.wrong.append(seen)
            time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_plug_killed_mid_transfer_resumes_and_shows_nothing_half_written(
        kind: str, request: pytest.FixtureRequest, make_hub: Callable[..., RemoteHub]) -> None:
    remote = request.getfixturevalue(f"{kind}_server")
    hub = make_hub({kind: remote})
    expected = seed(hub.local)
    hub.start()
    hub.wait_converged(60)
    data = random.Random(kind).randbytes(KILL_SIZE)
    watch = Watch(remote, "big.bin", sha(data))
    watch.start()
    known = set(remote.files())
    (hub.local / ".big.tmp").write_bytes(data)
    os.rename(hub.local / ".big.tmp", hub.local / "big.bin")
    deadline = time.monotonic() + 60
    while not in_flight(remote, known):
        assert "big.bin" not in visible(remote.files()), "the transfer ended before it was seen under way"
        assert time.monotonic() < deadline, f"no transfer under way on {kind}\n{hub.agent_logs()}"
        time.sleep(0.01)
    victim = hub.pid(f"plug-{kind}")
    os.kill(victim, signal.SIGKILL)
    hub.wait(lambda s: any(p["name"] == f"plug-{kind}" and p["pid"] != victim and p["state"] == "running"
                           for p in s.get("processes", [])), 30, "the plug restarted")
    hub.wait_converged(120, expect=lambda t: t.get("big.bin") == sha(data))
    watch.halt.set()
    watch.join()
    assert watch.wrong == [], f"{kind}: a half-written big.bin was visible ({len(watch.wrong)} times)"
    assert visible(remote.files()) == {**expected, "big.bin": sha(data)}


@pytest.mark.parametrize("kind", OUTAGE_KINDS)
def test_server_gone_for_ten_seconds_deletes_nothing_and_converges_after(
        kind: str, tmp_path: Path, make_hub: Callable[..., RemoteHub]) -> None:
    """sshd, pyftpdlib and wsgidav are stopped (their files stay on disk); moto keeps its buckets in memory only,
    so the S3 server is frozen instead (SIGSTOP: connections open, no answers)."""
    with private_server(kind, tmp_path / "server") as remote:
        hub = make_hub({kind: remote})
        expected = seed(hub.local)
        hub.start()
        hub.wait_converged(60)
        if kind == "s3":
            remote.process.freeze()
        else:
            remote.process.stop()
        try:
            (hub.local / "during.txt").write_bytes(b"written while the server was away")
            (hub.local / "f/0.txt").write_bytes(b"changed while the server was away")
            states, end = set(), time.monotonic() + OUTAGE
            while time.monotonic() < end:
                assert set(expected) <= set(visible(files_under(hub.local))), "a local file vanished"
                states.add(hub.rows()[kind]["state"])
                time.sleep(0.5)
        finally:
            if kind == "s3":
                remote.process.thaw()
            else:
                remote.process.start()
        tree = hub.wait_converged(120, expect=lambda t: "during.txt" in t)
        assert tree == {**expected, "f/0.txt": sha(b"changed while the server was away"),
                        "during.txt": sha(b"written while the server was away")}
        hub.wait_for(lambda: hub.rows()[kind]["state"] == "in sync", 60, f"{kind} back in sync")
        if kind != "s3":
            unavailable = any(state.startswith("unavailable") for state in states)
            assert unavailable, f"{kind} was never shown unavailable while its server was stopped: {states}"


BAD = "not-the-password-0451"
CAUSE = re.compile(r"(?i)auth|login|password|permission|denied|credential|key|401|403|530")


@pytest.fixture
def s3_checking(tmp_path: Path) -> Iterator[S3Server]:
    """A moto server of the test's own that checks credentials (the session's accepts any), and a bucket on it."""
    with s3_process(tmp_path / "moto.log", check_credentials=True) as proc:
        yield s3_server_in(proc, fresh_name(), *s3_user(proc))


def test_wrong_credentials_make_services_unavailable_with_the_cause_and_no_crash_loop(
        request: pytest.FixtureRequest, s3_checking: S3Server, make_hub: Callable[..., RemoteHub]) -> None:
    """A wrong password (FTP, WebDAV), a key the server does not know (SFTP), a wrong secret (S3)."""
    remotes = {kind: s3_checking if kind == "s3" else request.getfixturevalue(f"{kind}_server") for kind in KINDS}
    stranger = Path(remotes["sftp"].key_file).with_name("stranger")
    if not stranger.exists():
        from tests.servers.sftp import keygen
        keygen(stranger)
    wrong = {"ftp": {"password": BAD}, "webdav": {"password": BAD}, "sftp": {"key_file": str(stranger)},
             "s3": {"secret": BAD}}
    hub = make_hub(remotes, options=wrong)
    expected = seed(hub.local)
    hub.start()
    hub.wait_for(lambda: all(hub.rows()[k]["state"].startswith("unavailable") for k in KINDS), 60,
                 "every remote service unavailable")
    time.sleep(5)  # long enough for a crash loop to show
    rows = hub.rows()
    for kind in KINDS:
        assert CAUSE.search(rows[kind]["state"]), f"{kind}: no cause in {rows[kind]['state']!r}"
        plug = hub.process(f"plug-{kind}")
        assert plug["state"] == "running" and plug["restarts"] == 0, plug
    text = hub.status_text()
    assert all(re.search(rf"{kind}\b.*unavailable", text) for kind in KINDS), text
    assert visible(files_under(hub.local)) == expected
    assert not any(BAD in log.read_text() for log in (hub.data / "run").glob("*.log")), "a password was logged"
