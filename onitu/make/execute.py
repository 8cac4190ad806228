"""Running a task's recipe lines on this host: each line in its own process group, directly (when a shell would
only split it into words) or with ``/bin/sh -c``; output captured in memory files; the recipes still running when
the runner dies are killed by a reaper process."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from onitu.make.tasks import Step, StepResult

if TYPE_CHECKING:
    import subprocess

# The reaper outlives a worker killed with SIGKILL and kills the process groups of the recipes it was running, so
# a re-run elsewhere never races a leftover. (A preexec_fn setting PR_SET_PDEATHSIG would cost a full fork per
# recipe, 1.3 ms here, and would not reach the shell's children.)
_REAPER = """
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


class Reaper:
    """Kills the recipes still running when the worker dies (a separate tiny process in its own session)."""

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _REAPER], stdin=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lock = threading.Lock()

    def _tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()

    def add(self, pgid: int) -> None:
        self._tell(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._tell(f"-{pgid}\n")

    def close(self) -> None:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.close()
        self.proc.wait()


class Runner:
    """Runs recipe lines for one process's threads (each thread gets its own capture files)."""

    def __init__(self, reaper: Reaper | None) -> None:
        self.reaper = reaper
        self.live: set[int] = set()  # process groups under way (killed by kill_all)
        self._local = threading.local()
        self._cwd: str | None = None  # this process's working directory (read once: make does not move)
        self._null: int | None = None

    def run(self, steps: Iterable[Step], cwd: Path, env: dict[str, str], program: str = "onitu make",
            shell: tuple[str, ...] = ("/bin/sh", "-c")) -> tuple[int, list[StepResult]]:
        """Run ``steps`` in order until one fails (unless marked '-'); (status, what each step did). A line run
        without a shell that cannot start is reported as make reports it (``program: cc: No such file...``)."""
        results: list[StepResult] = []
        status = 0
        for step in steps:
            out_fd, err_fd = self._capture()
            argv = direct_argv(step.text) if shell in DIRECT_SHELLS else None
            try:
                pid, wait = self._start(argv, [*shell, step.text], cwd, env, out_fd, err_fd)
            except OSError as exc:  # only a direct exec gets here: report it as the shell would have
                message = f"{program}: {argv[0] if argv else 'sh'}: {exc.strerror}\n"
                results.append(StepResult(127, b"", message.encode(errors="surrogateescape")))
                if not step.ignore:
                    status = 127
                    break
                continue
            self._track(pid, True)
            try:
                returncode = wait()
            finally:
                self._track(pid, False)
            out, err = _drain(out_fd), _drain(err_fd)
            code = returncode if returncode >= 0 else 128 - returncode
            results.append(StepResult(code, out, err))
            if code and not step.ignore:
                status = code
                break
        return status, results

    def _start(self, argv: list[str] | None, shell: list[str], cwd: Path, env: dict[str, str], out: int, err: int
               ) -> tuple[int, Callable[[], int]]:
        """Start one recipe line in its own process group (so it can be killed whole), directly or by the shell:
        (pid, a function that waits for its exit status). In this process's working directory the line starts
        with posix_spawn (a third of subprocess's cost: no Python-side environment encoding, no fork)."""
        if self._here(cwd):
            args = shell if argv is None else argv
            path = _executable(args[0], env.get("PATH", os.defpath), cwd)
            if path is not None:
                actions = [(os.POSIX_SPAWN_DUP2, self._devnull(), 0), (os.POSIX_SPAWN_DUP2, out, 1),
                           (os.POSIX_SPAWN_DUP2, err, 2)]
                try:
                    pid = os.posix_spawn(path, args, env, file_actions=actions, setpgroup=0)
                except OSError as exc:
                    if argv is None or exc.errno != errno.ENOEXEC:
                        raise
                    pid = os.posix_spawn("/bin/sh", shell, env, file_actions=actions, setpgroup=0)
                return pid, lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        proc = _spawn(argv, shell, cwd, env, out, err)
        return proc.pid, proc.wait

    def _here(self, cwd: Path) -> bool:
        if self._cwd is None:
            self._cwd = os.getcwd()
        return str(cwd) == self._cwd

    def _devnull(self) -> int:
        if self._null is None:
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._null

    def _track(self, pgid: int, live: bool) -> None:
        (self.live.add if live else self.live.discard)(pgid)
        if self.reaper is not None:
            (self.reaper.add if live else self.reaper.remove)(pgid)

    def kill_all(self) -> None:
        """Kill every recipe under way (their tasks will be run again, or the build is interrupted)."""
        import signal  # here: its enums cost a millisecond and a half at every start, and kills are rare
        for pgid in list(self.live):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)

    def _capture(self) -> tuple[int, int]:
        """This thread's two in-memory files for a recipe's stdout and stderr (cheaper than pipes, and a recipe
        that leaves a background child holding them open cannot hang the runner)."""
        fds = getattr(self._local, "fds", None)
        if fds is None:
            fds = self._local.fds = (os.memfd_create("stdout"), os.memfd_create("stderr"))
        return fds


# GNU make runs a recipe line without a shell when the shell would only split it into words; so do we (it saves
# the shell's start-up, a third of a no-op task). Anything a shell would interpret goes to /bin/sh -c.
DIRECT_SHELLS = (("/bin/sh", "-c"), ("/bin/sh", "-ec"))  # GNU skips only its default shell (-c or -ec)
_SHELL_CHARS = frozenset("#;\"*?[]&|<>(){}$`'~!\\=%^\n")
_SHELL_WORDS = frozenset(
    ". : alias bg break case cd command continue do done echo elif else esac eval exec exit export false fc fg fi "
    "for function getopts hash if jobs kill printf pwd read readonly return select set shift test then time times "
    "trap true type typeset ulimit umask unalias unset until wait while [ [[ {".split())


def _spawn(argv: list[str] | None, shell: list[str], cwd: Path, env: dict[str, str], out: int, err: int
           ) -> subprocess.Popen:
    """Start one recipe line in its own process group (so it can be killed whole), directly or by the shell."""
    import subprocess  # here: recipes run in make's own directory start with posix_spawn, without it

    try:
        return subprocess.Popen(argv or shell, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                process_group=0)
    except OSError as exc:
        if argv is None or exc.errno != errno.ENOEXEC:
            raise
        return subprocess.Popen(shell, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                process_group=0)  # a script without #!: the shell runs it, as sh would


_FOUND: dict[tuple[str, str, Path], str] = {}  # (command, PATH, cwd) -> the executable found (hits only)


def _executable(command: str, path: str, cwd: Path) -> str | None:
    """The file execvp would run for ``command`` (None: not found now; the caller then lets subprocess report)."""
    key = (command, path, cwd)
    found = _FOUND.get(key)
    if found is None:
        found = _which(command, path) if "/" not in command else command
        if found is None:
            return None
        _FOUND[key] = found
    return found


def _which(command: str, path: str) -> str | None:
    """The first executable file ``command`` on ``path``, as execvp looks (shutil's which costs an import of the
    compression modules at every start)."""
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


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
