"""The API's files route (one directory of a large folder) against the scan of every record it replaced.

    python bench/api_files.py [--files 20000] [--per-dir 100] [--repeat 20]

A real ``onitu start`` (space pair, referee, plugs of two local services a and b, the API) under a scratch
directory; FILES tiny files, PER_DIR per directory, are moved into a's folder with one rename and synced to b. Then,
REPEAT times each: ``GET /api/folders/docs/files?dir=D`` for one directory (the referee answers from its index of
paths) and for the folder's top (FILES / PER_DIR directories); the scan the route did before (every record of the
space read with a regex on its key, :func:`onitu.sync.hub.scan_files`) for the same directory; and ``os.scandir`` of
that directory on disk with a stat of each entry, as the anchor. Median and worst in milliseconds, with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onitu.space import connect  # noqa: E402
from onitu.sync.hub import scan_files  # noqa: E402
from tests.api.harness import ApiHub  # noqa: E402


def timed(what: str, repeat: int, call: Callable[[], int]) -> None:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        size = call()
        times.append((time.perf_counter() - started) * 1000)
    print(f"{what:<46} {size:>6} entries  median {statistics.median(times):8.2f} ms  worst {max(times):8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--per-dir", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    dirs = args.files // args.per_dir
    with tempfile.TemporaryDirectory(prefix="onitu-bench-api-") as scratch:
        hub = ApiHub(Path(scratch), names=("a", "b"))
        try:
            hub.start()
            staging = Path(scratch) / "staging"
            for d in range(dirs):
                (staging / f"d{d:04}").mkdir(parents=True)
                for n in range(args.per_dir):
                    (staging / f"d{d:04}" / f"f{n:04}.txt").write_text(f"{d}/{n}")
            started = time.monotonic()
            staging.rename(hub.roots["a"] / "tree")
            last = f"tree/d{dirs - 1:04}"
            with hub.client() as api:
                def listed(directory: str) -> int:
                    answer = api.get("/api/folders/docs/files", params={"dir": directory, "limit": 100_000})
                    answer.raise_for_status()
                    return len(answer.json())

                hub.wait_for(lambda: listed(last) == args.per_dir and listed("tree") == dirs
                             and (hub.roots["b"] / last).exists(), 1800, "the tree agreed")
                print(f"{args.files} files in {dirs} directories agreed in {time.monotonic() - started:.0f} s; "
                      f"load {os.getloadavg()[0]:.1f}")
                space = connect(None, data_dir=hub.data)
                one = f"tree/d{dirs // 2:04}"
                timed(f"GET files?dir={one} (referee index)", args.repeat, lambda: listed(one))
                timed("GET files?dir=tree (referee index)", args.repeat, lambda: listed("tree"))
                timed(f"scan of every record for {one} (before)", args.repeat,
                      lambda: len(scan_files(space, "docs", one, 100_000)))
                timed("scan of every record for tree (before)", args.repeat,
                      lambda: len(scan_files(space, "docs", "tree", 100_000)))
                timed(f"anchor: os.scandir + stat of {one}", args.repeat,
                      lambda: len([e.stat() for e in os.scandir(hub.roots["a"] / one)]))
                space.close()
            print(f"load after: {os.getloadavg()[0]:.1f}")
        finally:
            try:
                hub.stop()
            finally:
                hub.kill_everything()


if __name__ == "__main__":
    main()
