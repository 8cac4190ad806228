"""The server's end of local clients' stream sockets: one :class:`~onitu.space.wire.Listener` beside each plain
``ipc://`` endpoint it serves (see :mod:`onitu.space.unixconn` for why, and for the client's end).

A request that arrives on a stream is handled as one from zmq: its route's socket is the stream (replies are
queued there), its identity empty, its client key LOCAL (a Unix socket is reached through the file system, as
the ``ipc://`` endpoint beside it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from onitu.space.endpoints import ConfigError
from onitu.space.unixconn import stream_path
from onitu.space.wire import Listener, Stream

log = logging.getLogger("onitu.space.server")

MAX_UNSENT = 64 << 20  # bytes of replies and events waiting for a client that reads nothing before it is cut off
Handler = Callable[[Stream, list[bytes]], None]  # (stream, [identity, frame]) as a zmq ROUTER gives them


class LocalStreams:
    """The stream listeners of one server, and the requests waiting on their connections."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.listeners: list[Listener] = []
        self.paths: list[Path] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_frames: Callable[[], None] = lambda: None

    def listen(self, endpoint: str) -> None:
        """Listen beside ``endpoint`` if it is a local one whose path leaves room for the suffix."""
        path = stream_path(endpoint)
        if path is None:
            if endpoint.startswith("ipc://"):
                log.info("no stream socket beside %s (its path is too long): local clients use zmq", endpoint)
            return
        try:
            listener = Listener(f"ipc://{path}", self.max_frame, MAX_UNSENT)
        except ConfigError as exc:
            log.warning("%s: local clients use zmq", exc)
            return
        self.listeners.append(listener)
        self.paths.append(Path(path))
        if self.loop is not None:
            listener.start(self.loop, self._on_frames, _closed)

    def start(self, loop: asyncio.AbstractEventLoop, on_frames: Callable[[], None]) -> None:
        self.loop, self._on_frames = loop, on_frames
        for listener in self.listeners:
            listener.start(loop, on_frames, _closed)

    def receive(self, handle: Handler, budget: int) -> None:
        """Hand up to ``budget`` waiting requests to ``handle``, connection by connection."""
        n = 0
        for listener in self.listeners:
            for stream in list(listener.streams):
                inbox = stream.inbox
                while inbox and n < budget:
                    n += 1
                    handle(stream, [b"", inbox.popleft()])

    def waiting(self) -> bool:
        """Is a request left (a turn stopped at its budget)?"""
        return any(stream.inbox for listener in self.listeners for stream in listener.streams)

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.listeners.clear()
        self.paths.clear()


def _closed(stream: Stream) -> None:
    """A client hung up, or was cut off: its held requests stay routed to the stream until it asks again (it does
    once it reconnects, see onitu.space.unixconn)."""
    if stream.cut:
        log.warning("a local client read nothing while %d MiB waited for it: its connection is cut (it resumes "
                    "once it reads again)", MAX_UNSENT >> 20)
