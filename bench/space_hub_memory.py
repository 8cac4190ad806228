"""The space pair's memory per tracked file under a sync hub's traffic, without the plugs' file work.

    python bench/space_hub_memory.py [--files 100000]

A space pair under ``onitu start`` (primary and secondary, no services) receives what the hub writes for FILES
new files, in the hub's batches (tuple shapes of :mod:`onitu.sync.tuples`): the source's reports (1,000 entries
each), the referee's agreed records (``META``) and orders for two replicas, the replicas' results, and the records
updated as each replica holds the file (a take and a write each). Printed: RSS of both servers, idle and empty,
then idle with FILES records, and the growth per file; the bounded parts (event history, the batches a primary
keeps for catch-ups) are in it, as in a hub. The sync bench (``bench/sync_vs_rclone.py``, part 3) measures the
same in a whole hub; this one takes minutes at 100,000 files and isolates the space.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import psutil
from space_failover import Run

from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.state import record

BATCH = 500  # files per round, as a plug reports and the referee commits
REPLICAS = ("r1", "r2")


def meta(path: str) -> FileMeta:
    return FileMeta(path, "file", len(path), hashlib.sha256(path.encode()).hexdigest(), VersionVector({"source": 1}),
                    mtime_ns=1_764_000_000_000_000_000 + len(path))


def one_round(space, paths: list[str], seq: int) -> None:
    """What the hub writes for a batch of new files, from the source's report to both replicas holding them."""
    entries = [[p, ["file", meta(p).sha256, len(p), 1]] for p in paths]
    space.write((tuples.REPORT, "source", "plug-source", seq, {"folder": "f", "scan": None, "entries": entries}))
    space.take((tuples.REPORT, "source", None, None, None))
    ops: list[tuple] = []
    for p in paths:
        ops.append(("write", (tuples.META, tuples.meta_key("f", p), record.encode(meta(p), ["source"], {})), None))
        for r in REPLICAS:
            order = {"action": {"op": "copy", "path": p, "on": r, "sources": ["source"], "sha256": "0" * 64,
                                "size": len(p), "replaces": None, "source_path": None}, "meta": meta(p).to_wire()}
            ops.append(("write", (tuples.ORDER, r, f"{r}-{seq}-{p}", order), None))
    space.batch(ops)
    holders = ["source"]
    for r in REPLICAS:
        for p in paths:
            space.take((tuples.ORDER, r, f"{r}-{seq}-{p}", None))
        space.write((tuples.DONE, r, f"plug-{r}", seq, {"results": [[f"{r}-{seq}-{p}", "ok"] for p in paths]}))
        space.take((tuples.DONE, r, None, None, None))
        holders = [*holders, r]
        ops = []
        for p in paths:
            key = tuples.meta_key("f", p)
            stored = record.encode(meta(p), holders, {})
            ops += [("discard", (tuples.META, key, None)), ("write", (tuples.META, key, stored), None)]
        space.batch(ops)


def rss(run: Run) -> dict[str, int]:
    status = run.status()
    return {("primary" if p["name"] == status["primary"] else "secondary"): psutil.Process(p["pid"]).memory_info().rss
            for p in status["processes"] if p["name"].startswith("space")}


def settle(run: Run) -> None:
    run.wait(lambda s: s.get("mode") == "paired", 600, "the pair")
    time.sleep(3)  # the secondary's last acknowledgements, the primary's last turn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    n = ap.parse_args().files
    from onitu.space import connect

    run = Run()
    try:
        run.wait(lambda s: s.get("mode") == "paired", 60, "the first pair")
        with connect(data_dir=run.data, connect_timeout=60) as space:
            settle(run)
            before = rss(run)
            t0 = time.perf_counter()
            for seq, start in enumerate(range(0, n, BATCH)):
                one_round(space, [f"d{i // 100:05d}/f{i:07d}.txt" for i in range(start, min(n, start + BATCH))], seq)
            took = time.perf_counter() - t0
            settle(run)
            after = rss(run)
            held = len(space.read_all((tuples.META, None, None)))
        print(f"{n:,} files in {took:.1f} s, {held:,} records held; RSS idle empty -> idle with the records:")
        for role in ("primary", "secondary"):
            print(f"  {role:<10} {before[role] / 2**20:8.1f} MiB -> {after[role] / 2**20:8.1f} MiB: "
                  f"{(after[role] - before[role]) / n:6.0f} bytes per file")
    except BaseException:
        for log in sorted((run.data / "run").glob("*.log")):  # what the watchdog and the servers saw
            print(f"--- {log.name}:", *log.read_text(errors="replace").splitlines()[-15:], sep="\n")
        raise
    finally:
        run.close()


if __name__ == "__main__":
    main()
