"""Length-prefixed frames over one stream socket (Unix or TCP) per peer: the replication link's transport, and the
one local blocking clients use (:mod:`onitu.space.unixconn`).

A zmq message crosses the sender's I/O thread and the receiver's before the receiving thread sees it: a paired
write's batch and its acknowledgement made six thread wakeups on its critical path besides the two processes' own,
most of what pairing added to a write on two shared cores (bench/space_vs_rinda.py), and a client's request and
reply four more. Here each event loop writes to and reads from the kernel socket itself. Remote clients keep zmq
(CURVE); a local one reaches the server's ``ipc://`` endpoint through the stream socket beside it.

A frame is its length (4 bytes, big-endian) then its bytes: one msgpack message of the replication protocol. The
secondary listens (:class:`Listener`, any number of primaries: an old one may still be connected); the primary
dials (:class:`Dialer`) and dials again whenever the connection is lost. Unlike zmq, nothing is queued while no
connection is up: what is sent then is dropped, and the primary resynchronises (it probes on each connection).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path

from onitu.space.endpoints import ConfigError

HEADER = 4
MAX_FRAME = 1 << 30  # a longer length is not a frame of ours (a zmq peer's greeting announces ~4 GiB): hang up
CHUNK = 65536  # bytes per recv: below malloc's mmap threshold, so a receive costs no page faults
READS = 64  # recvs per readiness callback: a peer that sends as fast as we read does not hold the loop
REDIAL = 0.1  # seconds between attempts to reach the secondary


def address(endpoint: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """``ipc://path`` or ``tcp://host:port`` as a socket family and address."""
    if endpoint.startswith("ipc://"):
        return socket.AF_UNIX, endpoint[len("ipc://"):]
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        host = host.strip("[]")
        if port.isdigit():
            return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    raise ConfigError(f"a replication endpoint is ipc://PATH or tcp://HOST:PORT, not {endpoint!r}")


def frame_header(frame: bytes) -> bytes:
    return len(frame).to_bytes(HEADER, "big")


def read_frames(sock: socket.socket, buf: bytearray, inbox: deque[bytes], max_frame: int) -> bool:
    """Read what a non-blocking socket has (at most READS chunks: a peer that sends as fast as we read does not hold
    a loop), keep it in ``buf``, and move the complete frames to ``inbox``; False once the connection ended, or
    sent a length that is no frame of ours (what came before it is in ``inbox`` all the same)."""
    ended = False
    try:
        for _ in range(READS):
            data = sock.recv(CHUNK)
            if not data:
                ended = True
                break
            buf += data
            if len(data) < CHUNK:
                break
    except BlockingIOError:
        pass
    except OSError:
        ended = True
    at = 0
    while len(buf) - at >= HEADER:
        size = int.from_bytes(buf[at:at + HEADER], "big")
        if size > max_frame:
            ended = True
            break
        if len(buf) - at - HEADER < size:
            break
        inbox.append(bytes(buf[at + HEADER:at + HEADER + size]))
        at += HEADER + size
    del buf[:at]
    return not ended


class Stream:
    """One connection: frames out (kept while the kernel's buffer is full), frames in (:attr:`inbox`)."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, on_frames: Callable[[], None],
                 on_close: Callable[[Stream], None], max_frame: int = MAX_FRAME,
                 max_unsent: int | None = None) -> None:
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a batch waits for no further bytes
        self.sock, self.loop, self.fd = sock, loop, sock.fileno()
        self.inbox: deque[bytes] = deque()
        self.closed = False
        self._in = bytearray()
        self._out = bytearray()
        self._on_frames, self._on_close = on_frames, on_close
        self.max_frame, self.max_unsent = max_frame, max_unsent
        self.cut = False  # closed for reading nothing while max_unsent bytes waited for it
        loop.add_reader(self.fd, self._readable)

    def send(self, frame: bytes) -> bool:
        """Queue one frame (sent at once when the kernel takes it); False once the connection is gone."""
        if self.closed:
            return False
        header = frame_header(frame)
        if self._out:
            self._out += header
            self._out += frame
            if self.max_unsent is not None and len(self._out) > self.max_unsent:
                self.cut = True  # a peer that reads nothing must not grow our memory without bound
                self.close()
                return False
            return True
        try:
            sent = self.sock.sendmsg((header, frame))
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return False
        if sent < HEADER + len(frame):
            self._out += (header + frame)[sent:]
            self.loop.add_writer(self.fd, self._flush)
        return True

    def unsent(self) -> int:
        """Bytes queued that the kernel has not taken yet."""
        return len(self._out)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self._out[:sent]
        if not self._out:
            self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        alive = read_frames(self.sock, self._in, self.inbox, self.max_frame)
        if self.inbox:
            self._on_frames()
        if not alive:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()
        self._on_close(self)


class Dialer:
    """The primary's end: one connection to the secondary, dialled again (every :data:`REDIAL` s) once lost."""

    def __init__(self, endpoint: str, on_frames: Callable[[], None], on_connect: Callable[[], None],
                 on_lost: Callable[[], None]) -> None:
        self.family, self.address = address(endpoint)
        self.on_frames, self.on_connect, self.on_lost = on_frames, on_connect, on_lost
        self.stream: Stream | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._pending: socket.socket | None = None  # a TCP connection under way
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._dial()

    def send(self, frame: bytes) -> bool:
        """False when no connection is up: the frame is dropped."""
        return self.stream is not None and self.stream.send(frame)

    def _dial(self) -> None:
        self._timer = None
        if self._closed:
            return
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.address)
        except BlockingIOError as exc:
            if exc.errno == errno.EINPROGRESS:  # TCP: writable once connected (or failed)
                self._pending = sock
                self.loop.add_writer(sock.fileno(), self._dialled)
                return
            sock.close()  # a Unix socket's full backlog
            self._redial()
            return
        except OSError:
            sock.close()
            self._redial()
            return
        self._up(sock)

    def _dialled(self) -> None:
        sock, self._pending = self._pending, None
        self.loop.remove_writer(sock.fileno())
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            sock.close()
            self._redial()
        else:
            self._up(sock)

    def _up(self, sock: socket.socket) -> None:
        self.stream = Stream(sock, self.loop, self.on_frames, self._lost)
        self.on_connect()

    def _lost(self, stream: Stream) -> None:
        if stream is self.stream:
            self.stream = None
            self.on_lost()
            self._redial()

    def _redial(self) -> None:
        if not self._closed and self._timer is None:
            self._timer = self.loop.call_later(REDIAL, self._dial)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._pending is not None:
            self.loop.remove_writer(self._pending.fileno())
            self._pending.close()
        if self.stream is not None:
            self.stream.close()


class Listener:
    """The secondary's end: bound at once (peers that come before the loop runs wait in the backlog); each
    accepted connection is a :class:`Stream`, whose frames are answered on it."""

    def __init__(self, endpoint: str, max_frame: int = MAX_FRAME, max_unsent: int | None = None) -> None:
        self.family, addr = address(endpoint)
        self.max_frame, self.max_unsent = max_frame, max_unsent
        self.sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            if self.family == socket.AF_UNIX:
                path = Path(str(addr))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.unlink(missing_ok=True)  # a dead server's socket file (zmq's ipc bind did the same)
            else:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(addr)
            self.sock.listen(16)
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"cannot listen on {endpoint}: {exc}") from exc
        self.sock.setblocking(False)
        self.streams: list[Stream] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_frames: Callable[[], None] = lambda: None
        self._on_close: Callable[[Stream], None] = lambda stream: None

    def start(self, loop: asyncio.AbstractEventLoop, on_frames: Callable[[], None],
              on_close: Callable[[Stream], None]) -> None:
        self.loop, self._on_frames, self._on_close = loop, on_frames, on_close
        loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            while True:
                sock, _ = self.sock.accept()
                self.streams.append(Stream(sock, self.loop, self._on_frames, self._closed, self.max_frame,
                                           self.max_unsent))
        except OSError:  # BlockingIOError: none left; anything else: the peer gave up meanwhile
            pass

    def _closed(self, stream: Stream) -> None:
        self.streams.remove(stream)
        self._on_close(stream)

    def close(self) -> None:
        for stream in list(self.streams):
            stream.close()
        if self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
