"""The space's disk under a sustained write load: the WAL starts over within its bound, kill -9 at any moment loses
no committed turn, and a server waiting on its disk is not taken for a hung one."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import msgpack
import zmq

from onitu.space import connect
from tests.helpers import ServerProcess

WAL_LIMIT = 512 << 10
TURNS = 2000  # ~60 MB of WAL frames if the WAL never started over


def test_the_wal_stays_bounded_under_a_sustained_load_and_kill9_loses_nothing_committed(tmp_path):
    db = tmp_path / "space.db"
    wal = tmp_path / "space.db-wal"
    proc = subprocess.Popen([sys.executable, "-m", "tests.procs", "committer", str(db), str(WAL_LIMIT)],
                            stdout=subprocess.PIPE, text=True)
    biggest, committed = 0, -1
    try:
        while committed < TURNS:
            line = proc.stdout.readline()
            assert line, "the committer died"
            committed = int(line)
            biggest = max(biggest, wal.stat().st_size)
    finally:
        proc.kill()  # kill -9: no last checkpoint, the WAL is read back below
        proc.wait()
    # Without steps that let it start over, the WAL holds every turn; with them, its bound and what half a second
    # (between two checkpoint steps) of this load adds, a few MB.
    assert biggest < 48 * WAL_LIMIT, f"the WAL reached {biggest} bytes"
    with sqlite3.connect(db) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM tuples")}
        seqs = {row[0] for row in conn.execute("SELECT seq FROM replies")}
    assert set(range((committed + 1) * 60)) <= ids  # every turn printed (acknowledged) is on disk
    assert committed in seqs


def test_a_server_waiting_on_its_disk_still_answers_the_watchdog(tmp_path, monkeypatch):
    dog = zmq.Context.instance().socket(zmq.ROUTER)
    dog.linger = 0
    port = dog.bind_to_random_port("tcp://127.0.0.1")
    monkeypatch.setenv("ONITU_WATCHDOG", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("ONITU_NAME", "space")
    data = tmp_path / "space"
    data.mkdir()
    srv = ServerProcess(data).start()
    client = connect(srv.ipc)
    # Another writer holds the database: the server's next commit waits for it in SQLite, as on a saturated disk.
    holder = sqlite3.connect(data / "space.db", isolation_level=None)
    try:
        assert any(_ping(dog, n) is not None for n in range(-20, 0))  # the server's responder connected
        holder.execute("BEGIN IMMEDIATE")
        writer = threading.Thread(target=client.write, args=(("blocked", 1),))
        writer.start()
        for n in range(6):  # each answered within 1 s, the default heartbeat's patience being 1.5 s (0.5 s x 3)
            assert _ping(dog, n) is not None, "a server waiting on its disk looked hung"
            assert writer.is_alive()  # still waiting: nothing was acknowledged before it is on disk
        holder.execute("COMMIT")
        writer.join(10)
        assert not writer.is_alive() and client.read(("blocked", None), 0) == ("blocked", 1)
    finally:
        holder.close()
        client.close()
        assert srv.stop() == 0, srv.read_log()
        dog.close(0)


def _ping(dog: zmq.Socket, n: int, wait: float = 1.0) -> dict | None:
    """The watchdog's ping: the pong, or None if none came within ``wait`` seconds."""
    dog.send_multipart([b"space", msgpack.packb({"op": "ping", "n": n, "epoch": 0})])
    deadline = time.monotonic() + wait
    while dog.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        msg = msgpack.unpackb(dog.recv_multipart()[1])
        if msg.get("op") == "pong" and msg.get("n") == n:
            return msg
    return None
