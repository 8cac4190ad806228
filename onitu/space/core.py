"""The protocol state a space client's connections share: its session, request numbers and acknowledgements, which
endpoint is the primary, and how to reach it (CURVE keys, handshake refusals).

A request's reply is acknowledged (the server may forget its cached copy) once it arrived, or once its caller gave up
on it. Only the replies the server caches hold the acknowledgement back: those of mutations (``REMEMBERED``), so a
retried take still gets its one answer. A subscription or a blocked read stays outstanding for as long as it runs,
and the server caches nothing of it: were it counted, one subscription would keep every later reply of its session
cached (at a million files, gigabytes in both space servers and their databases).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import zmq

from onitu.space import auth, unixconn
from onitu.space.auth import fingerprint
from onitu.space.errors import HandshakeRefused, InvalidTuple, Unavailable
from onitu.space.protocol import ERROR, MAX_FRAME, error_from, request
from onitu.space.unixconn import UnixConnection
from onitu.space.zmqfast import monitor_event

log = logging.getLogger("onitu.space.client")

TRANSPORT_CAP = 4 * MAX_FRAME  # a server's transport drops a bigger frame with its connection, unanswered
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
NO_DETAIL_TRIES = 3  # handshakes cut without a reason, in a row, before the client calls it a refusal
REMEMBERED = frozenset({"write", "take", "batch", "cancel", "renew"})  # ops whose replies the server caches


class Security:
    """How to reach a CURVE endpoint: the server's public key and this client's key pair."""

    def __init__(self, server_key: bytes, public: bytes, secret: bytes) -> None:
        self.server_key, self.public, self.secret = server_key, public, secret


class Core:
    """Session, sequence numbers and acknowledgements: the protocol state shared by a client's connections."""

    def __init__(self, endpoints: Sequence[str], security: Security | None, ttl: float) -> None:
        if not endpoints:
            raise Unavailable("no space endpoint given (and none discovered)")
        self.endpoints = list(endpoints)
        self.current = 0  # index of the endpoint believed to be the primary
        self.security = security
        self.ttl = ttl
        self.sid = os.urandom(16)
        self._next = 1  # the next request's number
        self._lock = threading.Lock()
        self._outstanding: set[int] = set()
        self._uncached: set[int] = set()  # outstanding requests whose replies the server does not cache
        self.boot: str | None = None
        self.generation = 0  # bumps when the server restarts: every pending request must be re-sent
        self._where: weakref.WeakKeyDictionary[zmq.Socket, str] = weakref.WeakKeyDictionary()
        self._monitors: dict[zmq.Socket, tuple[zmq.Socket, list[int], zmq.Socket]] = {}

    def begin(self) -> int:
        with self._lock:
            seq, self._next = self._next, self._next + 1
            self._outstanding.add(seq)
            return seq

    def end(self, seq: int) -> None:
        with self._lock:
            self._outstanding.discard(seq)
            self._uncached.discard(seq)

    def frame(self, op: str, seq: int, args: dict[str, Any]) -> bytes:
        """Request ``seq`` encoded, with the acknowledgement: every cached reply below it has arrived or was given
        up on (the server may forget them). That is the oldest outstanding request the server caches a reply of,
        else the next number; it never decreases."""
        with self._lock:
            if op not in REMEMBERED and seq in self._outstanding:
                self._uncached.add(seq)
            ack = min(self._outstanding - self._uncached, default=self._next)
        frame = request(op, self.sid, seq, ack, args)
        if len(frame) > TRANSPORT_CAP:
            raise InvalidTuple(f"a {op} request of {len(frame)} bytes is over the {TRANSPORT_CAP} bytes a space "
                               "server takes in one frame; send less at a time")
        return frame

    def seen_boot(self, boot: str) -> None:
        with self._lock:
            if self.boot is not None and boot != self.boot:
                self.generation += 1
                log.info("space server restarted (boot %s -> %s); re-sending pending requests", self.boot, boot)
            self.boot = boot

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.current]

    def socket(self, ctx: zmq.Context, sock_type: int = zmq.DEALER, streams: bool = False) -> zmq.Socket:
        """A connection to the current endpoint: a zmq socket of ``sock_type``, or with ``streams`` (a blocking
        client) a :class:`UnixConnection` when every endpoint is a local server's (fewer thread hops a request)."""
        if streams and unixconn.usable(self.endpoints):
            conn = UnixConnection()
            self._connect(conn, self.endpoint)
            return conn
        sock = ctx.socket(sock_type)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = 100_000
        # retry a refused connection soon (a server starting up), backing off to zmq's usual pace
        sock.reconnect_ivl, sock.reconnect_ivl_max = 10, 1000
        if any(ep.startswith("tcp://") for ep in self.endpoints):
            # a refused handshake shows only here: without it, a refusal looks like a server that is down
            mon = sock.get_monitor_socket(HANDSHAKE_EVENTS)
            mon.linger = 0
            self._monitors[sock] = (zmq.Socket.shadow(mon.underlying), [0], mon)
        self._connect(sock, self.endpoint)
        return sock

    def refusal(self, sock: zmq.Socket) -> HandshakeRefused | None:
        """The error to raise if the server refused this socket's handshake since the last look."""
        watched = self._monitors.get(sock)
        if watched is None:
            return None
        mon, cut, _ = watched
        while mon.get(zmq.EVENTS) & zmq.POLLIN:
            event = monitor_event(mon.recv_multipart(zmq.NOBLOCK))
            where = self.where(sock)
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                cut[0] = 0
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                key = f" (key {fingerprint(self.security.public)})" if self.security else ""
                return HandshakeRefused(f"the space at {where} refused this client's CURVE key{key}: its operator "
                                        "must authorize it (`onitu keys allow KEY.key`)")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                how = "with CURVE" if self.security else "without CURVE (it requires CURVE: give a key)"
                return HandshakeRefused(f"the space at {where} refused the handshake of this client, which "
                                        f"connects {how}: check the endpoint, the server key and --insecure")
            elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                cut[0] += 1
                if cut[0] >= NO_DETAIL_TRIES:
                    return HandshakeRefused(f"the space at {where} cuts every CURVE handshake of this client: is "
                                            "the server key this client was given the server's current key?")
        return None

    def forget(self, sock: zmq.Socket) -> None:
        """Stop watching a socket's handshakes (before closing it)."""
        watched = self._monitors.pop(sock, None)
        if watched is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            watched[2].close(0)

    def _connect(self, sock: zmq.Socket, endpoint: str) -> None:
        if self.security is not None and endpoint.startswith("tcp://"):
            auth.configure_client(sock, self.security.server_key, self.security.public, self.security.secret)
        sock.connect(endpoint)
        self._where[sock] = endpoint

    def reconnect(self, sock: zmq.Socket) -> None:
        """A fresh connection to the current endpoint: zmq gives up on a peer that once refused our key."""
        old = self._where.get(sock)
        if old is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disconnect(old)
        self._connect(sock, self.endpoint)

    def where(self, sock: zmq.Socket) -> str:
        return self._where.get(sock, self.endpoint)

    def follow(self, sock: zmq.Socket) -> None:
        """Point the socket at the current endpoint if another thread moved on to the next server."""
        if self._where.get(sock) != self.endpoint:
            self.reconnect(sock)

    def rotate(self, seen: str, why: str = "is not the primary") -> None:
        """The server at ``seen`` is not (or no longer) the primary, or did not answer: try the next endpoint."""
        with self._lock:
            if len(self.endpoints) > 1 and self.endpoint == seen:
                self.current = (self.current + 1) % len(self.endpoints)
                log.info("space at %s %s; trying %s", seen, why, self.endpoint)


def send(sock: zmq.Socket, frame: bytes) -> None:
    """Send without blocking: with no server connected (down, or refusing our key) the retry loop resends."""
    try:
        # zmq.Socket's own send: an asyncio socket (the asyncio client shares this) must see its sends, which can
        # consume the edge of zmq's edge-triggered FD
        sock.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        log.debug("space not connected; will retry")


def result_of(status: int, body: Any) -> Any:
    if status == ERROR:
        raise error_from(body)
    return body
