"""The space server: zmq ROUTER sockets (and local clients' stream sockets) on an asyncio loop, durable first.

Each loop turn drains every request waiting on the sockets, applies them to the :class:`Store`, commits the
resulting changes (and the replies to mutating requests, for idempotent retries) in one SQLite transaction, and
only then sends the replies and notify events of that turn. A request is identified by (session, sequence): a
retry of a finished mutation gets the remembered reply, a retry of a blocked request re-routes it.

The server is composed of parts, each owning its state: :class:`~onitu.space.ops.Operations` (the handlers,
listed in :data:`~onitu.space.ops.OPERATIONS`), :class:`~onitu.space.roles.Pairing` (primary or secondary,
epochs, held replies), :class:`~onitu.space.keyring.Keyring` (CURVE keys, revocation, refused handshakes),
:class:`~onitu.space.limits.Limits` (what each client key may hold) and :class:`~onitu.space.bounded.Regexes`
(template regexes in bounded time). Before a handler runs, the server checks who sent the request (a revoked key
is refused), every number it carries, and that its session is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from onitu import gcpolicy, heaptrim
from onitu.heartbeat import Responder
from onitu.space import numbers, ring
from onitu.space.bounded import Regexes
from onitu.space.durable import Durable
from onitu.space.endpoints import ConfigError, bind_router, check_endpoint
from onitu.space.errors import KeyRevoked, NotPrimary, ProtocolError, SessionExpired, SpaceError
from onitu.space.eventloop import event_loop_runner
from onitu.space.keyring import RELOAD_EVERY, Keyring
from onitu.space.limits import LOCAL, Limits
from onitu.space.ops import OPERATIONS, Operations
from onitu.space.peers import Peers
from onitu.space.protocol import MAX_FRAME, error_reply, parse_request, reply
from onitu.space.quietlog import QuietLog
from onitu.space.replication import PrimaryLink, SecondarySink, by_row
from onitu.space.replies import ReplyCache
from onitu.space.roles import Pairing
from onitu.space.store import HISTORY, Store, Subscription, Waiter
from onitu.space.streams import LocalStreams
from onitu.space.wire import Listener, Stream
from onitu.space.zmqfast import EVENTS, NOBLOCK, POLLIN, RCVMORE, SNDMORE_NOBLOCK
from onitu.space.zmqfast import get as _get
from onitu.space.zmqfast import recv as _recv
from onitu.space.zmqfast import send as _send

log = logging.getLogger("onitu.space.server")

MAX_BATCH = 4096  # requests per turn: bounds the latency one turn adds to the next
HARD_CAP = 4  # libzmq's own cap on a frame, in max_frames: the server never even reads a bigger one


Outbox = list[tuple[zmq.Socket | Stream, bytes, bytes]]


@dataclass(eq=False)
class Route:
    """Where the reply (or the events) of a request go; a retry from a new connection moves it."""

    sock: zmq.Socket | Stream
    ident: bytes
    sid: bytes
    seq: int
    key: str = LOCAL  # the client's CURVE key (its User-Id), LOCAL on plain endpoints
    size: int = 0  # bytes of the request frame
    handle: Waiter | Subscription | None = None
    delivered: int = 0


class SpaceServer:
    """One tuple space served on ``listen`` endpoints, stored under ``data_dir``."""

    def __init__(self, data_dir: Path, listen: list[str], *, insecure_loopback: bool = False,
                 sync: str = "normal", history: int = HISTORY, max_frame: int = MAX_FRAME,
                 discovery: tuple[str, int] | None = None, role: str = "primary", epoch: int = 0,
                 replica_listen: str | None = None, peer: str | None = None, standby: list[str] | None = None,
                 key_home: Path | None = None, limits: dict[str, int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.listen, self.standby = list(listen), list(standby or [])
        self.curve = {ep: check_endpoint(ep, insecure_loopback) for ep in [*listen, *self.standby]}
        if not listen:
            raise ConfigError("no endpoint to listen on")
        self.key_home = Path(key_home) if key_home else self.data_dir
        self._standby_bound: set[str] = set()
        self.max_frame = max_frame
        self.discovery = discovery
        if role not in ("primary", "secondary"):
            raise ConfigError(f"role must be primary or secondary, not {role!r}")
        self.role = role
        self.store = Store(history=history, packed=True)
        self.durable = Durable(self.data_dir / "space.db", sync)
        self.epoch = max(epoch, self.durable.meta("epoch", 0))
        self.durable.set_meta("epoch", self.epoch)
        self.replies = ReplyCache()
        if role == "primary":
            if not peer:  # else its commits go on labelling it (see PrimaryLink.base)
                self.durable.forget_stream()
            self.load()
        else:  # its memory holds its disk from the start: batches then apply to both, and promotion loads nothing
            self.load()
            self.store.disarm()
        self.replica_listen, self.peer = replica_listen, peer
        self.link: PrimaryLink | None = None
        self.sink: SecondarySink | None = None
        self.pair = Pairing(self)
        self.ops = Operations(self)
        self.regexes = Regexes()
        self.limits = Limits(limits)
        self._shipped_event = 0
        self.exit_code = 0
        self._heartbeat: Responder | None = None  # the watchdog's "are you alive?"
        self._discovery: asyncio.DatagramTransport | None = None  # LAN lookups
        self.routes: dict[tuple[bytes, int], Route] = {}
        self.boot = os.urandom(8).hex()
        self.counters: Counter[str] = Counter()
        self.requests_by_op: Counter[str] = Counter()
        self.commit_seconds = 0.0  # time spent committing to SQLite, for the commit latency (/ counters["commits"])
        self.endpoints: list[str] = []
        self.public_key: bytes | None = None
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []
        self.streams = LocalStreams(max_frame * HARD_CAP)  # local blocking clients' way in
        self._secure: set[zmq.Socket] = set()
        self.keyring: Keyring | None = None
        self.peers = Peers(self.counters, max_frame * HARD_CAP, self._handshake_failed)
        self.outbox: Outbox = []
        # Sockets used since we last asked them for a waiting message (zmq's FD is edge-triggered, and a send or
        # a receive can consume its edge): the only ones _rearm must look at before the loop sleeps.
        self.touched: set[zmq.Socket] = set()
        self._new_replies: list[tuple[bytes, int, bytes]] = []
        self._acks: dict[bytes, int] = {}
        self._acked: dict[bytes, int] = {}
        self._acks_since = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain_scheduled = False
        self._closed = False
        self._stopped: asyncio.Event | None = None
        self._quiet = QuietLog(log)

    def load(self) -> None:
        """Fill the (empty) store and the cached replies from disk."""
        with gcpolicy.loading():  # a million rows (see onitu.gcpolicy.loading)
            loaded = self.durable.load(self.store)
        for (sid, seq), body in loaded.items():
            self.replies.put(sid, seq, body)

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def bind(self) -> None:
        """Open the sockets (CURVE ones behind the authenticator); :meth:`serve` publishes ``space.json``."""
        self._open(self.listen)
        if self.replica_listen:
            self.sink = SecondarySink(self, Listener(self.replica_listen))
        if self.role == "primary":
            if self.peer:
                self.link = PrimaryLink(self, self.peer)
            self.bind_standby()

    def _open(self, endpoints: list[str]) -> list[zmq.Socket]:
        plain = [ep for ep in endpoints if not self.curve[ep]]
        secure = [ep for ep in endpoints if self.curve[ep]]
        for ep in plain:  # first: a client that finds the zmq socket without its stream socket uses zmq
            self.streams.listen(ep)
        opened = []
        if plain:
            opened.append(self._router(plain, None))
        if secure:
            if self.keyring is None:
                self.keyring = Keyring(self.ctx, self.key_home, self.counters)
                self.public_key = self.keyring.public_key
                self.limits.load(self.keyring.dir.parent / "limits.json")
            sock = self._router(secure, self.keyring.secret)
            self._secure.add(sock)
            opened.append(sock)
        for sock in opened:
            mon = self.peers.monitor(sock, sock in self._secure)
            if self.loop is not None:
                self.loop.add_reader(mon.getsockopt(zmq.FD), self.peers.handle, mon)
        self.socks.extend(opened)
        return opened

    def bind_standby(self) -> None:
        """Bind the endpoints that belong to whoever is primary; a superseded primary may still hold one for a
        moment, so retry until it is free."""
        for ep in [ep for ep in self.standby if ep not in self._standby_bound]:
            try:
                opened = self._open([ep])
            except ConfigError as exc:
                log.info("standby endpoint not free yet: %s", exc)
                if self.loop is not None:
                    self.loop.call_later(0.5, self.bind_standby)
                continue
            self._standby_bound.add(ep)
            if self.loop is not None:
                for sock in opened:
                    self.loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
                self.touched.update(opened)
                self.write_info()

    def _look_around(self) -> None:
        """Now and then: authorized keys and limits, read again when changed (a revoked key's sessions end now);
        what the socket monitors reported (zmq's FD is edge-triggered: look anyway)."""
        if self._closed:
            return
        if self.keyring is not None:
            self._keys_changed()
            self.keyring.log_refused()
        for mon in self.peers.monitors:
            self.peers.handle(mon)
        if self.loop is not None:
            self.loop.call_later(RELOAD_EVERY, self._look_around)

    def _handshake_failed(self, kind: int, endpoint: str) -> None:
        if self.keyring is not None:
            self.keyring.handshake_failed(kind, endpoint)

    def _keys_changed(self) -> None:
        revoked = self.keyring.reload()
        if revoked:
            self.limits.load(self.keyring.dir.parent / "limits.json")
            self.call_soon(lambda: self._end_sessions_of(revoked))

    def _authorized(self, key: str) -> bool:
        """Is this key (still) authorized? A key the ZAP thread let in a moment ago may be newer than our list."""
        if self.keyring.allows(key):
            return True
        self._keys_changed()
        return self.keyring.allows(key)

    def _end_sessions_of(self, keys: set[str]) -> None:
        for key in keys:
            for sid in self.limits.sessions_of(key):
                self.store.end_session(sid)
                self.forget_session(sid)

    def _router(self, endpoints: list[str], secret: bytes | None) -> zmq.Socket:
        sock, bound = bind_router(self.ctx, endpoints, secret, self.max_frame * HARD_CAP)
        self.endpoints.extend(bound)
        return sock

    def write_info(self) -> None:
        info = {"pid": os.getpid(), **self.describe(True)}
        tmp = self.data_dir / "space.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.data_dir / "space.json")

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run from the CLI)."""
        if not self.socks:
            self.bind()
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for sock in self.socks:
            self.loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
        self.streams.start(self.loop, self._schedule_drain)
        for mon in self.peers.monitors:
            self.loop.add_reader(mon.getsockopt(zmq.FD), self.peers.handle, mon)
        self._look_around()
        self.pair.watch()
        if self.role == "primary":
            self.regexes.python.start()
        self._heartbeat = Responder.from_env(self.pair.status, self.pair.command)
        if self._heartbeat is not None:
            self._heartbeat.attach(self.loop, lambda: self.durable.on_disk)  # a slow disk step is not a hang
        self._schedule_drain()
        self.turn(self.store.reap)
        if self.discovery is not None:
            self._discovery = await ring.start_responder(self.describe, self.counters, *self.discovery)
        self.write_info()  # last: whoever reads it may look the space up at once
        log.info("space serving on %s", ", ".join(self.endpoints))
        try:
            await self._stopped.wait()
        finally:
            self.close()

    def describe(self, local: bool) -> dict[str, Any]:
        """What discovery tells a peer: endpoints it can use (ipc only for this host) and the public key."""
        endpoints = [ep for ep in self.endpoints if local or not ep.startswith("ipc://")]
        return {"endpoints": endpoints, "boot": self.boot,
                "public_key": self.public_key.decode() if self.public_key else None}

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    def call_soon(self, fn: Callable[[], Any]) -> None:
        if self.loop is not None:
            self.loop.call_soon(self.turn, fn)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def close(self) -> None:
        """Release everything: sockets, ipc files, responders, the authenticator, the database, ``space.json``."""
        self._closed = True
        if self._timer:
            self._timer.cancel()
        if self._heartbeat is not None:
            self._heartbeat.close()
            self._heartbeat = None
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
        if self.sink is not None:
            self.sink.listener.close()
        if self.link is not None:
            self.link.close()
        self.streams.close()
        for sock in self.socks + self.peers.monitors:
            if self.loop is not None:
                with contextlib.suppress(ValueError, zmq.ZMQError):
                    self.loop.remove_reader(sock.getsockopt(zmq.FD))
        for sock in self.socks:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        self.peers.close()
        if self.keyring is not None:
            self.keyring.close()
            self.keyring = None
        for sock in self.socks:
            sock.close(0)
        self.socks.clear()
        self.regexes.close()
        self.ctx.term()
        for ep in [*self.endpoints, self.replica_listen or ""]:
            if ep.startswith("ipc://"):
                Path(ep[len("ipc://"):]).unlink(missing_ok=True)
        (self.data_dir / "space.json").unlink(missing_ok=True)
        self.durable.close()

    # ---- the turn ----------------------------------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self.loop is not None:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self.turn(self._receive)

    def _receive(self) -> None:
        n = 0
        for sock in self.socks:
            secure = sock in self._secure
            while n < MAX_BATCH and _get(sock, EVENTS) & POLLIN:
                n += 1
                if secure:  # the key the client connected with is a property of each message
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    self._request(sock, [part.bytes for part in parts], parts[0].get("User-Id"))
                    continue
                frames = [_recv(sock, NOBLOCK), _recv(sock, NOBLOCK)]  # a ROUTER's message: identity, then 1+
                while _get(sock, RCVMORE):
                    frames.append(_recv(sock, NOBLOCK))
                self._request(sock, frames, LOCAL)
            if n >= MAX_BATCH:  # stopped with messages perhaps waiting: _rearm looks again
                self.touched.add(sock)
        self.streams.receive(self._from_stream, MAX_BATCH - n)

    def _from_stream(self, stream: Stream, frames: list[bytes]) -> None:
        self._request(stream, frames, LOCAL)

    def turn(self, work: Callable[[], Any]) -> None:
        """Do some work, make its effects durable, then let its replies and events out."""
        if self._closed:  # a callback that was already queued when the server closed
            return
        regexes = self.regexes.python
        regexes.new_turn()
        self.store.history.unshipped = None if self.link is None else self._shipped_event
        work()
        if regexes.poisoned:
            self._end_poisoned()
        changes = self.store.drain()
        for change in changes:
            kind = change[0]
            if kind == "del":
                if self.limits.tuple_key:
                    self.limits.removed(change[1])
            elif kind == "end":  # a session ended: forget its cached replies
                self.forget_session(change[1])
        # Forgetting acknowledged replies on disk can wait for a commit that happens anyway, or a second.
        acks: dict[bytes, int] = {}
        if self._acks and time.monotonic() - self._acks_since > 1.0:
            acks, self._acks, self._acks_since = self._acks, {}, time.monotonic()
        if changes or self._new_replies or acks:
            rows = self.durable.encode(changes)
            if self.link is not None:  # first, so the secondary works while we commit: the replies wait for both
                self._ship(rows, acks)
            started = time.perf_counter()
            counters, label = self.link.label() if self.link is not None else (None, None)  # see PrimaryLink.base
            try:
                self.durable.commit(rows, self._new_replies, acks, counters, label)
            except Exception:
                # Memory and disk now disagree: stop without answering; a restart recovers from disk.
                log.critical("commit to %s failed; stopping without replying", self.durable.path, exc_info=True)
                os._exit(70)
            self.counters["commits"] += 1
            self.commit_seconds += time.perf_counter() - started
            self._new_replies = []
        outbox, self.outbox = self.outbox, []
        if outbox:
            self.pair.deliver(outbox)
        self._rearm()

    def _end_poisoned(self) -> None:
        """End the blocked requests and notifies whose regex hit the bound while matching others' writes."""
        for waiter in [w for w in self.store.waiters if getattr(w.template, "error", None) is not None]:
            self.store.cancel_wait(waiter, waiter.template.error)
        for sub in [s for s in self.store.subs if getattr(s.template, "error", None) is not None]:
            route = next((r for r in self.routes.values() if r.handle is sub), None)
            if route is not None:
                self.send_error(route.sock, route.ident, route.seq, sub.template.error)
            self.store.close(sub)

    def _ship(self, rows: list, acks: dict) -> None:
        history = self.store.history
        events = []
        for event in reversed(history):
            if event[0] <= self._shipped_event:
                break
            events.append(event)
        events.reverse()
        self._shipped_event = self.store.event_id
        self.link.ship([rows, self._new_replies, acks, by_row(events, rows[0]), (self.store.next_id,
                                                                                self.store.event_id)])

    def send_all(self, outbox: Outbox) -> None:
        touched = self.touched
        for sock, ident, frame in outbox:
            if type(sock) is Stream:
                if not sock.send(frame):  # the client hung up (it asks again if it still waits)
                    self.counters["dropped_replies"] += 1
                continue
            touched.add(sock)
            try:
                _send(sock, ident, SNDMORE_NOBLOCK)
                _send(sock, frame, NOBLOCK)
            except zmq.ZMQError:
                self.counters["dropped_replies"] += 1

    def drop_outbox(self) -> None:
        self.outbox.clear()

    def _rearm(self) -> None:
        deadline = self.store.next_deadline()
        if deadline != self._timer_at and self.loop is not None:
            if self._timer:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self.loop.call_later(
                max(0.0, deadline - time.time()), self._on_timer)
        # zmq's FD is edge-triggered and a send or a receive can consume the edge: look again before sleeping, at
        # the sockets used since their last look (the others' edges are intact).
        touched, self.touched = self.touched, set()
        for sock in touched:
            if _get(sock, EVENTS) & POLLIN:
                self._schedule_drain()
        if self.streams.waiting():
            self._schedule_drain()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.turn(self.store.reap)

    # ---- one request -------------------------------------------------------------------------------------

    def _request(self, sock: zmq.Socket | Stream, frames: list[bytes], key: str) -> None:
        ident = frames[0]
        self.counters["requests"] += 1
        if len(frames) != 2:
            return self._malformed(sock, ident, ProtocolError(f"expected one frame per request, got {len(frames) - 1}"))
        if len(frames[1]) > self.max_frame:
            self.counters["oversize"] += 1
            return self._malformed(sock, ident, ProtocolError(
                f"frame of {len(frames[1])} bytes exceeds the {self.max_frame}-byte limit"))
        try:
            op, sid, seq, ack, args = parse_request(frames[1])
        except SpaceError as exc:
            return self._malformed(sock, ident, exc)
        if self.role != "primary" or self.pair.fenced:
            return self.send_error(sock, ident, seq, NotPrimary(
                f"this space server is a {self.role if not self.pair.fenced else 'demoted primary'} "
                f"(epoch {self.epoch})"))
        if key and not self._authorized(key):
            self.counters["revoked_requests"] += 1
            return self.send_error(sock, ident, seq, KeyRevoked(
                f"the key this client connects with ({self.keyring.name_of(key)}) was revoked on this space"))
        self._acknowledge(sid, ack)
        route = self.routes.get((sid, seq))
        if route is not None:  # a retry of a request still waiting: answer it on the new connection
            route.sock, route.ident = sock, ident
            return None
        cached = self.replies.get(sid, seq)
        if cached is not None:
            self.counters["retries_answered"] += 1
            self.outbox.append((sock, ident, cached))
            return None
        operation = OPERATIONS.get(op)
        if operation is None:
            return self.send_error(sock, ident, seq, ProtocolError(f"unknown op {op!r}"))
        self.requests_by_op[op] += 1  # known ops only: a hostile client cannot grow this table
        if op != "hello" and not self.store.touch(sid):
            return self.send_error(sock, ident, seq, SessionExpired(f"session {sid.hex()} is not open; say hello"))
        route = Route(sock, ident, sid, seq, key, len(frames[1]))
        changes = len(self.store.changes)
        try:
            numbers.check_args(op, args, operation.numbers)
            operation.handler(self.ops, route, args)
        except SpaceError as exc:
            self.send_error(sock, ident, seq, exc)
        except Exception as exc:  # a bug must not take the space down with it
            log.exception("op %s from session %s failed", op, sid.hex())
            self.send_error(sock, ident, seq, SpaceError(f"server error in {op}: {type(exc).__name__}: {exc}"))
        if key:
            self._charge(key, changes)
        return None

    def _charge(self, key: str, since: int) -> None:
        """Count the tuples this request stored against its client key."""
        for change in self.store.changes[since:]:
            if change[0] == "put":
                self.limits.stored(key, change[1], len(change[2]))  # a packed store's put: the tuple's bytes

    def _malformed(self, sock: zmq.Socket | Stream, ident: bytes, exc: SpaceError) -> None:
        self.counters["malformed"] += 1
        self._quiet.warn("malformed", "malformed request from %s: %s", ident.hex(), exc)
        self.send_error(sock, ident, 0, exc)

    def send_error(self, sock: zmq.Socket | Stream, ident: bytes, seq: int, exc: SpaceError) -> None:
        self.counters["errors"] += 1
        self.outbox.append((sock, ident, error_reply(seq, exc)))

    def answer(self, route: Route, result: Any, remember: bool) -> None:
        body = reply(route.seq, result)
        if remember:
            self.replies.put(route.sid, route.seq, body)
            self._new_replies.append((route.sid, route.seq, body))
        self.outbox.append((route.sock, route.ident, body))

    def hold(self, route: Route) -> None:
        """A request that answers later (a blocked take/read, a notify): counted against its key."""
        self.routes[(route.sid, route.seq)] = route
        self.limits.add(route.key, "blocked", 1)

    def unhold(self, route: Route) -> None:
        if self.routes.pop((route.sid, route.seq), None) is not None:
            self.limits.add(route.key, "blocked", -1)

    def key_name(self, key: str) -> str:
        return self.keyring.name_of(key) if key and self.keyring is not None else key

    def forget_session(self, sid: bytes) -> None:
        self.replies.forget(sid)
        self._acked.pop(sid, None)
        self.limits.ended(sid)

    def _acknowledge(self, sid: bytes, ack: int) -> None:
        if ack <= self._acked.get(sid, 0):
            return
        self._acked[sid] = ack
        if self.replies.acknowledge(sid, ack):
            self._acks[sid] = ack


def run(data_dir: Path, listen: list[str], **options: Any) -> int:
    """Serve in the foreground until SIGTERM/SIGINT (or demotion); returns the exit status."""
    # Every written tuple outlives the young generation, so with CPython's default (700, 10, 10) collections run
    # every few hundred tuples of a batch and cost ~20% of batched writes (bench/space_vs_rinda.py); young
    # cycles (a blocked request's route and its callback) are still collected within 10,000 allocations. A full
    # collection at a million tuples outlasted the watchdog's patience (a secondary fenced at a million files).
    gcpolicy.for_big_tables()
    heaptrim.after_bursts()
    server = SpaceServer(data_dir, listen, **options)

    async def main() -> None:
        server.bind()
        server.install_signal_handlers()
        await server.serve()

    event_loop_runner()(main())
    return server.exit_code
