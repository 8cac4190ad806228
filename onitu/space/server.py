"""The space server: ZeroMQ ROUTER sockets on an asyncio loop, durable before it answers.

Each loop turn drains every request waiting on the sockets, applies them to the :class:`Store`, commits the
resulting changes (and the replies to mutating requests, for idempotent retries) in one SQLite transaction, and
only then sends the replies and notify events of that turn. A request is identified by (session, sequence): a
retry of a finished mutation gets the remembered reply, a retry of a blocked request re-routes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import zmq
from zmq.auth.thread import ThreadAuthenticator

from onitu.heartbeat import Responder
from onitu.space import auth, ring
from onitu.space.durable import Durable
from onitu.space.errors import (
    NotPrimary,
    ProtocolError,
    SessionExpired,
    SpaceError,
)
from onitu.space.ops import Ops
from onitu.space.protocol import (
    MAX_FRAME,
    error_reply,
    parse_request,
    reply,
)
from onitu.space.replication import PrimaryLink, SecondarySink
from onitu.space.roles import Roles
from onitu.space.store import HISTORY, Store, Subscription, Waiter

log = logging.getLogger("onitu.space.server")

POLLIN = int(zmq.POLLIN)
SNDMORE_NOBLOCK = zmq.SNDMORE | zmq.NOBLOCK
MAX_BATCH = 4096  # requests per turn: bounds the latency one turn adds to the next
MAX_CACHED_REPLIES = 10_000  # per session, for clients that never acknowledge


class ConfigError(SpaceError):
    """The server was given an endpoint or option it cannot use."""

    code = "config"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, insecure_loopback: bool) -> bool:
    """Validate an endpoint; True when it must use CURVE."""
    parts = urlsplit(endpoint)
    if parts.scheme == "ipc" and endpoint[len("ipc://"):]:
        return False
    if parts.scheme != "tcp" or not parts.hostname:
        raise ConfigError(f"endpoint {endpoint!r}: expected ipc://PATH or tcp://HOST:PORT")
    if insecure_loopback:
        if not is_loopback(parts.hostname):
            raise ConfigError(f"endpoint {endpoint!r}: --insecure-loopback only allows 127.0.0.1, ::1 or localhost")
        return False
    return True


@dataclass(eq=False)
class Route:
    """Where the reply (or the events) of a request go; a retry from a new connection moves it."""

    sock: zmq.Socket
    ident: bytes
    sid: bytes
    seq: int
    handle: Waiter | Subscription | None = None
    delivered: int = 0


class SpaceServer(Roles, Ops):
    """One tuple space served on ``listen`` endpoints, stored under ``data_dir``."""

    def __init__(self, data_dir: Path, listen: list[str], *, insecure_loopback: bool = False,
                 sync: str = "normal", history: int = HISTORY, max_frame: int = MAX_FRAME,
                 discovery: tuple[str, int] | None = None, role: str = "primary", epoch: int = 0,
                 replica_listen: str | None = None, peer: str | None = None, standby: list[str] | None = None,
                 key_home: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.listen, self.standby = list(listen), list(standby or [])
        self.curve = {ep: check_endpoint(ep, insecure_loopback) for ep in [*listen, *self.standby]}
        if not listen:
            raise ConfigError("no endpoint to listen on")
        self.key_home = Path(key_home) if key_home else self.data_dir
        self._standby_bound: set[str] = set()
        self._secret: bytes | None = None
        self.max_frame = max_frame
        self.discovery = discovery
        self._responder: asyncio.DatagramTransport | None = None
        if role not in ("primary", "secondary"):
            raise ConfigError(f"role must be primary or secondary, not {role!r}")
        self.role = role
        self.store = Store(history=history)
        self.durable = Durable(self.data_dir / "space.db", sync)
        self.epoch = max(epoch, self.durable.meta("epoch", 0))
        self.durable.set_meta("epoch", self.epoch)
        self.replies: dict[bytes, dict[int, bytes]] = {}
        if role == "primary":
            self._load()
        self.replica_listen, self.peer = replica_listen, peer
        self.link: PrimaryLink | None = None
        self.sink: SecondarySink | None = None
        self.require_ack = False  # paired with a synced secondary: replies wait for its acknowledgement
        self.read_lease = 0.3  # seconds an acknowledgement vouches that no one else was promoted (see release)
        self._held: deque[tuple[int, list]] = deque()
        self._shipped_event = 0
        self.exit_code = 0
        self._responder: Responder | None = None
        self.routes: dict[tuple[bytes, int], Route] = {}
        self.boot = os.urandom(8).hex()
        self.counters: Counter[str] = Counter()
        self.endpoints: list[str] = []
        self.public_key: bytes | None = None
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []
        self._auth: ThreadAuthenticator | None = None
        self._keys_stamp: tuple[int, int] | None = None
        self._outbox: list[tuple[zmq.Socket, bytes, bytes]] = []
        self._new_replies: list[tuple[bytes, int, bytes]] = []
        self._acks: dict[bytes, int] = {}
        self._acked: dict[bytes, int] = {}
        self._acks_since = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain_scheduled = False
        self._closed = False
        self._stopped: asyncio.Event | None = None
        self.ops: dict[str, Callable[[Any, dict], Any]] = {
            "hello": self.op_hello, "ping": self.op_ping, "bye": self.op_bye, "write": self.op_write,
            "take": self.op_take, "read": self.op_read, "read_all": self.op_read_all, "cancel": self.op_cancel,
            "renew": self.op_renew, "batch": self.op_batch, "notify": self.op_notify,
            "unnotify": self.op_unnotify, "withdraw": self.op_withdraw, "stats": self.op_stats,
        }

    def _load(self) -> None:
        for (sid, seq), body in self.durable.load(self.store).items():
            self.replies.setdefault(sid, {})[seq] = body

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def bind(self) -> None:
        """Open the sockets (CURVE ones behind the authenticator) and publish ``space.json``."""
        self._open(self.listen)
        if self.replica_listen:
            repl = self.ctx.socket(zmq.ROUTER)
            repl.linger = 0
            repl.sndhwm = repl.rcvhwm = 0
            repl.bind(self.replica_listen)
            self.sink = SecondarySink(self, repl)
        if self.role == "primary":
            if self.peer:
                self.link = PrimaryLink(self, self.peer)
            self.bind_standby()
        self._write_info()

    def _open(self, endpoints: list[str]) -> list[zmq.Socket]:
        plain = [ep for ep in endpoints if not self.curve[ep]]
        secure = [ep for ep in endpoints if self.curve[ep]]
        opened = []
        if plain:
            opened.append(self._router(plain, None))
        if secure:
            if self._auth is None:
                self.public_key, self._secret = auth.ensure_server_keys(self.key_home)
                auth.authorized_dir(self.key_home).mkdir(parents=True, exist_ok=True)
                self._auth = ThreadAuthenticator(self.ctx)
                self._auth.start()
                self._reload_keys()
            opened.append(self._router(secure, self._secret))
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
                if self._loop is not None:
                    self._loop.call_later(0.5, self.bind_standby)
                continue
            self._standby_bound.add(ep)
            if self._loop is not None:
                for sock in opened:
                    self._loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
                self._write_info()

    def _reload_keys(self) -> None:
        """(Re)load the authorized client keys when ``keys/authorized`` changed; checked every second."""
        adir = auth.authorized_dir(self.key_home)
        stamp = (adir.stat().st_mtime_ns, len(list(adir.glob("*.key"))))
        if self._auth is not None and stamp != self._keys_stamp:
            self._keys_stamp = stamp
            self._auth.configure_curve(domain="*", location=str(adir))
        if self._loop is not None and self._auth is not None:
            self._loop.call_later(1.0, self._reload_keys)

    def _router(self, endpoints: list[str], secret: bytes | None) -> zmq.Socket:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = 100_000
        sock.maxmsgsize = self.max_frame * 4  # hard stop; frames above max_frame get a clear error reply
        if secret is not None:
            sock.curve_server = True
            sock.curve_secretkey = secret
        for ep in endpoints:
            if ep.startswith("ipc://"):
                Path(ep[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
            try:
                sock.bind(ep)
            except zmq.ZMQError as exc:
                sock.close()
                raise ConfigError(f"cannot listen on {ep}: {exc}") from exc
            self.endpoints.append(sock.last_endpoint.decode())
        return sock

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), **self.describe(True)}
        tmp = self.data_dir / "space.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.data_dir / "space.json")

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run from the CLI)."""
        if not self.socks:
            self.bind()
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        for sock in self.socks:
            self._loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
        self._watch_replication()
        self._responder = Responder.from_env(self.status, self.command)
        if self._responder is not None:
            self._responder.attach(self._loop)
        self._schedule_drain()
        self._turn(self.store.reap)
        if self._auth is not None:
            self._loop.call_later(1.0, self._reload_keys)
        if self.discovery is not None:
            self._responder = await ring.start_responder(self.describe, self.counters, *self.discovery)
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
        if self._loop is not None:
            self._loop.call_soon(self._turn, fn)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def close(self) -> None:
        """Release everything: sockets, ipc files, the authenticator, the database, ``space.json``."""
        self._closed = True
        if self._timer:
            self._timer.cancel()
        if self._responder is not None:
            self._responder.close()
            self._responder = None
        repl = [self.sink.sock] if self.sink else []
        if self.link is not None:
            repl.append(self.link.sock)
        for sock in self.socks + repl:
            if self._loop is not None:
                with contextlib.suppress(ValueError, zmq.ZMQError):
                    self._loop.remove_reader(sock.getsockopt(zmq.FD))
            sock.close(0)
        self.socks.clear()
        if self._auth:
            self._auth.stop()
            self._auth = None
        self.ctx.term()
        for ep in [*self.endpoints, self.replica_listen or ""]:
            if ep.startswith("ipc://"):
                Path(ep[len("ipc://"):]).unlink(missing_ok=True)
        (self.data_dir / "space.json").unlink(missing_ok=True)
        self.durable.close()

    # ---- the turn ----------------------------------------------------------------------------------------

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        self._turn(self._receive)

    def _receive(self) -> None:
        n = 0
        for sock in self.socks:
            while n < MAX_BATCH and sock.get(zmq.EVENTS) & POLLIN:
                frames = sock.recv_multipart(zmq.NOBLOCK)
                n += 1
                self._request(sock, frames)

    def _turn(self, work: Callable[[], Any]) -> None:
        """Do some work, make its effects durable, then let its replies and events out."""
        if self._closed:  # a callback that was already queued when the server closed
            return
        work()
        changes = self.store.drain()
        for change in changes:
            if change[0] == "end":  # a session ended: forget its cached replies
                self.replies.pop(change[1], None)
                self._acked.pop(change[1], None)
        # Forgetting acknowledged replies on disk can wait for a commit that happens anyway, or a second.
        acks: dict[bytes, int] = {}
        if self._acks and time.monotonic() - self._acks_since > 1.0:
            acks, self._acks, self._acks_since = self._acks, {}, time.monotonic()
        if changes or self._new_replies or acks:
            rows = self.durable.encode(changes)
            try:
                self.durable.commit(rows, self._new_replies, acks)
            except Exception:
                # Memory and disk now disagree: stop without answering; a restart recovers from disk.
                log.critical("commit to %s failed; stopping without replying", self.durable.path, exc_info=True)
                os._exit(70)
            self.counters["commits"] += 1
            if self.link is not None:
                self._ship(rows, acks)
            self._new_replies = []
        outbox, self._outbox = self._outbox, []
        if outbox and self.link is not None and (self.require_ack or self._held):
            # Nothing leaves before the secondary holds every batch it may depend on (reads included).
            self._held.append((self.link.lsn, outbox))
            self.release()
        elif outbox:
            self._send_all(outbox)
        self._rearm()

    def _ship(self, rows: list, acks: dict) -> None:
        history = self.store.history
        events = []
        for event in reversed(history):
            if event[0] <= self._shipped_event:
                break
            events.append(event)
        events.reverse()
        self._shipped_event = self.store.event_id
        self.link.ship([rows, self._new_replies, acks, events, (self.store.next_id, self.store.event_id)])

    def release(self) -> None:
        """Send the replies whose batches the secondary has acknowledged (all of them when not paired).

        Paired, a reply also needs a recent acknowledgement (the read lease): a primary that was stopped long
        enough to be superseded hears nothing from its old secondary, so it cannot even answer a read.
        """
        if self.fenced:
            self._held.clear()
            return
        if self.require_ack and time.monotonic() - self.link.last_ack > self.read_lease:
            return  # the periodic probe brings a fresh acknowledgement, which calls us again
        while self._held and (not self.require_ack or self._held[0][0] <= self.link.acked):
            self._send_all(self._held.popleft()[1])

    def _send_all(self, outbox: list) -> None:
        for sock, ident, frame in outbox:
            try:
                sock.send(ident, SNDMORE_NOBLOCK)
                sock.send(frame, zmq.NOBLOCK)
            except zmq.ZMQError:
                self.counters["dropped_replies"] += 1

    def _rearm(self) -> None:
        deadline = self.store.next_deadline()
        if deadline != self._timer_at and self._loop is not None:
            if self._timer:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_later(
                max(0.0, deadline - time.time()), self._on_timer)
        # zmq's FD is edge-triggered and a send can consume the edge: look again before sleeping.
        for sock in self.socks:
            if sock.get(zmq.EVENTS) & POLLIN:
                self._schedule_drain()
                break
        self._recheck_replication()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._turn(self.store.reap)

    # ---- one request -------------------------------------------------------------------------------------

    def _request(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        ident = frames[0]
        self.counters["requests"] += 1
        if len(frames) != 2:
            return self._malformed(sock, ident, ProtocolError(f"expected one frame per request, got {len(frames) - 1}"))
        if len(frames[1]) > self.max_frame:
            return self._malformed(sock, ident, ProtocolError(
                f"frame of {len(frames[1])} bytes exceeds the {self.max_frame}-byte limit"))
        try:
            op, sid, seq, ack, args = parse_request(frames[1])
        except SpaceError as exc:
            return self._malformed(sock, ident, exc)
        if self.role != "primary" or self.fenced:
            return self._send_error(sock, ident, seq, NotPrimary(
                f"this space server is a {self.role if not self.fenced else 'demoted primary'} (epoch {self.epoch})"))
        self._acknowledge(sid, ack)
        route = self.routes.get((sid, seq))
        if route is not None:  # a retry of a request still waiting: answer it on the new connection
            route.sock, route.ident = sock, ident
            return None
        cached = self.replies.get(sid, {}).get(seq)
        if cached is not None:
            self.counters["retries_answered"] += 1
            self._outbox.append((sock, ident, cached))
            return None
        handler = self.ops.get(op)
        if handler is None:
            return self._send_error(sock, ident, seq, ProtocolError(f"unknown op {op!r}"))
        if op != "hello" and not self.store.touch(sid):
            return self._send_error(sock, ident, seq, SessionExpired(f"session {sid.hex()} is not open; say hello"))
        route = Route(sock, ident, sid, seq)
        try:
            handler(route, args)
        except SpaceError as exc:
            self._send_error(sock, ident, seq, exc)
        except Exception as exc:  # a bug must not take the space down with it
            log.exception("op %s from session %s failed", op, sid.hex())
            self._send_error(sock, ident, seq, SpaceError(f"server error in {op}: {type(exc).__name__}: {exc}"))
        return None

    def _malformed(self, sock: zmq.Socket, ident: bytes, exc: SpaceError) -> None:
        self.counters["malformed"] += 1
        log.warning("malformed request from %s: %s", ident.hex(), exc)
        self._send_error(sock, ident, 0, exc)

    def _send_error(self, sock: zmq.Socket, ident: bytes, seq: int, exc: SpaceError) -> None:
        self.counters["errors"] += 1
        self._outbox.append((sock, ident, error_reply(seq, exc)))

    def _answer(self, route: Route, result: Any, remember: bool) -> None:
        body = reply(route.seq, result)
        if remember:
            cache = self.replies.setdefault(route.sid, {})
            cache[route.seq] = body
            if len(cache) > MAX_CACHED_REPLIES:
                del cache[next(iter(cache))]
            self._new_replies.append((route.sid, route.seq, body))
        self._outbox.append((route.sock, route.ident, body))

    def _acknowledge(self, sid: bytes, ack: int) -> None:
        if ack <= self._acked.get(sid, 0):
            return
        self._acked[sid] = ack
        cache = self.replies.get(sid)
        if cache:
            for seq in [s for s in cache if s < ack]:
                del cache[seq]
            self._acks[sid] = ack

def run(data_dir: Path, listen: list[str], **options: Any) -> int:
    """Serve in the foreground until SIGTERM/SIGINT (or demotion); returns the exit status."""
    server = SpaceServer(data_dir, listen, **options)

    async def main() -> None:
        server.bind()
        server.install_signal_handlers()
        await server.serve()

    asyncio.run(main())
    return server.exit_code
