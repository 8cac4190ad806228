"""One plug in-process, on an in-process space and a local root: what it reports when orders and listings meet."""

from __future__ import annotations

from pathlib import Path

import pytest

from onitu.config import Config
from onitu.space import TupleSpace
from onitu.sync import wire
from onitu.sync.plan import Delete, Mkdir
from onitu.sync.plug import Plug
from onitu.sync.underway import Running


@pytest.fixture
def plug(tmp_path: Path):
    config = Config.model_validate({
        "data": str(tmp_path / "data"), "folders": {"docs": {}},
        "services": {"a": {"driver": "local", "options": {"root": str(tmp_path / "a"), "settle": 0},
                           "folders": {"docs": ""}}}})
    space = TupleSpace()
    runner = Plug(config, "a", space)
    runner.prepare()
    yield runner
    runner.close()
    space.close()


def listing(space: TupleSpace) -> dict[str, object]:
    """The last full listing the plug sent: path -> observation."""
    reports = sorted(space.read_all((wire.REPORT, "a", None, None, None)), key=lambda t: t[3])
    found: dict[str, object] = {}
    for _, _, _, _, body in reports:
        if body["scan"] == "begin":
            found = {}
        if body["scan"] is not None:
            found.update({p: o for p, o in body["entries"]})
    return found


def obey(plug: Plug, oid: int, action) -> None:
    """An order of one action, written to the space and carried out."""
    tup = (wire.ORDER, "a", oid, {"folder": "docs", "actions": [wire.action_to_wire(action)], "metas": [None]})
    plug.space.write(tup)
    plug._start(tup, Running())


def test_an_order_carried_out_during_a_listing_is_in_the_listing(plug, tmp_path):
    root = tmp_path / "a"
    (root / "old").mkdir()
    below = plug.scanner.below

    def slow_listing(folder, path=""):  # the order is carried out after the listing has looked at the root
        yield from below(folder, path)
        if path == "":
            plug.scanner.below = below
            obey(plug, 1, Mkdir("made-meanwhile", "a"))
    plug.scanner.below = slow_listing
    plug.full_scan()
    assert (root / "made-meanwhile").is_dir()
    assert "made-meanwhile" in listing(plug.space), "a directory the plug made itself was reported as deleted"
    assert "made-meanwhile" in plug.known["docs"]


def test_an_order_on_something_changed_since_is_refused(plug, tmp_path):
    root = tmp_path / "a"
    (root / "f.txt").write_text("one")
    plug.full_scan()
    reported = plug.known["docs"]["f.txt"]
    (root / "f.txt").write_text("two, not reported yet")
    obey(plug, 2, Delete("f.txt", "a", reported.guard))
    assert (root / "f.txt").read_text() == "two, not reported yet"
    plug.outbox.flush()
    done = plug.space.read_all((wire.DONE, "a", None, None, None))
    results = [r for d in done for r in d[4]["results"]]
    assert [r["ok"] for r in results] == [False] and "changed" in results[0]["error"]
    obey(plug, 3, Delete("f.txt", "a", "0" * 64))  # a guard naming content it never reported
    assert (root / "f.txt").exists()
