"""A million files: one source to one replica, then a restart of the hub with everything already in sync.

    python bench/sync_million.py [--files 1000000] [--dir PARENT] [--timeout 14400] [--keep]

FILES tiny files (their number as content), 100 per directory (10,000 directories at a million), are written in a
staging directory; ``onitu start`` runs on empty roots with two local services, ``source`` and ``r1``, sharing the
folder ``docs``; the tree is moved into the source root with one rename and timed until r1 holds every file (then
checked byte for byte). Meanwhile each hub process's RSS is sampled every second: the peak, and the idle RSS after,
per process and per file. Then the hub is stopped and started again, and timed until ``onitu status`` says both
services are in sync. What the restart must not do is measured, not assumed: the read syscalls each plug made
since it started (re-hashing a million files takes at least a million), and the inode and mtime of a sample of
r1's files before and after (a re-sent file is a new inode).

Every number is one run on this machine: run it on a quiet machine and read it as indicative. It needs about
4 KiB of disk per file and replica (the file systems' block), so 8 GB at a million.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_vs_rclone as common

SERVICES = ("source", "r1")
SAMPLE = 20_000  # r1's files whose inode and mtime are compared across the restart


class PeakRss:
    """A thread sampling the RSS of a hub's processes every second, keeping each one's peak."""

    def __init__(self, hub: common.Hub) -> None:
        self.hub, self.peak, self._halt = hub, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids, refreshed = self.hub.processes(), time.monotonic()
        while not self._halt.wait(1.0):
            if time.monotonic() - refreshed > 10:
                pids, refreshed = self.hub.processes(), time.monotonic()
            for label, pid in pids.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[label] = max(self.peak.get(label, 0), psutil.Process(pid).memory_info().rss)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self._thread.join()
        return self.peak


def sync_states(hub: common.Hub) -> dict[str, str]:
    """{service: state} of the folder ``docs`` as ``onitu status --json`` gives it (empty while it cannot tell)."""
    got = subprocess.run([sys.executable, "-m", "onitu.cli", "status", "--json", "-c", str(hub.config)],
                         capture_output=True, text=True, timeout=120)
    try:
        folder = json.loads(got.stdout)["sync"]["folders"]["docs"]["services"]
    except (ValueError, KeyError, TypeError):
        return {}
    return {service: row["state"] for service, row in folder.items()}


def identities(root: Path, paths: list[str]) -> dict[str, tuple[int, int]]:
    found = {}
    for rel in paths:
        with contextlib.suppress(OSError):
            st = os.stat(root / rel)
            found[rel] = (st.st_ino, st.st_mtime_ns)
    return found


def read_syscalls(pids: dict[str, int]) -> dict[str, int]:
    """Read syscalls each plug made since it started (/proc/PID/io ``syscr``)."""
    got = {}
    for label, pid in pids.items():
        if label.startswith("plug-"):
            with contextlib.suppress(OSError):
                fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
                got[label] = int(fields["syscr"])
    return got


def per_file(values: dict[str, float], base: dict[str, float] | None, n: int) -> str:
    """``label MiB (bytes per file above its base)`` for each process (MiB only without a base, or for a process
    that was not running when the base was taken)."""
    return ", ".join(f"{label} {value / 2**20:,.0f} MiB" + (
        f" ({(value - base[label]) / n:,.0f} B/file)" if base and label in base else "")
        for label, value in values.items())


def first_run(hub: common.Hub, staging: Path, expected: dict, opts: argparse.Namespace) -> dict:
    hub.start()
    pids = hub.processes()
    common.wait_idle(pids, timeout=30)
    before = common.rss(pids)
    peak = PeakRss(hub)
    cpu = common.cpu_seconds(pids)
    moved = time.perf_counter()
    os.rename(staging / "tree", hub.roots["source"] / "tree")
    took = common.wait_converged(hub, expected, moved, opts.timeout, replicas=("r1",))
    used = common.cpu_used(cpu, pids)
    # the peak until the hub is idle: the files are there before the referee has recorded every result
    waited, after = common.idle_rss(hub.processes(), timeout=600)
    peaks = peak.stop()
    return {"sync": took, "cpu": used, "before": before, "peak": peaks, "idle_after": waited,
            "after": after, "tuples": hub.tuples()}


def restart(hub: common.Hub, timeout: float) -> dict:
    began = time.perf_counter()
    hub.stop()
    stopped = time.perf_counter() - began
    began = time.perf_counter()
    hub.start()
    running = time.perf_counter() - began
    peak = PeakRss(hub)
    deadline, states = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        states = sync_states(hub)
        if set(states) == set(SERVICES) and all(s == "in sync" for s in states.values()):
            break
        hub.check()
        time.sleep(0.5)
    in_sync = time.perf_counter() - began if states and all(s == "in sync" for s in states.values()) else None
    pids = hub.processes()
    _, after = common.idle_rss(pids, timeout=600)
    return {"stop": stopped, "running": running, "in_sync": in_sync, "states": states, "peak": peak.stop(),
            "syscr": read_syscalls(pids), "after": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000, help="tiny files, 100 per directory")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory's parent (default: the temp dir)")
    ap.add_argument("--timeout", type=float, default=14400, help="longest wait for the first sync (s)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (roots, hub logs)")
    opts = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n = opts.files
    scratch = Path(tempfile.mkdtemp(prefix="onitu-bench-million-", dir=opts.dir))
    common.say(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; writing {n:,} tiny files in {scratch} ...")
    written = time.perf_counter()
    expected = {f"tree/{rel}": v for rel, v in common.tiny_tree(scratch / "staging" / "tree", n, "").items()}
    common.say(f"  written in {time.perf_counter() - written:.0f} s")
    hub = common.Hub(scratch / "hub", None, SERVICES)
    try:
        first = first_run(hub, scratch / "staging", expected, opts)
        common.say(f"  first sync: {first['sync']} s")
        sample = random.Random(1).sample(sorted(expected), min(SAMPLE, n))
        ids = identities(hub.roots["r1"], sample)
        again = restart(hub, opts.timeout)
        changed = sum(1 for rel, ident in identities(hub.roots["r1"], sample).items() if ids.get(rel) != ident)
    finally:
        hub.stop()
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    report(n, first, again, changed, len(sample))


def report(n: int, first: dict, again: dict, changed: int, sampled: int) -> None:
    print(f"\n{n:,} files, 100 per directory, source -> r1 (load at the end {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores)")
    sync = first["sync"]
    print(f"first sync: {'no convergence' if sync is None else f'{sync:.1f} s ({n / sync:,.0f} files/s)'}")
    print(f"  CPU s: {common.cpu_line(first['cpu'])}")
    print(f"  peak RSS: {per_file(first['peak'], first['before'], n)}")
    print(f"  idle RSS after: {per_file(first['after'], first['before'], n)}")
    before, after = first["before"], first["after"]
    total = sum(after[label] - before[label] for label in after.keys() & before.keys())
    print(f"  whole hub: {total / n:,.0f} B/file idle after; tuples in the space: {first['tuples']}")
    in_sync = again["in_sync"]
    print(f"restart: stop {again['stop']:.1f} s; processes running {again['running']:.1f} s; both in sync "
          f"{'NEVER (' + str(again['states']) + ')' if in_sync is None else f'{in_sync:.1f} s'} after the launch")
    print(f"  peak RSS: {per_file(again['peak'], None, n)}")
    print(f"  read syscalls per plug since it started: {again['syscr']} (re-hashing would take >= {n:,})")
    print(f"  r1 files re-written by the restart: {changed} of {sampled} sampled (inode or mtime changed)")


if __name__ == "__main__":
    main()
