"""A million tuples: RSS per tuple (in-process and in the server) and lookup time by leading constants.

    python bench/space_memory.py [--tuples 1000000]

Targets (issue #3): <= 300 bytes of RSS per small tuple; a take/read by leading constants under 1 ms with
1M live tuples.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def in_process(n: int) -> None:
    from onitu.space import TupleSpace

    proc = psutil.Process()
    ts = TupleSpace()
    before = proc.memory_info().rss
    for i in range(n):
        ts.write(("task", i, "payload"))
    after = proc.memory_info().rss
    print(f"in-process: {n} tuples, {(after - before) / n:.0f} bytes RSS per tuple")

    rng = random.Random(1)
    keys = rng.sample(range(n), 2000)
    t0 = time.perf_counter()
    for k in keys[:1000]:
        ts.read(("task", k, None), 0)
    t1 = time.perf_counter()
    for k in keys[1000:]:
        ts.take(("task", k, str), 0)
    t2 = t3 = time.perf_counter()
    for _ in range(1000):
        ts.take(("task", None, None), 0)  # FIFO from the head bucket, behind 1000 tombstones
    t4 = time.perf_counter()
    print(f"in-process with {n} live tuples: read by 2 leading constants {(t1 - t0) * 1e6 / 1000:.1f} us/op, "
          f"take {(t2 - t1) * 1e6 / 1000:.1f} us/op, FIFO take by head {(t4 - t3) * 1e6 / 1000:.1f} us/op")


def server(n: int) -> None:
    from onitu.space import connect

    tmp = Path(tempfile.mkdtemp(prefix="onitu-mem-"))
    srv = subprocess.Popen([sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp),
                            "--listen", f"ipc://{tmp}/space.sock", "--no-discovery"], stderr=subprocess.DEVNULL)
    try:
        while not (tmp / "space.json").exists():
            time.sleep(0.05)
        endpoint = json.loads((tmp / "space.json").read_text())["endpoints"][0]
        proc = psutil.Process(srv.pid)
        with connect(endpoint) as ts:
            ts.write(("warm", 0))
            before = proc.memory_info().rss
            t0 = time.perf_counter()
            for start in range(0, n, 2000):
                ts.batch([("write", ("task", i, "payload")) for i in range(start, min(n, start + 2000))])
            elapsed = time.perf_counter() - t0
            after = proc.memory_info().rss
            t1 = time.perf_counter()
            for k in range(0, n, n // 1000):
                ts.read(("task", k, None), 0)
            rtt = (time.perf_counter() - t1) / 1000
        print(f"server: {n} tuples written in {elapsed:.1f} s ({n / elapsed:.0f}/s batched), "
              f"{(after - before) / n:.0f} bytes RSS per tuple; read by leading constants {rtt * 1e6:.0f} us "
              f"round trip; database {(tmp / 'space.db').stat().st_size / n:.0f} bytes per tuple")
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tuples", type=int, default=1_000_000)
    args = ap.parse_args()
    in_process(args.tuples)
    server(args.tuples)


if __name__ == "__main__":
    main()
