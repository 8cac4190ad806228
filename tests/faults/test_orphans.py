"""Supervision killed from outside (a test runner's timeout: SIGKILL to the launcher and the watchdog) leaves no
process behind: each supervised process stops by itself once no heartbeat comes for ``heartbeat.orphan`` seconds,
and a restart finds the replicas whole and in sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.supervision.harness import kill_all
from tests.sync.hub import Hub, tree

ORPHAN = 4.0  # the children's patience in this test (default 30 s)
BOUND = ORPHAN + 30.0  # silence noticed, an orderly stop (the space servers 10 s after the agents)


def alive(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{pid}: {' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    return found


def mentions(hub: Hub) -> list[str]:
    """Processes whose command line names this hub's data or config."""
    marks = (str(hub.data), str(hub.config))
    return [f"{p.pid}: {' '.join(p.info['cmdline'])}" for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and any(m in " ".join(p.info["cmdline"]) for m in marks)]


@pytest.fixture
def hub(tmp_path):
    hub = Hub(tmp_path, ("a", "b"))
    text = hub.config.read_text()
    assert "heartbeat: {" in text
    # and an agent that cannot hear heartbeats: the kernel tells it when the watchdog dies
    hub.config.write_text(text.replace("heartbeat: {", f"heartbeat: {{orphan: {ORPHAN}, ")
                          + "agents:\n  - {name: sleeper, command: sleep 600}\n")
    yield hub
    try:
        hub.stop()
    finally:
        hub.kill_everything()


@pytest.mark.parametrize("victims", [("watchdog", "launcher"), ("launcher",)])
def test_killed_supervision_leaves_no_process_and_loses_nothing(hub, victims):
    """Watchdog and launcher killed: the children notice the silence; the launcher alone: the watchdog stops all."""
    hub.roots["a"].mkdir()
    for i in range(20):
        (hub.roots["a"] / f"before-{i}.txt").write_text(f"before {i}\n")
    hub.start()
    hub.wait_converged(60, lambda t: len(t) == 20)
    status = hub.status()
    children = [p["pid"] for p in status["processes"] if p["pid"]]
    assert len(children) == 6  # space pair, referee, two plugs, the sleeper
    watchdog, launcher = status["watchdog"]["pid"], hub.proc.pid
    for name in victims:  # the watchdog first: the launcher would start another within 0.2 s
        os.kill(watchdog if name == "watchdog" else launcher, signal.SIGKILL)
    hub.proc.wait(10)
    (hub.roots["a"] / "during.txt").write_text("written while nobody supervised\n")
    deadline = time.monotonic() + BOUND
    while alive([*children, watchdog]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive([*children, watchdog]) == [], f"still running {BOUND:g} s later\n{hub.logs()}"
    assert mentions(hub) == []
    logs = "".join(p.read_text(errors="replace") for p in (hub.data / "run").glob("*.log"))
    if "watchdog" in victims:
        assert logs.count("no heartbeat from the watchdog") == len(children) - 1, logs[-4000:]
    else:
        assert f"the launcher (pid {launcher}) is gone; stopping everything" in logs

    hub.start()  # the run directory of the killed launcher does not stand in the way
    after = hub.wait_converged(60, lambda t: len(t) == 21)
    assert after["during.txt"] == tree(hub.roots["b"])["during.txt"]
    assert all(f"before-{i}.txt" in after for i in range(20))
    hub.stop()
    assert hub.proc.returncode == 0
    kill_all(str(hub.data))


def test_watchdog_started_after_its_launcher_died_starts_nothing(tmp_path):
    """The launcher restarts a dead watchdog 0.2 s later; killed within that time, the new watchdog starts as an
    orphan. It must not run the hub on its own (beside the next `onitu start`): it exits, having started nothing."""
    config = tmp_path / "onitu.yaml"
    config.write_text(f"data: {tmp_path / 'data'}\nspace: {{discovery_port: 0}}\napi: {{listen: ''}}\n")
    gone = subprocess.Popen(["true"])
    gone.wait()
    out = subprocess.run([sys.executable, "-m", "onitu.supervision.service", "--config", str(config), "--adopt",
                          "--launcher", str(gone.pid)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"the launcher (pid {gone.pid}) died before this watchdog started" in out.stdout + out.stderr
    assert not (tmp_path / "data" / "run" / "status.json").exists()
    assert not list((tmp_path / "data").glob("**/*.db"))
