"""kill -9 a replica's plug while it copies small files in batches (a directory's files fetched together, made
durable together, named together, then reported in one result): at every kill, each file the hub records the replica
holding (the plug's result, acknowledged) is there and whole, and every file the replica shows holds the content it
should (nothing half-written or unverified has a name); restarted by the watchdog, the plug brings the rest."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from onitu.space import connect
from onitu.sync.state.ledger import Ledger
from tests.sync.hub import Hub, sha, tree, wait_settled

DIRS, PER_DIR = 24, 50  # small files side by side: each order's copies go in a few batches
KILLS = 3


def held_by(hub: Hub, name: str) -> dict[str, str]:
    """{path: sha256 or "dir"} the hub records replica ``name`` holding (what its results and reports told)."""
    ledger = Ledger()
    with connect(data_dir=hub.data, connect_timeout=30) as space:
        ledger.load(space)
    return {path: meta.sha256 or "dir" for path, meta in ledger.held[name, "docs"].items()}


def wait_for_progress(hub: Hub, root: Path, since: int, timeout: float = 60.0) -> None:
    """Until the plug of ``root`` runs and has written more files than ``since`` (so a kill lands mid-sync), or all of
    them (the last few can come in less than a batch)."""
    deadline = time.monotonic() + timeout
    while sum(len(files) for _, _, files in os.walk(root)) <= min(since + PER_DIR // 2, DIRS * PER_DIR - 1):
        assert time.monotonic() < deadline, f"no progress on {root}\n{hub.agent_logs()}"
        time.sleep(0.02)


@pytest.mark.timeout(300)
def test_a_plug_killed_mid_batch_keeps_what_it_acknowledged_and_shows_nothing_half_written(tmp_path):
    rng = random.Random()
    hub = Hub(tmp_path, names=("a", "b"))
    source, replica = hub.roots["a"], hub.roots["b"]
    expected = {}
    for d in range(DIRS):
        (source / f"d{d}").mkdir(parents=True)
        for f in range(PER_DIR):
            data = os.urandom(rng.randrange(1, 8192))
            (source / f"d{d}/f{f}.bin").write_bytes(data)
            expected[f"d{d}/f{f}.bin"] = sha(data)
        expected[f"d{d}"] = "dir"
    try:
        hub.start()
        kills = 0
        for _ in range(KILLS):
            wait_for_progress(hub, replica, len([p for p in tree(replica) if p.endswith(".bin")]))
            if tree(replica) == expected:
                break  # all there already: nothing left to interrupt
            os.kill(hub.pid("plug-b"), signal.SIGKILL)
            kills += 1
            held = held_by(hub, "b")
            shown = tree(replica)  # after the ledger: a file the restarted plug adds meanwhile is only more
            lost = [p for p, content in held.items() if shown.get(p) != content]
            assert not lost, f"acknowledged and not there after kill {kills}: {lost[:10]}"
            wrong = [p for p, content in shown.items() if expected.get(p) != content]
            assert not wrong, f"shown with the wrong content after kill {kills}: {wrong[:10]}"
            assert not list(replica.rglob(".onitu-tmp-*")), "a small file's staging name is in sight"
        assert kills >= 1, "the sync ended before any kill"
        assert wait_settled(hub, lambda t: t == expected, 120) == expected
        deadline = time.monotonic() + 60  # the referee records the last results after the files arrived
        while (held := held_by(hub, "b")) != expected:
            assert time.monotonic() < deadline, f"b is recorded otherwise: {sorted(set(expected) ^ set(held))[:10]}"
            time.sleep(0.5)
    finally:
        try:
            hub.stop()
        finally:
            hub.kill_everything()
