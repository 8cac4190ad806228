"""Where a build runs: the space it uses and its local workers.

Three cases, picked once per ``onitu make`` run:

- **shared**: a space was named (``--space``, ``$ONITU_SPACE``) or one runs here: tasks go there, to whatever
  workers serve it; with none registered, local workers are started for it.
- **memory**: no space and no recipe names ``$(MAKE)``: an in-process space in memory and worker threads in this
  process (nothing to start, serialize or store: a small build costs little more than GNU make's).
- **served**: no space, but sub-makes will want to join this build: a space served from a thread of this process
  on a local socket, and a local worker process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from onitu.logs import lazy_logger
from onitu.make.tasks import WORKER

if TYPE_CHECKING:
    import subprocess

log = lazy_logger(__name__)

MAX_RESPAWNS = 20
RIDE_OUT = 30.0  # seconds a build waits for an answer from its space (a restart, a failover) before giving up


class BuildLocked(Exception):
    """Another coordinator is running the same build."""


class WorkersFailing(Exception):
    """The coordinator's local workers die over and over (a broken environment, not a killed worker)."""


def embedded_endpoint(build: str) -> str:
    # a short socket path: ipc paths are limited to ~100 bytes
    import tempfile

    return f"ipc://{tempfile.gettempdir()}/onitu-make-{os.getuid()}-{build[:12]}.sock"


def space_runs_here(data: Path | None) -> bool:
    """Does a space server publish its endpoints in the data directory (``space.json``)?"""
    from onitu import paths

    path = (data or paths.data_dir()) / "space.json"
    if not path.is_file():  # the common case, answered without loading the space client
        return False
    from onitu.space.connect import read_info

    return read_info(path.parent) is not None


class LocalWorker:
    """A worker process this coordinator started."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """SIGINT: the worker kills the recipes under way and exits."""
        import signal  # here: a build in memory starts no worker process

        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float) -> None:
        import subprocess

        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EmbeddedSpace:
    """A space served from a thread of the coordinator on a local socket (for sub-makes and a worker process)."""

    def __init__(self, state_dir: Path, build: str) -> None:
        from onitu.space.server import SpaceServer

        self.endpoint = embedded_endpoint(build)
        self.server = SpaceServer(state_dir, [self.endpoint])
        self.server.bind()
        self._loop: Any = None  # its asyncio loop, once serving
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onitu-make-space", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _serve(self) -> None:
        import asyncio

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
    """The space and workers of one ``onitu make`` run; a context manager that releases all of it."""

    def __init__(self, build: Callable[[], str], *, space: str | None, data_dir: Path | None, insecure: bool,
                 recursive: bool, sub_make: Any = None) -> None:
        """``build`` names the build when it needs a name on disk (a space of its own in memory needs none);
        ``recursive``: some recipe names $(MAKE) (sub-makes must reach the space); ``sub_make``: the jobserver
        address of the make that started this one (its space is used, its workers run the tasks)."""
        self._build, self.data_dir = build, data_dir
        self.workers: list[LocalWorker] = []
        self.threads: list[tuple[Any, threading.Thread]] = []
        self.embedded: EmbeddedSpace | None = None
        self.kind = "shared"
        self.insecure = insecure
        self._respawns = 0
        self._lock: IO | None = None
        self._worker_args: list[str] = []
        if sub_make is not None:
            self.client = self._connect(sub_make.endpoints, data_dir, sub_make.insecure)
            return
        named = bool(space or os.environ.get("ONITU_SPACE"))
        if not named and not space_runs_here(data_dir):
            self._own(recursive)
            return
        try:
            self._take_lock()
            self.client = self._connect(space, data_dir, insecure)
        except Exception as exc:
            from onitu.space.errors import Unavailable

            if named or not isinstance(exc, Unavailable):
                self.close()
                raise
            log.info("the space recorded in the data directory does not answer; the build brings its own")
            self._own(recursive)

    @property
    def state_dir(self) -> Path:
        """Where this build keeps what must survive the coordinator (its own space, the same-host token)."""
        from onitu import paths

        return (self.data_dir or paths.data_dir()) / "make" / self._build()

    def _own(self, recursive: bool) -> None:
        """No space to join: one in memory, or served on a local socket when sub-makes must reach it."""
        if not recursive:
            from onitu.make.memory import MemorySpace

            self.kind, self.client = "memory", MemorySpace()
            return
        self.kind = "served"
        if self._lock is None:
            self._take_lock()
        self.embedded = EmbeddedSpace(self.state_dir / "space", self._build())
        self.client = self._connect([self.embedded.endpoint], None, False)

    def _take_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.state_dir / "lock")

    @staticmethod
    def _connect(endpoint: Any, data: Path | None, insecure: bool) -> Any:
        from onitu.space.connect import connect

        client = connect(endpoint, data_dir=data or _data_dir(), insecure=insecure, connect_timeout=5.0)
        # 5 s to find out whether a space is there at all; once found, a build rides out its restarts and
        # failovers, which take longer than that on a loaded machine
        client.connect_timeout = RIDE_OUT
        return client

    @property
    def embedded_space(self) -> bool:
        """The build brings its own space (memory or served): its workers are ours."""
        return self.kind != "shared"

    @property
    def endpoints(self) -> list[str]:
        return [] if self.kind == "memory" else list(self.client.core.endpoints)

    def worker_slots(self) -> int:
        """Slots of the workers registered in the space, ours included."""
        return sum(w[2].get("slots", 1) for w in self.client.read_all((WORKER, None, None))
                   if isinstance(w[2], dict) and isinstance(w[2].get("slots", 1), int))

    def start_workers(self, slots: int) -> None:
        """Local workers with ``slots`` slots in all: threads of this process when the space is the build's own
        (in memory, or served here: a client of its own on the local socket), else one process tied to our life
        (a shared space: its worker registers like any other, and may be killed and replaced)."""
        if self.workers or self.threads:
            return
        if self.kind != "shared":
            from onitu.make.worker import Worker

            client = self.client if self.kind == "memory" else self._connect(self.endpoints, None, False)
            # served: sub-makes' coordinators look for their tasks' claims, as the top one does
            worker = Worker(client, slots=slots, local=True, claims=self.kind != "memory")
            thread = threading.Thread(target=worker.run, name="onitu-make-worker", daemon=True)
            thread.start()
            self.threads.append((worker, thread))
            return
        endpoint = self.embedded.endpoint if self.embedded else ",".join(self.endpoints)
        self._worker_args = [sys.executable, "-m", "onitu.entry", "worker", "--space", endpoint, "--slots",
                             str(slots), "--parent", str(os.getpid()), *(["--insecure"] if self.insecure else [])]
        self._spawn()

    def _spawn(self) -> None:
        import subprocess  # here: a build in memory starts no worker process

        proc = subprocess.Popen(self._worker_args, stdin=subprocess.DEVNULL)
        self.workers.append(LocalWorker(proc))

    def check_workers(self) -> None:
        """Replace a local worker process that died (it was killed: its task is re-queued by the coordinator)."""
        for worker in list(self.workers):
            if not worker.alive():
                log.warning("local worker %d exited with %s; starting another", worker.pid, worker.proc.returncode)
                self.workers.remove(worker)
                self._respawns += 1
                if self._respawns > MAX_RESPAWNS:
                    raise WorkersFailing(f"local workers keep dying ({self._respawns} restarts); giving up")
                self._spawn()

    def interrupt(self) -> None:
        """Kill the recipes our local workers run (an interrupted build)."""
        for worker, _ in self.threads:
            worker.stop(abort=True)
        for proc in self.workers:
            proc.interrupt()

    def _stop_workers(self) -> None:
        for worker, thread in self.threads:
            worker.stop()
            if worker.space is not self.client:  # its own client of the served space
                # its slots' threads are done with the client's sockets first: libzmq aborts the process when a
                # socket is closed while another thread waits on it (their blocked takes are withdrawn by stop, and
                # a slot that just ran the last task finishes sending its result)
                thread.join(timeout=5)
                with contextlib.suppress(Exception):
                    worker.space.close()
        for proc in self.workers:  # SIGINT: an interrupted build kills its recipes, as make does
            proc.interrupt()
        for proc in self.workers:
            proc.wait(5)

    def close(self) -> None:
        self._stop_workers()
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self.embedded is not None:
            self.embedded.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _data_dir() -> Path:
    from onitu import paths

    return paths.data_dir()


def _lock(path: Path) -> IO:
    f = open(path, "a+")  # noqa: SIM115 -- held for the coordinator's life
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise BuildLocked(f"another onitu make is running this build (lock {path})") from None
    return f
