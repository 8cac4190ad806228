"""The sync hub end to end: ``onitu start`` with three local replicas, real plug and referee processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from onitu.space import connect
from onitu.sync import tuples
from tests.sync.hub import sha, tree


def test_every_operation_reaches_every_replica(hub):
    h = hub()
    a, b, c = h.roots.values()
    a.mkdir(parents=True)
    (a / "before.txt").write_text("made before start")
    deep = a / "d1" / "d2" / "d3" / "d4"
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_text("deep")
    h.start()
    state = h.wait_converged(expect=lambda t: "d1/d2/d3/d4/deep.txt" in t)
    assert state["before.txt"] == sha(b"made before start")

    big = os.urandom(5 << 20)
    (b / "big.bin").write_bytes(big)
    (c / "empty").write_bytes(b"")
    (a / "unicodé ☃.txt").write_text("snow")
    h.wait_converged(expect=lambda t: {"big.bin", "empty", "unicodé ☃.txt"} <= t.keys())
    assert (a / "big.bin").read_bytes() == big

    (c / "before.txt").write_text("changed on c")
    h.wait_converged(expect=lambda t: t["before.txt"] == sha(b"changed on c"))

    inode = (b / "big.bin").stat().st_ino
    (a / "big.bin").rename(a / "moved.bin")
    h.wait_converged(expect=lambda t: "moved.bin" in t and "big.bin" not in t)
    assert (b / "moved.bin").stat().st_ino == inode, "a rename must reach the other replicas as a move"

    (c / "d1").rename(c / "top")
    h.wait_converged(expect=lambda t: "top/d2/d3/d4/deep.txt" in t and "d1" not in t)

    (b / "empty").unlink()
    h.wait_converged(expect=lambda t: "empty" not in t)
    shutil.rmtree(a / "top")  # most of the folder: held until approved
    h.wait_for(lambda: h.status_json()["sync"]["folders"]["docs"]["services"]["a"]["held"] == 5, what="held")
    assert "top/d2/d3/d4/deep.txt" in tree(b)
    h.onitu("approve")
    h.wait_converged(expect=lambda t: "top" not in t)
    assert not any(".onitu-tmp-" in p for r in h.roots.values() for p in os.listdir(r))


def test_a_folder_moved_in_from_elsewhere_keeps_syncing_what_changes_inside_it(hub, tmp_path):
    """`mv ~/Downloads/album ~/Onitu/`: its files reach the replicas, and so does every later edit inside it."""
    h = hub().start()
    a = h.roots["a"]
    album = tmp_path / "downloads" / "album"
    (album / "disc 2").mkdir(parents=True)
    (album / "cover.jpg").write_bytes(b"cover")
    (album / "disc 2" / "track.flac").write_bytes(b"track")
    album.rename(a / "album")
    h.wait_converged(expect=lambda t: "album/disc 2/track.flac" in t)
    (a / "album" / "disc 2" / "track.flac").write_bytes(b"track, retagged")
    (a / "album" / "notes.txt").write_text("added later")
    h.wait_converged(expect=lambda t: t.get("album/disc 2/track.flac") == sha(b"track, retagged")
                     and "album/notes.txt" in t)


def test_deletions_made_while_stopped_and_files_rewritten_during_transfer(hub):
    h = hub().start()
    a, b, c = h.roots.values()
    for n in range(5):
        (a / f"f{n}.txt").write_text(f"file {n}")
    h.wait_converged(expect=lambda t: len(t) == 5)
    h.stop()
    (b / "f1.txt").unlink()  # one of five: under the threshold
    h.start()
    h.wait_converged(expect=lambda t: "f1.txt" not in t and len(t) == 4)

    for n in range(20):  # rewritten again and again while it travels
        (c / "busy.bin").write_bytes(os.urandom(1 << 20) + bytes([n]))
        time.sleep(0.03)
    final = sha((c / "busy.bin").read_bytes())
    h.wait_converged(expect=lambda t: t.get("busy.bin") == final)


def test_conflict_keeps_both_versions_and_resolve_settles_it(hub):
    h = hub().start()
    a, b, c = h.roots.values()
    (a / "report.txt").write_text("v1")
    h.wait_converged(expect=lambda t: "report.txt" in t)
    plug_b = h.pid("plug-b")
    os.kill(plug_b, signal.SIGSTOP)
    try:
        (a / "report.txt").write_text("a's version")
        h.wait_for(lambda: (c / "report.txt").read_text() == "a's version")
        (b / "report.txt").write_text("b's version, made without seeing a's")
    finally:
        os.kill(plug_b, signal.SIGCONT)
    state = h.wait_converged(expect=lambda t: any(".conflict-" in p for p in t))
    conflict = next(p for p in state if ".conflict-" in p)
    assert conflict.startswith("report.conflict-") and conflict.endswith("-b.txt")
    assert state["report.txt"] == sha(b"a's version")
    assert state[conflict] == sha(b"b's version, made without seeing a's")

    listed = json.loads(h.onitu("conflicts", "--json").stdout)
    assert [(x["path"], x["conflict"]) for x in listed] == [("report.txt", conflict)]
    h.onitu("resolve", "report.txt", "--keep", "conflict")
    h.wait_converged(expect=lambda t: conflict not in t and t["report.txt"] == sha(b"b's version, made without "
                                                                                     b"seeing a's"))
    assert json.loads(h.onitu("conflicts", "--json").stdout) == []


def test_unmounted_or_emptied_replica_deletes_nothing_elsewhere(hub):
    h = hub().start()
    a, b, c = h.roots.values()
    for n in range(10):
        (a / f"doc{n}.txt").write_text(f"doc {n}")
    full = h.wait_converged(expect=lambda t: len(t) == 10)

    b.rename(b.with_name("b-unmounted"))  # the disk is gone: the root vanishes
    b.mkdir()  # and an empty mount point stays behind (no marker)
    h.wait_for(lambda: "unavailable" in h.status_json()["sync"]["folders"]["docs"]["services"]["b"]["state"],
               what="b unavailable")
    (a / "while-away.txt").write_text("new while b is away")
    h.wait_for(lambda: (c / "while-away.txt").exists())
    time.sleep(1.0)
    assert tree(a).keys() >= full.keys() and tree(c).keys() >= full.keys()
    assert tree(b) == {}, "nothing may be written into an unmounted replica's mount point"

    b.rmdir()
    b.with_name("b-unmounted").rename(b)  # mounted again
    h.wait_converged(expect=lambda t: "while-away.txt" in t and len(t) == 11)

    for entry in b.iterdir():  # emptied by hand, marker kept: deletions over the threshold are held
        if not entry.name.startswith(".onitu-"):
            entry.unlink()
    h.wait_for(lambda: h.status_json()["sync"]["folders"]["docs"]["services"]["b"]["held"] == 11,
               what="deletions held")
    assert len(tree(a)) == 11 and len(tree(c)) == 11
    plan = h.onitu("plan").stdout
    assert "held: 11 of 11 entries deleted on b" in plan
    h.onitu("approve", "--reject")
    h.wait_converged(expect=lambda t: len(t) == 11)


def test_rules_route_files_and_plan_shows_them_before_start(hub):
    h = hub(folder_options="blacklist: ['*.tmp']",
            services_extra={"c": "file_size: {max: 1 KiB}", "b": "mimetypes: ['text/*']"})
    a, b, c = h.roots.values()
    for root in h.roots.values():
        root.mkdir()
    (a / "note.txt").write_text("small text")
    (a / "photo.jpg").write_bytes(os.urandom(4096))
    (a / "scratch.tmp").write_text("never synced")
    plan = h.onitu("plan").stdout
    assert "copy    note.txt to b from a" in plan and "copy    note.txt to c from a" in plan
    assert "photo.jpg to b" not in plan and "photo.jpg to c" not in plan and "scratch.tmp" not in plan
    h.start()
    h.wait_for(lambda: tree(b).keys() == {"note.txt"} and tree(c).keys() == {"note.txt"})
    time.sleep(1.0)
    assert tree(b).keys() == {"note.txt"} and tree(c).keys() == {"note.txt"}
    assert "docs: in sync" in h.onitu("plan").stdout


def test_hostile_names_and_tuples_write_nothing_outside_a_root(hub, tmp_path):
    h = hub().start()
    a, b, c = h.roots.values()
    (a / "back\\slash.txt").write_text("not portable")
    (a / "ctrl\x01.txt").write_text("control character")
    (a / ("x" * 255)).write_text("longest name")
    (a / "Case.txt").write_text("upper")
    (a / "case.txt").write_text("lower")
    h.wait_for(lambda: {"x" * 255, "Case.txt", "case.txt"} <= tree(b).keys() == tree(c).keys())
    assert "back\\slash.txt" not in tree(b) and "ctrl\x01.txt" not in tree(c)

    space = connect(None, data_dir=h.data)
    try:
        evil = [
            {"op": "copy", "path": "../escape.txt", "on": "b", "sources": ["a"], "sha256": "0" * 64, "size": 1,
             "replaces": None, "source_path": None},
            {"op": "delete", "path": "/etc/passwd", "on": "b", "replaces": "x"},
            {"op": "move", "path": "case.txt", "dst": "../../moved", "on": "b", "replaces": "x"},
            {"op": "mkdir", "path": "a\x00b", "on": "b"},
            "not even a mapping",
        ]
        for n, action in enumerate(evil):
            space.write((tuples.ORDER, "b", 10**18 + n, {"folder": "docs", "actions": [action], "metas": [None]}))
        space.write((tuples.ORDER, "b", 10**18 + 99, {"folder": "docs", "actions": "not a list", "metas": []}))
        space.write((tuples.REPORT, "a", "forged", 1, {"folder": "docs", "scan": None,
                                                     "entries": [["../../outside", None], ["/abs", None]]}))
        h.wait_for(lambda: not space.read_all((tuples.ORDER, "b", None, None)), what="hostile orders dropped")
    finally:
        space.close()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "moved").exists()
    (a / "after.txt").write_text("still working")
    h.wait_for(lambda: (b / "after.txt").exists() and (c / "after.txt").exists())
    assert (b / "case.txt").read_text() == "lower"


def test_status_shows_transfers_and_services(hub):
    h = hub().start()
    status = h.status_json()["sync"]["folders"]["docs"]["services"]
    assert set(status) == {"a", "b", "c"}
    # a plug whose process runs may not have announced itself yet: that is "starting", never a failure
    assert all(row["state"] in ("starting", "in sync", "listing") for row in status.values()), status
    h.wait_for(lambda: all(row["state"] == "in sync"
                           for row in h.status_json()["sync"]["folders"]["docs"]["services"].values()),
               15, "every service in sync")
    out = h.onitu("status").stdout
    assert "docs" in out and "in sync" in out
    assert Path(h.config).exists()
