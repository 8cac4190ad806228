"""Primary -> secondary replication: every committed batch is shipped; a fresh secondary gets a snapshot first.

Every space server binds a replication endpoint (a socket of :mod:`onitu.space.wire`, not zmq: fewer thread
wakeups per batch). The primary connects to its peer's, probes on each connection, and sends
``["batch", epoch, boot, lsn, body]`` after each commit (``body`` is what it committed: the rows, cached
replies, acknowledgements and the events of the turn). The secondary applies a batch only if it continues the
stream it is synced to (same primary boot, next lsn), commits it, and answers ``["ack", epoch, lsn]``; otherwise
it answers ``["need", epoch, lsn, its boot, [primary boot, last lsn] or None]``. If the replica holds this
primary's own stream up to a batch the primary still keeps (a secondary that restarted, or missed a few), the
primary sends it the batches after it, and the replica's acknowledgement of the last makes it a copy again;
otherwise the primary streams a snapshot (``snap_begin``, ``snap_rows`` chunks, ``snap_end``) taken at a turn
boundary, then the batches after it. A replica whose disk comes from another primary (another boot: the old
primary coming back, say) always gets a snapshot, so it never keeps a batch the current primary never had. The
replica applies the snapshot in one transaction, then the batches that arrived meanwhile, and only then answers
``["synced", epoch, lsn]``: with the acknowledgement that ends a catch-up, the one answer that makes it a copy the
watchdog may promote. A ``need`` about a batch that an already-sent snapshot
covers is stale and ignored.

Fencing: every message carries the sender's epoch. A server that receives a message from a lower epoch answers
``["stale", its epoch]``; a primary that learns of a higher epoch (that answer, or a batch from a newer primary)
stops acknowledging anything and demotes itself.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from onitu.space.packed import unpack_stored
from onitu.space.protocol import as_tuple, packb, unpackb
from onitu.space.wire import Dialer, Listener, Stream

if TYPE_CHECKING:
    from onitu.space.server import SpaceServer

log = logging.getLogger("onitu.space.replication")

SNAPSHOT_CHUNK = 5000
# The last batches a primary keeps for catch-ups (at most this many, this many bytes): a replica away for longer
# gets a snapshot. Bytes held for good by a busy primary, as much as 170 per file of a 100,000-file hub.
RETAIN = (10_000, 16 << 20)
PER_TURN = 256  # messages handled per loop turn: heartbeats and clients get their turn under a flood


def _message(frame: bytes) -> list | None:
    try:
        msg = unpackb(frame)
    except Exception:  # hostile or corrupt: ignored (and counted by the caller)
        return None
    if isinstance(msg, list) and len(msg) >= 2 and isinstance(msg[0], str) and type(msg[1]) is int:
        return msg
    return None


_BATCH_HEAD = b"\x95" + packb("batch")  # msgpack: an array of 5, its first element


def _batch_frame(epoch: int, boot: str, lsn: int, body: bytes) -> bytes:
    """``["batch", epoch, boot, lsn, body]`` around a body packed once: a retained batch is kept as its bytes (a
    fraction of its decoded size) and sent again under the epoch of the moment (the watchdog may raise it while
    the link lasts)."""
    return b"".join((_BATCH_HEAD, packb(epoch), packb(boot), packb(lsn), body))


def _event(event: list) -> tuple:
    event_id, kind, tup = event  # tup: bytes as a packed store keeps them (a list from an older primary)
    return (event_id, kind, as_tuple(tup) if isinstance(tup, list) else tup)


class PrimaryLink:
    """The primary's side: ship batches, follow acknowledgements, stream snapshots on demand."""

    def __init__(self, server: SpaceServer, peer: str) -> None:
        self.server, self.peer = server, peer
        self.wire = Dialer(peer, server.pair.frames_in, self._connected, self._lost)
        self.lsn = 0  # last batch shipped
        self.acked = 0  # last batch the secondary made durable
        self.synced = False  # the secondary holds everything up to `acked` (it had a snapshot from us)
        self.last_ack = 0.0  # monotonic time of the last acknowledgement
        self._snap_to: tuple[str | None, int] = (None, -1)  # (replica boot, lsn) of the last snapshot or catch-up
        self._snapshot: deque[list] | None = None
        self._retained: deque[tuple[int, bytes]] = deque()  # (lsn, packed body) of the last batches shipped
        self._retained_bytes = 0
        self._catching_up: int | None = None  # the lsn whose acknowledgement ends a catch-up
        self.snapshots = self.catch_ups = 0  # sent so far

    def ship(self, body: list) -> int:
        self.lsn += 1
        packed = packb(body)
        self._send_frame(_batch_frame(self.server.epoch, self.server.boot, self.lsn, packed))
        retained = self._retained
        retained.append((self.lsn, packed))
        self._retained_bytes += len(packed)
        while len(retained) > RETAIN[0] or self._retained_bytes > RETAIN[1]:
            self._retained_bytes -= len(retained.popleft()[1])
        return self.lsn

    def probe(self, always: bool = False) -> None:
        if self._snapshot is None and (always or not self.synced):
            self._send(["probe", self.server.epoch, self.server.boot, self.lsn])

    def _send(self, msg: list) -> None:
        self._send_frame(packb(msg))

    def _send_frame(self, frame: bytes) -> None:
        if not self.wire.send(frame):
            self.synced = False  # no connection: the replica misses this frame, and resyncs on the next one

    def _connected(self) -> None:
        """Ask the replica where it stands: an acknowledgement of our last batch on this connection makes it a copy
        again (a replica that restarted with our whole stream on disk); otherwise it answers need."""
        self._catching_up = self.lsn
        self.probe(always=True)

    def _lost(self) -> None:
        """Whatever was under way over the lost connection is abandoned; the next one starts from a probe."""
        self.synced, self._snapshot, self._catching_up = False, None, None
        self._snap_to = (None, -1)

    def pending(self) -> bool:
        """Frames received and not yet handled (more than one turn's share arrived)."""
        stream = self.wire.stream
        return stream is not None and bool(stream.inbox)

    def receive(self) -> None:
        stream = self.wire.stream
        for _ in range(PER_TURN):
            if stream is None or not stream.inbox:
                return
            msg = _message(stream.inbox.popleft())
            if msg is None:
                self.server.counters["replication_malformed"] += 1
                continue
            kind, epoch = msg[0], msg[1]
            if epoch > self.server.epoch:
                self.server.pair.demote(f"peer {self.peer} is at epoch {epoch}, we are at {self.server.epoch}")
                return
            if kind == "stale":  # an answer to something we sent before adopting our current epoch
                continue
            if kind in ("ack", "synced") and len(msg) >= 3 and type(msg[2]) is int:
                self.acked = max(self.acked, msg[2])
                self.last_ack = time.monotonic()
                # Only the replica's word that it applied our snapshot makes it a copy; a late ack for a batch
                # sent before that snapshot says nothing about it.
                if kind == "synced" and msg[2] >= self._snap_to[1] and self._snapshot is None:
                    self.synced = True
                if kind == "ack" and self._catching_up is not None and msg[2] >= self._catching_up:
                    self.synced, self._catching_up = True, None
                self.server.pair.release()
            elif kind == "need" and len(msg) in (4, 5) and self._snapshot is None:
                replica, lsn = msg[3], msg[2]
                covered = replica == self._snap_to[0] and lsn <= self._snap_to[1]  # by what we sent it already
                if not covered and not self._catch_up(replica, msg[4] if len(msg) == 5 else None):
                    self._start_snapshot(replica)

    def _catch_up(self, replica: str, has: Any) -> bool:
        """Send a replica that holds our stream up to some batch the batches after it, if we still have them all
        (it says where it stands: ``[our boot, its last lsn]``). A replica whose disk comes from another primary
        (another boot) may hold batches we never had: it gets a snapshot instead."""
        if not (isinstance(has, list) and len(has) == 2 and has[0] == self.server.boot and type(has[1]) is int):
            return False
        start = has[1] + 1
        if not 0 < start <= self.lsn + 1 or (start <= self.lsn and (not self._retained
                                                                     or self._retained[0][0] > start)):
            return False
        self.synced, self._snap_to, self._catching_up = False, (replica, self.lsn), self.lsn
        self.catch_ups += 1
        server = self.server
        for lsn, body in self._retained:
            if lsn >= start:
                self._send_frame(_batch_frame(server.epoch, server.boot, lsn, body))
        log.info("catching %s up from lsn %d to %d, without a snapshot", self.peer, has[1], self.lsn)
        return True

    def _start_snapshot(self, replica: str) -> None:
        """Copy the state at this turn boundary (tuples are immutable, so the copy is consistent)."""
        server, store = self.server, self.server.store
        self.synced, self._catching_up = False, None
        self._snap_to = (replica, self.lsn)
        self.snapshots += 1
        rows = [[eid, body, store.leases.get(eid), store.owner[eid].sid if eid in store.owner else None]
                for eid, body in store.bodies()]
        chunks: deque[list] = deque()
        chunks.append(["snap_begin", server.epoch, server.boot, self.lsn,
                       {"sessions": [[s.sid, s.ttl] for s in store.sessions.values()],
                        "replies": [[sid, seq, body] for sid, cache in server.replies.items()
                                    for seq, body in cache.items()],
                        "events": list(store.history), "next_id": store.next_id, "event_id": store.event_id}])
        for i in range(0, len(rows), SNAPSHOT_CHUNK):
            chunks.append(["snap_rows", server.epoch, rows[i:i + SNAPSHOT_CHUNK]])
        chunks.append(["snap_end", server.epoch, self.lsn])
        self._snapshot = chunks
        log.info("streaming a snapshot of %d tuples at lsn %d to %s", len(rows), self.lsn, self.peer)
        self._continue_snapshot()

    def _continue_snapshot(self) -> None:
        # One chunk per loop turn, so clients (and heartbeats) are served while a big snapshot streams.
        if self._snapshot is None:
            return
        chunk = self._snapshot.popleft()  # the store holds its tuples encoded: the rows are ready to send
        self._send(chunk)
        if self._snapshot:
            self.server.call_soon(self._continue_snapshot)
        else:
            self._snapshot = None

    def status(self) -> dict[str, Any]:
        # In sync = streaming from a snapshot of ours; batches still in flight are fine, a paired primary
        # waits for their acknowledgements anyway.
        return {"peer": self.peer, "lsn": self.lsn, "acked": self.acked,
                "synced": self.synced and self._snapshot is None, "snapshots": self.snapshots,
                "catch_ups": self.catch_ups}

    def close(self) -> None:
        self.wire.close()


class SecondarySink:
    """The secondary's side: apply the primary's batches to disk, in order, and keep its event history."""

    def __init__(self, server: SpaceServer, listener: Listener) -> None:
        self.server, self.listener = server, listener
        self.stream = server.durable.stream()  # (primary boot, last lsn applied), kept on disk with each batch
        # the primary's events as they came (decoded only on promotion: most replicas never need them)
        self.history: deque[list] = deque(maxlen=server.store.history.maxlen)
        self._in_snapshot: tuple[str, int] | None = None
        self._snapshot_from: Stream | None = None
        self._waiting: list[list] = []
        # The server's memory holds what its disk holds (the store, the cached replies): a promotion is then a
        # role change, with nothing to load. The server loaded its disk; False while a snapshot is under way,
        # and after one is abandoned.
        self.live = True
        self._unmirrored: list[tuple[list, list, dict]] = []  # batches on disk, not yet in memory

    def mirror_pending(self) -> None:
        """Bring the memory up to the disk (the batches acknowledged since the last call)."""
        pending, self._unmirrored = self._unmirrored, []
        for rows, replies, acks in pending:
            self._mirror(rows, replies, acks)

    def pending(self) -> bool:
        return any(stream.inbox for stream in self.listener.streams)

    def receive(self, reply: Callable[[Stream, list], None]) -> None:
        for stream in list(self.listener.streams):
            self._receive(stream, reply)

    def _receive(self, stream: Stream, reply: Callable[[Stream, list], None]) -> None:
        inbox = stream.inbox
        for _ in range(PER_TURN):
            if not inbox:
                return
            msg = _message(inbox.popleft())
            if msg is None:
                self.server.counters["replication_malformed"] += 1
                continue
            if msg[0] == "snap_begin":
                self._snapshot_from = stream
            answer = self.handle(msg)
            if answer is not None:
                reply(stream, answer)
            self.mirror_pending()  # after the acknowledgement left: the primary answers while our memory follows
            if msg[0] == "snap_rows":  # a chunk is thousands of rows to decode and index: one per loop turn
                return

    def lost(self, stream: Stream) -> None:
        """A connection closed: a snapshot it was streaming will never end."""
        if stream is self._snapshot_from:
            self._snapshot_from = None
            self.abort_snapshot()

    def handle(self, msg: list) -> list | None:
        self.mirror_pending()
        server = self.server
        kind, epoch = msg[0], msg[1]
        if epoch < server.epoch:
            return ["stale", server.epoch]
        if server.role == "primary":  # a newer primary exists: we are the stale one
            server.pair.demote(f"received {kind} from a primary at epoch {epoch}")
            return None
        if epoch > server.epoch:
            server.pair.adopt_epoch(epoch)
        if kind in ("probe", "batch", "snap_begin") and self._in_snapshot is not None and len(msg) >= 3 \
                and msg[2] != self._in_snapshot[0]:
            # the primary streaming the snapshot died before its end; its successor is another boot
            self.abort_snapshot()
        if kind == "snap_begin":
            _, _, boot, lsn, meta = msg
            self._in_snapshot, self._waiting = (boot, lsn), []
            server.durable.begin_snapshot(meta["sessions"], meta["replies"], meta["next_id"], meta["event_id"],
                                          (boot, lsn))
            self.live = False
            server.store.reset()
            server.replies.clear()
            self._mirror([[], [], [], meta["sessions"]], meta["replies"], {})
            self.history.clear()
            self.history.extend(meta["events"])
            return None
        if kind == "snap_rows" and self._in_snapshot is not None:
            server.durable.snapshot_rows(msg[2])
            server.store.mirror([msg[2], [], [], []], unpack_stored)
            return None
        if kind == "snap_end" and self._in_snapshot is not None:
            server.durable.end_snapshot()
            self.stream, self._in_snapshot = self._in_snapshot, None
            self.live = True
            log.info("snapshot applied at lsn %d", self.stream[1])
            for batch in self._waiting:
                if self._apply(batch)[0] == "need":
                    self._waiting = []
                    return self._need(batch[3])
            self._waiting = []
            return ["synced", server.epoch, self.stream[1]]
        if kind == "batch":
            if self._in_snapshot is not None:
                self._waiting.append(msg)
                return None
            return self._apply(msg)
        if kind == "probe" and len(msg) == 4 and self._in_snapshot is None:
            if self.stream is not None and self.stream == (msg[2], msg[3]):
                return ["ack", server.epoch, msg[3]]
            return self._need(msg[3] if type(msg[3]) is int else 0)
        return None

    def _mirror(self, rows: list, replies: list, acks: dict) -> None:
        """Apply to the server's memory what was just committed to its disk."""
        server = self.server
        server.store.mirror(rows, unpack_stored)
        for sid, ttl in rows[3]:
            if ttl is None:
                server.forget_session(sid)
        for sid, seq, body in replies:
            server.replies.setdefault(sid, {})[seq] = body
        for sid, ack in acks.items():
            cache = server.replies.get(sid)
            if cache:
                for seq in [s for s in cache if s < ack]:
                    del cache[seq]

    def events(self) -> list[tuple]:
        """The event history received so far, decoded (for a promotion)."""
        return [_event(e) for e in self.history]

    def _need(self, lsn: int) -> list:
        """Ask for what we lack, saying which message made us ask, who we are (a restarted replica asks anew) and
        where our disk stands in a primary's stream (the primary sends the rest, or a snapshot)."""
        return ["need", self.server.epoch, lsn, self.server.boot, list(self.stream) if self.stream else None]

    def abort_snapshot(self) -> None:
        """Forget a snapshot that will never end (we are being promoted, or its primary died): the disk keeps what
        was committed before it."""
        if self._in_snapshot is not None:
            log.warning("abandoning a snapshot in progress; keeping the state committed before it")
            self.server.durable.abort_snapshot()
            self._in_snapshot, self._waiting = None, []
            self.live = False  # the disk went back to its state before the snapshot; the memory did not

    def _apply(self, msg: list) -> list:
        _, _, boot, lsn, body = msg
        if self.stream is None or self.stream[0] != boot or lsn > self.stream[1] + 1:
            return self._need(lsn)
        if lsn == self.stream[1] + 1:
            rows, replies, acks, events, counters = body
            acks = dict(acks)
            self.server.durable.commit(rows, replies, acks, counters, (boot, lsn))
            if self.live:
                self._unmirrored.append((rows, replies, acks))
            self.history.extend(events)
            self.stream = (boot, lsn)
        return ["ack", self.server.epoch, lsn]
