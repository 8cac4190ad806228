"""Running ``onitu make`` and ``onitu worker`` as real processes for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ONITU = [sys.executable, "-m", "onitu.entry"]


def env_for(data: Path, **extra: str) -> dict[str, str]:
    """An environment whose onitu data dir is ``data`` and which names no space."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONITU_SPACE", "MAKEFLAGS", "MAKELEVEL")}
    return {**env, "ONITU_DATA": str(data), **extra}


def make(cwd: Path, *args: str, data: Path, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ONITU, "make", *args], cwd=cwd, env=env_for(data, **extra), capture_output=True,
                          text=True, timeout=timeout)


def start_make(cwd: Path, *args: str, data: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([*ONITU, "make", *args], cwd=cwd, env=env_for(data, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def start_worker(*args: str, data: Path, prefix: list[str] | None = None, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([*(prefix or []), *ONITU, "worker", *args], env=env_for(data, **extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(coordinator: subprocess.Popen) -> list[psutil.Process]:
    """The local worker processes a coordinator started (its only children: forked, or exec'd as ``onitu worker``)."""
    try:
        return psutil.Process(coordinator.pid).children()
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
