"""Transfers relayed by the majordomo, interrupted by kill -9 of the agent or of the majordomo: they resume from the
bytes already staged (counted: the majordomo's heartbeat tells how many bytes it relayed), and the file arrives
whole (sha256). Then the majordomo killed again and again while files go both ways: everything converges."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.hub import tree
from tests.sync.majordomo.harness import AgentProc, MajordomoHub, running, wait_for

SIZE = 128 << 20  # bytes: long enough to be caught half-way on a fast machine
STAGED = 32 << 20  # bytes staged when the kill comes, at least
SLACK = 8 << 20  # bytes sent again at most after a resume (the chunks in flight when it was killed, and more)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MajordomoHub, AgentProc]]:
    tmp = tmp_path_factory.mktemp("resume")
    hub = MajordomoHub(tmp, {"far": "folders: [docs], mode: rw"})
    agent = AgentProc(tmp, hub, "far")
    with running(hub, [agent]):
        yield hub, agent.start()


def logs(hub: MajordomoHub, agent: AgentProc) -> str:
    return agent.output()[-3000:] + hub.agent_logs()


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes at ``path``; their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(size >> 20):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def staged_size(root: Path) -> int:
    """Bytes of the largest staged file under ``root`` (0 if none)."""
    sizes = [p.stat().st_size for p in root.rglob(".onitu-*") if p.is_file()]
    return max(sizes, default=0)


def kill_when_staged(root: Path, pid: int, what: str, why: object) -> int:
    """kill -9 ``pid`` once ``root`` has :data:`STAGED` bytes staged; the bytes staged once it is dead."""
    deadline = time.monotonic() + 120
    while staged_size(root) < STAGED:
        assert time.monotonic() < deadline, f"no transfer under way to {root}\n{why() if callable(why) else why}"
        time.sleep(0.005)
    os.killpg(pid, signal.SIGKILL) if what == "agent" else os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)  # what the receiving side had in hand when its source vanished is written by now
    staged = staged_size(root)
    assert staged < SIZE, f"the transfer ended before the {what} was killed"
    return staged


def relayed(hub: MajordomoHub, way: str) -> tuple[int, list[str]]:
    """(bytes the running majordomo relayed ``way`` for agent far, the agents connected), from its heartbeat."""
    detail = hub.process("majordomo").get("detail") or {}
    return (detail.get("relayed") or {}).get("far", {}).get(way, 0), detail.get("agents") or []


def test_kill9_of_the_agent_resumes_from_what_it_staged(remote: tuple[MajordomoHub, AgentProc]) -> None:
    hub, agent = remote
    why = lambda: logs(hub, agent)  # noqa: E731
    (hub.docs / "hello.txt").write_text("hello")
    wait_for(lambda: "hello.txt" in agent.tree(), 90, "the agent connected and in sync", why)
    sha = random_file(hub.docs / "down.bin", SIZE)
    assert agent.proc is not None
    staged = kill_when_staged(agent.root, agent.proc.pid, "agent", why)
    wait_for(lambda: "far" not in relayed(hub, "to_agent")[1], 30, "the majordomo drops the dead agent", why)
    time.sleep(1.5)  # (a heartbeat after it: the count of what went to the dead agent is final)
    before = relayed(hub, "to_agent")[0]
    agent.start()
    wait_for(lambda: agent.tree().get("down.bin") == sha, 180, "the file at the agent after its restart", why)
    time.sleep(1.5)
    sent = relayed(hub, "to_agent")[0] - before
    print(f"staged at the kill: {staged >> 20} MiB of {SIZE >> 20}; relayed after the restart: {sent >> 20} MiB")
    assert SIZE - staged <= sent <= SIZE - staged + SLACK, f"{sent} bytes sent after the restart, {staged} staged"


def test_kill9_of_the_majordomo_resumes_from_what_the_hub_staged(remote: tuple[MajordomoHub, AgentProc]) -> None:
    hub, agent = remote
    why = lambda: logs(hub, agent)  # noqa: E731
    sha = random_file(agent.root / "up.bin", SIZE)
    old = hub.pid("majordomo")
    staged = kill_when_staged(hub.docs, old, "majordomo", why)
    wait_for(lambda: tree(hub.docs).get("up.bin") == sha, 180, "the file at the hub after the majordomo's restart",
             why)
    assert hub.pid("majordomo") != old
    time.sleep(1.5)
    sent = relayed(hub, "from_agent")[0]  # all of it by the new majordomo
    print(f"staged at the kill: {staged >> 20} MiB of {SIZE >> 20}; relayed after the restart: {sent >> 20} MiB")
    assert SIZE - staged <= sent <= SIZE - staged + SLACK, f"{sent} bytes sent after the restart, {staged} staged"


@pytest.mark.timeout(400)
def test_majordomo_killed_again_and_again_while_files_go_both_ways(
        remote: tuple[MajordomoHub, AgentProc]) -> None:
    """No transfer is left hanging on a majordomo that died under it (its plug waiting for chunks that will never
    come until its 30 s timeout): each round converges, in both directions, and no copy gave up for want of an
    answer. ONITU_MAJORDOMO_KILLS rounds (2)."""
    hub, agent = remote
    why = lambda: logs(hub, agent)  # noqa: E731
    rng = random.Random(int(os.environ.get("ONITU_SEED", "17")))
    for n in range(int(os.environ.get("ONITU_MAJORDOMO_KILLS", "2"))):
        wanted = {}
        for side, root in (("hub", hub.docs), ("agent", agent.root)):
            for i in range(4):
                wanted[f"{side}-{n}-{i}.bin"] = random_file(root / f"{side}-{n}-{i}.bin", (4 + 4 * i) << 20)
        time.sleep(rng.uniform(0.2, 1.5))
        killed = time.monotonic()
        os.kill(hub.pid("majordomo"), signal.SIGKILL)
        wait_for(lambda wanted=wanted: all(tree(hub.docs).get(p) == s and agent.tree().get(p) == s
                                           for p, s in wanted.items()),
                 150, f"round {n}: convergence after the majordomo was killed", why)
        print(f"round {n}: converged {time.monotonic() - killed:.1f} s after the kill")
    hung = [line for text in (agent.output(), (hub.data / "run" / "plug-hub.log").read_text())
            for line in text.splitlines() if "no answer from" in line]
    assert not hung, "\n".join(hung)
