"""Issue 12, items 8 and 9, one plug in-process: what a replica holds that cannot be synced is skipped *visibly*
(the driver's skipped map, published by the plug, counted by the hub client), and two names that are one path once
NFC-normalised are both kept (the second renamed to a conflict copy, told to the referee)."""

from __future__ import annotations

import hashlib
import os
import unicodedata

from onitu.sync import hub, tuples
from onitu.sync.decide.plan import Copy
from onitu.sync.plug.orders import Running
from onitu.sync.plug.plug import Plug


def published(plug: Plug) -> dict[str, dict]:
    """What the hub client finds skipped on ``plug``'s service in folder docs, once the plug published it."""
    plug._publish_skipped(0.0)
    counts, paths = hub.skipped(plug.space)
    found = paths.get(plug.service, {}).get("docs", {})
    assert counts.get((plug.service, "docs"), 0) == len(found)
    return found


def test_names_links_and_special_files_are_skipped_visibly(pair, tmp_path):
    a = pair["a"]
    root = tmp_path / "a"
    for name in ("new\nline.txt", "tab\t.txt", "back\\slash.txt"):
        (root / name).write_text("cannot be synced faithfully")
    with open(os.path.join(os.fsencode(root), b"bad\xff.txt"), "wb") as f:
        f.write(b"not UTF-8")
    (root / "link").symlink_to("/etc")
    os.mkfifo(root / "fifo")
    (root / "ok.txt").write_text("fine")
    a.reporter.full_scan()
    assert set(a.reporter.known["docs"]) == {"ok.txt"}
    found = published(a)
    assert set(found) == {"new\\x0aline.txt", "tab\\x09.txt", "back\\slash.txt", "bad\\xff.txt", "link", "fifo"}
    assert "symbolic link" in found["link"]["reason"] and "FIFO" in found["fifo"]["reason"]
    assert "forbidden character" in found["new\\x0aline.txt"]["reason"]
    assert "not valid Unicode" in found["bad\\xff.txt"]["reason"]
    (root / "link").unlink()  # gone: the next listing forgets it
    (root / "fifo").unlink()
    a.reporter.full_scan()
    assert set(published(a)) == {"new\\x0aline.txt", "tab\\x09.txt", "back\\slash.txt", "bad\\xff.txt"}


def test_two_names_one_path_once_normalised_are_both_kept(pair, tmp_path):
    """café.txt composed ("nfc") and decomposed ("nfd"): the hub saw one path, and the decomposed file's content
    reached no other replica. Now the decomposed one is renamed to a conflict copy and the referee told."""
    a = pair["a"]
    nfc, nfd = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
    assert nfc != nfd
    (tmp_path / "a" / nfc).write_text("nfc")
    (tmp_path / "a" / nfd).write_text("nfd")
    a.reporter.full_scan()
    on_disk = {name: (tmp_path / "a" / name).read_text() for name in os.listdir(tmp_path / "a")
               if not name.startswith(".onitu-")}
    copies = [name for name in on_disk if ".conflict-" in name]
    assert on_disk[nfc] == "nfc" and len(copies) == 1 and on_disk[copies[0]] == "nfd", on_disk
    assert copies[0].startswith("café.conflict-") and copies[0].endswith("-a.txt")
    known = a.reporter.known["docs"]
    assert known[nfc].sha256 == hashlib.sha256(b"nfc").hexdigest()
    assert known[copies[0]].sha256 == hashlib.sha256(b"nfd").hexdigest()
    a.reporter.handle([])  # the set-aside names go to the referee with the next report
    told = [t[4]["set_aside"] for t in a.space.read_all((tuples.REPORT, "a", None, None, None))
            if "set_aside" in t[4]]
    assert told == [[[copies[0], nfc]]]
    assert tuples.set_aside_from_wire(told[0]) == [(copies[0], nfc)]


def test_a_write_through_a_planted_link_is_refused_and_shown_until_it_succeeds(pair, tmp_path):
    a, b = pair["a"], pair["b"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "a" / "sub").symlink_to(outside)
    (tmp_path / "b" / "sub").mkdir()
    (tmp_path / "b" / "sub" / "f.txt").write_text("from b")
    b.reporter.changed("docs", ["sub"])
    content = b"from b"
    order = (tuples.ORDER, "a", 1, {"folder": "docs", "actions": [tuples.action_to_wire(
        Copy("sub/f.txt", "a", ("b",), hashlib.sha256(content).hexdigest(), len(content), None))], "metas": [None]})

    def obey() -> None:
        a.space.write(order)
        a.taker.start(order, Running())
        a.taker.pool.shutdown(wait=True)
        a.taker.pool = type(a.taker.pool)(2)

    obey()
    assert not any(outside.iterdir()), "written outside the root"
    found = published(a)
    assert found["sub/f.txt"]["refused"] and "outside the root" in found["sub/f.txt"]["reason"]
    a.reporter.full_scan()  # a listing does not forget a refused write (the link itself is listed as skipped)
    assert set(published(a)) == {"sub", "sub/f.txt"}
    (tmp_path / "a" / "sub").unlink()
    obey()
    assert (tmp_path / "a" / "sub" / "f.txt").read_bytes() == content
    assert "sub/f.txt" not in published(a)
