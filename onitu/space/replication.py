"""Primary -> secondary replication: every committed batch is shipped; a fresh secondary gets a snapshot first.

Every space server binds a replication endpoint (a socket of :mod:`onitu.space.wire`, not zmq: fewer thread
wakeups per batch). The primary connects to its peer's, probes on each connection, and sends
``["batch", epoch, boot, lsn, body]`` after each commit (``body`` is what it committed: the rows, cached
replies, acknowledgements and the events of the turn; a write event's tuple, which is its row's too, is sent once:
the event names the row's id, see :func:`by_row`). The secondary applies a batch only if it continues the
stream it is synced to (same primary boot, next lsn): it answers ``["ack", epoch, lsn]``, then commits it in the
same turn (the primary's answer to its clients no longer waits for that commit: see SecondarySink.settle); otherwise
it answers ``["need", epoch, lsn, its boot, [primary boot, last lsn] or None]``. If the replica holds this
primary's own stream up to a batch the primary still keeps (a secondary that restarted, or missed a few), the
primary sends it the batches after it, and the replica's acknowledgement of the last makes it a copy again.
A paired primary labels its own disk with its stream position too, and its stream starts from the position its
disk held (``base``): a replica whose disk holds the same (both servers of a pair stopped cleanly, then started)
is told ``["base", epoch, boot, position]`` and continues the new stream from its lsn 0, with no snapshot.
Otherwise the primary streams a snapshot taken at a turn boundary (``snap_begin``, then ``snap_replies``,
``snap_events`` and ``snap_rows`` chunks, ``snap_end``), then the batches after it. A replica whose disk comes from
another primary's stream at another position (the old primary coming back, say) always gets a snapshot, so it never
keeps a batch the current primary never had. The replica applies the snapshot in one transaction, then the batches
that arrived meanwhile, and only then answers ``["synced", epoch, lsn]``: with the acknowledgement that ends a
catch-up, the one answer that makes it a copy the watchdog may promote. A ``need`` about a batch that an
already-sent snapshot covers is stale and ignored.

Each step is bounded in time, so that both servers keep answering the watchdog's heartbeat and their clients
while a big space is copied: a snapshot message holds a chunk (of rows, cached replies or events) and one is sent
and applied per loop turn, and the messages (or held-back batches) handled in one turn stop after
:data:`TURN_BUDGET` seconds.

Fencing: every message carries the sender's epoch. A server that receives a message from a lower epoch answers
``["stale", its epoch]``; a primary that learns of a higher epoch (that answer, or a batch from a newer primary)
stops acknowledging anything and demotes itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from onitu.space.history import History
from onitu.space.packed import unpack_stored
from onitu.space.protocol import as_tuple, packb, unpackb
from onitu.space.wire import Dialer, Listener, Stream

if TYPE_CHECKING:
    from onitu.space.server import SpaceServer

log = logging.getLogger("onitu.space.replication")

SNAPSHOT_CHUNK = 2000  # items (rows, replies, events) per snapshot message, and about this many bytes:
SNAPSHOT_BYTES = 512 << 10  # (the replica inserts, decodes and indexes a chunk of rows in one loop turn)
SNAPSHOT_WINDOW = 8 << 20  # bytes a connection may hold unsent before the snapshot waits for the replica
WINDOW_WAIT = 0.01  # seconds between looks at a full window
# The last batches a primary keeps for catch-ups (at most this many, this many bytes once compressed): a replica
# away for longer gets a snapshot. Bytes held for good by a busy primary: 16 MiB uncompressed were 170 per file of a
# 100,000-file hub; 4 MiB compressed hold more batches than that.
RETAIN = (10_000, 4 << 20)
COMPRESS_MIN = 16 << 10  # bytes: a smaller batch is kept as it is (a sync hub's big ones shrink ~10x with zlib)
PER_TURN = 256  # messages handled per loop turn: heartbeats and clients get their turn under a flood,
TURN_BUDGET = 0.05  # and at most this many seconds of them (a batch's commit can take milliseconds)


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


def _split(items: Iterable[Any], size: Callable[[Any], int]) -> Iterator[list]:
    """Items in lists of at most :data:`SNAPSHOT_CHUNK`, and not much over :data:`SNAPSHOT_BYTES` by ``size``."""
    chunk: list = []
    total = 0
    for item in items:
        chunk.append(item)
        total += size(item)
        if len(chunk) >= SNAPSHOT_CHUNK or total >= SNAPSHOT_BYTES:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def by_row(events: list, puts: list) -> list:
    """A batch's events as shipped: a write event whose tuple is the body of one of the batch's rows (the same bytes
    object: a packed store keeps one) carries that row's id instead. A hub's reports and records are each written
    once, and were sent twice; a big turn's batch, packed, compressed and retained, was twice its size."""
    rows = {id(row[1]): row[0] for row in puts}
    return [(e[0], e[1], rows.get(id(e[2]), e[2])) if e[1] == "write" else e for e in events]


def _resolved(events: list, puts: list) -> list | None:
    """The events of a received batch with each tuple sent as a row's id (see :func:`by_row`) given back; None if
    one names no row of the batch (not a batch of ours)."""
    bodies: dict | None = None
    resolved = []
    for event in events:
        if type(event[2]) is int:
            if bodies is None:
                bodies = {row[0]: row[1] for row in puts}
            body = bodies.get(event[2])
            if body is None:
                return None
            event = [event[0], event[1], body]
        resolved.append(event)
    return resolved


def _event(event: list) -> tuple:
    event_id, kind, tup = event  # tup: bytes as a packed store keeps them (a list from an older primary)
    return (event_id, kind, as_tuple(tup) if isinstance(tup, list) else tup)


class Retained:
    """The last batches shipped, as ``[lsn, body, compressed]``, within :data:`RETAIN`. A big body is compressed by
    a thread of the loop's default executor: zlib lets go of the GIL, so the loop goes on serving meanwhile."""

    def __init__(self) -> None:
        self.entries: deque[list] = deque()
        self.bytes = 0

    def add(self, lsn: int, body: bytes, loop: asyncio.AbstractEventLoop | None) -> None:
        entry = [lsn, body, False]
        self.entries.append(entry)
        self.bytes += len(body)
        self._trim()
        if len(body) >= COMPRESS_MIN and loop is not None:
            loop.run_in_executor(None, zlib.compress, body, 1).add_done_callback(
                lambda done: self._compressed(entry, done))

    def _compressed(self, entry: list, done: asyncio.Future) -> None:
        if entry[0] is None or done.cancelled() or done.exception() is not None:  # dropped meanwhile
            return
        small = done.result()
        self.bytes -= len(entry[1]) - len(small)
        entry[1], entry[2] = small, True

    def _trim(self) -> None:
        entries = self.entries
        while len(entries) > RETAIN[0] or self.bytes > RETAIN[1]:
            entry = entries.popleft()
            self.bytes -= len(entry[1])
            entry[0] = None

    def first(self) -> int | None:
        """The oldest lsn kept."""
        return self.entries[0][0] if self.entries else None

    def since(self, start: int) -> Iterator[tuple[int, bytes]]:
        """(lsn, packed body) of the batches kept from ``start`` on."""
        for lsn, body, compressed in list(self.entries):
            if lsn >= start:
                yield lsn, zlib.decompress(body) if compressed else body


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
        self._snapshot: Iterator[list] | None = None  # the messages of a snapshot under way, not yet sent
        self._retained = Retained()
        self._catching_up: int | None = None  # the lsn whose acknowledgement ends a catch-up
        self.snapshots = self.catch_ups = 0  # sent so far
        # Where our stream starts: the position in a primary's stream (ours before a restart, or the one we copied
        # as a secondary) our disk holds, as its label says. A replica holding the same holds our lsn 0.
        self.base = server.durable.stream()

    def label(self) -> tuple[tuple[int, int], tuple[str, int]]:
        """The counters and the stream position a commit of the batch just shipped labels our disk with."""
        store = self.server.store
        return (store.next_id, store.event_id), (self.server.boot, self.lsn)

    def ship(self, body: list) -> int:
        self.lsn += 1
        packed = packb(body)
        self._send_frame(_batch_frame(self.server.epoch, self.server.boot, self.lsn, packed))
        self._retained.add(self.lsn, packed, self.server.loop)
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
        until = time.monotonic() + TURN_BUDGET
        for _ in range(PER_TURN):
            if stream is None or not stream.inbox or time.monotonic() > until:
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
        (it says where it stands: ``[our boot, its last lsn]``, or our :attr:`base`, our lsn 0). A replica whose
        disk stands anywhere else may hold batches we never had: it gets a snapshot instead."""
        server = self.server
        rebased = self.base is not None and has == list(self.base)  # our lsn 0: a pair restarted after a clean stop
        if not rebased and not (isinstance(has, list) and len(has) == 2 and has[0] == server.boot
                                and type(has[1]) is int):
            return False
        start = 1 if rebased else has[1] + 1
        first = self._retained.first()
        if not 0 < start <= self.lsn + 1 or (start <= self.lsn and (first is None or first > start)):
            return False
        self.synced, self._snap_to, self._catching_up = False, (replica, self.lsn), self.lsn
        self.catch_ups += 1
        if rebased:  # it labels its disk as our lsn 0, and acknowledges it
            self._send(["base", server.epoch, server.boot, has])
        for lsn, body in self._retained.since(start):
            self._send_frame(_batch_frame(server.epoch, server.boot, lsn, body))
        log.info("catching %s up from lsn %d to %d, without a snapshot", self.peer, start - 1, self.lsn)
        return True

    def _start_snapshot(self, replica: str) -> None:
        """Copy the state at this turn boundary, then stream it a chunk per loop turn (see :meth:`_chunks`)."""
        server, store = self.server, self.server.store
        self.synced, self._catching_up = False, None
        self._snap_to = (replica, self.lsn)
        self.snapshots += 1
        # Tuples are immutable: copying the references is a consistent copy, and costs the loop little (C loops)
        # where encoding every row at once, or the history and every cached reply in one message, took seconds
        # at 300,000 files and had the watchdog fence both servers.
        state = (list(store.live.items()), dict(store.leases), {eid: s.sid for eid, s in store.owner.items()},
                 [[sid, seq, body] for sid, seq, body in server.replies.items()],
                 list(store.history))
        begin = ["snap_begin", server.epoch, server.boot, self.lsn,
                 {"sessions": [[s.sid, s.ttl] for s in store.sessions.values()], "replies": [], "events": [],
                  "next_id": store.next_id, "event_id": store.event_id}]
        self._snapshot = self._chunks(begin, *state)
        log.info("streaming a snapshot of %d tuples at lsn %d to %s", len(state[0]), self.lsn, self.peer)
        self._continue_snapshot()

    def _chunks(self, begin: list, live: list, leases: dict, owners: dict, replies: list,
                events: list) -> Iterator[list]:
        """The snapshot's messages: ``snap_begin``, the cached replies, the notify history and the rows in chunks
        of at most :data:`SNAPSHOT_CHUNK` items and about :data:`SNAPSHOT_BYTES`, then ``snap_end``."""
        yield begin
        lsn, epoch = begin[3], lambda: self.server.epoch
        for chunk in _split(replies, lambda reply: len(reply[2])):
            yield ["snap_replies", epoch(), chunk]
        for chunk in _split(events, lambda event: len(event[2]) if type(event[2]) is bytes else 1024):
            yield ["snap_events", epoch(), chunk]
        rows = ([eid, held if type(held) is bytes else packb(held), leases.get(eid), owners.get(eid)]
                for eid, held in live)
        for chunk in _split(rows, lambda row: len(row[1])):
            yield ["snap_rows", epoch(), chunk]
        yield ["snap_end", epoch(), lsn]

    def _continue_snapshot(self) -> None:
        # One chunk per loop turn, so clients (and heartbeats) are served while a big snapshot streams; none while
        # the connection holds a few chunks unsent (the replica reads slower than we encode: memory, not time).
        if self._snapshot is None:
            return
        stream = self.wire.stream
        if stream is not None and stream.unsent() > SNAPSHOT_WINDOW:
            self.server.loop.call_later(WINDOW_WAIT, self.server.turn, self._continue_snapshot)
            return
        chunk = next(self._snapshot)
        self._send(chunk)
        if chunk[0] == "snap_end":  # over now: the replica's synced may come before our next turn
            self._snapshot = None
        else:
            self.server.call_soon(self._continue_snapshot)

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
        self.history = History(server.store.history.maxlen, server.store.history.max_bytes)
        self._in_snapshot: tuple[str, int] | None = None
        self._snapshot_from: Stream | None = None
        self._waiting: list[list] = []  # batches that came during a snapshot
        self._backlog: deque[list] | None = None  # those batches once the snapshot is applied, still to apply
        self._backlog_to: Stream | None = None  # where the snapshot came from: the answer once they are applied
        # The server's memory holds what its disk holds (the store, the cached replies): a promotion is then a
        # role change, with nothing to load. The server loaded its disk; False while a snapshot is under way,
        # and after one is abandoned.
        self.live = True
        self._unmirrored: list[tuple[list, list, dict]] = []  # batches on disk, not yet in memory
        self._uncommitted: list[tuple[list, tuple[str, int]]] = []  # batches acknowledged, not yet on disk

    def settle(self) -> None:
        """Commit the batches acknowledged since the last call, then bring the memory up to the disk.

        A batch is acknowledged as soon as it continues our stream, before its commit (see :meth:`_apply`): the
        primary then answers while we write. Anything acknowledged still survives the kill -9 of any one process:
        the primary committed the batch before it reads our acknowledgement (in the turn that shipped it), and we
        commit it in the turn that acknowledged it, before anything else, so whichever of us survives holds it.
        """
        pending, self._uncommitted = self._uncommitted, []
        for body, stream in pending:
            rows, replies, acks, events, counters = body
            try:
                self.server.durable.commit(rows, replies, acks, counters, stream)
            except Exception:  # acknowledged and not on our disk: never be promoted with it missing
                log.critical("commit of an acknowledged batch to %s failed; stopping", self.server.durable.path,
                             exc_info=True)
                os._exit(70)
            if self.live:
                self._unmirrored.append((rows, replies, acks))
            self.history.extend_sharing(events, rows[0])
        pending, self._unmirrored = self._unmirrored, []
        for rows, replies, acks in pending:
            self._mirror(rows, replies, acks)

    def pending(self) -> bool:
        return self._backlog is not None or any(stream.inbox for stream in self.listener.streams)

    def receive(self, reply: Callable[[Stream, list], None]) -> None:
        until = time.monotonic() + TURN_BUDGET
        if self._backlog is not None and not self._apply_backlog(until, reply):
            return  # every stream waits behind the batches held back: they come first in the primary's stream
        for stream in list(self.listener.streams):
            self._receive(stream, reply, until)

    def _receive(self, stream: Stream, reply: Callable[[Stream, list], None], until: float) -> None:
        inbox = stream.inbox
        for _ in range(PER_TURN):
            if not inbox or time.monotonic() > until or self._backlog is not None:
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
            self.settle()  # after the acknowledgement left: the primary answers while our disk and memory follow
            if msg[0] == "snap_rows":  # a chunk is thousands of rows to decode and index: one per loop turn
                return

    def _apply_backlog(self, until: float, reply: Callable[[Stream, list], None]) -> bool:
        """Apply the batches held back during the snapshot just applied, as many as this turn's time allows; the
        last one applied, answer ``synced`` (True: nothing is left)."""
        backlog = self._backlog
        while backlog:
            if time.monotonic() > until:
                return False
            answer = self._apply(backlog.popleft())
            self.settle()
            if answer[0] == "need":
                break
        else:
            answer = ["synced", self.server.epoch, self.stream[1]]
        self._backlog = None
        stream, self._backlog_to = self._backlog_to, None
        if stream is not None:
            reply(stream, answer)
        return True

    def lost(self, stream: Stream) -> None:
        """A connection closed: a snapshot it was streaming will never end."""
        if stream is self._snapshot_from:
            self._snapshot_from = None
            self.abort_snapshot()

    def handle(self, msg: list) -> list | None:
        self.settle()
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
        if kind == "snap_replies" and self._in_snapshot is not None:
            server.durable.snapshot_replies(msg[2])
            self._mirror([[], [], [], []], msg[2], {})
            return None
        if kind == "snap_events" and self._in_snapshot is not None:
            self.history.extend(msg[2])
            return None
        if kind == "snap_rows" and self._in_snapshot is not None:
            server.durable.snapshot_rows(msg[2])
            server.store.mirror([msg[2], [], [], []], unpack_stored)
            return None
        if kind == "snap_end" and self._in_snapshot is not None:
            server.durable.end_snapshot()
            self.stream, self._in_snapshot = self._in_snapshot, None
            self.live = True
            log.info("snapshot applied at lsn %d; %d batches held back meanwhile to apply", self.stream[1],
                     len(self._waiting))
            if not self._waiting:
                return ["synced", server.epoch, self.stream[1]]
            # applied over the next turns (see receive), thousands of them when the primary was busy meanwhile
            self._backlog, self._waiting, self._backlog_to = deque(self._waiting), [], self._snapshot_from
            return None
        if kind == "batch":
            if self._in_snapshot is not None:
                self._waiting.append(msg)
                return None
            return self._apply(msg)
        if kind == "base" and len(msg) == 4 and self._in_snapshot is None:
            return self._rebase(msg[2], msg[3])
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
            server.replies.put(sid, seq, body)
        for sid, ack in acks.items():
            server.replies.acknowledge(sid, ack)

    def events(self) -> list[tuple]:
        """The event history received so far, decoded (for a promotion)."""
        return [_event(e) for e in self.history]

    def _rebase(self, boot: Any, base: Any) -> list:
        """A primary whose stream starts from what our disk holds (both labelled ``base``): we hold its lsn 0."""
        if not isinstance(boot, str) or self.stream is None or list(self.stream) != base:
            return self._need(0)
        self.stream = (boot, 0)
        self.server.durable.rebase(self.stream)
        return ["ack", self.server.epoch, 0]

    def _need(self, lsn: int) -> list:
        """Ask for what we lack, saying which message made us ask, who we are (a restarted replica asks anew) and
        where our disk stands in a primary's stream (the primary sends the rest, or a snapshot)."""
        return ["need", self.server.epoch, lsn, self.server.boot, list(self.stream) if self.stream else None]

    def abort_snapshot(self) -> None:
        """Forget a snapshot that will never end (we are being promoted, or its primary died): the disk keeps what
        was committed before it."""
        self._backlog = self._backlog_to = None  # never acknowledged: the primary sends them again, or is gone
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
            rows, replies, acks, events, counters = body  # its shape checked before it is acknowledged
            events = _resolved(events, rows[0])
            if events is None:
                self.server.counters["replication_malformed"] += 1
                return self._need(lsn)
            self._uncommitted.append(([rows, replies, dict(acks), events, counters], (boot, lsn)))
            self.stream = (boot, lsn)
        return ["ack", self.server.epoch, lsn]  # committed by settle, once this answer left
