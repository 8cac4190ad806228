"""The heartbeat protocol, "are you alive?": a ROUTER in the watchdog, a DEALER in every supervised process.

The watchdog sends ``{"op": "ping", "n": N, "epoch": E}`` to a process (addressed by its name) and expects
``{"op": "pong", "n": N, "pid": ..., "status": {...}}`` back. An asyncio process answers from its event loop,
so a stuck loop stops answering just like a stopped (SIGSTOP) or dead process. The watchdog also sends commands
(``{"op": "command", ...}``) the same way; a process answers them with ``{"op": "done", "n": N, ...}``.
Frames are msgpack maps; anything else is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

log = logging.getLogger("onitu.heartbeat")

ENV_ENDPOINT = "ONITU_WATCHDOG"
ENV_NAME = "ONITU_NAME"


def decode(frame: bytes) -> dict[str, Any] | None:
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception:  # hostile or corrupt frame: not a message
        return None
    return msg if isinstance(msg, dict) and isinstance(msg.get("op"), str) else None


class Responder:
    """The supervised side: answers pings (with ``status()``) and commands (with ``on_command(msg)``)."""

    def __init__(self, endpoint: str, name: str, status: Callable[[], dict[str, Any]],
                 on_command: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.status, self.on_command = status, on_command
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.identity = name.encode()
        self.sock.connect(endpoint)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_env(cls, status: Callable[[], dict[str, Any]],
                 on_command: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Responder | None:
        """The responder the watchdog asked for (through the environment), or None when not supervised."""
        endpoint, name = os.environ.get(ENV_ENDPOINT), os.environ.get(ENV_NAME)
        return cls(endpoint, name, status, on_command) if endpoint and name else None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer from this event loop: if the loop is stuck, the watchdog hears nothing."""
        self._loop = loop
        loop.add_reader(self.sock.getsockopt(zmq.FD), self.handle)
        loop.call_soon(self.handle)

    def handle(self) -> None:
        while self.sock.get(zmq.EVENTS) & zmq.POLLIN:
            msg = decode(self.sock.recv(zmq.NOBLOCK))
            if msg is None:
                continue
            if msg["op"] == "ping":
                self._send({"op": "pong", "n": msg.get("n"), "pid": os.getpid(), "status": self.status()})
            elif msg["op"] == "command" and self.on_command is not None:
                try:
                    result = self.on_command(msg)
                except Exception as exc:  # report the failure to the watchdog instead of dying
                    log.exception("watchdog command %s failed", msg.get("command"))
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                self._send({"op": "done", "n": msg.get("n"), **result})

    def _send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):  # watchdog away: it will ask again
            self.sock.send(msgpack.packb(msg), zmq.NOBLOCK)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.getsockopt(zmq.FD))
        self.sock.close(0)


class Liveness:
    """Heartbeats for a threaded process: answered from a thread of their own, but only while the work makes
    progress (:meth:`beat` called at least every ``patience`` seconds), so long work is not mistaken for a hang and
    a real hang still stops the answers."""

    def __init__(self, status: Callable[[], dict[str, Any]], patience: float = 30.0) -> None:
        self.patience = patience
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._responder = Responder.from_env(status)
        self._thread = threading.Thread(target=self._run, name="onitu-heartbeat", daemon=True)
        if self._responder is not None:
            self._thread.start()

    def beat(self) -> None:
        """The work is still moving."""
        self._last = time.monotonic()

    def _run(self) -> None:
        assert self._responder is not None
        sock = self._responder.sock
        while not self._stop.is_set():
            if not sock.poll(200):
                continue
            if time.monotonic() - self._last < self.patience:
                self._responder.handle()
            else:  # stuck: the ping goes unanswered and the watchdog restarts us
                with contextlib.suppress(zmq.Again):
                    sock.recv(zmq.NOBLOCK)

    def close(self) -> None:
        """Stop answering."""
        self._stop.set()
        if self._responder is not None:
            self._thread.join(timeout=1)
            self._responder.close()
