"""``onitu worker``: takes make tasks from the space and runs their recipes, on this host or any other.

Each slot loops: wait for a task, claim it (one atomic batch takes the task and writes a session-leased
"working" tuple, so a worker that dies loses the claim with its session), run the recipe lines with
``/bin/sh -c`` in order, then swap "working" for "done" in one batch. A worker that sees the driver's build
directory (same file system) runs in place; otherwise it stages the inputs from the driver's file server into a
scratch directory, using its content-addressed cache so no input is fetched twice, and sends back what the recipe
produced.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from onitu.make.files import BlobStore, FileClient, TransferError, place, relative
from onitu.make.tasks import BUILD, TASK, WORKER, WORKING, BadTask, BuildInfo, Result, StepResult, Task
from onitu.space import RequestExpired, SpaceError
from onitu.space.client import SpaceClient
from onitu.space.errors import KeyRevoked

log = logging.getLogger(__name__)
ANY_TASK = (TASK, None, None, None)

# The guard outlives a worker killed with SIGKILL and kills the process groups of the recipes it was running, so
# a re-run elsewhere never races a leftover. (A preexec_fn setting PR_SET_PDEATHSIG would cost a full fork per
# recipe, 1.3 ms here, and would not reach the shell's children.)
_GUARD = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
live = set()
for line in sys.stdin:
    (live.add if line[0] == "+" else live.discard)(int(line[1:]))
for pgid in live:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Guard:
    """Kills the recipes still running when the worker dies (a separate tiny process in its own session)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _GUARD], stdin=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lock = threading.Lock()
        self.live: set[int] = set()

    def _tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()

    def add(self, pgid: int) -> None:
        self.live.add(pgid)
        self._tell(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self.live.discard(pgid)
        self._tell(f"-{pgid}\n")

    def kill_all(self) -> None:
        for pgid in list(self.live):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)

    def close(self) -> None:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.close()
        self.proc.wait()


class Worker:
    """Runs tasks on ``slots`` threads until :meth:`stop`."""

    def __init__(self, space: SpaceClient, *, slots: int = 1, cache: Path | None = None) -> None:
        self.space, self.slots = space, slots
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.cache = cache or Path(tempfile.gettempdir()) / f"onitu-worker-{os.getuid()}"
        self.blobs = BlobStore(self.cache / "blobs")
        self._stop = threading.Event()
        self._abort = False
        self.revoked: KeyRevoked | None = None  # the space no longer takes our key: we stop for good
        self._builds: dict[str, tuple[BuildInfo, bool]] = {}
        self._local = threading.local()
        self.guard = Guard()
        space.on_refused = self._refused

    def run(self) -> None:
        """Register, serve tasks on every slot, and return once stopped (after finishing the tasks under way)."""
        self.space.write((WORKER, self.id, {"host": socket.gethostname(), "slots": self.slots, "pid": os.getpid()}),
                         "session")
        threads = [threading.Thread(target=self._slot, name=f"slot-{i}", daemon=True) for i in range(self.slots)]
        for t in threads:
            t.start()
        self._stop.wait()
        if not self._abort:  # graceful: the tasks under way finish and report
            for t in threads:
                t.join()
        self.guard.close()

    def _refused(self, exc: Exception) -> None:
        """Our key was revoked: asking again would get the same answer, so the recipes under way are killed and
        their tasks go back to the queue (the server ended our session, and with it our claims)."""
        if isinstance(exc, KeyRevoked) and self.revoked is None:
            self.revoked = exc
            log.error("worker %s: %s; stopping", self.id, exc)
            self.stop(abort=True)

    def stop(self, abort: bool = False) -> None:
        """Take no more tasks; with ``abort``, also kill the recipes under way (their tasks will be re-run)."""
        self._abort = self._abort or abort
        self._stop.set()
        if abort:
            self.guard.kill_all()

    # ---- one slot ---------------------------------------------------------------------------------------------

    def _slot(self) -> None:
        report: tuple | None = None  # (claim, done tuple) of the last task, not sent yet
        while not self._stop.is_set():
            try:
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
                task = self._parse(self.space.take(ANY_TASK, timeout=1.0))
            except RequestExpired:
                return None
            claim = (WORKING, task.build, task.target, self.id) if task else None
            if claim:  # between the take and the claim the task is nowhere: the driver allows for that
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
        except RequestExpired:  # our claim expired (we were too slow to renew it): the driver re-queued the task
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
        """The build's facts (read again when a new driver run queued the task), and whether its directory is on
        this host's file system."""
        build = task.build
        known = self._builds.get(build)
        if known is None or known[0].run != task.run:
            info = BuildInfo.from_tuple(self.space.read((BUILD, build, None), timeout=10.0))
            try:
                in_place = Path(info.token_path).read_text() == info.token
            except OSError:
                in_place = False
            if not in_place and info.files is None:
                raise TransferError(f"build directory {info.dir} is not on this host and the driver serves no files")
            known = self._builds[build] = (info, in_place)
            log.info("worker %s: build %s in %s, %s", self.id, build, info.dir, "in place" if in_place else "remote")
        return known

    def _run(self, task: Task, cwd: Path, env: dict[str, str], outputs: list) -> Result:
        steps: list[StepResult] = []
        status = 0
        for step in task.steps:
            out_fd, err_fd = self._capture()
            argv = direct_argv(step.text)
            try:
                proc = _spawn(argv, step.text, cwd, env, out_fd, err_fd)
            except OSError as exc:  # only a direct exec gets here: report it as the shell would have
                steps.append(StepResult(127, b"", f"{argv[0] if argv else 'sh'}: {exc.strerror}\n".encode()))
                if not step.ignore:
                    status = 127
                    break
                continue
            self.guard.add(proc.pid)
            try:
                proc.wait()
            finally:
                self.guard.remove(proc.pid)
            out, err = _drain(out_fd), _drain(err_fd)
            code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
            steps.append(StepResult(code, out, err))
            if code and not step.ignore:
                status = code
                break
        return Result(status, steps, outputs, self.id)

    def _capture(self) -> tuple[int, int]:
        """This slot's two in-memory files for a recipe's stdout and stderr (cheaper than pipes, and a recipe
        that leaves a background child holding them open cannot hang the worker)."""
        fds = getattr(self._local, "fds", None)
        if fds is None:
            fds = self._local.fds = (os.memfd_create("stdout"), os.memfd_create("stderr"))
        return fds

    # ---- another host: stage, run in a scratch directory, send back what changed --------------------------------

    def _files(self, info: BuildInfo) -> FileClient:
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
        scratch = Path(tempfile.mkdtemp(prefix="task-", dir=self.cache))
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
        paths = [relative(p) for p in task.inputs]
        for rel, meta in zip(paths, files.call("meta", paths), strict=True):
            if meta is None:  # a phony prerequisite, or a file the recipe will make
                continue
            sha, mode = meta[0], meta[1]
            if not self.blobs.has(sha):
                files.fetch(sha, self.blobs)
            place(self.blobs.path(sha), scratch / rel, mode)


# GNU make runs a recipe line without a shell when the shell would only split it into words; so do we (it saves
# the shell's start-up, a third of a no-op task). Anything a shell would interpret goes to /bin/sh -c.
_SHELL_CHARS = frozenset("#;\"*?[]&|<>(){}$`'~!\\=%^\n")
_SHELL_WORDS = frozenset(
    ". : alias bg break case cd command continue do done echo elif else esac eval exec exit export false fc fg fi "
    "for function getopts hash if jobs kill printf pwd read readonly return select set shift test then time times "
    "trap true type typeset ulimit umask unalias unset until wait while [ [[ {".split())


def _spawn(argv: list[str] | None, text: str, cwd: Path, env: dict[str, str], out: int, err: int
           ) -> subprocess.Popen:
    """Start one recipe line in its own process group (so it can be killed whole), directly or by the shell."""
    shell = ["/bin/sh", "-c", text]
    try:
        return subprocess.Popen(argv or shell, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                process_group=0)
    except OSError as exc:
        if argv is None or exc.errno != errno.ENOEXEC:
            raise
        return subprocess.Popen(shell, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                process_group=0)  # a script without #!: the shell runs it, as sh would


def direct_argv(text: str) -> list[str] | None:
    """The argv to exec for a recipe line that needs no shell, else None."""
    if not text or any(c in _SHELL_CHARS for c in text):
        return None
    words = text.split()
    if not words or words[0] in _SHELL_WORDS:
        return None
    return words


def _drain(fd: int) -> bytes:
    """Everything written to an in-memory capture file; leaves it empty for the next step."""
    size = os.lseek(fd, 0, os.SEEK_END)
    data = os.pread(fd, size, 0) if size else b""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return data


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
