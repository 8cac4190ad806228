"""The referee in-process, with pretend plugs: how much it asks of the plugs at once."""

from __future__ import annotations

import pytest

from onitu.sync import referee as referee_module
from tests.sync.pretend import obs, pretend_hub


@pytest.fixture
def hub(tmp_path):
    yield from pretend_hub(tmp_path)


def test_a_large_tree_is_ordered_as_the_plugs_keep_up(hub, monkeypatch):
    monkeypatch.setattr(referee_module, "PASS_SIZE", 10)
    monkeypatch.setattr(referee_module, "OUTSTANDING", 20)
    referee, plugs = hub
    plugs.listing([])
    files = [f"f{i:03}.txt" for i in range(100)]
    plugs.report("a", [(p, obs(p)) for p in files])  # a hundred new files on a
    referee.decide()
    assert len(plugs.actions()) == 20, "a pass of 10 files makes 20 copies; then the referee waits for results"
    copied = set()
    for _ in range(20):
        copied.update((service, path) for service, _, path in plugs.actions())
        for order in plugs.orders():
            plugs.done(order)
        referee.ledger.commit(referee.space)
        referee.decide()
        assert len(plugs.actions()) <= 20
    assert copied == {(s, p) for s in ("b", "c") for p in files}
    assert not plugs.orders() and not referee.orders and not referee.dirty["docs"]
    assert all(referee.ledger.held[s, "docs"].keys() >= set(files) for s in ("a", "b", "c"))


def test_a_result_as_ordered_leaves_nothing_to_decide_again(hub):
    referee, plugs = hub
    plugs.listing([])
    files = [f"f{i}.txt" for i in range(5)]
    plugs.report("a", [(p, obs(p)) for p in files])
    referee.decide()
    for order in plugs.orders():
        plugs.done(order)  # each copy left what was ordered: no path is due for another decision
    assert not referee.dirty["docs"]
    referee.ledger.commit(referee.space)
    assert all(referee.ledger.held[s, "docs"].keys() == set(files) for s in ("b", "c"))
