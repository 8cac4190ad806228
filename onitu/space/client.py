"""The blocking network client of the space, and the notify and answer handling it shares with the asyncio client
(their session, numbering and connection state is :mod:`onitu.space.core`).

Every request carries (session, sequence number). A request is re-sent, with the same number, when its reply is
late or the server restarted (its boot id changed); the server answers a retry of a finished mutation from its
reply cache and re-routes a retry of a blocked take, so each take removes exactly one tuple however often it is
sent. A keepalive thread pings the server every third of the session TTL.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import zmq

from onitu.space.core import Core, Security, result_of, send
from onitu.space.errors import (
    EventsLost,
    NotPrimary,
    ProtocolError,
    Refused,
    RequestExpired,
    SessionExpired,
    SpaceError,
    Unavailable,
)
from onitu.space.handles import Entry, Event, EventStream
from onitu.space.local import OnWait, TemplateLike, WaitingRequest, check_timeout
from onitu.space.protocol import ERROR, EVENT, PART, as_tuple, error_from, parse_reply
from onitu.space.store import Lease
from onitu.space.template import Template, check_tuple
from onitu.space.unixconn import UnixConnection
from onitu.space.zmqfast import NOBLOCK, wait_readable
from onitu.space.zmqfast import recv as _recv
from onitu.space.zmqfast import send as _send

log = logging.getLogger("onitu.space.client")

RETRY_INTERVAL = 1.0  # resend a request whose reply is this late
# why a client moves on from a server that is up but slow (a long turn, a checkpoint): not "not the primary"
SILENT = f"did not answer within {RETRY_INTERVAL:g} s"
_SESSION_OPS = frozenset({"hello", "ping", "bye"})  # a session's own requests: their callers handle its end
BLOCKED_RESEND = 5.0  # re-register a blocked request this often, in case the server forgot it
WAIT_SLICE = 100  # ms a client waits for a reply before it looks at retries, refusals and deadlines


def _pattern(template: TemplateLike) -> Any:
    return template.pattern if isinstance(template, Template) else check_tuple(template, "template")


class Parts:
    """The pieces of an answer the server sends a chunk per loop turn (a big read_all), put back together."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, body: Any) -> None:
        if not (isinstance(body, list) and len(body) == 2 and type(body[0]) is int and isinstance(body[1], list)):
            raise ProtocolError(f"malformed part of an answer: {body!r:.200}")
        if body[0] == 0:  # the answer starts (again, if the request was re-sent)
            self.items = []
        if body[0] == len(self.items):
            self.items.extend(body[1])

    def result(self, body: Any) -> Any:
        """The whole answer, given the OK that ends it (which holds the count when parts came before)."""
        if type(body) is not int or not self.items:
            return body
        if body != len(self.items):
            raise ProtocolError(f"an answer of {body} items arrived with {len(self.items)}")
        return self.items


def _wait(sock: zmq.Socket | UnixConnection, timeout_ms: int) -> bool:
    if type(sock) is UnixConnection:
        return bool(sock.poll(timeout_ms))
    return wait_readable(sock, timeout_ms)


def _recv_now(sock: zmq.Socket | UnixConnection) -> bytes:
    """A frame known to be waiting (raises zmq.Again if it is not)."""
    if type(sock) is UnixConnection:
        return sock.recv(NOBLOCK)
    return _recv(sock, NOBLOCK)  # a blocking client's own socket: pyzmq's Cython calls, without the Python layer


def _dialled(sock: zmq.Socket | UnixConnection) -> int:
    """How many connections a socket made (a request sent on an earlier one must be sent again: the server
    answers on the connection a request came by). zmq keeps one connection's identity: 0."""
    return sock.dialled if type(sock) is UnixConnection else 0


def _send_now(sock: zmq.Socket | UnixConnection, frame: bytes) -> None:
    if type(sock) is UnixConnection:
        sock.send(frame)
    else:
        _send(sock, frame, NOBLOCK)


def _decode_found(body: Any) -> Any:
    return as_tuple(body) if isinstance(body, list | dict) else body


class SpaceClient:
    """A blocking client: the same methods as :class:`onitu.space.TupleSpace`, over the network.

    Thread-safe: each thread uses its own connection, all in one session.
    """

    def __init__(self, endpoints: Sequence[str], *, security: Security | None = None, session_ttl: float = 5.0,
                 connect_timeout: float = 10.0) -> None:
        self.core = Core(endpoints, security, session_ttl)
        self.connect_timeout = connect_timeout
        self.ctx = zmq.Context()
        self._local = threading.local()
        self._socks: list[zmq.Socket] = []
        self._socks_lock = threading.Lock()
        self._closed = threading.Event()
        # called from the keepalive thread when the server refuses this client for good (its key was revoked):
        # a client busy elsewhere (a make worker running a recipe) learns it within a third of the session TTL
        self.on_refused: Callable[[Refused], None] | None = None
        try:
            self._hello()
        except BaseException:  # no session: release the sockets, or the context would never terminate
            self._release()
            raise
        self._keepalive = threading.Thread(target=self._keep_alive, name="onitu-space-keepalive", daemon=True)
        self._keepalive.start()

    # ---- operations --------------------------------------------------------------------------------------

    def write(self, tup: Sequence | Mapping, lease: Lease = None) -> Entry:
        tup = check_tuple(tup)
        return Entry(self, self._call("write", {"t": tup, "lease": lease}), tup)

    def take(self, template: TemplateLike, timeout: float | None = None, on_wait: OnWait = None) -> Any:
        """See :meth:`onitu.space.TupleSpace.take`."""
        return self._find("take", template, timeout, on_wait)

    def read(self, template: TemplateLike, timeout: float | None = None, on_wait: OnWait = None) -> Any:
        """See :meth:`onitu.space.TupleSpace.read`."""
        return self._find("read", template, timeout, on_wait)

    def _find(self, op: str, template: TemplateLike, timeout: float | None, on_wait: OnWait) -> Any:
        check_timeout(timeout)
        args = {"p": _pattern(template), "timeout": timeout}
        return _decode_found(self._call(op, args, blocking=timeout, on_wait=on_wait))

    def read_all(self, template: TemplateLike, limit: int | None = None, packed: bool = False) -> list[Any]:
        """See :meth:`onitu.space.TupleSpace.read_all`."""
        found = self._call("read_all", {"p": _pattern(template), "limit": limit, "packed": packed})
        return found if packed else [as_tuple(t) for t in found]

    def batch(self, ops: Iterable[Sequence]) -> list[Any]:
        """See :meth:`onitu.space.TupleSpace.batch`."""
        wire = [[op[0], _pattern(op[1]) if op[0] != "write" else check_tuple(op[1]), *op[2:]] for op in ops]
        return [_decode_found(r) for r in self._call("batch", {"ops": wire})]

    def notify(self, events: Iterable[str] | str, template: TemplateLike, lease: float | None = None,
               since: int | None = None) -> RemoteNotification:
        events = [events] if isinstance(events, str) else list(events)
        return RemoteNotification(self, events, _pattern(template), lease, since)

    def stats(self) -> dict[str, Any]:
        return self._call("stats", {})

    def close(self) -> None:
        """End the session (its session-leased tuples are deleted) and release every socket."""
        if self._closed.is_set():
            return
        with contextlib.suppress(SpaceError):
            self._call("bye", {}, give_up=1.0)
        self._closed.set()
        self._keepalive.join(timeout=2)
        self._release()

    def _release(self) -> None:
        self._closed.set()
        with self._socks_lock:
            for sock in self._socks:
                self.core.forget(sock)
                sock.close(0)
            self._socks.clear()
        self.ctx.term()

    def __enter__(self) -> SpaceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _renew(self, eid: int, lease: Lease) -> float | None:
        return self._call("renew", {"id": eid, "lease": lease})

    def _cancel(self, eid: int) -> None:
        self._call("cancel", {"id": eid})

    # ---- requests ----------------------------------------------------------------------------------------

    def _sock(self) -> zmq.Socket:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = self.core.socket(self.ctx, streams=True)
            with self._socks_lock:
                self._socks.append(sock)
        return sock

    def _hello(self) -> None:
        info = self._call("hello", {"ttl": self.core.ttl}, give_up=self.connect_timeout)
        self.core.seen_boot(info["boot"])

    def _reopen(self) -> None:
        """The server no longer knows our session: it expired (no request from us for its TTL: this process was
        starved, or stuck in a long call). Open it again; its session-leased tuples are gone, and their owners write
        them again when they find them missing (a plug's tuple)."""
        log.warning("session %s expired on the server; its session-leased tuples are gone; reopening",
                    self.core.sid.hex())
        self._hello()

    def _call(self, op: str, args: dict[str, Any], blocking: float | None = 0, give_up: float | None = None,
              on_wait: OnWait = None) -> Any:
        """Send one request and wait for its reply, re-sending it while the server is away or restarts.

        ``blocking`` is the server-side wait of a take/read (None: forever, 0: not a blocking request).
        """
        if self._closed.is_set():
            raise Unavailable("the client is closed")
        core, sock = self.core, self._sock()
        seq = core.begin()
        start = time.monotonic()
        limit = give_up if give_up is not None else self.connect_timeout
        try:
            sent_at, generation, dialled = self._send(sock, op, seq, args, blocking, start)
            sends = 1
            if on_wait is not None and blocking != 0:
                on_wait(WaitingRequest(lambda: self._call("withdraw", {"seq": seq})))
            parts = Parts()
            while True:
                # poll, then recv: a recv blocked in libzmq (a receive timeout) aborts the process when another
                # thread closes the client meanwhile (libzmq's signaler.cpp assertion, seen at the end of builds)
                if _wait(sock, WAIT_SLICE):
                    try:
                        frame = _recv_now(sock)
                    except zmq.Again:  # poll said a message waits; never block on recv regardless
                        continue
                    got, status, body = parse_reply(frame)
                    if got == 0 and status == ERROR:
                        raise error_from(body)
                    # another request's frame (a late answer) goes on to the checks below: a stream of them must
                    # not hold this call past its limit
                    if got == seq:
                        if status == PART:
                            parts.add(body)
                            sent_at = time.monotonic()  # the answer is on its way
                            continue
                        try:
                            return parts.result(result_of(status, body))
                        except NotPrimary:  # a secondary, or a demoted primary: on to the next server
                            core.rotate(core.where(sock))
                            core.follow(sock)
                            sent_at, generation, dialled = self._send(sock, op, seq, args, blocking, start)
                            sends += 1
                            time.sleep(0.05)
                            continue
                        except SessionExpired:  # refused before it ran, if sent once (else a copy may have run)
                            if sends > 1 or op in _SESSION_OPS:
                                raise
                            self._reopen()
                            sent_at, generation, dialled = self._send(sock, op, seq, args, blocking, start)
                            sends += 2  # once is enough
                            continue
                # closing: close() releases the sockets once its keepalive thread is out of here
                refused = Unavailable("the client is closed") if self._closed.is_set() else core.refusal(sock)
                if refused is not None:
                    raise refused
                now = time.monotonic()
                waited_out = blocking is not None and blocking != 0 and now - start > blocking + limit
                if (blocking == 0 and now - start > limit) or waited_out:
                    raise Unavailable(f"no answer from the space at {core.endpoint} for {op} within {limit} s")
                resend = RETRY_INTERVAL if blocking == 0 else BLOCKED_RESEND
                if now - sent_at > resend:  # silence: that server may be gone, or refusing our key
                    if blocking == 0:
                        core.rotate(core.where(sock), SILENT)
                    core.reconnect(sock)
                elif core.generation != generation:
                    core.follow(sock)
                if core.generation != generation or now - sent_at > resend or _dialled(sock) != dialled:
                    sent_at, generation, dialled = self._send(sock, op, seq, args, blocking, start)
                    sends += 1
        finally:
            core.end(seq)

    def _send(self, sock: zmq.Socket, op: str, seq: int, args: dict, blocking: float | None, start: float
              ) -> tuple[float, int, int]:
        """Send a request; when, at which server generation, and on which connection (see :func:`_dialled`)."""
        if blocking:  # a re-sent blocked request keeps its original deadline
            args = {**args, "timeout": max(0.0, blocking - (time.monotonic() - start))}
        try:
            _send_now(sock, self.core.frame(op, seq, args))
        except zmq.Again:
            log.debug("space not connected; will retry")
        return time.monotonic(), self.core.generation, _dialled(sock)

    def _keep_alive(self) -> None:
        while not self._closed.wait(self.core.ttl / 3):
            try:
                self.core.seen_boot(self._call("ping", {}, give_up=self.core.ttl)["boot"])
            except SessionExpired:
                try:
                    if not self._closed.is_set():  # else closing: our own bye ended the session
                        self._reopen()
                except SpaceError as exc:
                    log.warning("cannot reopen session: %s", exc)
            except Refused as exc:  # sending it again would get the same answer
                log.warning("keepalive to %s stopped: %s", self.core.endpoint, exc)
                if self.on_refused is not None:
                    self.on_refused(exc)
                return
            except SpaceError as exc:
                if not self._closed.is_set():
                    log.warning("keepalive to %s failed: %s", self.core.endpoint, exc)


class NotifyState:
    """The protocol side of one notify: the request to (re)send and what each incoming message means."""

    RESUBSCRIBE = object()

    def __init__(self, core: Core, events: list[str], pattern: Any, lease: float | None, since: int | None) -> None:
        self.core, self.events, self.pattern, self.lease = core, events, pattern, lease
        self.last = since
        self.ended = False
        self.seq = 0
        self.generation = 0
        self.delivered = 0
        self.sent_at = 0.0
        self.confirmed = False

    def request(self) -> bytes:
        """The notify request, with a new sequence number, resuming after the last event seen."""
        if self.seq:
            self.core.end(self.seq)
        self.seq = self.core.begin()
        self.generation, self.delivered, self.confirmed = self.core.generation, 0, False
        self.sent_at = time.monotonic()
        return self.core.frame("notify", self.seq, {"events": self.events, "p": self.pattern,
                                                    "lease": self.lease, "since": self.last})

    def stale(self) -> bool:
        """Should the subscription be re-sent (server restarted, or no confirmation in time)?"""
        return self.core.generation != self.generation or (
            not self.confirmed and time.monotonic() - self.sent_at > RETRY_INTERVAL)

    def message(self, status: int, body: Any) -> Any:
        """An Event, None (nothing for the caller), or RESUBSCRIBE; raises the server's error."""
        if status == ERROR:
            exc = error_from(body)
            if isinstance(exc, EventsLost | SessionExpired | Refused) or not self.confirmed:
                raise exc
            return None
        if status != EVENT:
            self.confirmed = True
            if self.last is None:  # resume point if the server restarts before any event reaches us
                self.last = body
            return None
        if not isinstance(body, list) or len(body) != 4:
            raise ProtocolError(f"malformed event {body!r:.200}")
        event_id, kind, tup, n = body
        if n != self.delivered + 1:  # the server dropped events for us: catch up from the last one we saw
            return self.RESUBSCRIBE
        self.delivered = n
        if kind == "close":
            self.ended = True
            self.core.end(self.seq)
            return Event(event_id, kind, None)
        self.last = event_id
        return Event(event_id, kind, as_tuple(tup) if isinstance(tup, list | dict) else tup)

    def finish(self) -> bool:
        """Mark ended; True if the server should be told to stop sending."""
        if self.ended:
            return False
        self.ended = True
        self.core.end(self.seq)
        return True


class RemoteNotification(EventStream):
    """Notify events from the server; re-subscribes from the last event id if the server restarts."""

    def __init__(self, client: SpaceClient, events: list[str], pattern: Any, lease: float | None,
                 since: int | None) -> None:
        self.client = client
        self.state = NotifyState(client.core, events, pattern, lease, since)
        self.sock = client.core.socket(client.ctx, streams=True)
        with client._socks_lock:
            client._socks.append(self.sock)
        self._buffer: deque[Event] = deque()
        self._subscribe()
        # Return only once the server holds the subscription, so no later write can slip past it.
        deadline, reopened = time.monotonic() + client.connect_timeout, False
        while not self.state.confirmed:
            if time.monotonic() > deadline:
                raise Unavailable(f"the space did not confirm a notify within {client.connect_timeout} s")
            try:
                event = self._poll()
            except SessionExpired:  # refused before it existed (a starved process's session ran out): open again
                if reopened:
                    raise
                client._reopen()
                self._subscribe()
                event, reopened = None, True
            if event is not None:
                self._buffer.append(event)

    def next(self, timeout: float | None = None) -> Event:
        if self._buffer:
            return self._buffer.popleft()
        if self.state.ended:
            raise StopIteration
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._poll()
            if event is not None:
                return event
            if deadline is not None and time.monotonic() >= deadline:
                raise RequestExpired(f"no event within {timeout} s")

    def _poll(self) -> Event | None:
        state, core = self.state, self.client.core
        if self.sock.poll(100):
            seq, status, body = parse_reply(self.sock.recv())
            try:
                result = state.message(status, body) if seq == state.seq else None
            except NotPrimary:
                core.rotate(core.where(self.sock))
                result = NotifyState.RESUBSCRIBE
            if result is NotifyState.RESUBSCRIBE:
                core.follow(self.sock)
                self._subscribe()
            elif result is not None:
                return result
        elif (refused := core.refusal(self.sock)) is not None:
            raise refused
        elif state.stale() or _dialled(self.sock) != self._dialled:  # (a new connection: the server lost our route)
            if not state.confirmed:
                core.rotate(core.where(self.sock), SILENT)
            core.follow(self.sock)
            self._subscribe()
        return None

    def _subscribe(self) -> None:
        """(Re)send the subscription, from the last event seen."""
        send(self.sock, self.state.request())
        self._dialled = _dialled(self.sock)

    @property
    def last(self) -> int | None:
        """Id of the last event received: pass it as ``since`` to resume elsewhere."""
        return self.state.last

    def close(self) -> None:
        """End the subscription (the server stops sending)."""
        if self.state.finish():
            with contextlib.suppress(SpaceError):
                self.client._call("unnotify", {"seq": self.state.seq}, give_up=1.0)
