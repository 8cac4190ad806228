"""Supervision: start processes, ask them "are you alive?", restart the dead and the hung with backoff.

Every child runs in a process group of its own, so killing it kills everything it started. A child that speaks
the heartbeat protocol is alive while it answers pings; any other child is alive while its process runs and is not
stopped. A child that dies (or hangs) before it became healthy (its first heartbeat answered; for a plain process,
``fast_crash`` seconds alive, as supervisord's ``startsecs``) counts as a fast crash; after ``max_fast_crashes`` of
those in a row it is marked failed and left alone, instead of being restarted in a loop, unless its spec says never
to give up on it (the space servers: retried every ``max_backoff`` seconds). A child that was healthy is always
restarted; the backoff grows with the deaths that came soon after a start, whatever their cause.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

from onitu.config import HeartbeatConfig, RestartConfig
from onitu.heartbeat import ENV_ENDPOINT, ENV_NAME, ENV_ORPHAN, STACKS, decode
from onitu.runqueue import Starvation
from onitu.space.roles import DEMOTED

log = logging.getLogger("onitu.supervision")

PR_SET_PDEATHSIG = 1
STACKS_WAIT = 0.3  # seconds a hung process is given to write its stacks before it is killed
SPACE_LAST = 10.0  # seconds an orphaned space server waits longer than the agents before it stops
STARTING, RUNNING, BACKOFF, FAILED, STOPPED, STALE = "starting", "running", "backoff", "failed", "stopped", "stale"


@dataclass
class Spec:
    """What to run: a name, a command line, and whether the process answers heartbeats."""

    name: str
    command: list[str]
    heartbeat: bool = False
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    role: str = "agent"
    fence_on_hang: bool = False  # a hung space server is fenced (superseded), not killed at once
    never_give_up: bool = False  # retried every max_backoff seconds instead of being marked failed


@dataclass
class Child:
    """One supervised slot: its spec and everything the watchdog knows of its current process."""

    spec: Spec
    state: str = STOPPED
    proc: subprocess.Popen | None = None
    pid: int | None = None
    started: float = 0.0
    restarts: int = 0
    healthy: bool = False  # answered a heartbeat (or, without heartbeats, lived fast_crash seconds) since started
    fast_crashes: int = 0  # deaths before becoming healthy, in a row
    short_lives: int = 0  # deaths within fast_crash seconds of the start, in a row (the backoff grows with them)
    restart_at: float = 0.0
    last_heartbeat: float | None = None
    starvation: Starvation | None = None  # its main thread's waits for a CPU since the last answer (or the start)
    last_status: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:  # adopted from a previous watchdog: not our child, so ask the system
            return self.pid is not None and psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _die_with_watchdog(watchdog: int) -> Callable[[], None] | None:
    """For a child that cannot hear heartbeats: SIGTERM from the kernel when the watchdog dies (Linux), so it does
    not outlive a watchdog killed with SIGKILL. A watchdog that adopts the processes of a dead one restarts it."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != watchdog:  # it died before prctl took effect
            os._exit(1)
    return preexec


class Supervisor:
    """Keeps a set of children alive. Call :meth:`tick` in a loop (it waits for heartbeat answers)."""

    def __init__(self, run_dir: Path, heartbeat: HeartbeatConfig, restart: RestartConfig) -> None:
        self.run_dir, self.hb, self.restart = run_dir, heartbeat, restart
        self.children: dict[str, Child] = {}
        self.endpoint = f"ipc://{run_dir / 'watchdog.sock'}"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.router_handover = 1  # a restarted child reclaims its name at once
        self.sock.bind(self.endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self._n = 0
        self._next_ping = 0.0
        self._last_tick = time.monotonic()
        self.replies: dict[int, dict[str, Any]] = {}
        self.counters: Counter[str] = Counter()

    # ---- children ----------------------------------------------------------------------------------------

    def add(self, spec: Spec, start: bool = True) -> Child:
        child = self.children[spec.name] = Child(spec)
        if start:
            self.spawn(child)
        return child

    def spawn(self, child: Child) -> None:
        # Orphaned, the space servers stop last (as `onitu stop` orders it): the agents' last words still land.
        orphan = self.hb.orphan + (SPACE_LAST if child.spec.role != "agent" else 0.0)
        env = {**os.environ, **child.spec.env, ENV_ENDPOINT: self.endpoint, ENV_NAME: child.name,
               ENV_ORPHAN: str(orphan)}
        log_path = self.run_dir / f"{child.name}.log"
        preexec = None if child.spec.heartbeat else _die_with_watchdog(os.getpid())
        with open(log_path, "ab") as out:
            try:
                child.proc = subprocess.Popen(child.spec.command, env=env, cwd=child.spec.cwd, stdout=out,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True,
                                              preexec_fn=preexec)
            except OSError as exc:
                log.error("cannot start %s (%s): %s", child.name, " ".join(child.spec.command), exc)
                self.crashed(child, f"cannot start: {exc}")
                return
        child.pid, child.started, child.state, child.healthy = child.proc.pid, time.monotonic(), STARTING, False
        child.last_heartbeat, child.exit_code, child.last_status = None, None, {}  # the reason stays until healthy
        child.starvation = Starvation(child.pid)
        log.info("started %s (pid %d): %s", child.name, child.pid, " ".join(child.spec.command))

    def kill(self, child: Child, sig: int = signal.SIGKILL) -> None:
        """Signal the child's whole process group (it may have started processes of its own)."""
        if child.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)
        if sig == signal.SIGKILL and child.proc is not None:
            child.proc.wait()

    def ask_for_stacks(self, child: Child, wait: bool = True) -> None:
        """Have a heartbeat process write its threads' stacks to its log (see :data:`onitu.heartbeat.STACKS`), and
        give it a moment to: a process that does not speak the protocol is left alone (the signal would kill it).
        So is a stopped one (SIGSTOP): it is stuck nowhere, and it would write them only once continued, from a
        signal handler walking threads that run on meanwhile, which crashed a fenced primary with SIGSEGV instead of
        letting it step down."""
        if child.spec.heartbeat and child.pid is not None and not _stopped(child.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child.pid, STACKS)
                if wait:
                    time.sleep(STACKS_WAIT)

    def stop(self, child: Child, timeout: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it if it does not exit in time; the slot is then stopped for good."""
        child.state = STOPPED
        if child.pid is None or not child.alive():
            return
        self.kill(child, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.kill(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if child.alive():
            log.warning("%s ignored SIGTERM for %.0f s; killing it", child.name, timeout)
        self.kill(child, signal.SIGKILL)
        child.exit_code = child.proc.returncode if child.proc else None

    # ---- the loop ----------------------------------------------------------------------------------------

    def tick(self, wait: float = 0.05) -> None:
        """One round: read answers, ping when due, notice deaths and hangs, restart what is due."""
        self._receive(wait)
        now = time.monotonic()
        self._forgive_stall(now)
        if now >= self._next_ping:
            self._next_ping = now + self.hb.interval
            for child in self.children.values():
                if child.spec.heartbeat and child.state in (STARTING, RUNNING):
                    self.send(child, {"op": "ping"})
        for child in list(self.children.values()):
            self._check(child, now)

    def _forgive_stall(self, now: float) -> None:
        """Time the watchdog itself did not run (starved, or its disk stalled) counts against no one: nobody was
        pinged, so nobody could answer."""
        gap = now - self._last_tick - self.hb.interval
        self._last_tick = now
        if gap <= 0:
            return
        log.info("the watchdog did not run for %.1f s; heartbeat deadlines moved", gap + self.hb.interval)
        for child in self.children.values():
            child.started += gap
            if child.last_heartbeat is not None:
                child.last_heartbeat += gap

    def send(self, child: Child, msg: dict[str, Any]) -> int:
        self._n += 1
        with contextlib.suppress(zmq.ZMQError):  # not connected (yet): counts as a missed answer
            self.sock.send_multipart([child.name.encode(), msgpack.packb({**msg, "n": self._n})], zmq.NOBLOCK)
        return self._n

    def _receive(self, wait: float) -> None:
        if not self.poller.poll(int(wait * 1000)):
            return
        while self.sock.get(zmq.EVENTS) & zmq.POLLIN:
            frames = self.sock.recv_multipart(zmq.NOBLOCK)
            msg = decode(frames[-1]) if len(frames) == 2 else None
            child = self.children.get(frames[0].decode(errors="replace"))
            if msg is None or child is None:
                self.counters["heartbeat_malformed"] += 1
                continue
            if msg["op"] == "pong" and msg.get("pid") == child.pid:
                child.last_heartbeat = time.monotonic()
                if child.starvation is not None:
                    child.starvation.mark()
                child.last_status = msg.get("status") or {}
                child.healthy, child.reason = True, ""
                if child.state in (STARTING, STALE):
                    child.state = RUNNING
            elif msg["op"] == "done" and isinstance(msg.get("n"), int):
                self.replies[msg["n"]] = msg

    def _check(self, child: Child, now: float) -> None:
        if child.state in (STARTING, RUNNING, STALE) and not child.alive():
            child.exit_code = child.proc.returncode if child.proc is not None else None
            said = last_error(self.run_dir / f"{child.name}.log") if child.exit_code else ""
            self.crashed(child, f"exited with status {child.exit_code}" + (f": {said}" if said else ""))
        elif child.state in (STARTING, RUNNING) and self.hung(child, now):
            if child.spec.fence_on_hang:
                self.ask_for_stacks(child, wait=False)  # not killed yet: it has time to write them
                log.warning("%s (pid %s) is not answering; fencing it (where its threads were: the end of %s)",
                            child.name, child.pid, self.run_dir / f"{child.name}.log")
                child.state, child.reason = STALE, "hung (no answer to heartbeats)"
                return
            self.ask_for_stacks(child)
            log.warning("%s (pid %s) is not answering; killing its process group (where its threads were: the "
                        "end of %s)", child.name, child.pid, self.run_dir / f"{child.name}.log")
            self.kill(child)
            self.crashed(child, "hung (no answer to heartbeats)")
        elif child.state == STARTING and not child.spec.heartbeat and now - child.started > self.hb.interval:
            child.state = RUNNING
        elif child.state == RUNNING and not child.healthy and not child.spec.heartbeat \
                and now - child.started >= self.restart.fast_crash:
            child.healthy, child.reason = True, ""
        elif child.state == BACKOFF and now >= child.restart_at:
            child.restarts += 1
            self.spawn(child)

    def hung(self, child: Child, now: float) -> bool:
        """No answer for ``misses`` heartbeats (after the startup grace); or stopped, for a plain process. The time
        the child's main thread spent waiting for a CPU does not count: starved by the machine's load is not hung;
        nor is one whose main thread ran for most of the silence, for up to ``heartbeat.busy`` seconds."""
        limit = self.hb.interval * self.hb.misses
        if child.spec.heartbeat:
            late, allowed = ((now - child.started, self.hb.startup) if child.last_heartbeat is None
                             else (now - child.last_heartbeat, limit))
            if late <= allowed:
                return False  # not late: no need to read how long it was starved
            starvation = child.starvation
            usable = late - (starvation.since_mark() if starvation is not None else 0.0)
            if usable <= allowed:
                return False
            # its main thread ran for most of the silence: in a long C call holding the GIL, busy (see hb.busy)
            return usable > self.hb.busy or starvation is None or starvation.ran_since_mark() < usable / 2
        if not _stopped(child.pid):
            child.last_heartbeat = now
            return False
        return child.last_heartbeat is not None and now - child.last_heartbeat > limit

    def grace(self, child: Child, seconds: float) -> None:
        """Do not count missed heartbeats for a while (the child was asked to do something long)."""
        child.last_heartbeat = time.monotonic() + seconds

    def restart_soon(self, child: Child) -> None:
        child.state, child.restart_at = BACKOFF, time.monotonic()

    def crashed(self, child: Child, reason: str) -> None:
        """Decide what a death means: a restart after backoff, or failed after too many fast crashes."""
        child.reason = reason
        now = time.monotonic()
        if child.exit_code == DEMOTED and child.spec.role != "agent":  # a superseded primary stepping down
            child.reason = "demoted"
            log.info("%s demoted itself; restarting it in its new role", child.name)
            self.restart_soon(child)
            return
        child.fast_crashes = 0 if child.healthy else child.fast_crashes + 1
        child.short_lives = child.short_lives + 1 if now - child.started < self.restart.fast_crash else 0
        delay = min(self.restart.max_backoff, self.restart.backoff * 2 ** max(child.short_lives - 1, 0))
        if child.fast_crashes >= self.restart.max_fast_crashes:
            if not child.spec.never_give_up:
                child.state = FAILED
                log.error("%s failed: %s, %d times in a row before it became ready; not restarting it", child.name,
                          reason, child.fast_crashes)
                return
            delay = self.restart.max_backoff
            child.reason = (f"{reason}; {child.fast_crashes} times in a row before it became ready (see its log "
                            f"{self.run_dir / (child.name + '.log')}); retrying every {delay:g} s")
            log.error("%s keeps failing: %s", child.name, child.reason)
        child.state, child.restart_at = BACKOFF, now + delay
        log.warning("%s %s; restarting in %.1f s", child.name, reason, delay)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
        Path(self.endpoint[len("ipc://"):]).unlink(missing_ok=True)


def last_error(log: Path, tail: int = 8192) -> str:
    """The last ERROR or CRITICAL message a child logged (or the last line of its traceback), for ``onitu status``
    to say why it exited: a bare exit status tells the user nothing."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if " ERROR " in line or " CRITICAL " in line:
            return line.split(" ERROR ", 1)[-1].split(" CRITICAL ", 1)[-1].partition(": ")[2][:300]
        if line.startswith("Traceback ") and i + 1 < len(lines):
            return lines[-1].strip()[:300]
    return ""


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False
