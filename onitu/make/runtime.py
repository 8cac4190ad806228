"""Where a build runs: the space it uses (a running one, or one embedded in the driver) and local workers."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from onitu.make.tasks import WORKER
from onitu.space import SpaceError, Unavailable
from onitu.space.client import SpaceClient, read_info
from onitu.space.connect import connect

log = logging.getLogger(__name__)


MAX_RESPAWNS = 20
RIDE_OUT = 30.0  # seconds a build waits for an answer from its space (a restart, a failover) before giving up


class BuildLocked(Exception):
    """Another driver is running the same build."""


class WorkersFailing(Exception):
    """The driver's local workers die over and over (a broken environment, not a killed worker)."""


def embedded_endpoint(build: str) -> str:
    # a short socket path: ipc paths are limited to ~100 bytes
    return f"ipc://{tempfile.gettempdir()}/onitu-make-{os.getuid()}-{build[:12]}.sock"


def will_embed(space: str | None, data: Path) -> bool:
    """Whether the driver will serve its own space (none named, none running here)."""
    return not (space or os.environ.get("ONITU_SPACE") or read_info(data))


def fork_worker(endpoint: str, slots: int) -> int:
    """Start a local worker by forking this process: no interpreter start-up, so a small build starts at once.

    Only safe before this process starts threads or ZeroMQ contexts; later workers are started with exec.
    """
    from onitu.make import worker  # noqa: F401 -- imported once, before the fork, for both processes
    from onitu.make.cli import worker_main

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = worker_main(["--space", endpoint, "--slots", str(slots), "--parent", str(os.getppid())])
        finally:
            os._exit(code)
    return pid


class LocalWorker:
    """A worker process this driver started (forked or exec'd)."""

    def __init__(self, pid: int, proc: subprocess.Popen | None = None) -> None:
        self.pid, self.proc = pid, proc
        self.status: int | None = None

    def alive(self) -> bool:
        if self.status is None:
            if self.proc is not None:
                self.status = self.proc.poll()
            else:
                with contextlib.suppress(ChildProcessError):
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                    if pid:
                        self.status = os.waitstatus_to_exitcode(status)
        return self.status is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive():
            self.signal(signal.SIGKILL)
            while self.alive():
                time.sleep(0.01)


class EmbeddedSpace:
    """A space served from a thread of the driver, for builds with no space running: local workers only."""

    def __init__(self, state_dir: Path, build: str) -> None:
        from onitu.space.server import SpaceServer

        self.endpoint = embedded_endpoint(build)
        self.server = SpaceServer(state_dir, [self.endpoint])
        self.server.bind()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onitu-make-space", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._ready.set)
            await self.server.serve()

        asyncio.run(main())

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.server.stop)
        self._thread.join(timeout=5)


class Runtime:
    """The space and workers of one build; a context manager that releases all of it."""

    def __init__(self, build: str, state_dir: Path, *, space: str | None, data_dir: Path | None,
                 insecure: bool, forked: tuple[int, int] | None = None) -> None:
        """``forked``: (pid, slots) of a worker forked already for the embedded space (see :func:`fork_worker`)."""
        self.build, self.state_dir = build, state_dir
        self.workers = [LocalWorker(forked[0])] if forked else []
        self._worker_args: list[str] = []
        if forked:
            self._worker_args = self._args(embedded_endpoint(build), forked[1])
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = _lock(state_dir / "lock")
        except BuildLocked:
            self._stop_workers()
            raise
        self.embedded: EmbeddedSpace | None = None
        self._respawns = 0
        self.client = self._connect(space, data_dir, insecure)

    def _connect(self, space: str | None, data_dir: Path | None, insecure: bool) -> SpaceClient:
        """A given or running space if there is one; else an embedded one (no LAN discovery from a driver)."""
        from onitu import paths

        data = data_dir or paths.data_dir()
        if space or os.environ.get("ONITU_SPACE") or read_info(data):
            try:
                client = connect(space, data_dir=data, insecure=insecure, connect_timeout=3.0)
            except Unavailable:
                if space or os.environ.get("ONITU_SPACE"):
                    raise
                log.info("the space recorded in %s does not answer; using an embedded one", data)
            else:
                # 3 s to find out whether a recorded space is there at all; once found, a build rides out its
                # restarts and failovers, which take longer than that on a loaded machine
                client.connect_timeout = RIDE_OUT
                return client
        self.embedded = EmbeddedSpace(self.state_dir / "space", self.build)
        return connect(self.embedded.endpoint, connect_timeout=5.0)

    @property
    def endpoints(self) -> list[str]:
        return list(self.client.core.endpoints)

    def worker_slots(self) -> int:
        """Slots of the workers registered in the space, ours included."""
        return sum(w[2].get("slots", 1) for w in self.client.read_all((WORKER, None, None))
                   if isinstance(w[2], dict) and isinstance(w[2].get("slots", 1), int))

    def start_workers(self, slots: int) -> None:
        """One local worker process with ``slots`` slots, tied to this driver's life (unless one was forked)."""
        if self.workers:
            return
        endpoint = self.embedded.endpoint if self.embedded else ",".join(self.endpoints)
        self._worker_args = self._args(endpoint, slots)
        self._spawn()

    @staticmethod
    def _args(endpoint: str, slots: int) -> list[str]:
        return [sys.executable, "-m", "onitu.entry", "worker", "--space", endpoint, "--slots", str(slots),
                "--parent", str(os.getpid())]

    def _spawn(self) -> None:
        proc = subprocess.Popen(self._worker_args, stdin=subprocess.DEVNULL)
        self.workers.append(LocalWorker(proc.pid, proc))

    def check_workers(self) -> None:
        """Replace a local worker that died (it was killed: its task is re-queued by the driver)."""
        for worker in list(self.workers):
            if not worker.alive():
                log.warning("local worker %d exited with %s; starting another", worker.pid, worker.status)
                self.workers.remove(worker)
                self._respawns += 1
                if self._respawns > MAX_RESPAWNS:
                    raise WorkersFailing(f"local workers keep dying ({self._respawns} restarts); giving up")
                self._spawn()

    def _stop_workers(self) -> None:
        for worker in self.workers:  # SIGINT: an interrupted build kills its recipes, as make does
            worker.signal(signal.SIGINT)
        for worker in self.workers:
            worker.wait(5)

    def close(self) -> None:
        self._stop_workers()
        with contextlib.suppress(SpaceError):
            self.client.close()
        if self.embedded is not None:
            self.embedded.close()
        self._lock.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(path: Path) -> IO:
    f = open(path, "a+")  # noqa: SIM115 -- held for the driver's life
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise BuildLocked(f"another onitu make is running this build (lock {path})") from None
    return f
