"""An agent on "another host": its own network namespace, reaching the hub over a veth pair (it dials out; the hub
has no way to it: the agent's plug serves on its namespace's loopback). Real ``onitu start`` and ``onitu agent``
processes. Its network cut for 10 s, kill -9 of the agent mid-transfer, kill -9 of the space primary while it
transfers: nothing lost, nothing deleted, everything converges."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.make.test_remote import WHY, netns  # noqa: F401  (the fixture)
from tests.sync.hub import tree
from tests.sync.majordomo.harness import AgentProc, MajordomoHub, running, wait_for

pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")


@pytest.fixture
def remote(tmp_path: Path, netns: tuple[str, str]) -> Iterator[tuple[MajordomoHub, AgentProc, str]]:  # noqa: F811
    ns, host_ip = netns
    hub = MajordomoHub(tmp_path, {"far": "folders: [docs], mode: rw"}, host=host_ip)
    agent = AgentProc(tmp_path, hub, "far", prefix=("ip", "netns", "exec", ns))
    with running(hub, [agent]):
        yield hub, agent.start(), ns


def big(path: Path, mib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1 << 20))


def staged(root: Path) -> bool:
    """A transfer is under way in ``root`` (a staged file of the local driver)."""
    return any(".onitu-" in str(p) and p.is_file() for p in root.rglob("*"))


def test_agent_in_another_namespace(remote: tuple[MajordomoHub, AgentProc, str]) -> None:
    hub, agent, ns = remote
    logs = lambda: agent.output()[-3000:] + hub.agent_logs()  # noqa: E731
    (hub.docs / "from-hub.txt").write_text("hub")
    (agent.root / "from-agent.txt").write_text("agent")
    wait_for(lambda: agent.tree() == tree(hub.docs) and len(agent.tree()) == 2, 90, "sync both ways", logs)

    # its network cut for 12 s: offline, nothing deleted, both sides' changes reconciled after
    link = next(line.split(":")[1].strip().split("@")[0] for line in subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()
        if "lo:" not in line)
    subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", link, "down"], check=True)
    try:
        (hub.docs / "while-cut.txt").write_text("hub, while the agent was cut off")
        (agent.root / "cut-edit.txt").write_text("agent, while cut off")
        # longer than two silences (wire.SILENCE): the agent's first dial after the cut is lost too, while its plugs
        # wait for the new streams they asked for (once forgotten, so the agent hung, its orders never read)
        time.sleep(12)
        assert {"from-hub.txt", "from-agent.txt"} <= set(tree(hub.docs))
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", link, "up"], check=True)
    wait_for(lambda: agent.tree() == tree(hub.docs) and len(agent.tree()) == 4, 90, "reconciled after the cut", logs)

    # kill -9 of the agent in the middle of a transfer to it: restarted, it gets the file
    big(hub.docs / "big.bin", 64)
    wait_for(lambda: staged(agent.root), 60, "a transfer to the agent under way", logs)
    agent.kill9()
    agent.start()
    wait_for(lambda: agent.tree() == tree(hub.docs) and "big.bin" in agent.tree(), 120, "resumed after kill -9", logs)

    # kill -9 of the space primary while the agent sends a file to the hub
    big(agent.root / "up.bin", 64)
    wait_for(lambda: staged(hub.roots["hub"]), 60, "a transfer from the agent under way", logs)
    os.kill(hub.pid(hub.status()["primary"]), signal.SIGKILL)
    wait_for(lambda: agent.tree() == tree(hub.docs) and "up.bin" in tree(hub.docs), 120, "converged after failover",
             logs)
