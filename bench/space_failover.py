"""Failover of the space pair under `onitu start`, with the default heartbeat settings, at 0 and N live tuples.

    python bench/space_failover.py [--tuples 1000000] [--kills 3]

For each size: start `onitu start` in a private data dir, fill the space, wait until the pair is formed, then kill -9
the primary while a client writes in a loop, and measure from the kill to the watchdog's promotion (detect +
promote) and to the first write the new primary answers. Target (issue 19): <= 1.5 s at 1M live tuples. Then the
old primary comes back as the secondary: the time until the pair is formed again (its catch-up) is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

CONFIG = """data: {data}
space:
  discovery_port: 0
"""


class Run:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="onitu-failover-"))
        self.data = self.tmp / "data"
        (self.tmp / "onitu.yaml").write_text(CONFIG.format(data=self.data))
        env = {**os.environ, "ONITU_DATA": str(self.data)}
        self.proc = subprocess.Popen([sys.executable, "-m", "onitu.cli", "start", "-c", str(self.tmp / "onitu.yaml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     env=env)

    def status(self) -> dict:
        try:
            return json.loads((self.data / "run" / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and pred(status):
                return status
            time.sleep(0.01)
        raise SystemExit(f"timed out waiting for {what}: {self.status()}")

    def primary_pid(self) -> int:
        status = self.status()
        return next(p["pid"] for p in status["processes"] if p["name"] == status["primary"])

    def close(self) -> None:
        subprocess.run([sys.executable, "-m", "onitu.cli", "stop", "-c", str(self.tmp / "onitu.yaml")],
                       capture_output=True, timeout=120)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def fill(space, n: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, 2000):
        space.batch([("write", ("bulk", i, "payload"), None) for i in range(start, min(n, start + 2000))])
    return time.perf_counter() - t0


def promoted_at(run: Run, after: float) -> float | None:
    """Wall-clock time of the watchdog's first 'promote to ... done' after ``after`` (from its log)."""
    for line in (run.data / "run" / "watchdog.log").read_text().splitlines():
        if "promote to" in line and line.endswith("done"):
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                return at
    return None


def one_failover(run: Run, space, paired_timeout: float) -> tuple[float, float, float]:
    """(kill -> promoted, kill -> first write answered, kill -> paired again) in seconds."""
    status = run.wait(lambda s: s.get("mode") == "paired", paired_timeout, "the pair")
    first, epoch = status["primary"], status["epoch"]
    space.write(("before", 1))
    killed, killed_wall = time.monotonic(), time.time()
    os.kill(run.primary_pid(), signal.SIGKILL)
    space.write(("after", 1))  # the client follows the new primary, re-sending until it answers
    answered = time.monotonic() - killed
    run.wait(lambda s: s.get("epoch", 0) > epoch and s.get("primary") != first, 60, "the promotion")
    promoted = promoted_at(run, killed_wall - 0.01)
    run.wait(lambda s: s.get("mode") == "paired" and s.get("epoch", 0) > epoch, paired_timeout, "the pair again")
    repaired = time.monotonic() - killed
    return (promoted - killed_wall if promoted else float("nan")), answered, repaired


def bench(n: int, kills: int) -> None:
    from onitu.space import connect

    run = Run()
    try:
        run.wait(lambda s: s.get("mode") == "paired", 60, "the first pair")
        with connect(data_dir=run.data, connect_timeout=60) as space:
            took = fill(space, n) if n else 0.0
            # the secondary is paired once it holds every batch: as long as it takes to catch up after the fill
            for k in range(kills):
                detect, answered, repaired = one_failover(run, space, 120 + n / 10_000)
                print(f"{n:>9} live tuples, kill {k + 1}: promoted {detect:5.2f} s, first write answered "
                      f"{answered:5.2f} s, paired again {repaired:6.2f} s after the kill -9"
                      + (f"  (filled in {took:.1f} s)" if k == 0 and n else ""), flush=True)
            assert len(space.read_all(("bulk", None, None), limit=10)) == min(n, 10)
    finally:
        run.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuples", type=int, default=1_000_000)
    ap.add_argument("--kills", type=int, default=3)
    args = ap.parse_args()
    print("failover under `onitu start`, default heartbeat (0.5 s interval, 3 misses); target: first write "
          "answered <= 1.5 s at 1M live tuples")
    for n in (0, args.tuples):
        bench(n, args.kills)


if __name__ == "__main__":
    main()
