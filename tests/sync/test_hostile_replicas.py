"""Issue 12, items 7 to 10, end to end (``onitu start``, three local replicas): odd and hostile replica content
stops nothing, loses nothing and is shown in ``onitu status``."""

from __future__ import annotations

import json
import os
import shutil
import time
import unicodedata

import pytest

from tests.sync.hub import Hub, sha, tree

# Root without the capabilities that let it read anything: permissions apply to it as to any user.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search"]


def row(h: Hub, service: str) -> dict:
    """The status row of ``service`` in folder docs."""
    return h.status_json().get("sync", {}).get("folders", {}).get("docs", {}).get("services", {}).get(service, {})


def wait_row(h: Hub, service: str, ok, what: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = row(h, service)
        if found and ok(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {row(h, service)}\n{h.agent_logs()}")


def test_an_unreadable_directory_is_skipped_shown_and_synced_once_readable(hub):
    """Item 7: with the plug not reading everything (not root), ``A/locked`` (mode 000) present at start killed the
    watch thread: A stayed `listing` for good, even after chmod 755. Now it is skipped and shown, the rest syncs,
    and its files sync once it can be read."""
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv (util-linux) to drop the capabilities to read everything")
    h = hub()
    h.prefix = UNPRIVILEGED
    a = h.roots["a"]
    (a / "locked").mkdir(parents=True)
    (a / "locked" / "inside.txt").write_text("waits until readable")
    (a / "open.txt").write_text("syncs at once")
    os.chmod(a / "locked", 0)
    try:
        h.start()
        h.wait_for(lambda: all(tree(h.roots[n]).get("open.txt") == sha(b"syncs at once") for n in ("b", "c")),
                   what="the readable file to sync")
        found = wait_row(h, "a", lambda r: r.get("skipped") == 1 and r["state"] == "in sync",
                         "a in sync with one skipped path")
        assert found["state"] == "in sync"
        skipped = h.status_json()["sync"]["skipped"]["a"]["docs"]
        assert list(skipped) == ["locked"] and "cannot be read" in skipped["locked"]["reason"]
        out = h.onitu("status", "--skipped").stdout
        assert "locked" in out and "cannot be read" in out
        assert "locked" not in tree(h.roots["b"])
        os.chmod(a / "locked", 0o755)
        h.wait_for(lambda: all(tree(h.roots[n]).get("locked/inside.txt") == sha(b"waits until readable")
                               for n in ("b", "c")), what="the directory's files once readable")
        (a / "locked" / "later.txt").write_text("watched now")
        h.wait_for(lambda: all("locked/later.txt" in tree(h.roots[n]) for n in ("b", "c")),
                   what="a change inside it to be seen")
        wait_row(h, "a", lambda r: r.get("skipped") == 0, "the skipped path to be forgotten")
    finally:
        os.chmod(a / "locked", 0o755)


def test_two_names_that_are_one_path_once_normalised_both_reach_every_replica(hub):
    """Item 8: café.txt composed ("nfc") and decomposed ("nfd") in A: only the composed one reached B and C, the
    other's content was nowhere, status `in sync`. Now the second is kept as a conflict copy, everywhere, and
    listed by `onitu conflicts`, both when they are there at start and when they appear while Onitu runs."""
    h = hub()
    a = h.roots["a"]
    a.mkdir(parents=True)
    nfc, nfd = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
    (a / nfc).write_text("nfc")
    (a / nfd).write_text("nfd")
    h.start()

    def contents(name: str) -> list[list[str]]:
        """Per replica, the contents of ``name`` and its conflict copies (names compared NFC-normalised)."""
        stem = name[:-4]
        trees = [{unicodedata.normalize("NFC", k): v for k, v in tree(r).items()} for r in h.roots.values()]
        return [sorted(v for k, v in t.items() if k == name or k.startswith(stem + ".conflict-")) for t in trees]

    def everywhere(name: str, *data: bytes) -> None:
        h.wait_for(lambda: contents(name) == [sorted(sha(d) for d in data)] * 3, what=f"{name} everywhere")

    everywhere(nfc, b"nfc", b"nfd")
    assert tree(h.roots["b"])[nfc] == sha(b"nfc")
    # while running: the decomposed name first (the hub knows it as "ciaò.txt"), then the composed one
    later_nfc, later_nfd = unicodedata.normalize("NFC", "ciaò.txt"), unicodedata.normalize("NFD", "ciaò.txt")
    (a / later_nfd).write_text("first, decomposed")
    everywhere(later_nfc, b"first, decomposed")
    (a / later_nfc).write_text("then composed")
    everywhere(later_nfc, b"first, decomposed", b"then composed")
    listed = json.loads(h.onitu("conflicts", "--json").stdout)
    assert sorted(c["path"] for c in listed) == sorted([nfc, later_nfc]), listed
    assert all(c["service"] == "a" and ".conflict-" in c["conflict"] for c in listed)


def test_skipped_and_refused_paths_are_counted_listed_and_not_retried_in_a_loop(hub, tmp_path):
    """Item 9: names with a newline, tab, backslash or invalid UTF-8, a symbolic link, and a write refused because
    a link planted in B resolves outside its root: all invisible (status `in sync`), the refused write retried
    every few seconds. Now each is counted per folder and service, listed with its reason, and a refused write is
    retried less and less often."""
    h = hub()
    a, b = h.roots["a"], h.roots["b"]
    outside = tmp_path / "outside"
    outside.mkdir()
    for root in h.roots.values():
        root.mkdir(parents=True)
    for name in ("new\nline.txt", "tab\t.txt", "back\\slash.txt"):
        (a / name).write_text("unsyncable name")
    with open(os.path.join(os.fsencode(a), b"bad\xff.txt"), "wb") as f:
        f.write(b"not UTF-8")
    (a / "link").symlink_to(outside)
    (b / "sub").symlink_to(outside)  # planted: a write to sub/... would land outside b's root
    h.start()
    (a / "sub").mkdir()
    (a / "sub" / "f.txt").write_text("must not leave b's root")
    h.wait_for(lambda: tree(h.roots["c"]).get("sub/f.txt") == sha(b"must not leave b's root"), what="c's copy")
    wait_row(h, "a", lambda r: r.get("skipped") == 5, "five paths skipped on a")
    wait_row(h, "b", lambda r: r.get("skipped", 0) >= 1, "the refused write on b")
    skipped = h.status_json()["sync"]["skipped"]
    assert set(skipped["a"]["docs"]) == {"new\\x0aline.txt", "tab\\x09.txt", "back\\slash.txt", "bad\\xff.txt",
                                         "link"}
    refused = {p: i for p, i in skipped["b"]["docs"].items() if i.get("refused")}
    assert list(refused) in (["sub"], ["sub/f.txt"]) and "outside the root" in next(iter(refused.values()))["reason"]
    assert not any(outside.iterdir()), "written outside b's root"
    out = h.onitu("status", "--skipped").stdout
    assert "outside the root" in out and "symbolic link" in out and "forbidden character" in out
    assert "paths are skipped" in h.onitu("status").stdout
    first = next(iter(refused.values()))["count"]
    time.sleep(12)  # backoff doubles from 0.5 s: at most 0.5+1+2+4+8 -> 5 more tries, a tight loop makes dozens
    again = {p: i for p, i in h.status_json()["sync"]["skipped"]["b"]["docs"].items() if i.get("refused")}
    assert next(iter(again.values()))["count"] - first <= 6, (first, again)
    (b / "sub").unlink()  # the link removed: the refused write goes through at the next try
    h.wait_for(lambda: tree(b).get("sub/f.txt") == sha(b"must not leave b's root"), timeout=60,
               what="the write once the link is gone")


def test_status_shows_held_paths_pending_files_and_a_missing_marker(hub):
    """Item 10: `onitu approve` could not show which paths are held, status gave no hint; an unavailable replica
    showed `files pending 0` while files waited for it; an empty directory in place of a root said "missing or not
    a directory"."""
    h = hub(sync="deletion_threshold: 0.5, deletion_minimum: 2")
    a, c = h.roots["a"], h.roots["c"]
    a.mkdir(parents=True)
    for i in range(4):
        (a / f"f{i}.txt").write_text(f"file {i}")
    h.start()
    h.wait_converged(expect=lambda t: len(t) == 4)
    for i in range(3):
        (a / f"f{i}.txt").unlink()
    wait_row(h, "a", lambda r: r["held"] > 0, "the deletions to be held")
    assert "onitu approve" in h.onitu("status").stdout
    held = json.loads(h.onitu("approve", "--list", "--json").stdout)
    assert [(x["folder"], x["service"]) for x in held] == [("docs", "a")]
    assert {"f0.txt", "f1.txt", "f2.txt"} <= set(held[0]["paths"])
    assert "f1.txt" in h.onitu("approve", "--list").stdout
    assert tree(h.roots["b"]).keys() >= {"f0.txt", "f1.txt", "f2.txt"}, "held deletions were carried out"
    plan = json.loads(h.onitu("plan", "--json").stdout)
    assert all("paths" in x for x in plan["docs"]["held"])
    h.onitu("approve")
    h.wait_converged(expect=lambda t: set(t) == {"f3.txt"})

    shutil.rmtree(c)
    c.mkdir()  # an empty directory in place of the root
    wait_row(h, "c", lambda r: ".onitu-root" in r["state"], "c's state to name the missing marker")
    for i in range(3):
        (a / f"new{i}.txt").write_text("x" * 10)
    found = wait_row(h, "c", lambda r: r["files"] == 3, "three files pending for c")
    assert found["bytes"] == 30 and "unavailable" in found["state"]


def test_finished_transfers_do_not_linger_in_status(hub):
    """Item 10: a finished transfer stayed in `onitu status` as "0% of 2 B"."""
    h = hub()
    h.start()
    (h.roots["a"] / "small.txt").write_text("hi")
    h.wait_converged(expect=lambda t: "small.txt" in t)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(h.status_json()["sync"]["progress"].values()):
        time.sleep(0.2)
    assert not any(h.status_json()["sync"]["progress"].values())
    assert "small.txt" not in h.onitu("status").stdout
