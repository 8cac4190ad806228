"""Transfers to a remote agent through the majordomo, against the same to a local service of the hub.

    python bench/majordomo.py [--small 1000] [--big-mib 200] [--keep]

One real ``onitu start`` hub with a local service ``hub`` holding two folders: ``near`` (also held by ``mirror``, a
second local service of the hub: the anchor) and ``far`` (also held by the service of an ``onitu agent`` on this
machine, connected over CURVE tcp on loopback: every chunk is relayed by the majordomo). For each folder, SMALL x
4 KiB files (one rename into the hub's replica) and then one BIG_MIB MiB file are timed from the rename until the
other replica holds them all (sizes, then sha256 checked). Printed: wall times, the relay's overhead ratio (far /
near), and the RSS of the majordomo (and its peak over baseline) sampled every 50 ms while the big file travels to
the agent. One run on this machine: read the numbers as indicative.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.supervision.harness import Onitu  # noqa: E402
from tests.sync.hub import tree  # noqa: E402
from tests.sync.majordomo.harness import AgentProc, free_port  # noqa: E402


def hub_config(tmp: Path, endpoint: str) -> str:
    hub, mirror = tmp / "hub", tmp / "mirror"
    for d in (hub / "near", hub / "far", mirror):
        d.mkdir(parents=True, exist_ok=True)
    return (f"folders: {{near: {{}}, far: {{}}}}\nservices:\n"
            f"  hub: {{driver: local, options: {{root: {hub}, settle: 0.1}}, folders: {{near: near, far: far}}}}\n"
            f"  mirror: {{driver: local, options: {{root: {mirror}, settle: 0.1}}, folders: {{near: ''}}}}\n"
            f"majordomo:\n  listen: {endpoint}\n  clients:\n    laptop: {{folders: [far], mode: rw}}\n")


def make_tree(where: Path, small: int) -> dict[str, str]:
    for n in range(small):
        path = where / f"d{n // 40:03}" / f"f{n:05}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096))
    return tree(where)


def make_big(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def arrived(root: Path, expected: dict[str, str], timeout: float = 1800) -> float:
    """Seconds until ``root`` holds ``expected`` (sizes first, sha256 at the end)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if tree(root) == expected:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out: {root} never held the tree")


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.samples, self.stop = psutil.Process(pid), [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.proc.memory_info().rss)
            time.sleep(0.05)


def run(tmp: Path, small: int, big_mib: int) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    hub = Onitu(tmp, hub_config(tmp, endpoint))
    hub.endpoint = endpoint  # type: ignore[attr-defined]
    hub.start()
    hub.wait(lambda s: any(p["name"] == "majordomo" and p["state"] == "running" for p in s.get("processes", [])),
             60, "the majordomo")
    agent = AgentProc(tmp, hub, "laptop", folders=("far",))  # type: ignore[arg-type]
    agent.config.write_text(agent.config.read_text().replace("far: far", "far: ''"))
    try:
        agent.start()
        time.sleep(3)
        staging = tmp / "staging"
        expected = make_tree(staging / "tree", small)
        shutil.copytree(staging / "tree", staging / "tree2")
        big = make_big(staging / "big.bin", big_mib)
        times = {}
        for folder, other in (("near", tmp / "mirror"), ("far", agent.root)):
            os.rename(staging / ("tree" if folder == "near" else "tree2"), tmp / "hub" / folder / "tree")
            times[folder, "small"] = arrived(other, {f"tree/{k}": v for k, v in expected.items()} | {"tree": "dir"})
        baseline = psutil.Process(hub.process("majordomo")["pid"]).memory_info().rss
        sampler = Sampler(hub.process("majordomo")["pid"])
        for folder, other in (("near", tmp / "mirror"), ("far", agent.root)):
            want = tree(other) | {"big.bin": big}
            if folder == "far":
                sampler.start()
            dest = tmp / "hub" / folder / "big.bin"
            if folder == "near":
                shutil.copyfile(staging / "big.bin", staging / "big2.bin")
                os.rename(staging / "big2.bin", dest)
            else:
                os.rename(staging / "big.bin", dest)
            times[folder, "big"] = arrived(other, want)
        sampler.stop.set()
        sampler.join()
    finally:
        agent.stop()
        hub.stop()
    print(f"{small} x 4 KiB: local service {times['near', 'small']:.2f} s, agent {times['far', 'small']:.2f} s, "
          f"relay overhead x{times['far', 'small'] / times['near', 'small']:.2f}")
    print(f"1 x {big_mib} MiB: local service {times['near', 'big']:.2f} s, agent {times['far', 'big']:.2f} s, "
          f"relay overhead x{times['far', 'big'] / times['near', 'big']:.2f}")
    peak = max(sampler.samples or [baseline])
    print(f"majordomo RSS: {baseline / 2**20:.1f} MiB before the big file, peak {peak / 2**20:.1f} MiB during it "
          f"(+{(peak - baseline) / 2**20:.1f} MiB for a {big_mib} MiB file)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big-mib", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onitu-bench-majordomo-"))
    try:
        run(tmp, args.small, args.big_mib)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
