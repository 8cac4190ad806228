"""The space's client connections as the transport sees them: one socket monitor per ROUTER socket.

libzmq enforces the hard frame cap (``ZMQ_MAXMSGSIZE``) itself: a frame over it never reaches the server; libzmq
closes the connection, and its monitor reports a disconnect like any other. To tell such a drop from a client
that left, the server holds a duplicate of each connection's file descriptor, taken when the monitor reports the
connection accepted. When libzmq closes its descriptor, the duplicate still holds the kernel socket and shows
whether the peer had closed its end (end of file: it left) or was still sending (unread bytes: the rest of a frame
libzmq refused, or bytes that are not ZMTP at all). ``connections`` in ``space stats`` is how many it holds. Drops
are counted (``frames_over_cap`` in ``space stats`` and
so in ``/metrics``) and logged, at most a line every few seconds, naming the peer: its address, or for ``ipc://``
its pid and uid. A connection that sends such a frame before the server looked at it (within its first moments,
while the loop is busy) cannot be told apart from one that left, and is not counted.

The same monitor reports refused CURVE handshakes, which go to the keyring.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import struct
from collections import Counter
from collections.abc import Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from onitu.space.quietlog import QuietLog

log = logging.getLogger("onitu.space.peers")

ACCEPTED, DISCONNECTED = int(zmq.EVENT_ACCEPTED), int(zmq.EVENT_DISCONNECTED)
HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL \
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class Peers:
    """The connections of the monitored sockets, and what libzmq dropped without telling the server."""

    def __init__(self, counters: Counter[str], cap: int, handshake: Callable[[int, str], None]) -> None:
        self.counters, self.cap, self.handshake = counters, cap, handshake
        _more_descriptors()
        self.counters["frames_over_cap"] += 0  # listed from the start
        self.counters["connections"] = 0
        self.monitors: list[zmq.Socket] = []
        self.watched: dict[int, tuple[socket.socket, str]] = {}  # libzmq's descriptor -> (our duplicate, peer)
        self._quiet = QuietLog(log)

    def monitor(self, sock: zmq.Socket, curve: bool) -> zmq.Socket:
        """A monitor of ``sock`` (with its refused handshakes if it speaks CURVE), for :meth:`handle`."""
        mon = sock.get_monitor_socket(ACCEPTED | DISCONNECTED | (HANDSHAKE_FAILED if curve else 0))
        self.monitors.append(mon)
        return mon

    def handle(self, mon: zmq.Socket) -> None:
        """Read what the monitor reported (its FD is edge-triggered: call it now and then anyway)."""
        events = []
        while mon.get(zmq.EVENTS) & zmq.POLLIN:
            event = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            events.append((int(event["event"]), event["value"], event["endpoint"]))
        # A descriptor accepted and closed within this batch may be another connection's by now: not watched.
        last = {value: n for n, (kind, value, _) in enumerate(events) if kind in (ACCEPTED, DISCONNECTED)}
        for n, (kind, value, endpoint) in enumerate(events):
            if kind == ACCEPTED:
                if last[value] == n:
                    self._watch(value)
            elif kind == DISCONNECTED:
                self._ended(value)
            else:
                self.handshake(kind, endpoint.decode(errors="replace"))

    def _watch(self, fd: int) -> None:
        try:
            copy = os.dup(fd)
        except OSError:  # closed meanwhile, or out of descriptors: this one goes unwatched
            return
        try:
            dup = socket.socket(fileno=copy)
        except OSError:  # not a socket: the descriptor was closed and reused meanwhile
            os.close(copy)
            return
        who = _peer(dup)
        if who is None:  # not a connected socket: the descriptor was closed and reused meanwhile
            dup.close()
            return
        old = self.watched.pop(fd, None)
        if old is not None:
            old[0].close()
        self.watched[fd] = (dup, who)
        self.counters["connections"] = len(self.watched)

    def _ended(self, fd: int) -> None:
        held = self.watched.pop(fd, None)
        if held is None:
            return
        dup, who = held
        self.counters["connections"] = len(self.watched)
        try:
            pending = dup.recv(1, PEEK)  # never setblocking() on the duplicate: the flag is libzmq's descriptor's too
        except OSError:  # nothing unread (closed by libzmq, but no frame refused), or reset by the peer
            pending = b""
        finally:
            dup.close()
        if pending:
            self.counters["frames_over_cap"] += 1
            self._quiet.warn("over cap", "dropped the connection of %s: it sent a frame over the %d-byte limit (or "
                                         "bytes that are not ZMTP); its request got no answer", who, self.cap)

    def close(self) -> None:
        for mon in self.monitors:
            mon.close(0)
        self.monitors.clear()
        for dup, _ in self.watched.values():
            dup.close()
        self.watched.clear()


def _more_descriptors() -> None:
    """Each connection takes two descriptors here: raise the soft limit (often 1,024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError) as exc:
            log.info("cannot raise the open file limit from %d to %d: %s", soft, want, exc)


def _peer(sock: socket.socket) -> str | None:
    """Who is at the other end: ``host:port``, or ``pid N (uid U)`` for a Unix socket; None if not connected."""
    try:
        if sock.family == socket.AF_UNIX:
            if not hasattr(socket, "SO_PEERCRED"):  # Linux's
                return "a local process"
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            return f"pid {pid} (uid {uid})"
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return None
