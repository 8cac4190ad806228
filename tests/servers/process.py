"""A loopback server run as a child process: on a free port, stoppable and restartable on that same port, and
killed by the kernel if the test process dies (no orphan servers)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        # The kernel sends SIGKILL to this child when the process that started it dies, even by kill -9.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before prctl took effect
            os._exit(1)
    return preexec


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess:
    """``argv`` (built for a port) serving 127.0.0.1:``port``; its output goes to ``log``.

    ``start`` waits until the port accepts connections; ``stop`` ends the server and every process it forked (an
    sshd's per-connection children keep their sessions open otherwise), so clients really lose it. ``start`` after
    ``stop`` serves the same port again, so clients configured with it find the server back."""

    def __init__(self, name: str, argv: Callable[[int], Sequence[str]], log: Path,
                 env: dict[str, str] | None = None, ready: Callable[[int], bool] = accepts) -> None:
        self.name, self.argv, self.log_path, self.env, self.ready = name, argv, log, env, ready
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start (or restart, on the same port) and wait until the port accepts connections."""
        first = self.proc is None
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except RuntimeError:
                if attempt == 2 or not first or not accepts(self.port):
                    raise
                self.port = free_port()  # another process took the free port meanwhile: take another one
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(list(self.argv(self.port)), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
                                         start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self.ready(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on 127.0.0.1:{self.port} within {timeout} s:\n{self.tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the server and all it forked; SIGKILL for whatever is still there after 5 s."""
        if not self.running:
            return
        assert self.proc is not None
        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(family, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel queues them) but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
