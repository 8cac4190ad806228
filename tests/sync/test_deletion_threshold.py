"""The deletion threshold judges a mass deletion whole, however it reaches the referee.

The referee runs in-process with pretend plugs (:mod:`tests.sync.pretend`): a full listing each (all three hold the
same files, so the hub agrees on them without an order), then change reports. The hub tests (``test_hub.py``)
check the same end to end with real watchers, whose timing varies.
"""

from __future__ import annotations

import time

import pytest

from onitu.sync import referee as referee_module
from onitu.sync.decide import deletions as deletions_module
from onitu.sync.decide.plan import Observed
from onitu.sync.referee import Referee
from tests.sync.pretend import obs, pretend_hub


@pytest.fixture
def hub(tmp_path):
    yield from pretend_hub(tmp_path)


def settle(referee: Referee) -> None:
    """Decide until nothing more is due (deletion bursts ended)."""
    deadline = time.monotonic() + 5
    while referee.deletions.bursts and time.monotonic() < deadline:
        time.sleep(0.05)
        referee.decide()
    referee.decide()


def ten_files(hub, monkeypatch, deletion_settle: float) -> list[str]:
    """Ten files agreed on every replica; deletions settle after ``deletion_settle`` seconds from now on."""
    monkeypatch.setattr(deletions_module, "SETTLE", deletion_settle)
    referee, plugs = hub
    files = [f"f{i}.txt" for i in range(10)]
    plugs.listing(files)
    referee.decide()
    return files


def held(referee: Referee, service: str = "a") -> set[str]:
    return referee.awaiting.held_paths("docs", service)


def test_a_deletion_reported_in_pieces_is_held_whole(hub, monkeypatch):
    referee, plugs = hub
    files = ten_files(hub, monkeypatch, 0.3)
    assert not plugs.orders() and len(referee.ledger.agreed["docs"]) == 10
    for piece in (files[:2], files[2:4], files[4:6]):  # 6 of 10, two at a time, each decided on its own
        plugs.report("a", [(p, None) for p in piece])
        referee.decide()
        time.sleep(0.1)
    assert not plugs.orders(), "nothing may be deleted while the replica is still deleting"
    settle(referee)
    assert held(referee) == set(files[:6])
    assert not plugs.orders()


def test_a_small_deletion_goes_through_once_the_replica_pauses(hub, monkeypatch):
    referee, plugs = hub
    ten_files(hub, monkeypatch, 0.3)
    plugs.report("a", [("f0.txt", None), ("new.txt", obs("new.txt"))])
    referee.decide()
    assert not plugs.orders(), "what a deleting replica reports waits for its deletions to pause"
    settle(referee)
    assert plugs.actions() == [("b", "copy", "new.txt"), ("b", "delete", "f0.txt"),
                               ("c", "copy", "new.txt"), ("c", "delete", "f0.txt")]
    assert not held(referee)


def ten_directories(hub, monkeypatch) -> tuple[list[str], list[str]]:
    """Ten directories of nine files, agreed on every replica; decided in passes of 25 paths from now on."""
    monkeypatch.setattr(referee_module, "PASS_SIZE", 25)
    referee, plugs = hub
    dirs = [f"d{i:02}" for i in range(10)]
    tree = [p for d in dirs for p in (d, *(f"{d}/f{j}.txt" for j in range(9)))]
    plugs.listing(tree)
    referee.decide()
    return dirs, tree


def test_a_deletion_decided_over_several_passes_is_held_whole(hub, monkeypatch):
    referee, plugs = hub
    dirs, tree = ten_directories(hub, monkeypatch)
    gone = [p for p in tree if p.split("/")[0] in dirs[:6]]  # 60 of 100 entries, in passes of 20
    plugs.report("a", [(p, None) for p in gone])
    referee.deletions.bursts.clear()  # as if the deletions had paused: decided now
    referee.decide()
    assert held(referee) == set(gone)
    assert not plugs.orders()


def test_renamed_trees_stay_moves_across_passes_and_are_no_deletion(hub, monkeypatch):
    referee, plugs = hub
    dirs, tree = ten_directories(hub, monkeypatch)
    entries: list[tuple[str, Observed | None]] = []
    for d in dirs[:6]:  # six whole directories renamed: z.. sorts far from d..
        for p in [p for p in tree if p.split("/")[0] == d]:
            entries += [(p, None), ("z" + p, obs(p))]
    plugs.report("a", entries)
    referee.deletions.bursts.clear()
    referee.decide()
    assert not held(referee)
    assert plugs.actions() == [(s, "move", d) for s in ("b", "c") for d in dirs[:6]]


def test_approval_clears_the_count(hub, monkeypatch):
    referee, plugs = hub
    files = ten_files(hub, monkeypatch, 0.2)
    plugs.report("a", [(p, None) for p in files[:6]])
    settle(referee)
    assert held(referee) == set(files[:6])
    referee.commands.release(True, None, None)
    assert len(plugs.actions()) == 12
    plugs.report("a", [("f6.txt", None)])  # one more, just after: an ordinary deletion
    settle(referee)
    assert not held(referee)
    assert len(plugs.actions()) == 14
