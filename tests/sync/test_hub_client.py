"""The hub client (onitu.sync.hub): plain functions over the space, answered by an in-process referee.

The referee runs with pretend plugs (:mod:`tests.sync.pretend`); a thread stands in for its loop's handling of
requests, so the client's calls block and are answered as they are in a running hub.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from onitu.config import Config
from onitu.sync import hub
from onitu.sync.decide.plan import Observed
from onitu.sync.referee import Referee
from tests.sync.pretend import pretend_hub


@pytest.fixture
def pretend(tmp_path):
    yield from pretend_hub(tmp_path)


@contextlib.contextmanager
def answering(referee: Referee) -> Iterator[None]:
    """The referee's handling of requests, in a thread, while the client waits for answers."""
    stop = threading.Event()

    def serve() -> None:
        while not stop.wait(0.02):
            referee.commands.poll()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def other(path: str) -> Observed:
    """Another content at ``path`` than :func:`obs` gives."""
    return Observed("file", "9" * 64, 3, 2, f"g:{path}")


def test_no_space_is_not_running(tmp_path):
    config = Config.model_validate({"data": str(tmp_path / "nothing")})
    with pytest.raises(hub.NotRunning, match=r"no space under .*nothing.*onitu start"):
        hub.open_space(config)


def test_a_space_without_a_hub_is_not_running(pretend):
    referee, _ = pretend
    space = referee.space
    for tup in space.read_all(("sync.plug", None, None)):
        space.take(tup)
    with pytest.raises(hub.NotRunning, match="sync hub is not running"):
        hub.approve(space)


def test_a_referee_that_does_not_answer(pretend, monkeypatch):
    referee, _ = pretend
    monkeypatch.setattr(hub, "REPLY_TIMEOUT", 0.2)
    with pytest.raises(hub.NoAnswer, match="no answer from the referee"):
        hub.approve(referee.space)


def test_status_is_what_the_referee_published(pretend):
    referee, plugs = pretend
    assert hub.status(referee.space)["note"] == "the referee has not published its status yet"
    plugs.listing(["a.txt"])
    referee.decide()
    referee.commands.poll()
    status = hub.status(referee.space)
    assert status["folders"]["docs"]["services"] == {
        s: {"state": "in sync", "files": 0, "bytes": 0, "held": 0, "lag": 0.0, "skipped": 0} for s in ("a", "b", "c")}
    assert status["progress"] == {} and status["skipped"] == {} and "note" not in status


def test_a_conflict_is_listed_then_resolved(pretend):
    referee, plugs = pretend
    plugs.listing(["report.txt"])
    referee.decide()
    plugs.report("b", [("report.txt", other("report.txt"))])
    plugs.report("c", [("report.txt", Observed("file", "8" * 64, 4, 3, "h"))])
    referee.decide()
    listed = hub.conflicts(referee.space)
    assert [(c["folder"], c["path"]) for c in listed] == [("docs", "report.txt")]
    assert listed[0]["conflict"].startswith("report.conflict-") and listed[0]["service"] in ("b", "c")
    while plugs.orders():  # the losing version renamed aside, then copied everywhere
        for order in plugs.orders():
            plugs.done(order)
        referee.ledger.commit(referee.space)
        referee.decide()
    with answering(referee):
        assert hub.resolve(referee.space, "nothing-*", "both") == []
        resolved = hub.resolve(referee.space, "report*", "both")
    assert resolved == [{"folder": "docs", "conflict": listed[0]["conflict"], "path": "report.txt"}]
    assert hub.conflicts(referee.space) == []


def test_commands_the_referee_refuses(pretend):
    referee, plugs = pretend
    plugs.listing([])
    with pytest.raises(ValueError, match="keep must be one of: current, conflict, both"):
        hub.resolve(referee.space, "*", "mine")
    with answering(referee):
        with pytest.raises(hub.Refused, match="unknown folder 'nope'"):
            hub.approve(referee.space, folder="nope")
        assert hub.approve(referee.space) == [] and hub.reject(referee.space, service="a") == []


def test_held_deletions_are_released(pretend):
    referee, plugs = pretend
    files = [f"f{i}.txt" for i in range(10)]
    plugs.listing(files)
    referee.decide()
    referee.deletions.bursts.clear()
    plugs.report("a", [(p, None) for p in files[:8]])
    referee.deletions.bursts.clear()  # as if a's deletions had paused: judged now
    referee.decide()
    assert not plugs.orders()
    with answering(referee):
        released = hub.approve(referee.space, service="a")
    assert released == [{"folder": "docs", "service": "a", "paths": 8}]
    assert sorted(p for _, op, p in plugs.actions() if op == "delete") == sorted(files[:8] * 2)
