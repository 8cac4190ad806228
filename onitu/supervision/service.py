"""The watchdog process: supervises the space pair and every agent, writes ``run/status.json``, stops in order.

Started by the launcher (``python -m onitu.supervision.service``). A watchdog started with ``--adopt`` (because its
predecessor died) takes over the processes still running from ``run/status.json`` instead of starting new ones:
the space keeps serving while the watchdog is away.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import zmq

from onitu.config import Config, ConfigError, load
from onitu.logs import configure_logging
from onitu.space.ring import SyncResponder
from onitu.supervision.failover import SpacePair
from onitu.supervision.reload import ConfigWatch, changes, spec_of
from onitu.supervision.supervisor import RUNNING, Child, Supervisor

log = logging.getLogger("onitu.supervision")

STATUS_EVERY = 0.25


def run_dir(config: Config) -> Path:
    return config.data / "run"


class Watchdog:
    def __init__(self, config: Config, adopt: bool = False, launcher: int | None = None) -> None:
        self.config, self.adopt = config, adopt
        self.run = run_dir(config)
        self.run.mkdir(parents=True, exist_ok=True)
        self.sup = Supervisor(self.run, config.heartbeat, config.restart)
        self.pair = SpacePair(self.sup, config)
        self.started = time.time()
        self.stopping = False
        self._status_at = 0.0
        self.ring = self._discovery()
        self.watch = ConfigWatch(config)
        # Named by the launcher, not read from getppid(): a watchdog that starts after its launcher was killed
        # would take init for its launcher and run on, a second supervisor beside the next `onitu start`.
        self.launcher = os.getppid() if launcher is None else launcher

    def _discovery(self) -> SyncResponder | None:
        """Answer LAN lookups for the pair; on loopback only when no endpoint is reachable from elsewhere."""
        port = self.config.space.discovery_port
        if not port:
            return None
        remote = any(not ep.startswith("ipc://") and "127.0.0.1" not in ep for ep in self.config.space.listen)
        try:
            ring = SyncResponder(self.pair.describe, self.sup.counters, "0.0.0.0" if remote else "127.0.0.1", port)
        except OSError as exc:
            log.warning("discovery is off: cannot listen on UDP port %d: %s", port, exc)
            return None
        self.sup.poller.register(ring, zmq.POLLIN)
        return ring

    def start(self) -> None:
        previous = self._previous_pids() if self.adopt else {}
        self.pair.start(adopt=bool(previous))
        for agent in self.config.all_agents():
            self.sup.add(spec_of(agent), start=not previous)
        for child in self.sup.children.values():
            if previous:
                self._adopt(child, previous.get(child.name))

    def _previous_pids(self) -> dict[str, int]:
        try:
            status = json.loads((self.run / "status.json").read_text())
            return {p["name"]: p["pid"] for p in status["processes"] if isinstance(p.get("pid"), int)}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _adopt(self, child: Child, pid: int | None) -> None:
        try:
            alive = pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if alive:
            child.pid, child.started, child.state = pid, time.monotonic(), RUNNING
            log.info("adopted %s (pid %d)", child.name, pid)
        else:
            # Died while no watchdog was watching: a crash like any other (the pair rules see it too).
            child.started = 0.0
            self.sup.crashed(child, "gone while the watchdog was away")

    def loop(self) -> None:
        while not self.stopping:
            self.sup.tick(0.05)
            if os.getppid() != self.launcher:
                # Killed with SIGKILL (else it would have stopped us): nobody would start our successor.
                log.warning("the launcher (pid %d) is gone; stopping everything", self.launcher)
                break
            if self.ring is not None:
                self.ring.handle()
            self.pair.tick()
            new = self.watch.poll()
            if new is not None:
                self.reconfigure(new)
            if time.monotonic() - self._status_at > STATUS_EVERY:
                self.write_status()

    def reconfigure(self, new: Config) -> None:
        """Apply a changed config file (:mod:`onitu.supervision.reload`)."""
        todo = changes(self.config, new)
        for name in todo.stop:
            child = self.sup.children.pop(name, None)
            if child is not None:
                self.sup.stop(child)
                log.info("config changed: stopped %s", name)
        for spec in todo.start:
            self.sup.add(spec)
            log.info("config changed: started %s", spec.name)
        self.config = new

    def write_status(self) -> None:
        self._status_at = now = time.monotonic()
        procs = []
        for child in self.sup.children.values():
            beat = child.last_heartbeat
            procs.append({
                "name": child.name, "role": self.pair.role(child), "pid": child.pid,
                "epoch": child.last_status.get("epoch"), "state": child.state, "restarts": child.restarts,
                "uptime": round(now - child.started, 1) if child.pid and child.state == RUNNING else None,
                "last_heartbeat": None if beat is None else round(max(0.0, now - beat), 2), "reason": child.reason,
                "detail": child.last_status,
            })
        status = {"watchdog": {"pid": os.getpid(), "started": self.started, "launcher": self.launcher},
                  **self.pair.status(),
                  "counters": dict(self.sup.counters),
                  "processes": procs, "written": time.time()}
        tmp = self.run / "status.json.tmp"
        tmp.write_text(json.dumps(status))
        tmp.replace(self.run / "status.json")

    def shutdown(self) -> None:
        """Agents first (newest first), then the primary, then the secondary (which applies the primary's last
        batches meanwhile: both disks end at the same position of its stream, and the next start pairs them
        without a snapshot); then every file we made."""
        names = [n for n in self.sup.children if n not in (self.pair.state.primary, self.pair.state.secondary)]
        for name in [*reversed(names), self.pair.state.primary, self.pair.state.secondary]:
            self.sup.stop(self.sup.children[name])
            log.info("stopped %s", name)
        if self.ring is not None:
            self.ring.close()
        self.sup.close()
        for path in (self.run / "status.json", self.config.data / "space.json"):
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="onitu-watchdog")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--adopt", action="store_true")
    ap.add_argument("--launcher", type=int, help="the launcher's pid: the watchdog stops when it is gone")
    args = ap.parse_args(argv)
    configure_logging("INFO")
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.launcher is not None and os.getppid() != args.launcher:
        log.warning("the launcher (pid %d) died before this watchdog started; starting nothing", args.launcher)
        return 0
    dog = Watchdog(config, adopt=args.adopt, launcher=args.launcher)

    def stop(signum: int, frame: object) -> None:
        dog.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        dog.start()
        dog.loop()
    except Exception:
        # Leave the children running: the launcher starts a new watchdog, which adopts them.
        log.exception("watchdog failed; its successor will adopt the running processes")
        return 1
    dog.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
