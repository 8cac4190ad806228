"""The least a durable paired write can cost in CPython: bench/space_vs_rinda.py's ceiling for the replicated pair.

    python bench/space_pair_floor.py [--n 5000]

A primary and a secondary with no framework at all (blocking sockets, no event loop, no store, no sessions, no
templates), keeping onitu's pair's promise: a write is answered once both have committed it to SQLite (WAL,
synchronous=NORMAL), the primary's commit overlapping the secondary's (it ships first). The client is a bare pyzmq
DEALER sending onitu's request frame. Whatever onitu's pair does on top of this is what it could still cut; what
this does not reach, no CPython pair with that promise reaches on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

from onitu.space.durable import SCHEMA  # the same tables, nothing else of onitu's


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def _commit(db: sqlite3.Connection, rows: list, replies: list, lsn: int | None = None) -> None:
    """What onitu commits per write: the tuple's row, the cached reply, and on the secondary its stream position."""
    db.execute("BEGIN")
    db.executemany("INSERT INTO tuples VALUES (?, ?, ?, ?)", rows)
    db.executemany("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", replies)
    if lsn is not None:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('stream_lsn', ?)", (lsn,))
    db.execute("COMMIT")


def secondary(path: str, data: str) -> None:
    """Apply each batch (a length-prefixed msgpack frame), commit it, acknowledge it."""
    db = _open(f"{data}/secondary.db")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    conn, _ = listener.accept()
    while frame := conn.recv(65536):
        lsn, rows, replies = msgpack.unpackb(frame[4:])
        _commit(db, rows, replies, lsn)
        _framed(conn, msgpack.packb(["ack", 1, lsn]))


def _framed(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(len(frame).to_bytes(4, "big") + frame)


class UnixRouter:
    """A zmq ROUTER's two calls over a plain Unix socket, for one client: what a client link without zmq's I/O
    threads would cost (four thread wakeups fewer per request, as the pair's own link, onitu/space/wire.py)."""

    def __init__(self, path: str) -> None:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        self.conn, _ = listener.accept()

    def recv_multipart(self) -> list[bytes]:
        return [b"", self.conn.recv(65536)[4:]]  # one small frame per request: the bench's, never split

    def send_multipart(self, parts: list[bytes]) -> None:
        _framed(self.conn, parts[1])


class UnixDealer:
    """The client's end of :class:`UnixRouter`."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        while self.sock.connect_ex(path):
            time.sleep(0.01)

    def send(self, frame: bytes) -> None:
        _framed(self.sock, frame)

    def recv(self) -> bytes:
        return self.sock.recv(65536)[4:]


def primary(endpoint: str, peer_path: str, data: str) -> None:
    """Per request: decode, ship the batch, commit while the secondary does, wait for its ack, answer."""
    db = _open(f"{data}/primary.db")
    if endpoint.startswith("ipc://"):
        router = zmq.Context().socket(zmq.ROUTER)
        router.bind(endpoint)
    else:
        router = UnixRouter(endpoint)
    peer = socket.socket(socket.AF_UNIX)
    while peer.connect_ex(peer_path):
        time.sleep(0.01)
    lsn, eid = 0, 1 << 32
    while True:
        ident, frame = router.recv_multipart()
        _, _op, sid, seq, _ack, args = msgpack.unpackb(frame)
        eid, lsn = eid + 1, lsn + 1
        reply = msgpack.packb([1, seq, 0, eid])
        rows, replies = [[eid, msgpack.packb(args["tuple"]), None, None]], [[sid, seq, reply]]
        batch = msgpack.packb([lsn, rows, replies])
        _framed(peer, batch)
        _commit(db, rows, replies)
        peer.recv(65536)
        router.send_multipart([ident, reply])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(n: int, zmq_client: bool = True) -> tuple[float, str]:
    """Sequential durable paired writes per second through the bare pair, and the CPU each server used per write
    (all threads): unlike the rate, it hardly moves with the machine's load. The client speaks zmq, as onitu's,
    or (``zmq_client=False``) plain frames over a Unix socket."""
    tmp = tempfile.mkdtemp(prefix="onitu-pair-floor-")
    procs = [subprocess.Popen([sys.executable, __file__, "--secondary", f"{tmp}/replica.sock", tmp])]
    while not os.path.exists(f"{tmp}/replica.sock"):
        time.sleep(0.01)
    endpoint = f"ipc://{tmp}/space.sock" if zmq_client else f"{tmp}/space.sock"
    procs.append(subprocess.Popen([sys.executable, __file__, "--primary", endpoint, f"{tmp}/replica.sock", tmp]))
    ctx = zmq.Context()
    if zmq_client:
        sock = ctx.socket(zmq.DEALER)
        sock.connect(endpoint)
    else:
        sock = UnixDealer(endpoint)
    sid = os.urandom(16)
    try:
        for seq in range(-100, n):  # the first hundred warm up
            if seq == 0:
                before = [cpu_seconds(proc.pid) for proc in procs]
                t0 = time.perf_counter()
            sock.send(msgpack.packb([1, "write", sid, seq, seq, {"tuple": ["task", seq, "payload"]}]))
            msgpack.unpackb(sock.recv())
        rate = n / (time.perf_counter() - t0)
        used = [(cpu_seconds(proc.pid) - cpu) / n * 1e6 for proc, cpu in zip(procs, before, strict=True)]
        return rate, f"primary {used[1]:.0f} us, secondary {used[0]:.0f} us"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        if zmq_client:
            sock.close(0)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--primary", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--secondary", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.primary:
        primary(*args.primary)
    elif args.secondary:
        secondary(*args.secondary)
    else:
        for zmq_client in (True, False):
            rate, cpu = floor(args.n, zmq_client)
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"bare durable pair, {'zmq' if zmq_client else 'Unix socket'} client: {rate:.0f} sequential "
                  f"writes/s; CPU per write {cpu} (load {load}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
