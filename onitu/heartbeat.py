"""The heartbeat protocol, "are you alive?": a ROUTER in the watchdog, a DEALER in every supervised process.

The watchdog sends ``{"op": "ping", "n": N, "epoch": E}`` to a process (addressed by its name) and expects
``{"op": "pong", "n": N, "pid": ..., "status": {...}}`` back. An asyncio process answers from its event loop,
so a stuck loop stops answering just like a stopped (SIGSTOP) or dead process. The watchdog also sends commands
(``{"op": "command", ...}``) the same way; a process answers them with ``{"op": "done", "n": N, ...}``.
Frames are msgpack maps; anything else is dropped and counted.

Before it kills a process that stopped answering, the watchdog sends it :data:`STACKS` (SIGUSR1): every thread's
stack goes to the process's stderr, its log under the watchdog, so a restart for a hang says where the process was.
``faulthandler`` writes them from the signal handler itself, without the GIL: a thread stuck in a C call that holds
the GIL (a huge sort, a garbage collection of millions of objects) shows too, which no Python-level handler could do.

A supervised process whose watchdog is gone (the watchdog and the launcher killed with SIGKILL: nobody will start
another watchdog to adopt it) hears no ping any more. After ``ONITU_ORPHAN_AFTER`` seconds of silence (the
watchdog's ``heartbeat.orphan``, many heartbeat periods) it stops itself with SIGTERM, as ``onitu stop`` would have,
instead of running forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import zmq

from onitu.runqueue import Starvation

log = logging.getLogger("onitu.heartbeat")

ENV_ENDPOINT = "ONITU_WATCHDOG"
ENV_NAME = "ONITU_NAME"
ENV_ORPHAN = "ONITU_ORPHAN_AFTER"
ORPHAN_LOOK_EVERY = 1.0
COVER_LOOK = 0.2  # seconds between the cover thread's looks at a loop waiting on the disk (see Responder.attach)
# Seconds one disk step may last while the cover still answers: a disk that the hub's own copies saturate stalls a
# commit for seconds, which is not a hang (and a failover would not help: the pair shares the disk), but a step
# this long is.
DISK_PATIENCE = 15.0
STACKS = signal.SIGUSR1  # the watchdog's "where are you stuck?" to a process it is about to kill


def show_stacks_on_request() -> None:
    """Write every thread's stack to stderr on :data:`STACKS` (see the module's docstring)."""
    with contextlib.suppress(AttributeError, ValueError, OSError, RuntimeError):  # no stderr file to write to
        faulthandler.register(STACKS, file=sys.stderr, all_threads=True)


def decode(frame: bytes) -> dict[str, Any] | None:
    try:
        msg = msgpack.unpackb(frame, raw=False)
    except Exception:  # hostile or corrupt frame: not a message
        return None
    return msg if isinstance(msg, dict) and isinstance(msg.get("op"), str) else None


class OrphanWatch:
    """A thread that stops this process (SIGTERM, then ``os._exit`` if that does not end it) once ``after``
    seconds pass without :meth:`heard` being called: its watchdog is gone for good."""

    def __init__(self, after: float, name: str) -> None:
        self.after, self.name = after, name
        self.last = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="onitu-orphan-watch", daemon=True).start()

    def heard(self) -> None:
        """A message came from the watchdog."""
        self.last = time.monotonic()

    def _run(self) -> None:
        terminated = None
        while not self._stop.wait(ORPHAN_LOOK_EVERY):
            now = time.monotonic()
            if now - self.last <= self.after:
                terminated = None  # a new watchdog adopted us while we were stopping: carry on
            elif terminated is None:
                log.warning("%s: no heartbeat from the watchdog for %.0f s; it is gone, so stopping",
                            self.name, now - self.last)
                terminated = now
                os.kill(os.getpid(), signal.SIGTERM)
            elif now - terminated > self.after:
                log.error("%s: still running %.0f s after SIGTERM with no watchdog; exiting", self.name,
                          now - terminated)
                os._exit(75)

    def close(self) -> None:
        self._stop.set()


class Responder:
    """The supervised side: answers pings (with ``status()``) and commands (with ``on_command(msg)``)."""

    def __init__(self, endpoint: str, name: str, status: Callable[[], dict[str, Any]],
                 on_command: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 orphan_after: float | None = None) -> None:
        self.status, self.on_command = status, on_command
        self.orphan = OrphanWatch(orphan_after, name) if orphan_after else None
        show_stacks_on_request()
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.identity = name.encode()
        self.sock.connect(endpoint)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()  # the socket, shared with the cover thread (see attach)
        self._closed = threading.Event()

    @classmethod
    def from_env(cls, status: Callable[[], dict[str, Any]],
                 on_command: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Responder | None:
        """The responder the watchdog asked for (through the environment), or None when not supervised."""
        endpoint, name = os.environ.get(ENV_ENDPOINT), os.environ.get(ENV_NAME)
        if not (endpoint and name):
            return None
        try:
            orphan_after = float(os.environ.get(ENV_ORPHAN, ""))
        except ValueError:
            orphan_after = None
        return cls(endpoint, name, status, on_command, orphan_after)

    def attach(self, loop: asyncio.AbstractEventLoop, on_disk: Callable[[], float | None] | None = None,
               patience: float = DISK_PATIENCE) -> None:
        """Answer from this event loop: if the loop is stuck, the watchdog hears nothing.

        With ``on_disk`` (the ``time.monotonic()`` at which the loop began waiting on one disk step, None when it is
        not waiting on the disk), a thread also answers pings while the loop waits on the disk in a call that
        releases the GIL, for up to ``patience`` seconds of that one step: past it, or stuck anywhere else, the
        answers stop as before. Commands always wait for the loop.
        """
        self._loop = loop
        loop.add_reader(self.sock.getsockopt(zmq.FD), self.handle)
        loop.call_soon(self.handle)
        if on_disk is not None:
            threading.Thread(target=self._cover, args=(on_disk, patience), name="onitu-heartbeat-cover",
                             daemon=True).start()

    def handle(self) -> None:
        with self._lock:
            self._answer(self._command)

    def _answer(self, command: Callable[[dict[str, Any]], None]) -> None:
        while not self._closed.is_set() and self.sock.get(zmq.EVENTS) & zmq.POLLIN:
            msg = decode(self.sock.recv(zmq.NOBLOCK))
            self.heard()
            if msg is None:
                continue
            if msg["op"] == "ping":
                self._send({"op": "pong", "n": msg.get("n"), "pid": os.getpid(), "status": self.status()})
            elif msg["op"] == "command" and self.on_command is not None:
                command(msg)

    def _command(self, msg: dict[str, Any]) -> None:
        """Carry out a watchdog's command (on the loop) and answer it."""
        assert self.on_command is not None
        try:
            result = self.on_command(msg)
        except Exception as exc:  # report the failure to the watchdog instead of dying
            log.exception("watchdog command %s failed", msg.get("command"))
            result = {"error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            if not self._closed.is_set():
                self._send({"op": "done", "n": msg.get("n"), **result})

    def _cover(self, on_disk: Callable[[], float | None], patience: float) -> None:
        """The cover thread (see attach). It reads the loop's state (``status()``) while the loop thread waits in
        SQLite, which touches none of it."""
        while not self._closed.wait(COVER_LOOK):
            since = on_disk()
            if since is not None and COVER_LOOK <= time.monotonic() - since < patience:
                with self._lock:
                    self._answer(self._command_later)

    def _command_later(self, msg: dict[str, Any]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the watchdog will ask the next process
            self._loop.call_soon_threadsafe(self._command, msg)

    def heard(self) -> None:
        """The watchdog is there (whatever it said)."""
        if self.orphan is not None:
            self.orphan.heard()

    def _send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):  # watchdog away: it will ask again
            self.sock.send(msgpack.packb(msg), zmq.NOBLOCK)

    def close(self) -> None:
        with self._lock:  # not while the cover thread uses the socket
            self._closed.set()
            if self._loop is not None:
                self._loop.remove_reader(self.sock.getsockopt(zmq.FD))
            if self.orphan is not None:
                self.orphan.close()
            self.sock.close(0)


class Liveness:
    """Heartbeats for a threaded process: answered from a thread of their own, but only while the work makes
    progress (:meth:`beat` called at least every ``patience`` seconds), so long work is not mistaken for a hang and
    a real hang still stops the answers."""

    def __init__(self, status: Callable[[], dict[str, Any]], patience: float = 30.0) -> None:
        """``patience``: seconds without a beat, not counting those the working thread (the one making this) spent
        waiting for a CPU (see :mod:`onitu.runqueue`), before the pings go unanswered."""
        self.patience = patience
        self._busy = 0
        self._last = self._seen = time.monotonic()
        self._starvation = Starvation.of_this_thread()
        self._stop = threading.Event()
        self._responder = Responder.from_env(status)
        self._thread = threading.Thread(target=self._run, name="onitu-heartbeat", daemon=True)
        if self._responder is not None:
            self._thread.start()

    def beat(self) -> None:
        """The work is still moving."""
        self._last = time.monotonic()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Answer throughout a long step that cannot beat as it goes (loading a million records in one request):
        one that stops moving fails by itself (the space client's own timeouts), and a process stuck in a C call
        that holds the GIL still cannot answer."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self.beat()

    def _run(self) -> None:
        assert self._responder is not None
        sock = self._responder.sock
        while not self._stop.is_set():
            if not sock.poll(200):
                continue
            if self._busy or self._age() < self.patience:
                self._responder.handle()
            else:  # stuck: the ping goes unanswered and the watchdog restarts us
                with contextlib.suppress(zmq.Again):
                    sock.recv(zmq.NOBLOCK)
                    self._responder.heard()

    def _age(self) -> float:
        """Seconds since the last beat that the working thread could have used."""
        last = self._last
        if last != self._seen:  # a beat since the last look: its waits for a CPU count from here
            self._seen = last
            self._starvation.mark()
        return time.monotonic() - last - self._starvation.since_mark()

    def close(self) -> None:
        """Stop answering."""
        self._stop.set()
        if self._responder is not None:
            self._thread.join(timeout=1)
            self._responder.close()
