"""Remote agents on loopback: a hub under ``onitu start`` with its majordomo, and ``onitu agent`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.hub import tree
from tests.sync.majordomo.harness import AgentProc, MajordomoHub, wait_for


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[MajordomoHub]:
    hub = MajordomoHub(tmp_path, {"laptop": "folders: [docs], mode: rw", "reader": "folders: [docs], mode: r",
                                  "nobody": "folders: [], mode: rw"})
    agents: list[AgentProc] = []
    hub.agents = agents  # type: ignore[attr-defined]
    try:
        yield hub.start()
    finally:
        for agent in agents:
            agent.kill9()
        try:
            hub.stop()
        finally:
            hub.kill_everything()


def agent(tmp_path: Path, hub: MajordomoHub, name: str, **kw: object) -> AgentProc:
    found = AgentProc(tmp_path, hub, name, **kw)  # type: ignore[arg-type]
    hub.agents.append(found)  # type: ignore[attr-defined]
    return found


def test_sync_both_ways(tmp_path: Path, hub: MajordomoHub) -> None:
    (hub.docs / "from-hub.txt").write_text("hub")
    laptop = agent(tmp_path, hub, "laptop")
    (laptop.root / "sub").mkdir()
    (laptop.root / "sub" / "from-laptop.txt").write_text("laptop")
    laptop.start()
    logs = lambda: laptop.output()[-3000:] + hub.agent_logs()  # noqa: E731
    wait_for(lambda: laptop.tree() == tree(hub.docs) and len(laptop.tree()) == 3, 60, "first sync", logs)
    (laptop.root / "later.txt").write_text("later")
    (hub.docs / "from-hub.txt").write_text("hub, changed")
    wait_for(lambda: laptop.tree() == tree(hub.docs) and "later.txt" in tree(hub.docs)
             and (laptop.root / "from-hub.txt").read_text() == "hub, changed", 30, "changes both ways", logs)
