"""``onitu worker``: takes make tasks from the space and runs their recipes, on this host or any other.

Each slot loops: wait for a task, claim it (one atomic batch takes the task and writes a session-leased
"working" tuple, so a worker that dies loses the claim with its session), run the recipe lines with
``/bin/sh -c`` in order, then swap "working" for "done" in one batch. A worker that sees the coordinator's build
directory (same file system) runs in place; otherwise it stages the inputs from the coordinator's file server into
a scratch directory, using its content-addressed cache so no input is fetched twice, and sends back what the
recipe produced. A build with no space of its own runs the same worker in the coordinator's process, on an
in-memory space (``local``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onitu.chunks import TransferError
from onitu.logs import lazy_logger
from onitu.make.execute import Reaper, Runner
from onitu.make.tasks import BUILD, TASK, WORKER, WORKING, BadTask, BuildInfo, Result, Task
from onitu.space.errors import KeyRevoked, RequestExpired, SpaceError

if TYPE_CHECKING:
    import argparse

    from onitu.make.files import BlobStore, FileClient

log = lazy_logger(__name__)
WORKER_TTL = 1.2  # a dead worker's claims vanish this long after its last keepalive: task re-run in < 2 s
ANY_TASK = (TASK, None, None, None)

class Worker:
    """Runs tasks on ``slots`` threads until :meth:`stop`."""

    def __init__(self, space: Any, *, slots: int = 1, cache: Path | None = None, local: bool = False,
                 claims: bool = True) -> None:
        """``space``: a space client (or a build's MemorySpace); ``local``: this worker runs in the process of
        the coordinator whose builds it serves (their directories are here, no reaper process is needed);
        ``claims``: write a claim on each task taken, so that its coordinator can tell a task under way from a task
        lost with its worker (only a space in memory, which no other coordinator reaches, goes without)."""
        self.space, self.slots, self.local, self.claims = space, slots, local, claims
        self.id = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(2).hex()}"
        self._cache = cache
        self._blobs: BlobStore | None = None
        self._stop = threading.Event()
        self._abort = False
        self.revoked: KeyRevoked | None = None  # the space no longer takes our key: we stop for good
        self._builds: dict[str, tuple[BuildInfo, bool]] = {}
        self._local = threading.local()
        self._waits: set[Any] = set()  # the slots' blocked takes, withdrawn by stop (a WaitingRequest each)
        self._waits_lock = threading.Lock()
        self.runner = Runner(None if local else Reaper())
        space.on_refused = self._refused

    def run(self) -> None:
        """Register, serve tasks on every slot, and return once stopped (after finishing the tasks under way)."""
        try:
            self.space.write((WORKER, self.id, {"host": os.uname().nodename, "slots": self.slots,
                                                "pid": os.getpid()}), "session")
        except SpaceError as exc:  # the space closed before we could register (a build over at once)
            log.info("worker %s: not registered: %s", self.id, exc)
            return
        threads = [threading.Thread(target=self._slot, name=f"slot-{i}", daemon=True) for i in range(self.slots)]
        for t in threads:
            t.start()
        self._stop.wait()
        if not self._abort:  # graceful: the tasks under way finish and report
            for t in threads:
                t.join()
        if self.runner.reaper is not None:
            self.runner.reaper.close()

    def _refused(self, exc: Exception) -> None:
        """Our key was revoked: asking again would get the same answer, so the recipes under way are killed and
        their tasks go back to the queue (the server ended our session, and with it our claims)."""
        if isinstance(exc, KeyRevoked) and self.revoked is None:
            self.revoked = exc
            log.error("worker %s: %s; stopping", self.id, exc)
            self.stop(abort=True)

    def stop(self, abort: bool = False) -> None:
        """Take no more tasks; with ``abort``, also kill the recipes under way (their tasks will be re-run). The
        slots' blocked takes are withdrawn, so that they return at once (see :meth:`run`)."""
        self._abort = self._abort or abort
        self._stop.set()
        if abort:
            self.runner.kill_all()
        with self._waits_lock:
            waits = list(self._waits)
        for wait in waits:
            with contextlib.suppress(SpaceError):
                wait.cancel()

    def _take_waiting(self) -> tuple:
        """A task, waiting up to a second for one; a wait :meth:`stop` can withdraw (a space client's sockets must
        not be closed while a slot's thread still waits on one: libzmq aborts)."""
        registered: list[Any] = []

        def on_wait(wait: Any) -> None:
            registered.append(wait)
            with self._waits_lock:
                self._waits.add(wait)
            if self._stop.is_set():  # stopped between the check in _slot and this request
                wait.cancel()

        try:
            return self.space.take(ANY_TASK, timeout=1.0, on_wait=on_wait)
        finally:
            with self._waits_lock:
                self._waits.difference_update(registered)

    # ---- one slot ---------------------------------------------------------------------------------------------

    def _slot(self) -> None:
        report: tuple | None = None  # (claim, done tuple) of the last task, not sent yet
        while not self._stop.is_set():
            try:
                if not self.claims:
                    self._one_here()
                    continue
                report = self._one(report)
            except Exception as exc:
                if self._stop.is_set():  # an abort closes the client under our feet
                    return
                if not isinstance(exc, SpaceError):
                    raise
                if isinstance(exc, KeyRevoked):
                    self._refused(exc)
                    return
                log.warning("worker %s: space error: %s", self.id, exc)
                self._stop.wait(1.0)
        if report is not None:
            with contextlib.suppress(SpaceError):
                self._report(report, None)

    def _one_here(self) -> None:
        """A worker of a build in memory: no claim (it cannot die without the coordinator, and no coordinator of
        a sub-make looks for its tasks), one take and one write per task."""
        try:
            task = self._parse(self.space.take(ANY_TASK, timeout=1.0))
        except RequestExpired:
            return
        if task is not None:
            self.space.write(self._execute(task).tuple(task.build, task.target, memory=True))

    def _one(self, report: tuple | None) -> tuple | None:
        """Run one task; return what to report. While tasks keep coming, a result is sent in the same round trip
        as the claim on the next task: two round trips per task instead of three."""
        if report is not None:
            try:
                tup = self.space.take(ANY_TASK, timeout=0)
            except RequestExpired:
                tup = None
            task = self._parse(tup)
            claim = (WORKING, task.build, task.target, self.id) if task else None
            self._report(report, claim)
        else:
            try:
                task = self._parse(self._take_waiting())
            except RequestExpired:
                return None
            claim = (WORKING, task.build, task.target, self.id) if task else None
            if claim:  # between the take and the claim the task is nowhere: the coordinator allows for that
                self.space.write(claim, "session")
        if task is None or claim is None:
            return None
        return claim, self._execute(task).tuple(task.build, task.target)

    def _parse(self, tup: tuple | None) -> Task | None:
        if tup is None:
            return None
        try:
            return Task.from_tuple(tup)
        except BadTask as exc:  # not ours to run: dropped, or it would block the queue
            log.warning("worker %s: dropped a malformed task: %s", self.id, exc)
            return None

    def _report(self, report: tuple, next_claim: tuple | None) -> None:
        claim, done = report
        swap = [("take", claim), ("write", done)]
        try:
            self.space.batch([*swap, ("write", next_claim, "session")] if next_claim else swap)
            return
        except RequestExpired:  # our claim expired (we were too slow to renew it): the coordinator re-queued the task
            log.warning("worker %s: claim on %s expired; result dropped", self.id, claim[2])
        if next_claim:
            self.space.write(next_claim, "session")

    def _execute(self, task: Task) -> Result:
        try:
            info, in_place = self._build(task)
            if in_place:
                return self._run(task, Path(info.dir), info.env, [])
            return self._remote(task, info)
        except (TransferError, BadTask, OSError, RequestExpired) as exc:
            log.warning("worker %s: cannot run %s: %s", self.id, task.target, exc)
            return Result(127, [], [], self.id, f"worker {self.id} could not run {task.target!r}: {exc}")

    def _build(self, task: Task) -> tuple[BuildInfo, bool]:
        """The build's facts (read again when a new coordinator run queued the task), and whether its directory is on
        this host's file system."""
        build = task.build
        known = self._builds.get(build)
        if known is None or known[0].run != task.run:
            info = BuildInfo.from_tuple(self.space.read((BUILD, build, None), timeout=10.0))
            try:
                in_place = self.local or Path(info.token_path).read_text() == info.token
            except OSError:
                in_place = False
            if not in_place and info.files is None:
                raise TransferError(f"build directory {info.dir} is not on this host and its coordinator serves no "
                                    "files")
            known = self._builds[build] = (info, in_place)
            log.info("worker %s: build %s in %s, %s", self.id, build, info.dir, "in place" if in_place else "remote")
        return known

    def _run(self, task: Task, cwd: Path, env: dict[str, str], outputs: list) -> Result:
        status, steps = self.runner.run(task.steps, cwd, env, task.program, task.shell)
        return Result(status, steps, outputs, self.id)

    # ---- another host: stage, run in a scratch directory, send back what changed --------------------------------

    @property
    def cache(self) -> Path:
        """Where fetched inputs and scratch directories go (remote builds only)."""
        if self._cache is None:
            import tempfile

            self._cache = Path(tempfile.gettempdir()) / f"onitu-worker-{os.getuid()}"
        return self._cache

    @property
    def blobs(self) -> BlobStore:
        """The cache of fetched inputs and produced outputs (remote builds only)."""
        if self._blobs is None:
            from onitu.make.files import BlobStore

            self._blobs = BlobStore(self.cache / "blobs")
        return self._blobs

    def _files(self, info: BuildInfo) -> FileClient:
        from onitu.make.files import FileClient

        clients = self._local.__dict__.setdefault("files", {})
        client = clients.get(info.build)
        if client is None or client.endpoint != info.files:
            if client is not None:
                client.close()
            assert info.files and info.files_key and info.secret
            client = clients[info.build] = FileClient(info.files, info.files_key, info.secret)
        return client

    def _remote(self, task: Task, info: BuildInfo) -> Result:
        files = self._files(info)
        blobs = self.blobs  # creates the cache directory
        import shutil
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="task-", dir=blobs.root.parent))
        try:
            self._stage(task, files, scratch)
            before = _snapshot(scratch)
            env = {**os.environ, **info.exports}
            result = self._run(task, scratch, env, [])
            for rel, (size, mtime, mode) in _snapshot(scratch).items():
                if before.get(rel) != (size, mtime, mode):
                    sha = self.blobs.add_file(scratch / rel)
                    result.outputs.append((rel, sha, mode))
            missing = files.call("has", [sha for _, sha, _ in result.outputs])
            for (_rel, sha, _mode), there in zip(result.outputs, missing, strict=True):
                if not there:
                    files.upload(self.blobs.path(sha), sha)
            return result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _stage(self, task: Task, files: FileClient, scratch: Path) -> None:
        from onitu.make.files import place, relative

        paths = [relative(p) for p in task.inputs]
        for rel, meta in zip(paths, files.call("meta", paths), strict=True):
            if meta is None:  # a phony prerequisite, or a file the recipe will make
                continue
            sha, mode = meta[0], meta[1]
            if not self.blobs.has(sha):
                files.fetch(sha, self.blobs)
            place(self.blobs.path(sha), scratch / rel, mode)


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every regular file under ``root``: (size, mtime_ns, mode), by path relative to root."""
    found = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath, name)
            st = full.lstat()
            if stat.S_ISREG(st.st_mode):
                found[str(full.relative_to(root))] = (st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return found


def _worker_parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(prog="onitu worker", description="Run make tasks from the space until stopped: "
                                "SIGTERM finishes the tasks under way first, SIGINT kills them (they are re-run).")
    p.add_argument("--space", help="endpoint(s) of the space (default: $ONITU_SPACE, the local one, or discovery)")
    p.add_argument("--slots", type=int, default=1, help="tasks run at once (default 1)")
    p.add_argument("--data", type=Path, help="data directory, for keys (default: $ONITU_DATA)")
    p.add_argument("--insecure", action="store_true", help="plain tcp:// to a server run with --insecure-loopback")
    p.add_argument("--cache", type=Path, help="where fetched inputs are cached (default: in the temp dir)")
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # a coordinator's local worker dies with it
    return p


def worker_main(argv: list[str]) -> int:
    """Entry point of ``onitu worker``."""
    import signal  # here, as in _watch_parent: onitu make loads this module, and signal costs it at every start

    from onitu.space.connect import connect

    args = _worker_parser().parse_args(argv)
    if args.slots < 1:
        print("onitu worker: --slots must be at least 1", file=sys.stderr)
        return 2
    if args.parent:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    try:
        client = connect(args.space, data_dir=args.data, insecure=args.insecure, session_ttl=WORKER_TTL)
    except SpaceError as exc:
        print(f"onitu worker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    worker = Worker(client, slots=args.slots, cache=args.cache)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop(abort=True))
    try:
        worker.run()
    finally:
        with contextlib.suppress(SpaceError):
            client.close()
    if worker.revoked is not None:
        print(f"onitu worker: stopped: {worker.revoked}", file=sys.stderr)
        return 1
    return 0


def _watch_parent(parent: int) -> None:
    """A coordinator's worker dies with it: SIGINT to itself, which kills the recipes under way."""
    import signal

    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGINT)
