"""``onitu start`` / ``stop`` / ``status``: the launcher owns the run directory and keeps the watchdog running.

The launcher validates the config (nothing starts on a bad one), takes ``run/onitu.lock`` so only one Onitu runs
per data directory, writes ``run/onitu.pid``, and starts the watchdog. If the watchdog dies, a new one is started
with ``--adopt`` and takes over the running processes. SIGTERM/SIGINT (or ``onitu stop``) stop the watchdog,
which stops everything in order; the launcher then removes what is left of the run directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from onitu.config import Config, load, record_running

log = logging.getLogger("onitu.launcher")

WATCHDOG_RESTARTS = 20


class AlreadyRunning(RuntimeError):
    pass


def run_dir(config: Config) -> Path:
    return config.data / "run"


class Launcher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.run = run_dir(config)
        self.stopping = False
        self.watchdog: subprocess.Popen | None = None
        self.record: Path | None = None

    def lock(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.run / "onitu.lock", "w")  # noqa: SIM115 - held for the launcher's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = read_pid(self.run)
            raise AlreadyRunning(f"Onitu is already running on {self.config.data} (launcher pid {pid})") from None
        (self.run / "onitu.pid").write_text(str(os.getpid()))
        # A run killed with SIGKILL left the status of processes that are gone: nobody may take it for ours.
        (self.run / "status.json").unlink(missing_ok=True)
        self.record = record_running(self.config, os.getpid())

    def spawn_watchdog(self, adopt: bool) -> None:
        cmd = [sys.executable, "-m", "onitu.supervision.service", "--launcher", str(os.getpid())]
        if self.config.source is not None:
            cmd += ["--config", str(self.config.source)]
        if adopt:
            cmd.append("--adopt")
        with open(self.run / "watchdog.log", "ab") as out:
            self.watchdog = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        (self.run / "watchdog.pid").write_text(str(self.watchdog.pid))

    def serve(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.spawn_watchdog(adopt=False)
        restarts = 0
        while True:
            code = self.watchdog.wait()
            if self.stopping:
                break
            restarts += 1
            if code == 2 or restarts > WATCHDOG_RESTARTS:
                log.error("the watchdog keeps failing (status %s); giving up", code)
                break
            log.warning("the watchdog died (status %s); starting a new one that adopts the running processes",
                        code)
            time.sleep(min(5.0, 0.2 * restarts))
            self.spawn_watchdog(adopt=True)
        self.cleanup()
        return 0 if self.stopping else 1

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.terminate()

    def cleanup(self) -> None:
        for name in ("watchdog.pid", "onitu.pid", "watchdog.sock", "status.json", "onitu.lock"):
            (self.run / name).unlink(missing_ok=True)
        if self.record is not None:
            self.record.unlink(missing_ok=True)
        self._lock.close()


def read_pid(run: Path) -> int | None:
    try:
        return int((run / "onitu.pid").read_text())
    except (OSError, ValueError):
        return None


def start(config_path: Path | None) -> int:
    """Validate the config, then run Onitu in the foreground until stopped."""
    config = load(config_path)  # ConfigError propagates: nothing has been started
    launcher = Launcher(config)
    launcher.lock()
    return launcher.serve()


def stop(config: Config, timeout: float = 30.0) -> bool:
    """Ask the running launcher to stop and wait for it; False if none was running."""
    pid = read_pid(run_dir(config))
    if pid is None or not _running(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (a launcher started by another program stays one until that program reaps it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def status(config: Config) -> dict[str, Any] | None:
    """What the watchdog last wrote, or None when Onitu is not running."""
    pid = read_pid(run_dir(config))
    if pid is None or not _running(pid):
        return None
    try:
        data = json.loads((run_dir(config) / "status.json").read_text())
    except (OSError, ValueError):
        return {"launcher": pid, "processes": [], "starting": True}
    data["launcher"] = pid
    data["age"] = round(time.time() - data.get("written", time.time()), 2)
    return data
