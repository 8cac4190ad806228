"""`onitu start` as a real process tree in a temporary data dir, and ways to look at it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

FAST = """
heartbeat: {interval: 0.2, misses: 5, startup: 10, busy: %s}
restart: {backoff: 0.1, max_backoff: 1, fast_crash: %s, max_fast_crashes: 3}
"""


class Onitu:
    def __init__(self, tmp: Path, extra: str = "", fast_crash: float = 5.0, space: str = "  discovery_port: 0\n",
                 defaults: bool = False, api: str = "", busy: float = 15.0) -> None:
        """``defaults``: the default heartbeat and restart settings, as a user's config has them (else fast ones);
        ``api``: where the API listens (off by default: tests run side by side, and the default port is one)."""
        self.data = tmp / "data"
        self.config = tmp / "onitu.yaml"
        timing = "" if defaults else FAST % (busy, fast_crash)
        self.config.write_text(f"data: {self.data}\n{timing}space:\n{space}{extra}api: {{listen: '{api}'}}\n")
        self.proc: subprocess.Popen | None = None
        self.prefix: list[str] = []  # a command that runs `onitu start` (setpriv to drop privileges, say)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "onitu.cli", *args, "-c", str(self.config)],
                             capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def start(self, paired: bool = True) -> Onitu:
        # A session of its own, like a terminal's foreground job: Ctrl-C can be sent to its whole group.
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "onitu.cli", "start", "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        launcher = self.proc.pid

        def started(s: dict[str, Any]) -> bool:  # by this launcher's watchdog, not left by an earlier run
            ours = s.get("watchdog", {}).get("launcher") == launcher
            return ours and (s.get("mode") == "paired" if paired else bool(s.get("processes")))
        self.wait(started, 30, "start")
        return self

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.data / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def process(self, name: str) -> dict[str, Any]:
        return next(p for p in self.status().get("processes", []) if p["name"] == name)

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and pred(status):
                return status
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"onitu exited ({self.proc.returncode}) waiting for {what}: {self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; status {self.status()}\n{self.logs()}")

    def logs(self) -> str:
        """The end of the watchdog's log (for a failure's message)."""
        return self.watchdog_log()[-4000:]

    def watchdog_log(self) -> str:
        """The watchdog's whole log (what a test looks for in it may be followed by much more on a busy machine)."""
        path = self.data / "run" / "watchdog.log"
        return path.read_text() if path.exists() else ""

    def primary_pid(self) -> int:
        status = self.status()
        return self.process(status["primary"])["pid"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.cli("stop")
        self.proc.wait(30)

    def kill_everything(self) -> None:
        """Last resort for a failed test: no process may outlive it."""
        kill_all(str(self.data), str(self.config))


def kill_all(*markers: str) -> None:
    """SIGKILL the process group of every process whose command line mentions one of ``markers``."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.pid != os.getpid() and any(m in cmdline for m in markers):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def kill_started(launcher: subprocess.Popen, *markers: str) -> None:
    """Leave nothing of an ``onitu start`` behind, even after a failure: its launcher's group first (the launcher's
    command line names no path, and it would start a new watchdog that adopts what still runs), then
    :func:`kill_all`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    kill_all(*markers)


def leftovers(data: Path, config: Path) -> list[str]:
    """Processes, sockets, pid and lock files an Onitu run left behind."""
    found = [f"process {p.pid}: {' '.join(p.info['cmdline'])}" for p in psutil.process_iter(["cmdline"])
             if p.info["cmdline"] and (str(data) in " ".join(p.info["cmdline"])
                                       or str(config) in " ".join(p.info["cmdline"]))]
    for path in data.rglob("*") if data.exists() else []:
        if path.is_socket() or path.suffix in (".pid", ".lock", ".sock") or path.name in ("status.json",
                                                                                           "space.json"):
            found.append(str(path))
    return found
