"""How many recipes run at once, and what still runs after a failure: GNU make's rules, checked against GNU make.

Each recipe logs when it starts and ends; the most recipes seen running at one moment must never exceed -j, and
after a failure without -k nothing queued may start (the issue's bug 2: every ready task was in the space at
once and none was withdrawn).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ServerProcess
from tests.make.harness import make, start_worker, stop, wait_for

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

LOGGED = "\t@echo start $@ $$(date +%s.%N) >> log; sleep {secs}; echo end $@ $$(date +%s.%N) >> log\n"


def logged_build(root, names: list[str], secs: float = 0.3, failing: str | None = None) -> None:
    """``all`` needs ``names``, each a recipe of ``secs`` seconds; ``failing`` fails after a third of that."""
    rules = [f"all: {' '.join(names)}\n"]
    for name in names:
        fail = "; exit 3" if name == failing else ""
        rules.append(f"{name}:\n" + LOGGED.format(secs=secs / 3 if fail else secs).rstrip("\n") + fail + "\n")
    (root / "Makefile").write_text("".join(rules))


def most_at_once(root) -> int:
    events = []
    for line in (root / "log").read_text().splitlines():
        kind, _, when = line.split()
        events.append((float(when), 1 if kind == "start" else -1))
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def started(root) -> list[str]:
    log = root / "log"
    return sorted(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")) \
        if log.exists() else []


@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "k"])
def test_after_a_failure_nothing_queued_starts_unless_k(tmp_path, jobs, keep_going):
    names = list("abcdef")
    flags = [f"-j{jobs}", *(["-k"] if keep_going else [])]
    for who in ("gnu", "ours"):
        (tmp_path / who).mkdir()
        logged_build(tmp_path / who, names, secs=0.3, failing="a")
    gnu = subprocess.run(["make", *flags], cwd=tmp_path / "gnu", capture_output=True, text=True)
    ours = make(tmp_path / "ours", *flags, data=tmp_path / "data")
    assert ours.returncode == gnu.returncode == 2
    assert started(tmp_path / "ours") == started(tmp_path / "gnu")
    assert most_at_once(tmp_path / "ours") <= jobs
    failure = "onitu make: *** [Makefile:3: a] Error 3"
    assert failure in ours.stderr and failure.replace("onitu make", "make") in gnu.stderr
    waiting = "*** Waiting for unfinished jobs...."
    assert (waiting in ours.stderr) == (waiting in gnu.stderr)


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_never_more_than_j_in_flight(tmp_path, jobs):
    logged_build(tmp_path, [f"t{i}" for i in range(12)], secs=0.15)
    out = make(tmp_path, f"-j{jobs}", data=tmp_path / "data")
    assert out.returncode == 0, out.stderr
    assert len(started(tmp_path)) == 12
    assert most_at_once(tmp_path) == jobs


def test_a_shared_space_with_many_worker_slots_still_runs_j_at_once(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    worker = start_worker("--space", server.ipc, "--slots", "6", data=data)
    try:
        wait_for(lambda: _slots(server) == 6, what="the worker to register")
        logged_build(tmp_path, [f"t{i}" for i in range(8)], secs=0.2)
        out = make(tmp_path, "-j2", data=data)
        assert out.returncode == 0, out.stderr
        assert most_at_once(tmp_path) == 2
        (tmp_path / "log").unlink()
        for i in range(8):
            (tmp_path / f"t{i}").unlink(missing_ok=True)
        unbounded = make(tmp_path, data=data)  # no -j: as many as the workers' slots
        assert unbounded.returncode == 0, unbounded.stderr
        assert most_at_once(tmp_path) > 2
    finally:
        stop(worker)
        server.stop()


def _slots(server: ServerProcess) -> int:
    from onitu.space import connect

    with connect(server.ipc) as client:
        return sum(w[2]["slots"] for w in client.read_all(("make.worker", None, None)))
