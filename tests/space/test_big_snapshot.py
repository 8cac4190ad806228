"""A secondary joining a primary that holds a big space: both keep answering heartbeats and requests while the
snapshot streams, and the secondary ends with exactly the primary's state.

In a 300,000-file sync the pair went into a failover loop: the snapshot began with every notify-history event and
every cached reply in one message, the batches held back meanwhile were applied in one turn, and each loop spent
seconds on one of them, past what the watchdog's heartbeat tolerates (interval x misses, 1.5 s by default)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import zmq

from onitu.config import HeartbeatConfig
from onitu.space import connect
from onitu.space.protocol import packb, request, unpackb
from tests.helpers import RawPrimary
from tests.space.test_catchup import Pair

TUPLES = 120_000
SESSIONS = 3  # each leaves 10,000 replies cached (it never acknowledges them)
REPLIES = 10_000
HELD = 20_000  # batches a busy primary sent while its snapshot streamed
HEARTBEAT = HeartbeatConfig()
BOUND = HEARTBEAT.interval * HEARTBEAT.misses  # what a hang must exceed to be fenced by the watchdog


class Prober:
    """Raw requests, one at a time, to one server's loop (a secondary answers NotPrimary, from its loop too)."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.sid, self.seq = os.urandom(16), 0

    def latency(self, op: str, args: dict, timeout: float = 30.0) -> float:
        self.seq += 1
        started = time.monotonic()
        self.sock.send(request(op, self.sid, self.seq, self.seq, args))
        while self.sock.poll(timeout * 1000):
            if unpackb(self.sock.recv())[1] == self.seq:
                return time.monotonic() - started
        raise AssertionError(f"no answer to {op} in {timeout} s")


def _fill(pair: Pair, ctx: zmq.Context) -> None:
    """Tuples like a sync hub's records, a full notify history, and cached replies that are never acknowledged."""
    with connect(pair.endpoint("a"), connect_timeout=10) as space:
        for start in range(0, TUPLES, 5000):
            space.batch([("write", ["file", f"dir{i % 100}/file{i}", {"size": i, "hash": f"{i:040x}"}], None)
                         for i in range(start, start + 5000)])
        space.write(["leased", 1], lease=3600)
    for _ in range(SESSIONS):
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(pair.endpoint("a"))
        sid = os.urandom(16)
        raw.send(request("hello", sid, 1, 0, {"ttl": 3600.0}))
        for seq in range(2, REPLIES + 2):
            raw.send(request("write", sid, seq, 0, {"t": ["cached", seq]}))
        for _ in range(REPLIES + 1):
            assert raw.poll(30_000)
            raw.recv()
        raw.close()


def _state(path: Path) -> tuple[list, list, list]:
    db = sqlite3.connect(path)
    try:
        return tuple(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                     for table in ("tuples", "sessions", "replies"))
    finally:
        db.close()


def test_a_big_snapshot_streams_while_both_servers_answer(tmp_path):
    pair = Pair(tmp_path)
    ctx = zmq.Context()
    stop, written = threading.Event(), []

    def write() -> None:  # a busy primary: a batch per write, held back by the secondary while the snapshot streams
        with connect(pair.endpoint("a"), connect_timeout=10) as space:
            while not stop.is_set():
                written.append(space.write(["during", len(written)]))

    writer = threading.Thread(target=write)
    try:
        pair.serve("a", "primary", 1)
        _fill(pair, ctx)
        on_a = Prober(ctx, pair.endpoint("a"))
        on_a.latency("hello", {"ttl": 3600.0})
        writer.start()
        pair.serve("b", "secondary", 1)
        on_b = Prober(ctx, pair.endpoint("b"))
        worst = {"a ping": 0.0, "b ping": 0.0, "a request": 0.0, "b request": 0.0}
        deadline = time.monotonic() + 60
        while not (status := pair.wd.status("a")).get("synced") or status["snapshots"] < 1:
            for name in ("a", "b"):
                started = time.monotonic()
                pair.wd.ask(name, {"op": "ping"}, timeout=30)
                worst[f"{name} ping"] = max(worst[f"{name} ping"], time.monotonic() - started)
            worst["a request"] = max(worst["a request"], on_a.latency("read", {"p": ["leased", None]}))
            worst["b request"] = max(worst["b request"], on_b.latency("ping", {}))
            assert time.monotonic() < deadline, f"the secondary never got in sync: {status}"
        stop.set()
        writer.join(10)
        assert max(worst.values()) < BOUND, worst
        while pair.wd.status("b").get("applied", 0) < pair.wd.status("a")["lsn"]:
            time.sleep(0.05)
        primary = _state(tmp_path / "a" / "space.db")
        assert len(primary[0]) == TUPLES + 1 + SESSIONS * REPLIES + len(written)
        assert len(primary[2]) >= SESSIONS * REPLIES
        assert _state(tmp_path / "b" / "space.db") == primary
        with connect(pair.endpoint("a"), connect_timeout=10) as space:
            last = space.stats()["last_event"]
        pair.kill("a")
        pair.promote("b", 2)
        with connect(pair.endpoint("b"), connect_timeout=10) as space:
            assert space.read_all(["leased", None]) == [("leased", 1)]
            assert len(space.read_all(["file", None, None])) == TUPLES
            assert len(space.read_all(["during", None])) == len(written)
            # the notify history came with the snapshot and the batches after it: a client resumes from it
            events = space.notify("write", ["during", None], since=last - 500)
            assert [events.next(5)[0] for _ in range(500)] == list(range(last - 499, last + 1))
            events.close()
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(10)
        pair.close()
        ctx.destroy()


def test_batches_held_back_during_a_snapshot_are_applied_while_the_secondary_answers(tmp_path):
    """Raw frames: the test plays a primary that committed many batches while its snapshot streamed. The secondary
    applied them all in the turn that ended the snapshot, seconds without a look at its sockets."""
    pair = Pair(tmp_path)
    primary = RawPrimary(f"ipc://{tmp_path}/b/replica.sock")
    ctx = zmq.Context()
    try:
        pair.serve("b", "secondary", 1)
        prober = Prober(ctx, pair.endpoint("b"))
        primary.send("snap_begin", 1, "p", 1, {"sessions": [], "replies": [], "events": [], "next_id": 2,
                                               "event_id": 1})
        primary.send("snap_rows", 1, [[1, packb(["s", 1]), None, None]])
        for lsn in range(2, HELD + 2):
            primary.send("batch", 1, "p", lsn, [[[[lsn, packb(["s", lsn]), None, None]], [], [], []], [], [],
                                               [[lsn, "write", packb(["s", lsn])]], [lsn + 1, lsn]])
        primary.send("snap_end", 1, 1)
        worst = 0.0
        while (answer := primary.answer(0.05)) is None:
            worst = max(worst, prober.latency("ping", {}))
        assert answer == ["synced", 1, HELD + 1]
        assert worst < BOUND, f"the secondary left a request unanswered for {worst:.2f} s"
        assert [row[0] for row in _state(tmp_path / "b" / "space.db")[0]] == list(range(1, HELD + 2))
        primary.send("batch", 1, "p", HELD + 2, [[[], [], [], []], [], [], [], [HELD + 3, HELD + 2]])
        assert primary.answer(5.0) == ["ack", 1, HELD + 2]
        pair.promote("b", 2)
        with connect(pair.endpoint("b"), connect_timeout=10) as space:
            assert len(space.read_all(["s", None])) == HELD + 1
    finally:
        primary.close()
        pair.close()
        ctx.destroy()
