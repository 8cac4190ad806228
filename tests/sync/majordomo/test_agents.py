"""Remote agents on loopback: a hub under ``onitu start`` with its majordomo, and ``onitu agent`` processes with
their own data dirs and keys. One hub for the module (starting one is the slow part); the tests run in order."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onitu.space.auth import fingerprint, load_pair
from tests.sync.hub import tree
from tests.sync.majordomo.harness import AgentProc, MajordomoHub, RawAgent, keys, running, wait_for

# The tests build on each other (agents started by the first are used by the later ones): one worker runs them all,
# in order (`--dist loadgroup`, in pyproject's addopts; plain `--dist load` spread them over workers, each with a
# hub of its own that lacked the earlier tests' agents: KeyError 'laptop' in CI).
pytestmark = pytest.mark.xdist_group("majordomo-agents")

CLIENTS = {"laptop": "folders: [docs], mode: rw", "reader": "folders: [docs], mode: r",
           "narrow": "folders: [docs], mode: rw", "mallory": "folders: [docs], mode: rw",
           "picky": "folders: [docs], mode: rw", "hog": "folders: [docs], mode: rw"}


class Setup:
    def __init__(self, tmp: Path, hub: MajordomoHub) -> None:
        self.tmp, self.hub = tmp, hub
        self.agents: dict[str, AgentProc] = {}

    def agent(self, name: str, **kw: object) -> AgentProc:
        self.agents[name] = AgentProc(self.tmp, self.hub, name, **kw)  # type: ignore[arg-type]
        return self.agents[name]

    def logs(self) -> str:
        """What a failure needs to be understood, the shortest first (a CI log keeps only a part): what the hub says
        of each service, each agent's output, then the hub's plugs, referee and majordomo."""
        status = self.hub.onitu("status", check=False)  # (its table: --json took all of CI's excerpt)
        return f"--- status\n{status.stdout[-3000:] or status.stderr[-1000:]}\n" + \
            "".join(f"--- agent {n}\n{a.output()[-2000:]}\n" for n, a in self.agents.items()) + self.hub.agent_logs()

    def wait(self, pred: object, what: str, timeout: float = 60) -> None:
        wait_for(pred, timeout, what, self.logs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("majordomo")
    hub = MajordomoHub(tmp, CLIENTS)
    found = Setup(tmp, hub)
    with running(hub, found.agents.values()):
        yield found


def services(hub: MajordomoHub) -> dict[str, dict]:
    status = json.loads(hub.onitu("status", "--json").stdout)
    return status["sync"]["folders"]["docs"]["services"]


def state(hub: MajordomoHub, service: str) -> str:
    """What the hub's status says of ``service`` in docs; "" until the referee's status lists it (it is written
    every few seconds: a service that just joined can sync files before it is listed)."""
    return services(hub).get(service, {}).get("state", "")


def test_sync_both_ways_and_mode_r(setup: Setup) -> None:
    hub = setup.hub
    (hub.docs / "from-hub.txt").write_text("hub")
    laptop, reader = setup.agent("laptop"), setup.agent("reader")
    (laptop.root / "sub").mkdir()
    (laptop.root / "sub" / "from-laptop.txt").write_text("laptop")
    (reader.root / "from-reader.txt").write_text("reader's own")
    laptop.start()
    reader.start()
    setup.wait(lambda: laptop.tree() == tree(hub.docs) and len(laptop.tree()) == 3, "laptop and hub in sync")
    setup.wait(lambda: all(p in reader.tree() for p in laptop.tree()), "the reader receives")
    (laptop.root / "later.txt").write_text("later")
    (hub.docs / "from-hub.txt").write_text("hub, changed")
    (reader.root / "reader-later.txt").write_text("not taken")
    setup.wait(lambda: laptop.tree() == tree(hub.docs) and "later.txt" in tree(hub.docs)
               and (laptop.root / "from-hub.txt").read_text() == "hub, changed"
               and reader.tree().get("later.txt") == laptop.tree()["later.txt"]
               and (reader.root / "from-hub.txt").read_text() == "hub, changed", "changes both ways")
    # mode r: the reader's changes are never taken
    assert "from-reader.txt" not in tree(hub.docs) and "reader-later.txt" not in tree(hub.docs)
    assert "from-reader.txt" not in laptop.tree()
    rows = services(hub)
    assert rows["laptop-files"]["remote"] == "laptop" and rows["reader-files"]["remote"] == "reader"
    assert "remote" not in rows["hub"]
    out = hub.onitu("status").stdout
    assert "laptop-files (remote: laptop)" in out, out


def test_agent_folder_options_apply(setup: Setup) -> None:
    """agent.yaml's folder options (under ``folders:`` and under the service) apply to the agent's service on the
    hub, both ways: a blacklisted file and one above the size limit are neither sent to it nor taken from it."""
    hub = setup.hub
    picky = setup.agent("picky", shared="{blacklist: ['*.tmp']}", own="{path: '', file_size: {max: 1000}}")
    for where, who in ((hub.docs, "hub"), (picky.root, "picky")):
        (where / f"{who}-small.txt").write_text(who)
        (where / f"{who}.tmp").write_text(who)
        (where / f"{who}-big.bin").write_bytes(b"x" * 5000)
    picky.start()
    setup.wait(lambda: "hub-small.txt" in picky.tree() and "picky-small.txt" in tree(hub.docs),
               "the picky agent in sync")
    setup.wait(lambda: state(hub, "picky-files") == "in sync", "picky in sync")
    assert not {"hub.tmp", "hub-big.bin"} & set(picky.tree()), picky.tree()
    assert not {"picky.tmp", "picky-big.bin"} & set(tree(hub.docs)), tree(hub.docs)
    picky.stop()


def test_refusals_are_logged_with_the_key(setup: Setup) -> None:
    hub = setup.hub
    stranger = setup.agent("stranger", allow=False).start()  # its key was never allowed
    outsider = setup.agent("outsider").start()  # allowed, but not under majordomo.clients
    narrow = setup.agent("narrow", folders=("docs", "secret")).start()  # asks for a folder not granted
    (hub.roots["hub"] / "secret" / "private.txt").write_text("not for agents")
    assert outsider.proc.wait(60) == 2 and narrow.proc.wait(60) == 2, setup.logs()
    public = load_pair(stranger.data / "keys" / "stranger.key")[0]
    setup.wait(lambda: fingerprint(public) in hub.majordomo_log(), "the unknown key's refusal in the log")
    log = hub.majordomo_log()
    assert "refused agent outsider" in log and "not listed under majordomo.clients" in log
    assert "refused agent narrow" in log and "'secret' is not granted to key narrow" in log
    assert "the hub refused this agent" in outsider.output()
    assert stranger.proc.poll() is None  # it keeps dialling, in case its key is allowed later
    stranger.kill9()
    assert not any(a.root.joinpath("private.txt").exists() for a in setup.agents.values())
    assert "outsider-files" not in services(hub) and "narrow-files" not in services(hub)


def test_offline_agent_is_not_empty(setup: Setup) -> None:
    """An agent silent for 10 s (its network cut): offline, nothing deleted; changes on both sides meanwhile are
    reconciled when it comes back. A file sent to it as it went silent is not held back for the others: they get
    its next version while the agent is away."""
    hub, laptop, reader = setup.hub, setup.agents["laptop"], setup.agents["reader"]
    before = tree(hub.docs)
    laptop.proc.send_signal(signal.SIGSTOP)
    try:
        (hub.docs / "as-it-left.txt").write_text("first")  # an order goes to the laptop, which will not do it
        setup.wait(lambda: (reader.root / "as-it-left.txt").exists(), "the reader gets the first version")
        setup.wait(lambda: state(hub, "laptop-files").startswith("offline"), "laptop offline", 30)
        (hub.docs / "as-it-left.txt").write_text("second")
        setup.wait(lambda: (reader.root / "as-it-left.txt").read_text() == "second", "the next version meanwhile")
        (hub.docs / "while-away.txt").write_text("hub, while the laptop was away")
        (laptop.root / "offline-edit.txt").write_text("made offline")
        time.sleep(max(0.0, 10 - 5))
        assert all(p in tree(hub.docs) for p in before), "a file of the offline agent was deleted on the hub"
    finally:
        laptop.proc.send_signal(signal.SIGCONT)
    setup.wait(lambda: laptop.tree() == tree(hub.docs) and "offline-edit.txt" in tree(hub.docs)
               and "while-away.txt" in laptop.tree(), "reconciled after the agent came back")
    assert all(p in laptop.tree() for p in before)


def test_kill9_and_restart_resumes(setup: Setup) -> None:
    hub, laptop = setup.hub, setup.agents["laptop"]
    laptop.kill9()
    (hub.docs / "while-dead.txt").write_text("x" * 300_000)
    (laptop.root / "dead-edit.txt").write_text("made while the agent was down")
    laptop.start()
    setup.wait(lambda: laptop.tree() == tree(hub.docs) and "dead-edit.txt" in tree(hub.docs)
               and "while-dead.txt" in laptop.tree(), "reconciled after a restart")


def test_hostile_agent(setup: Setup) -> None:
    """Malformed frames, requests outside its grant, a file whose content lies about its size and hash: refused,
    the majordomo unharmed, nothing written on the hub."""
    hub = setup.hub
    pid = hub.pid("majordomo")
    (hub.roots["hub"] / "secret" / "private.txt").write_text("not for agents")
    keys_of = setup.agent("mallory")  # its key pair, allowed; the agent itself is played here
    mallory = RawAgent(hub, keys_of.data, "mallory")
    try:
        for junk in (b"\xff\x00", b"", b"\x93\x01\x02\x03"):
            mallory.raw(junk)
        mallory.send("call", 1)  # a known kind, of the wrong length
        mallory.hello({"mallory-files": {"docs": "../up"}})
        assert "'..' component" in mallory.expect("refused")[1]
        mallory.close()
        mallory = RawAgent(hub, keys_of.data, "mallory")
        mallory.hello({"mallory-files": {"docs": ""}})
        mallory.expect("welcome")
        refused = [
            ("write", {"t": ("sync.report", "mallory-files", "m", 1, {"folder": "secret", "entries": []}),
                       "lease": None}),
            ("write", {"t": ("sync.meta", "docs/x", {}), "lease": None}),
            ("write", {"t": ("sync.known", "hub"), "lease": None}),
            ("read_all", {"p": ("sync.meta", None, None), "limit": None}),
            ("take", {"p": ("sync.plug", "hub", None), "timeout": 0}),
            ("read", {"p": ("sync.order", "hub", None, None), "timeout": 0}),
        ]
        for rid, (op, args) in enumerate(refused, start=10):
            ok, body = mallory.call(rid, op, args)[2:]
            assert not ok and body[0] == "refused", (op, args, body)
        for rid, path in enumerate(("secret/private.txt", "../secret/private.txt", "docs/../secret/private.txt"),
                                   start=20):
            mallory.send("fetch", rid, "hub", path, 0, 1 << 20)
            ok, body = mallory.expect("fetched", rid)[2:]
            assert not ok and "not for agents" not in str(body), body
        mallory.send("fetch", 29, "hub", "docs/from-hub.txt", 0, 1 << 20)
        assert mallory.expect("fetched", 29)[2:] == [True, b"hub, changed"]
        # a file that is not what it claims: the hub's plug fetches it, checks it and keeps nothing
        truth = b"the truth"
        mallory.serve_with = lambda path, offset, length: b"lies!" * 100 if offset == 0 else b""
        info = {"id": "m1", "available": True, "reason": None, "endpoint": "tcp://10.0.0.1:1", "key": "k",
                "secret": "s"}
        assert mallory.call(30, "batch", {"ops": [("write", ("sync.plug", "mallory-files", info), None)]})[2]
        entries = [["lie.txt", ["file", hashlib.sha256(truth).hexdigest(), len(truth), 1]],
                   ["big-lie.txt", ["file", hashlib.sha256(truth).hexdigest(), 3, 1]]]
        for seq, (scan, listed) in enumerate((("begin", entries), ("end", [])), start=1):
            report = ("sync.report", "mallory-files", "m1", seq, {"folder": "docs", "scan": scan, "entries": listed})
            assert mallory.call(30 + seq, "write", {"t": report, "lease": None})[2]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {"lie.txt", "big-lie.txt"} <= set(mallory.served):
            with contextlib.suppress(AssertionError):
                mallory.expect("nothing", timeout=0.5)  # answers the hub's serves meanwhile
        assert {"lie.txt", "big-lie.txt"} <= set(mallory.served), setup.logs()
        time.sleep(1.0)
        assert "lie.txt" not in tree(hub.docs) and "big-lie.txt" not in tree(hub.docs)
    finally:
        mallory.close()
    assert hub.pid("majordomo") == pid
    log = hub.majordomo_log()
    assert "malformed frame" in log and "agent mallory: refused" in log


def rss(pid: int) -> int:
    """Resident bytes of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_agent_that_does_not_read(setup: Setup) -> None:
    """An agent that asks for chunk after chunk and pings, but never reads what comes back (its socket takes in
    next to nothing): the hub queues a bounded amount for it, refuses its fetches beyond, then drops it; its
    memory stays bounded and the other agents go on."""
    hub, reader = setup.hub, setup.agents["reader"]
    with open(hub.docs / "hog.bin", "wb") as out:
        out.write(os.urandom(32 << 20))
    pid = hub.pid("majordomo")
    hog = RawAgent(hub, setup.agent("hog").data, "hog", reads=False)
    try:
        hog.hello({"hog-files": {"docs": ""}})
        hog.expect("welcome")
        base = peak = rss(pid)
        asked = 0  # up to 400 MiB of answers: what the hub would queue if only the chunks not answered counted
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "agent hog disconnected" not in hub.majordomo_log():
            hog.send("ping")
            for rid in range(asked, min(asked + 20, 400)):
                hog.send("fetch", rid, "hub", "docs/hog.bin", (rid % 32) << 20, 1 << 20)
            asked = min(asked + 20, 400)
            (hub.docs / "meanwhile.txt").write_text("written while an agent hogs the hub")
            peak = max(peak, rss(pid))
            time.sleep(0.1)
        print(f"majordomo RSS: {base >> 20} MiB before, {peak >> 20} MiB at most")
        log = hub.majordomo_log()
        assert "agent hog: its fetches are refused" in log and "agent hog disconnected" in log, setup.logs()
        assert peak - base < 150 << 20, f"the majordomo grew by {(peak - base) >> 20} MiB"
    finally:
        hog.close()
    setup.wait(lambda: reader.tree().get("meanwhile.txt") == tree(hub.docs)["meanwhile.txt"], "the reader goes on")
    assert hub.pid("majordomo") == pid


def test_agents_ride_out_hub_failures(setup: Setup) -> None:
    """The majordomo killed -9 (restarted by the watchdog), then the space's primary: agents reconnect by
    themselves and go on."""
    hub, reader = setup.hub, setup.agents["reader"]
    for n, victim in enumerate(("majordomo", hub.status()["primary"])):
        old = hub.pid(victim)
        os.kill(old, signal.SIGKILL)
        (hub.docs / f"after-kill-{n}.txt").write_text(f"written after {victim} was killed")
        setup.wait(lambda n=n: f"after-kill-{n}.txt" in reader.tree(), f"the reader synced after {victim} died", 60)
    assert reader.proc.poll() is None


def test_revocation_disconnects_at_once(setup: Setup) -> None:
    hub, laptop = setup.hub, setup.agents["laptop"]
    setup.wait(lambda: state(hub, "laptop-files") == "in sync", "laptop in sync")
    held = tree(hub.docs)
    keys(hub.data, "revoke", "laptop")
    revoked = time.monotonic()
    setup.wait(lambda: "revoked this agent" in laptop.output(), "the agent told", 10)
    took = time.monotonic() - revoked
    assert laptop.proc.wait(30) == 2
    out = laptop.output()
    assert "Traceback" not in out and "onitu keys allow" in out, out[-3000:]  # one clear line saying what to do
    assert [line for line in out.splitlines() if "ERROR" in line] == [
        line for line in out.splitlines() if "revoked this agent" in line], out[-3000:]
    log = hub.majordomo_log()
    assert "agent laptop disconnected: its key was revoked" in log and "Traceback" not in log, log[-3000:]
    print(f"revocation reached the agent in {took:.2f} s")
    assert took < 3.0, f"revocation took {took:.2f} s"  # the bound is a second; room for a loaded machine
    (laptop.root / "after-revocation.txt").write_text("never sent")
    time.sleep(1.0)
    assert tree(hub.docs) == held  # its copies stay, nothing new arrives
    setup.wait(lambda: state(hub, "laptop-files").startswith("offline"), "laptop offline", 15)
