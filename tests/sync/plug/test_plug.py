"""One plug in-process, on an in-process space and a local root: what it reports when orders and listings meet."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from onitu.config import Config
from onitu.space import TupleSpace
from onitu.sync import tuples
from onitu.sync.decide.plan import Delete, Mkdir, Move, tree_content_id
from onitu.sync.plug import reports
from onitu.sync.plug.orders import Running
from onitu.sync.plug.plug import Plug


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
    reports = sorted(space.read_all((tuples.REPORT, "a", None, None, None)), key=lambda t: t[3])
    found: dict[str, object] = {}
    for _, _, _, _, body in reports:
        if body["scan"] == "begin":
            found = {}
        if body["scan"] is not None:
            found.update({p: o for p, o in body["entries"]})
    return found


def obey(plug: Plug, oid: int, action) -> None:
    """An order of one action, written to the space and carried out."""
    tup = (tuples.ORDER, "a", oid, {"folder": "docs", "actions": [tuples.action_to_wire(action)], "metas": [None]})
    plug.space.write(tup)
    plug.taker.start(tup, Running())


def test_an_order_carried_out_during_a_listing_is_in_the_listing(plug, tmp_path):
    root = tmp_path / "a"
    (root / "old").mkdir()
    below = plug.scanner.below

    def slow_listing(folder, path="", **how):  # the order is carried out after the listing has looked at the root
        yield from below(folder, path, **how)
        if path == "":
            plug.scanner.below = below
            obey(plug, 1, Mkdir("made-meanwhile", "a"))
    plug.scanner.below = slow_listing
    plug.reporter.full_scan()
    assert (root / "made-meanwhile").is_dir()
    assert "made-meanwhile" in listing(plug.space), "a directory the plug made itself was reported as deleted"
    assert "made-meanwhile" in plug.reporter.known["docs"]


def test_a_listing_is_sent_as_it_is_made(plug, tmp_path):
    """A big first sync starts copying as the source is listed and hashed: the first parts of a listing reach the
    space while it is being made (they were sent once every file was hashed: minutes at a million files)."""
    root = tmp_path / "a"
    root.mkdir(exist_ok=True)
    names = {f"f{i:04}.txt" for i in range(2500)}
    for name in names:
        (root / name).write_text(name)
    below, sent_midway = plug.scanner.below, []

    def watched_listing(folder, path="", **how):
        for n, item in enumerate(below(folder, path, **how)):
            if n == 2400:
                reports = plug.space.read_all((tuples.REPORT, "a", None, None, None))
                sent_midway.extend(sorted(body["scan"] for *_, body in reports if body["scan"] is not None))
            yield item
    plug.scanner.below = watched_listing
    plug.reporter.full_scan()
    assert sent_midway == ["begin", "part"], sent_midway
    assert set(listing(plug.space)) == names
    scans = [t[4]["scan"] for t in sorted(plug.space.read_all((tuples.REPORT, "a", None, None, None)),
                                          key=lambda t: t[3]) if t[4]["scan"] is not None]
    assert scans[0] == "begin" and scans[-1] == "end" and set(scans[1:-1]) == {"part"}


def test_a_listing_looks_at_each_entry_as_the_driver_lists_it(plug, tmp_path):
    """A million entries are never held at once: the first entry is hashed and handed out before the driver has
    walked past its directory (the whole walk was kept first: hundreds of MB at a million files, never returned)."""
    root = tmp_path / "a"
    for d in range(20):
        (root / f"d{d:02}").mkdir()
        for i in range(50):
            (root / f"d{d:02}" / f"f{i}").write_text(f"{d}/{i}")
    walk, listed = plug.driver.list, []

    def counted(prefix=""):
        for stat in walk(prefix):
            listed.append(stat.path)
            yield stat
    plug.driver.list = counted
    handed = [(len(listed), path) for path, _, _ in plug.scanner.below("docs", streamed=True)]
    assert len(handed) == 20 * 51
    assert all(n <= 51 for n, _ in handed[:10]), handed[:10]
    listed.clear()
    whole = [(len(listed), path) for path, _, _ in plug.scanner.below("docs")]
    assert [p for _, p in whole] == [p for _, p in handed] and whole[0][0] == 20 * 51


def test_a_root_lost_midway_through_a_listing_reports_nothing_as_gone(plug, tmp_path):
    """Parts already sent stand (they were true), but the listing is not ended: the referee learns of no deletion,
    and the plug keeps what it knew."""
    root = tmp_path / "a"
    for i in range(2500):
        (root / f"f{i:04}").write_text(str(i))
    plug.reporter.full_scan()
    before = dict(plug.reporter.known["docs"].items())
    for t in plug.space.read_all((tuples.REPORT, "a", None, None, None)):
        plug.space.take(t)
    walk = plug.driver.list

    def unmounted_midway(prefix=""):
        for n, stat in enumerate(walk(prefix)):
            if n == 1500:
                root.rename(root.with_name("a-unmounted"))
            yield stat
    plug.driver.list = unmounted_midway
    plug.reporter.full_scan()
    assert not plug.status and "missing" in plug.status.reason, plug.status
    sent = [body for *_, body in plug.space.read_all((tuples.REPORT, "a", None, None, None))]
    assert not root.exists() and "end" not in {body["scan"] for body in sent}
    assert all(obs is not None for body in sent for _, obs in body["entries"]), "something was reported as gone"
    assert dict(plug.reporter.known["docs"].items()) == before


@pytest.mark.parametrize("what", ["a full listing", "a tree moved in"])
def test_a_listing_waits_for_the_referee_to_take_its_parts(plug, tmp_path, monkeypatch, what):
    """A listing sends no faster than the referee takes: once WINDOW parts wait in the space it pauses, and goes on
    as they are taken (a restarted hub's plugs had put every part of a million files' listings there at once)."""
    monkeypatch.setattr(reports, "REPORT_SIZE", 10)
    monkeypatch.setattr(reports, "WINDOW", 3)
    under = "tree/" if what == "a tree moved in" else ""
    (tmp_path / "a" / under).mkdir(exist_ok=True)
    names = {f"{under}f{i:03}" for i in range(300)} | ({"tree"} if under else set())
    for name in names - {"tree"}:
        (tmp_path / "a" / name).write_text(name)
    waiting = (tuples.REPORT, "a", None, None, None)
    scan = threading.Thread(target=plug.reporter.full_scan if what == "a full listing" else
                            lambda: plug.reporter.changed("docs", ["tree"]))
    scan.start()
    try:
        deadline = time.monotonic() + 10
        while len(plug.space.read_all(waiting)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        assert len(plug.space.read_all(waiting)) == 4 and scan.is_alive(), "the listing did not pause"
        taken, most = [], 0
        while scan.is_alive() or plug.space.read_all(waiting):
            there = sorted(plug.space.read_all(waiting), key=lambda t: t[3])
            most = max(most, len(there))
            if there:
                taken.append(plug.space.take(there[0]))
            time.sleep(0.005)
    finally:
        plug.stop()
        scan.join(10)
    assert most <= 3 + 3, most  # WINDOW, the part just sent, and the two that end a full listing
    assert [t[3] for t in taken] == sorted(t[3] for t in taken)
    if what == "a full listing":
        scans = [t[4]["scan"] for t in taken]
        assert scans[0] == "begin" and scans[-1] == "end"
    assert {path for t in taken for path, _ in t[4]["entries"]} == names


def results(plug: Plug) -> list[dict]:
    """Every action's result the plug has sent, oldest first."""
    plug.outbox.flush()
    done = sorted(plug.space.read_all((tuples.DONE, "a", None, None, None)), key=lambda t: t[3])
    return [r for d in done for r in d[4]["results"]]


def test_an_order_on_something_changed_since_is_refused(plug, tmp_path):
    root = tmp_path / "a"
    (root / "f.txt").write_text("one")
    plug.reporter.full_scan()
    reported = plug.reporter.known["docs"]["f.txt"]
    (root / "f.txt").write_text("two, not reported yet")
    obey(plug, 2, Delete("f.txt", "a", reported.content_id))
    assert (root / "f.txt").read_text() == "two, not reported yet"
    done = results(plug)
    assert [r["ok"] for r in done] == [False] and "changed" in done[0]["error"]
    obey(plug, 3, Delete("f.txt", "a", "0" * 64))  # naming content it never reported
    assert (root / "f.txt").exists()


def test_a_directory_holding_a_file_the_hub_has_not_seen_is_not_moved(plug, tmp_path):
    """Renamed elsewhere while someone put a file in it here: moving it whole would carry that file off to a path
    nobody gave it; the order is refused and the file stays where it was put."""
    root = tmp_path / "a"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "1.txt").write_text("one")
    plug.reporter.full_scan()

    def seen_by_referee() -> str:
        known = plug.reporter.known["docs"]
        return tree_content_id({p[2:]: o.content for p, o in known.items() if p == "d" or p.startswith("d/")})
    seen = seen_by_referee()
    (root / "d" / "sub" / "new.txt").write_text("put here meanwhile")
    obey(plug, 1, Move("d", "k", "a", seen))
    assert (root / "d" / "sub" / "new.txt").read_text() == "put here meanwhile" and not (root / "k").exists()
    assert results(plug)[-1]["ok"] is False and "not seen" in results(plug)[-1]["error"]
    plug.reporter.full_scan()  # reported now: a move decided on that is carried out
    obey(plug, 2, Move("d", "k", "a", seen_by_referee()))
    assert results(plug)[-1] == {"ok": True, "error": ""}
    assert (root / "k" / "sub" / "new.txt").exists() and not (root / "d").exists()
    obey(plug, 3, Move("k", "m", "a", seen))  # decided on an older view of what it holds
    assert (root / "k").is_dir() and "changed" in results(plug)[-1]["error"]


def test_a_file_changed_as_its_copy_lands_is_reported_with_its_new_content(pair, tmp_path, monkeypatch):
    """Someone writes a file in place right after a copy linked it into place, before the driver looked at it
    again: the driver used to take that look for its own write, so the plug cached the new fingerprint with the
    copied content's hash, the watcher dropped the change as the plug's own, and every later listing reported the
    old content (the hub settled on it; the new content never reached the other replicas: the kill -9 soak's
    divergence of issue 20)."""
    import hashlib

    from onitu.sync.decide.plan import Copy
    from onitu.sync.drivers import local_stage

    a, b = pair["a"], pair["b"]
    copied, edited = b"copied content\n" * 3, b"the user's edit, longer than the copy\n"
    (tmp_path / "b" / "f.txt").write_bytes(copied)
    b.reporter.changed("docs", ["f.txt"])
    publish = local_stage.publish

    def publish_then_edit(staged, temp, full, **how):
        publish(staged, temp, full, **how)
        if full.startswith(str(tmp_path / "a")):
            with open(full, "r+b") as f:  # in place, as editors and the soak test do
                f.truncate(0)
                f.write(edited)
    monkeypatch.setattr(local_stage, "publish", publish_then_edit)
    sha = hashlib.sha256(copied).hexdigest()
    tup = (tuples.ORDER, "a", 1, {"folder": "docs", "actions": [tuples.action_to_wire(
        Copy("f.txt", "a", ("b",), sha, len(copied), None))], "metas": [None]})
    a.space.write(tup)
    a.taker.start(tup, Running())
    a.taker.pool.shutdown(wait=True)
    assert results(a) == [{"ok": True, "error": ""}]
    assert (tmp_path / "a" / "f.txt").read_bytes() == edited
    stat = a.driver.stat("f.txt")
    assert not a.driver.wrote("f.txt", stat.fingerprint), "the user's write was taken for the driver's own"
    a.reporter.changed("docs", ["f.txt"])  # what the watcher's event for the edit leads to
    assert a.reporter.known["docs"]["f.txt"].sha256 == hashlib.sha256(edited).hexdigest()
    a.scanner.save()
    again = Plug(a.config, "a", a.space)  # restarted: its listing reads the hash cache
    try:
        again.reporter.full_scan()
        assert again.reporter.known["docs"]["f.txt"].sha256 == hashlib.sha256(edited).hexdigest()
    finally:
        again.close()


def test_a_fifo_in_a_replica_is_skipped_and_stops_nothing(pair, tmp_path, caplog):
    """Issue 12, item 6: a FIFO in a replica was opened to be hashed, and the open waited for a writer for ever: the
    plug hung, was killed as such every ~31 s, and nothing from that replica synced again. Special files are never
    opened: skipped, with a warning naming them, and the rest of the replica is listed."""
    import threading

    from onitu.sync.drivers.contract import UnsafePath

    a = pair["a"]
    os.mkfifo(tmp_path / "a" / "fifo")
    (tmp_path / "a" / "after.txt").write_text("made after the FIFO\n")
    listing = threading.Thread(target=a.reporter.full_scan, daemon=True)
    listing.start()
    listing.join(10)
    assert not listing.is_alive(), "the listing hung on the FIFO"
    assert "after.txt" in a.reporter.known["docs"] and "fifo" not in a.reporter.known["docs"]
    assert any("skipping fifo: a FIFO" in r.getMessage() for r in caplog.records)
    assert a.driver.stat("fifo") is None
    with pytest.raises(UnsafePath, match="not a regular file"):
        a.driver.read("fifo")
    a.reporter.changed("docs", ["fifo"])  # as the watcher reports its creation: nothing to say, nothing hangs
    assert "fifo" not in a.reporter.known["docs"]


def reported(plug: Plug) -> dict[str, object]:
    """Every path the plug reported (listings and changes), as last reported."""
    reports = sorted(plug.space.read_all((tuples.REPORT, "a", None, None, None)), key=lambda t: t[3])
    return {p: o for *_, body in reports for p, o in body["entries"]}


def test_a_new_tree_is_reported_as_it_is_read_and_a_moved_one_whole(plug, tmp_path, monkeypatch):
    """A directory that appears is reported first, then its content a report at a time while the rest is read (the
    referee starts on it meanwhile); a directory moved within the root is reported with its old side, at once."""
    monkeypatch.setattr("onitu.sync.plug.reports.REPORT_SIZE", 10)
    root = tmp_path / "a"
    plug.reporter.full_scan()
    (root / "new").mkdir()
    for i in range(25):
        (root / "new" / f"f{i:02}.txt").write_text(str(i))
    below, seen_while_reading = plug.scanner.below, []

    def watched(folder, path="", **how):
        for n, item in enumerate(below(folder, path, **how)):
            if n == 20:
                seen_while_reading.append(set(reported(plug)))
            yield item
    plug.scanner.below = watched
    plug.reporter.changed("docs", ["new"])
    assert {"new", *(f"new/f{i:02}.txt" for i in range(10))} <= seen_while_reading[0]
    assert set(reported(plug)) >= {"new", *(f"new/f{i:02}.txt" for i in range(25))}

    seen_while_reading.clear()
    (root / "new").rename(root / "moved")
    plug.reporter.changed("docs", ["new", "moved"])
    assert not any(p.startswith("moved") for p in seen_while_reading[0]), "a move's new side went before its old"
    now = reported(plug)
    assert now["new"] is None and now["moved/f24.txt"] is not None


def test_a_listing_does_not_keep_a_plug_with_a_dead_order_loop_alive(plug):
    """The order loop died (its re-subscription refused) while the main loop was in a listing of a million files:
    the listing's beats kept the plug answering the watchdog, and it took no order for minutes. A listing beats
    only while the order loop lives, so the watchdog restarts such a plug."""
    def dies() -> None:
        raise RuntimeError("the order loop failed")
    plug.taker.run = dies
    plug.reporter.listed.set()
    errors = []

    def run() -> None:
        try:
            plug.run()
        except RuntimeError as exc:
            errors.append(exc)
    runner = threading.Thread(target=run)
    runner.start()
    runner.join(10)
    assert errors, "the main loop noticed the dead order loop"
    before = plug.liveness._last
    time.sleep(0.01)
    plug.scanner.beat()  # what a listing calls for each entry
    assert plug.liveness._last == before


def test_the_hash_cache_keeps_no_second_copy_of_what_the_plug_reported(plug, tmp_path):
    """A file's hash and fingerprint are in what the plug reported (its Known tables): once a listing is made, its
    hash cache lets go of the same in memory (130 bytes per file), yet still answers for every file, writes them all
    in its snapshot, and a restarted plug reads none of the files again."""
    root = tmp_path / "a"
    for d in range(3):
        (root / f"d{d}" / "sub").mkdir(parents=True)
        for i in range(10):
            (root / f"d{d}" / "sub" / f"f{i}.txt").write_text(f"{d}/{i}")
    plug._set_status(plug.driver.available())
    plug.reporter.full_scan()
    hashes, known = plug.scanner.hashes, plug.reporter.known["docs"]
    files = [path for path in known if known[path].kind == "file"]
    assert len(files) == 30 and hashes.entries == {}
    assert all(hashes.get(path) == (known[path].fingerprint, known[path].sha256) for path in files)
    (root / "d0" / "sub" / "f0.txt").write_text("changed")
    changed = plug.scanner.stat("docs", "d0/sub/f0.txt")
    assert changed is not None and changed.sha256 != known["d0/sub/f0.txt"].sha256
    assert hashes.get("d0/sub/f0.txt") == (changed.fingerprint, changed.sha256)  # newer than the one reported
    assert list(hashes.entries) == ["d0/sub/f0.txt"]

    plug.reporter.save()
    again = Plug(plug.config, "a", plug.space)
    assert again.scanner.hashes.as_dict() == {path: hashes.get(path) for path in files}
    read = []
    checksum = again.driver.checksum
    again.driver.checksum = lambda path: read.append(path) or checksum(path)
    again.prepare()
    again._set_status(again.driver.available())
    again.reporter.full_scan()
    again.close()
    assert read == [] and again.scanner.hashes.entries == {}
