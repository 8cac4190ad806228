"""A blocking client's connection to a local space server: frames over the Unix stream socket beside its ``ipc://``
endpoint, instead of a zmq DEALER.

A zmq request and its reply each cross the client's I/O thread and the server's: four thread wakeups per round trip
besides the two processes' own, about half of what a sequential request cost the server on two cores
(bench/space_pair_floor.py). A server listens on ``PATH.stream`` for each plain ``ipc://PATH`` it serves
(:func:`stream_path`), with the frames of :mod:`onitu.space.wire`; the requests and replies are those of zmq.

:class:`UnixConnection` has the few calls of a zmq socket the client makes, with zmq's behaviour where the client
relies on it: ``send`` never blocks on a server that is not there (frames wait, up to a bound, and go once it is),
the connection is dialled again after it is lost, and a frame lost with a connection is the client's retry's
business (every request carries its session and number, so a re-sent one is answered once). The server answers on
the connection a request came by: the client sends its pending requests and notifies again once :attr:`dialled`
says the connection was replaced. A server cuts off a client that reads nothing for long (onitu.space.streams).
"""

from __future__ import annotations

import math
import os
import select
import socket
import time
from collections import deque

import zmq

from onitu.space.wire import CHUNK, MAX_FRAME, frame_header, read_frames

SUFFIX = ".stream"
SUN_PATH_MAX = 107  # bytes of a Unix socket path, as Linux's sockaddr_un holds them (and zmq's ipc)
QUEUED = 10_000  # frames kept while no connection is up (zmq's high-water mark, in spirit): older ones are dropped
REDIAL_MIN, REDIAL_MAX = 0.01, 1.0  # seconds between attempts to reach a server that is not there (zmq's pace)
SEND_STALL = 2.0  # seconds a send may wait for a server that reads nothing (stopped) before the connection is cut


def stream_path(endpoint: str) -> str | None:
    """The stream socket beside a local ``ipc://`` endpoint, or None (another transport, or a path too long)."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):] + SUFFIX
    return path if len(os.fsencode(path)) <= SUN_PATH_MAX else None


def usable(endpoints: list[str]) -> bool:
    """Can a client reach every one of these endpoints by its stream socket? Not when a server that serves one
    has none (its zmq socket is there, the stream socket is not: an older server, or one run without)."""
    for endpoint in endpoints:
        path = stream_path(endpoint)
        if path is None or (not os.path.exists(path) and os.path.exists(endpoint[len("ipc://"):])):
            return False
    return True


class UnixConnection:
    """One connection to the server at an ``ipc://`` endpoint, by its stream socket (see the module docstring)."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.path: str | None = None
        self.inbox: deque[bytes] = deque()
        self._in = bytearray()
        self._queued: deque[bytes] = deque(maxlen=QUEUED)
        self._poller = select.poll()
        self._redial_at = 0.0
        self._redial_wait = REDIAL_MIN
        self.closed = False
        self.dialled = 0  # connections made so far: the server forgets where to answer a lost one's requests

    # ---- what the client calls, as on a zmq socket ------------------------------------------------------------

    def connect(self, endpoint: str) -> None:
        path = stream_path(endpoint)
        if path is None:
            raise ValueError(f"no stream socket for {endpoint}")
        self._hang_up()
        self.path, self._redial_at, self._redial_wait = path, 0.0, REDIAL_MIN
        self._dial()

    def disconnect(self, endpoint: str) -> None:
        self._hang_up()
        self._queued.clear()  # zmq drops what waited for that peer too

    def send(self, frame: bytes, flags: int = 0) -> None:
        """Send a frame, or keep it until a connection is up (never blocks on an absent server)."""
        if self.sock is None and not self._dial():
            self._queued.append(frame)
            return
        self._write(frame)

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """Wait up to ``timeout`` ms (None: forever) for a frame; POLLIN once one is waiting, else 0."""
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        while not self.inbox:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.sock is None and not self._dial():
                if left == 0:
                    return 0
                pause = max(0.0, self._redial_at - time.monotonic())
                time.sleep(pause if left is None else min(pause, left))
                continue
            if self._poller.poll(None if left is None else math.ceil(left * 1000)):
                self._read()
            elif deadline is not None and time.monotonic() >= deadline:
                return 0
        return zmq.POLLIN

    def recv(self, flags: int = 0) -> bytes:
        if not self.inbox:
            if flags & zmq.NOBLOCK:
                if self.sock is not None:
                    self._read()
                if not self.inbox:
                    raise zmq.Again()
            else:
                self.poll(None)
        return self.inbox.popleft()

    def close(self, linger: int | None = None) -> None:
        self.closed = True
        self._hang_up()
        self._queued.clear()

    # ---- the connection ---------------------------------------------------------------------------------------

    def _dial(self) -> bool:
        """Connect if due; True once connected (what waited is sent first)."""
        if self.closed or self.path is None or time.monotonic() < self._redial_at:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:  # not there yet (starting), or its backlog is full: zmq's backoff
            sock.close()
            self._redial_at = time.monotonic() + self._redial_wait
            self._redial_wait = min(self._redial_wait * 2, REDIAL_MAX)
            return False
        sock.setblocking(False)
        self.sock, self._redial_wait = sock, REDIAL_MIN
        self.dialled += 1
        self._poller.register(sock.fileno(), select.POLLIN)
        while self._queued and self.sock is not None:
            self._write(self._queued.popleft())
        return self.sock is not None

    def _hang_up(self) -> None:
        if self.sock is not None:
            self._poller.unregister(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self._in.clear()
        self._redial_at = time.monotonic() + self._redial_wait  # a server that just cut us: not at once again

    def _write(self, frame: bytes) -> None:
        try:
            if len(frame) < CHUNK:  # one send
                self._send_all(memoryview(frame_header(frame) + frame))
            else:  # not copied to put its header first
                self._send_all(memoryview(frame_header(frame)))
                self._send_all(memoryview(frame))
        except OSError:  # the server went away (or is stopped with its buffer full): its frames are lost
            self._hang_up()

    def _send_all(self, data: memoryview) -> None:
        """Send everything, waiting for room (reading meanwhile: a server sends while it reads) up to SEND_STALL."""
        stalled_at = None
        while data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent:
                data, stalled_at = data[sent:], None
                continue
            now = time.monotonic()
            stalled_at = stalled_at or now
            if now - stalled_at > SEND_STALL:
                raise TimeoutError("the space server takes nothing")
            ready = select.select([self.sock], [self.sock], [], SEND_STALL)
            if ready[0]:
                self._read()
                if self.sock is None:
                    raise ConnectionResetError("the space server hung up")

    def _read(self) -> None:
        if not read_frames(self.sock, self._in, self.inbox, MAX_FRAME):
            self._hang_up()
