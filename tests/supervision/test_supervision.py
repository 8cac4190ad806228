"""The watchdog supervising real processes: status, clean exit, crash loops, hung and stuck processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onitu.space import connect
from tests.supervision.harness import kill_started, leftovers


def shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_start_status_stop_leaves_nothing_behind(onitu_factory, tmp_path):
    before = shm()
    run = onitu_factory("agents:\n  - {name: sleeper, command: sleep 600}\n").start()
    status = json.loads(run.cli("status", "--json").stdout)
    assert status["running"] and status["mode"] == "paired"
    rows = {p["name"]: p for p in status["processes"]}
    assert set(rows) == {"space-a", "space-b", "sleeper"}
    assert rows["space-a"]["role"] == "primary" and rows["space-b"]["role"] == "secondary"
    for row in rows.values():
        assert row["state"] == "running" and row["pid"] and row["restarts"] == 0
        assert {"epoch", "uptime", "last_heartbeat"} <= set(row)
    assert rows["space-a"]["epoch"] == status["epoch"] and rows["space-a"]["last_heartbeat"] < 1
    table = run.cli("status").stdout
    assert "space-a" in table and "primary" in table
    with connect(data_dir=run.data) as space:
        space.write(["hello", 1])
        assert space.read_all(["hello", None]) == [("hello", 1)]
    run.stop()
    assert run.proc.returncode == 0
    assert leftovers(run.data, run.config) == []
    assert shm() == before
    assert run.cli("status", check=False).returncode == 3
    again = run.cli("stop", check=False)
    assert again.returncode == 1 and "not running" in again.stderr


def test_second_start_on_the_same_data_is_refused(onitu_factory):
    run = onitu_factory().start(paired=False)
    again = run.cli("start", check=False)
    assert again.returncode == 1 and "already running" in again.stderr


def test_crash_loop_is_marked_failed(onitu_factory):
    run = onitu_factory(f"agents:\n  - name: flaky\n    command: [{sys.executable}, -c, 'import time; "
                        f"time.sleep(0.2)']\n").start(paired=False)
    status = run.wait(lambda s: any(p["name"] == "flaky" and p["state"] == "failed" for p in s["processes"]),
                      20, "flaky to be marked failed")
    flaky = next(p for p in status["processes"] if p["name"] == "flaky")
    assert flaky["restarts"] == 2  # three fast crashes: the first start and two restarts
    time.sleep(1.0)
    assert run.process("flaky")["restarts"] == 2 and run.process("flaky")["state"] == "failed"
    assert "failed" in run.watchdog_log() and "flaky" in run.watchdog_log()


def test_stopped_process_is_detected_and_restarted(onitu_factory):
    run = onitu_factory("agents:\n  - {name: sleeper, command: sleep 600}\n").start(paired=False)
    run.wait(lambda s: run.process("sleeper")["state"] == "running", 10, "sleeper")
    pid = run.process("sleeper")["pid"]
    os.kill(pid, signal.SIGSTOP)
    run.wait(lambda s: run.process("sleeper")["pid"] != pid and run.process("sleeper")["state"] == "running",
             10, "sleeper to be restarted")
    assert run.process("sleeper")["restarts"] == 1
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def heartbeat_agent(onitu_factory, name: str, *argv: object, busy: float = 15.0):
    """Onitu running one heartbeat agent, ``python -m tests.procs *argv``; (run, its pid) once it answered."""
    run = onitu_factory(
        f"agents:\n  - name: {name}\n    heartbeat: true\n    cwd: {Path(__file__).resolve().parents[2]}\n"
        f"    command: [{sys.executable}, -m, tests.procs, {', '.join(map(str, argv))}]\n",
        busy=busy).start(paired=False)
    run.wait(lambda s: run.process(name)["last_heartbeat"] is not None, 10, f"{name}'s first heartbeat")
    return run, run.process(name)["pid"]


def restarted_once_stuck(onitu_factory, tmp_path, name: str, mode: str, within: float, busy: float = 15.0):
    """Onitu running one heartbeat agent of ``tests.procs`` (``mode``) that gets stuck once told to; returned once
    the watchdog has restarted it."""
    block = tmp_path / "block"
    run, pid = heartbeat_agent(onitu_factory, name, mode, block, busy=busy)
    block.touch()
    run.wait(lambda s: run.process(name)["pid"] != pid, within, f"{name} to be restarted")
    return run


def left_alone(run, name: str, pid: int, trigger: Path, done: Path, within: float) -> None:
    """Tell the agent to do its long step (``trigger``), and check it was not restarted for it."""
    trigger.touch()
    run.wait(lambda s: done.exists() or run.process(name)["pid"] != pid, within, "the long step to end")
    time.sleep(1.0)
    row = run.process(name)
    assert row["pid"] == pid and row["restarts"] == 0 and "not answering" not in run.watchdog_log(), run.logs()


def test_stuck_event_loop_is_detected_and_restarted(onitu_factory, tmp_path):
    run = restarted_once_stuck(onitu_factory, tmp_path, "looper", "heartbeat_agent", 10)
    run.wait(lambda s: run.process("looper")["state"] == "running" and run.process("looper")["restarts"] == 1,
             10, "looper to answer again")
    assert "not answering" in run.watchdog_log()


def test_a_process_killed_as_hung_leaves_where_it_was_stuck_in_its_log(onitu_factory, tmp_path):
    """Stuck in a C call that holds the GIL (its heartbeat thread cannot answer): before the kill, the watchdog asks
    for its stacks, which faulthandler writes without the GIL; the log names the function it was stuck in."""
    run = restarted_once_stuck(onitu_factory, tmp_path, "hog", "gil_agent", 30, busy=2)
    log = (run.data / "run" / "hog.log").read_text()
    assert "Current thread" in log and "in hold_the_gil" in log, log
    assert f"where its threads were: the end of {run.data / 'run' / 'hog.log'}" in run.watchdog_log()


def test_a_long_step_declared_busy_is_not_taken_for_a_hang(onitu_factory, tmp_path):
    """The referee loading a million records in one request could not beat for longer than its patience and was
    killed at every start; a step declared busy is answered for throughout."""
    trigger, done = tmp_path / "go", tmp_path / "done"
    run, pid = heartbeat_agent(onitu_factory, "loader", "busy_agent", trigger, done)
    left_alone(run, "loader", pid, trigger, done, 30)


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="this kernel does not count run time")
def test_a_long_c_call_holding_the_gil_is_busy_not_hung(onitu_factory, tmp_path):
    """The referee restarting a million-file hub freed its million records in one C call, seconds with the GIL held
    and no heartbeat answered, and was killed as hung at every start. Silent while its main thread runs on a CPU
    is busy, for up to ``heartbeat.busy`` seconds (one stuck for good is still killed: the test above)."""
    trigger, done = tmp_path / "go", tmp_path / "done"
    run, pid = heartbeat_agent(onitu_factory, "freer", "gil_step_agent", trigger, done)
    left_alone(run, "freer", pid, trigger, done, 60)
    assert float(done.read_text()) > 2.0, "the GIL was not held long enough: the test shows nothing"


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="this kernel does not count run-queue waits")
@pytest.mark.parametrize("kind", ["loop", "liveness"])
def test_a_process_starved_of_cpu_is_not_taken_for_hung(onitu_factory, tmp_path, kind):
    """Its main thread shares one CPU with six busy processes while it works 0.5 s without answering (its event loop
    blocked, or no beat under a 1 s patience): seconds of wall time, over the 1 s of missed answers the watchdog
    allows, but the time it waited for the CPU is not counted against it, so it is not restarted (a stopped or stuck
    process still is: the tests above)."""
    trigger, done = tmp_path / "go", tmp_path / "done"
    run, pid = heartbeat_agent(onitu_factory, "starved", "starved_agent", kind, trigger, done)
    left_alone(run, "starved", pid, trigger, done, 60)
    assert float(done.read_text()) > 2.0, "the work was not starved: the test shows nothing"


BAD_CONFIGS = {  # line numbers count the `data:` line written first
    "heartbeat:\n  interval: -1\n": ":3: heartbeat.interval",
    "agents:\n  - {name: a, command: []}\n": ":3: agents[0].command",
    "agents:\n  - {name: a, command: x}\n  - {name: a, command: y}\n": ":4: agents[1].name",
    "space:\n  listen: [http://x]\n": ":3: space.listen",
    "nonsense: 1\n": ":2: nonsense",
    "agents: [\n": "invalid YAML",
}


def test_bad_configs_start_nothing(tmp_path):
    for i, (text, expected) in enumerate(BAD_CONFIGS.items()):
        data = tmp_path / f"data{i}"
        config = tmp_path / f"bad{i}.yaml"
        config.write_text(f"data: {data}\n" + text)
        out = subprocess.run([sys.executable, "-m", "onitu.cli", "start", "-c", str(config)], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 2, (text, out.stderr)
        assert str(config) in out.stderr and expected in out.stderr, (text, out.stderr)
        assert not data.exists() and leftovers(data, config) == []


def test_ctrl_c_stops_everything_in_order(onitu_factory):
    run = onitu_factory("agents:\n  - {name: sleeper, command: sleep 600}\n").start()
    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal sends to its foreground job
    assert run.proc.wait(30) == 0
    assert leftovers(run.data, run.config) == []
    log = run.logs()
    # the primary before the secondary: the secondary takes its last batches, and both disks end alike
    order = [log.index(f"stopped {name}") for name in ("sleeper", "space-a", "space-b")]
    assert order == sorted(order), log


def test_embedded_default_without_a_config(tmp_path):
    env = {**os.environ, "ONITU_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "onitu.cli", "start"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "data" / "space.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with connect(data_dir=tmp_path / "data", connect_timeout=20) as space:
            space.write(["default", 1])
            assert space.read_all(["default", None]) == [("default", 1)]
        info = json.loads((tmp_path / "data" / "space.json").read_text())
        assert all(ep.startswith("ipc://") for ep in info["endpoints"])  # loopback only: nothing on the network
        out = subprocess.run([sys.executable, "-m", "onitu.cli", "stop"], cwd=tmp_path, env=env, timeout=60,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert proc.wait(30) == 0
    finally:
        kill_started(proc, str(tmp_path))


def test_a_space_server_that_keeps_failing_is_retried_and_says_why(onitu_factory):
    """Issue 19: the space servers are never given up on: one that cannot start is retried every max_backoff
    seconds, with the reason in the status, and pairs again once it can."""
    run = onitu_factory().start()
    secondary = "space-b" if run.status()["primary"] == "space-a" else "space-a"
    slot = run.data / secondary
    slot.rename(slot.with_name(secondary + ".away"))
    slot.write_text("a file where the server's data directory should be\n")
    os.kill(run.process(secondary)["pid"], signal.SIGKILL)
    status = run.wait(lambda s: "times in a row before it became ready" in run.process(secondary)["reason"], 30,
                      f"{secondary} to be retried with its reason")
    assert run.process(secondary)["state"] in ("backoff", "starting"), status
    time.sleep(3.0)  # max_fast_crashes (3) is long past: still retried, never marked failed
    assert run.process(secondary)["state"] != "failed"
    assert "retrying every 1 s" in run.process(secondary)["reason"]
    slot.unlink()
    slot.with_name(secondary + ".away").rename(slot)
    run.wait(lambda s: s.get("mode") == "paired" and run.process(secondary)["state"] == "running", 30,
             "the pair again once the server can start")


def test_a_sync_process_waiting_for_its_space_answers_the_watchdog(onitu_factory, tmp_path):
    """A space loading a million rows at start takes longer than the startup grace: the referee and the plugs, which
    wait up to 30 s for it, answered no heartbeat meanwhile and were killed as hung before the space was up."""
    nowhere = tmp_path / "nowhere.sock"
    run = onitu_factory(
        f"agents:\n  - name: waiter\n    heartbeat: true\n"
        f"    command: [{sys.executable}, -m, onitu.sync.referee, --config, {tmp_path / 'onitu.yaml'}, "
        f"--space, 'ipc://{nowhere}']\n").start(paired=False)
    run.wait(lambda s: run.process("waiter")["last_heartbeat"] is not None, 10, "the waiter's first heartbeat")
    time.sleep(12)  # past the startup grace (10 s), still within the 30 s it waits for the space
    row = run.process("waiter")
    assert row["restarts"] == 0 and row["state"] == "running" and "not answering" not in run.watchdog_log(), run.logs()
