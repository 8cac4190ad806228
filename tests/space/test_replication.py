"""Two real space servers, this test playing the watchdog: pairing, and the read lease of a paired primary."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq

from onitu.space import connect
from tests.helpers import RawPrimary


class FakeWatchdog:
    """Just enough of the watchdog: the heartbeat ROUTER, pings and commands."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.n = 0

    def ask(self, name: str, msg: dict, timeout: float = 5.0) -> dict:
        self.n += 1
        deadline = time.monotonic() + timeout
        sent = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - sent > 0.2:  # its DEALER may not be connected yet
                self.sock.send_multipart([name.encode(), msgpack.packb({**msg, "n": self.n})])
                sent = time.monotonic()
            if self.sock.poll(50):
                _, frame = self.sock.recv_multipart()
                reply = msgpack.unpackb(frame)
                if reply.get("n") == self.n:
                    return reply
        raise AssertionError(f"{name} did not answer {msg}")

    def status(self, name: str, timeout: float = 5.0) -> dict:
        return self.ask(name, {"op": "ping"}, timeout)["status"]

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def pair(tmp_path):
    wd = FakeWatchdog(f"ipc://{tmp_path}/wd.sock")
    procs = {}
    for name, role, peer in (("b", "secondary", "a"), ("a", "primary", "b")):
        (tmp_path / name).mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp_path / name), "--listen",
             f"ipc://{tmp_path}/{name}/space.sock", "--role", role, "--epoch", "1", "--replica-listen",
             f"ipc://{tmp_path}/{name}/replica.sock", "--peer", f"ipc://{tmp_path}/{peer}/replica.sock",
             "--no-discovery"], env={**os.environ, "ONITU_WATCHDOG": f"ipc://{tmp_path}/wd.sock", "ONITU_NAME": name},
            stderr=subprocess.DEVNULL)
    for name in procs:
        wd.status(name, timeout=30)  # up: a start under load (tests run in parallel) takes seconds
    yield wd, procs
    for proc in procs.values():
        if proc.poll() is None:  # a test may have killed it
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(10)
    wd.close()


def test_a_paired_primary_answers_nothing_without_a_fresh_acknowledgement(pair, tmp_path):
    wd, procs = pair
    deadline = time.monotonic() + 10
    while not wd.status("a").get("synced"):
        assert time.monotonic() < deadline, "the secondary never got in sync"
        time.sleep(0.1)
    assert wd.ask("a", {"op": "command", "command": "pair", "epoch": 2, "lease": 0.3}).get("ok")
    with connect(f"ipc://{tmp_path}/a/space.sock", connect_timeout=5) as space:
        space.write(["x", 1])  # paired: answered once the secondary made it durable
        assert wd.status("b")["applied"] >= 1
        os.kill(procs["b"].pid, signal.SIGSTOP)
        time.sleep(0.5)  # longer than the lease: the primary can no longer vouch for being the only one
        answered = []
        reader = threading.Thread(target=lambda: answered.append(space.read_all(["x", None])))
        reader.start()
        reader.join(1.5)
        assert not answered, "a paired primary answered a read with no recent word from its secondary"
        os.kill(procs["b"].pid, signal.SIGCONT)
        reader.join(10)
        assert answered == [[("x", 1)]]
    assert wd.status("a")["mode"] == "paired"


def test_a_client_says_a_slow_primary_did_not_answer_not_that_it_is_not_the_primary(pair, tmp_path, caplog):
    """A client moves on from a primary silent for a second (stopped here; at a million files, a long turn): its
    log said the server "is not the primary", which sent whoever read it looking for a failover that never
    happened."""
    wd, procs = pair
    deadline = time.monotonic() + 10
    while not wd.status("a").get("synced"):
        assert time.monotonic() < deadline, "the secondary never got in sync"
        time.sleep(0.1)
    a, b = f"ipc://{tmp_path}/a/space.sock", f"ipc://{tmp_path}/b/space.sock"
    with connect([a, b], connect_timeout=10) as space:
        space.write(["x", 1])
        caplog.set_level("INFO", logger="onitu.space.client")
        os.kill(procs["a"].pid, signal.SIGSTOP)
        threading.Timer(2.5, os.kill, (procs["a"].pid, signal.SIGCONT)).start()
        space.write(["x", 2])  # a silent, b not the primary, then a again once it runs
        assert space.read_all(["x", None]) == [("x", 1), ("x", 2)]
    said = [r.getMessage() for r in caplog.records]
    assert f"space at {a} did not answer within 1 s; trying {b}" in said, said
    assert f"space at {b} is not the primary; trying {a}" in said, said
    assert not any(m.startswith(f"space at {a} is not the primary") for m in said), said


@pytest.fixture
def secondary(tmp_path):
    """A real secondary; this test plays its primary on the replication socket, with raw frames."""
    wd = FakeWatchdog(f"ipc://{tmp_path}/wd.sock")
    (tmp_path / "b").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp_path / "b"), "--listen",
         f"ipc://{tmp_path}/b/space.sock", "--role", "secondary", "--epoch", "1", "--replica-listen",
         f"ipc://{tmp_path}/b/replica.sock", "--peer", f"ipc://{tmp_path}/nobody.sock", "--no-discovery"],
        env={**os.environ, "ONITU_WATCHDOG": f"ipc://{tmp_path}/wd.sock", "ONITU_NAME": "b"},
        stderr=subprocess.PIPE)
    wd.status("b", timeout=30)  # up: a start under load (tests run in parallel) takes seconds
    primary = RawPrimary(f"ipc://{tmp_path}/b/replica.sock")
    yield proc, primary.send, primary.answer
    primary.close()
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    wd.close()


def test_a_secondary_whose_primary_died_mid_snapshot_asks_the_new_one(secondary):
    """The primary streaming a snapshot is killed and restarted in place (a new boot): the secondary used to wait
    for the end of the old snapshot for ever, ignoring the new primary's probes, so the pair never formed again
    (the kill -9 soak: 'every process running again and the space paired' timed out)."""
    from onitu.space.protocol import packb

    _, send, answer = secondary
    meta = {"sessions": [], "replies": [], "events": [], "next_id": 2, "event_id": 1}
    send("snap_begin", 1, "boot-old", 7, meta)
    send("snap_rows", 1, [[1, packb(["half", 1]), None, None]])
    # ... and the old primary dies here. Its successor probes:
    send("probe", 1, "boot-new", 0)
    need = answer()
    assert need is not None and need[0] == "need", f"no answer to the new primary's probe: {need}"
    send("snap_begin", 1, "boot-new", 3, meta)
    send("snap_rows", 1, [[1, packb(["whole", 1]), None, None]])
    send("snap_end", 1, 3)
    assert answer() == ["synced", 1, 3]
    send("batch", 1, "boot-new", 4, [[[], [], [], []], [], [], [], [2, 1]])
    assert answer() == ["ack", 1, 4]


def test_a_secondary_stopped_mid_snapshot_exits_cleanly(secondary):
    from onitu.space.protocol import packb

    proc, send, _ = secondary
    send("snap_begin", 1, "boot-old", 7, {"sessions": [], "replies": [], "events": [], "next_id": 2, "event_id": 1})
    send("snap_rows", 1, [[1, packb(["half", 1]), None, None]])
    time.sleep(0.5)
    proc.terminate()
    assert proc.wait(10) == 0, proc.stderr.read().decode()[-2000:]


def test_a_write_is_answered_before_the_secondary_commits_and_survives_the_primary_kill9(pair, tmp_path):
    """The secondary acknowledges a batch once it continues its stream, then commits it: a paired write no longer
    waits for the secondary's SQLite commit (here held up by another connection's write lock), and a kill -9 of
    the primary right after that answer loses nothing, the secondary committing what it acknowledged."""
    wd, procs = pair
    deadline = time.monotonic() + 10
    while not wd.status("a").get("synced"):
        assert time.monotonic() < deadline, "the secondary never got in sync"
        time.sleep(0.1)
    assert wd.ask("a", {"op": "command", "command": "pair", "epoch": 2}).get("ok")
    with connect(f"ipc://{tmp_path}/a/space.sock", connect_timeout=5) as space:
        space.write(["x", 1])
        lock = sqlite3.connect(tmp_path / "b" / "space.db", isolation_level=None)
        # ["x", 1] committed on b first: its commit follows the answer, and one still to come would wait for the
        # lock below, holding up b's loop and the acknowledgement of ["x", 2] with it (seen under a loaded suite)
        while not lock.execute("SELECT count(*) FROM tuples").fetchone()[0]:
            assert time.monotonic() < deadline + 10, "b never committed the first write"
            time.sleep(0.01)
        lock.execute("BEGIN IMMEDIATE")  # the secondary's next commit waits for this lock
        writer = threading.Thread(target=space.write, args=(["x", 2],), daemon=True)
        writer.start()
        writer.join(5)
        answered = not writer.is_alive()
        os.kill(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait(10)
        lock.execute("ROLLBACK")
        lock.close()
    assert answered, "a paired write waited for the secondary's commit"
    assert wd.ask("b", {"op": "command", "command": "promote", "epoch": 3}, timeout=30).get("ok")
    with connect(f"ipc://{tmp_path}/b/space.sock", connect_timeout=10) as space:
        assert space.read_all(["x", None]) == [("x", 1), ("x", 2)]


def test_a_batch_whose_write_event_names_no_row_of_it_is_refused_and_asked_for_again(secondary):
    """A write event is shipped as the id of its row in the same batch (replication.by_row): one naming a row the
    batch does not hold is not acknowledged (a primary would have to send it again, whole), and the next good batch
    at that position is."""
    proc, send, answer = secondary
    send("snap_begin", 1, "p", 3, {"sessions": [], "replies": [], "events": [], "next_id": 2, "event_id": 1})
    send("snap_end", 1, 3)
    assert answer() == ["synced", 1, 3]
    body = b"\x92\xa1x\x01"  # ("x", 1), as a packed store holds it
    send("batch", 1, "p", 4, [[[[7, body, None, None]], [], [], []], [], {}, [[2, "write", 999]], [8, 3]])
    assert answer()[:3] == ["need", 1, 4]
    send("batch", 1, "p", 4, [[[[7, body, None, None]], [], [], []], [], {}, [[2, "write", 7]], [8, 3]])
    assert answer() == ["ack", 1, 4]
    assert proc.poll() is None


def test_a_secondary_that_cannot_commit_an_acknowledged_batch_stops(secondary):
    """Acknowledged before its commit, a batch the secondary then fails to commit must not leave it running without
    it (a promotion would lose it): it exits (70), and the primary, which committed it, goes on alone."""
    proc, send, answer = secondary
    send("snap_begin", 1, "p", 3, {"sessions": [], "replies": [], "events": [], "next_id": 2, "event_id": 1})
    send("snap_end", 1, 3)
    assert answer() == ["synced", 1, 3]
    send("batch", 1, "p", 4, [[[["not an id", b"", None, None]], [], [], []], [], {}, [], [3, 2]])  # SQLite refuses it
    assert answer() == ["ack", 1, 4]
    assert proc.wait(10) == 70
    assert b"commit of an acknowledged batch" in proc.stderr.read()
