"""Make tuples from a shared space are hostile until checked: a worker drops what is not a task and keeps going."""

from __future__ import annotations

import pytest

from onitu.make.tasks import TASK, BadTask, BuildInfo, Result, Task
from onitu.space import connect
from tests.helpers import ServerProcess
from tests.make.harness import make, start_worker, stop, wait_for

GOOD = Task("b1", "out.txt", (), ("in.txt",), "run1").tuple()

BAD_TASKS = [
    (TASK, "b1", "t"),                                             # too short
    (TASK, 7, "t", GOOD[3]),                                       # build id not a string
    (TASK, "b1", "", GOOD[3]),                                     # empty target
    (TASK, "b1", "t", "not a dict"),
    (TASK, "b1", "t", {**GOOD[3], "steps": [["echo", "yes"]]}),    # ignore flag not a bool
    (TASK, "b1", "t", {**GOOD[3], "steps": [[b"echo", False]]}),   # command not text
    (TASK, "b1", "t", {**GOOD[3], "inputs": ["", 3]}),
    (TASK, "b1", "t", {k: v for k, v in GOOD[3].items() if k != "run"}),
]


def test_a_good_task_round_trips():
    assert Task.from_tuple(GOOD).tuple() == GOOD


@pytest.mark.parametrize("tup", BAD_TASKS)
def test_malformed_tasks_are_refused_with_a_reason(tup):
    with pytest.raises(BadTask, match=r"task|not a"):
        Task.from_tuple(tup)


@pytest.mark.parametrize("body", [None, {}, {"status": "0", "steps": [], "outputs": [], "worker": "w"},
                                  {"status": 0, "steps": [[0, "text", b""]], "outputs": [], "worker": "w"},
                                  {"status": 0, "steps": [], "outputs": [["a", "sha", "755"]], "worker": "w"}])
def test_malformed_results_are_refused(body):
    with pytest.raises(BadTask):
        Result.from_wire(body, "t")


def test_malformed_build_info_is_refused():
    good = ("make.build", "b1", {"run": "r", "dir": "/x", "token_path": "/t", "token": "k", "env": {}, "exports": {},
                                 "files": None, "files_key": None, "secret": None})
    assert BuildInfo.from_tuple(good).dir == "/x"
    for info in [{**good[2], "env": {"A": 1}}, {**good[2], "files": 5}, {**good[2], "dir": None}, "x"]:
        with pytest.raises(BadTask):
            BuildInfo.from_tuple(("make.build", "b1", info))


def test_a_worker_drops_garbage_from_the_space_and_still_builds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    space = ServerProcess(data).start()
    with connect(space.ipc) as c:
        c.batch([("write", t) for t in BAD_TASKS])
    worker = start_worker("--space", space.ipc, data=data)
    try:
        with connect(space.ipc) as c:
            wait_for(lambda: not c.read_all((TASK, None, None, None)), what="the worker to drop the garbage")
        assert worker.poll() is None
        (tmp_path / "Makefile").write_text("out.txt:\n\techo built > $@\n")
        built = make(tmp_path, data=data)
        assert built.returncode == 0, built.stderr
        assert (tmp_path / "out.txt").read_text() == "built\n"
    finally:
        stop(worker)
        space.stop()
    assert "dropped a malformed task" in worker.stderr.read()
