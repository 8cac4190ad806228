"""The space's disk under a sustained write load beside fsync'd file copies (issue 18).

    python bench/space_disk_stall.py [--seconds 60] [--copiers 2] [--per-turn 40] [--dir PARENT]

A space server commits one transaction per loop turn; at 300,000 files the hub's own copies (a small file written,
fsync'd and renamed per file, as a local driver stages it) kept the disk busy, the space's WAL grew to 300 MB and
commits blocked for 4-6 s, past the watchdog's heartbeat patience (interval x misses: 1.5 s). This drives
:class:`onitu.space.durable.Durable` as the server does: each turn writes ``--per-turn`` tuples that stay (a synced
file's entries), takes back as many short-lived ones and caches a reply per request, while ``--copiers`` processes
copy small files with an fsync each. Printed per second: commits, the slowest commit, the WAL's size; at the end,
the commit latency percentiles, the longest commit, the largest WAL, and the copiers' files/s (the disk's anchor:
what the same disk did for plain file copies meanwhile). Read every number beside the load average it prints.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path


def copier(root: Path, stop: multiprocessing.Event, count: multiprocessing.Value) -> None:
    """Copy 4 KiB files as a local driver stages them: write, fsync, rename, 100 per directory."""
    body = os.urandom(4096)
    n = 0
    while not stop.is_set():
        directory = root / f"d{n // 100}"
        if n % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f".f{n}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.rename(directory / f"f{n}")
        n += 1
        with count.get_lock():
            count.value += 1


def turn_rows(turn: int, per_turn: int) -> tuple[list[list], list[tuple[bytes, int, bytes]]]:
    """One turn's rows: ``per_turn`` lasting tuples (~300 bytes, a file's entry), and the deletes of as many
    short-lived ones written the turn before (orders taken by plugs), plus a cached reply per request."""
    base = turn * per_turn * 2
    puts = [[base + i, b"x" * 300 + str(base + i).encode(), None, None] for i in range(2 * per_turn)]
    dels = [base - per_turn * 2 + i for i in range(0, 2 * per_turn, 2)] if turn else []
    replies = [(b"session-%d" % (i % 4), base + i, b"r" * 60) for i in range(per_turn)]
    return [puts, dels, [], []], replies


def drive(durable_path: Path, seconds: float, per_turn: int) -> list[float]:
    from onitu.space.durable import Durable

    durable = Durable(durable_path)
    wal = Path(f"{durable_path}-wal")
    latencies: list[float] = []
    started = last = time.monotonic()
    second: list[float] = []
    biggest = 0
    turn = 0
    try:
        while time.monotonic() - started < seconds:
            rows, replies = turn_rows(turn, per_turn)
            acks = {b"session-%d" % s: turn * per_turn * 2 for s in range(4)} if turn % 50 == 0 else {}
            t0 = time.perf_counter()
            durable.commit(rows, replies, acks)
            took = time.perf_counter() - t0
            latencies.append(took)
            second.append(took)
            turn += 1
            now = time.monotonic()
            if now - last >= 1.0:
                size = wal.stat().st_size if wal.exists() else 0
                biggest = max(biggest, size)
                print(f"t={now - started:5.1f}s commits={len(second):5d} slowest={max(second) * 1000:7.1f} ms "
                      f"wal={size / 1e6:7.1f} MB db={durable_path.stat().st_size / 1e6:7.1f} MB "
                      f"load={os.getloadavg()[0]:.2f}", flush=True)
                second, last = [], now
    finally:
        durable.close()
    print(f"largest WAL seen: {biggest / 1e6:.1f} MB")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--copiers", type=int, default=2, help="processes copying small files with an fsync each")
    parser.add_argument("--per-turn", type=int, default=40, help="lasting tuples written per commit")
    parser.add_argument("--dir", default=None, help="scratch directory's parent (default: the temp dir)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onitu-stall-", dir=args.dir))
    stop = multiprocessing.Event()
    count = multiprocessing.Value("q", 0)
    copiers = [multiprocessing.Process(target=copier, args=(tmp / f"copies{i}", stop, count), daemon=True)
               for i in range(args.copiers)]
    try:
        for proc in copiers:
            proc.start()
        t0 = time.monotonic()
        latencies = sorted(drive(tmp / "space.db", args.seconds, args.per_turn))
        elapsed = time.monotonic() - t0
        n = len(latencies)
        print(f"{n} commits ({n / elapsed:.0f}/s, {n * args.per_turn * 2 / elapsed:.0f} tuples/s): "
              f"p50 {latencies[n // 2] * 1000:.2f} ms, p99 {latencies[n * 99 // 100] * 1000:.1f} ms, "
              f"p99.9 {latencies[n * 999 // 1000] * 1000:.1f} ms, max {latencies[-1] * 1000:.0f} ms; "
              f"over 1 s: {sum(t > 1.0 for t in latencies)}")
        print(f"anchor: the copiers wrote {count.value / elapsed:.0f} fsync'd files/s; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        stop.set()
        for proc in copiers:
            proc.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
