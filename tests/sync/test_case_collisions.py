"""Issue 12, item 8, the case half: ``A.txt`` and ``a.txt`` in a folder with a replica that ignores case (a real
case-insensitive mount, :mod:`tests.sync.casefold`). That replica can hold one of the two only: the other's content
was refused and reached it nowhere. Now it lands there as a conflict copy, reaches every replica, is listed by
``onitu conflicts``, and the refused name says where its content went."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.sync.casefold import mounted, unavailable
from tests.sync.hub import sha, tree

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"no case-insensitive mount: {unavailable()}")


def contents(root, name: str) -> dict[str, str]:
    """The entries of ``root`` that are ``name`` in any case, or its conflict copies: name -> sha256."""
    stem = name.rpartition(".")[0].casefold()
    return {k: v for k, v in tree(root).items()
            if k.casefold() == name.casefold() or k.casefold().startswith(stem + ".conflict-")}


def test_names_differing_only_in_case_keep_both_contents_on_a_case_insensitive_replica(hub, tmp_path):
    h = hub(names=("a", "b"))
    a, b = h.roots["a"], h.roots["b"]
    a.mkdir()
    (a / "A.txt").write_text("upper")
    (a / "a.txt").write_text("lower")
    with mounted(tmp_path / "b-disk", b):
        h.start()

        def settled(name: str, *data: bytes) -> bool:
            """b holds each content once; a holds what b holds, and the names b could not take."""
            on_a, on_b = contents(a, name), contents(b, name)
            return (sorted(on_b.values()) == sorted(sha(d) for d in data) and len(on_a) == 2 * len(data) - 1
                    and all(on_b[k] == on_a.get(k) for k in on_b))

        h.wait_for(lambda: settled("a.txt", b"upper", b"lower"), 60, "both contents on b, the copy on a too")
        on_b = contents(b, "a.txt")
        (kept,) = [k for k in on_b if ".conflict-" not in k]
        (copy,) = [k for k in on_b if ".conflict-" in k]
        assert copy.endswith("-b.txt") and on_b[kept] == tree(a)[kept], on_b
        # while running: a second pair, the capitalised name second
        (a / "notes.md").write_text("first")
        h.wait_for(lambda: settled("notes.md", b"first"), 30, "notes.md everywhere")
        (a / "Notes.md").write_text("second")
        h.wait_for(lambda: settled("notes.md", b"first", b"second"), 30, "Notes.md kept apart on b")
        assert tree(b)["notes.md"] == sha(b"first")

        listed = json.loads(h.onitu("conflicts", "--json").stdout)
        assert sorted((c["path"], c["service"]) for c in listed) == sorted(
            [("a.txt" if kept == "A.txt" else "A.txt", "b"), ("Notes.md", "b")]), listed
        refused = h.status_json()["sync"]["skipped"]["b"]["docs"]
        assert set(refused) == {"Notes.md", "a.txt" if kept == "A.txt" else "A.txt"}, refused
        assert all("kept beside it as" in r["reason"] and r.get("refused") for r in refused.values()), refused
        time.sleep(8)  # the hub retries the refused copies meanwhile (0.5, 1, 2, 4 s): no new conflict copy
        assert len(contents(b, "a.txt")) == 2 and len(contents(b, "notes.md")) == 2, tree(b)
        assert {k: v for k, v in tree(a).items() if k not in refused} == tree(b)  # all else is in sync
        h.stop()


def test_directories_differing_only_in_case_keep_every_file_apart_and_a_restart_reuses_the_place(hub, tmp_path):
    """``Docs/`` and ``docs/``: the disk would merge them, so the hub expected files where the replica had none and
    held their "deletion". The one that comes second lands as ``docs.conflict-…-b/`` with all it holds; after
    the plug is killed and restarted, a new file of the clashing directory goes to the same place."""
    h = hub(names=("a", "b"))
    a, b = h.roots["a"], h.roots["b"]
    for name, data in {"Docs/x.txt": "x", "docs/y.txt": "y", "docs/sub/z.txt": "z"}.items():
        (a / name).parent.mkdir(parents=True, exist_ok=True)
        (a / name).write_text(data)
    with mounted(tmp_path / "b-disk", b):
        h.start()

        def apart(root) -> list[str]:
            return sorted({k.split("/")[0] for k in tree(root) if ".conflict-" in k.split("/")[0]})

        def settled(*files: str) -> bool:
            """b holds one of Docs/docs and one conflict directory with the other's files; a holds b's tree."""
            on_b, on_a = tree(b), tree(a)
            tops = {k.split("/")[0] for k in on_b}
            if len(apart(b)) != 1 or len(tops & {"Docs", "docs"}) != 1:
                return False
            (kept,), copy = tops & {"Docs", "docs"}, apart(b)[0]
            other = "docs" if kept == "Docs" else "Docs"
            want = {f.replace(other + "/", copy + "/", 1) for f in files}
            return want <= set(on_b) and all(on_a.get(k) == v for k, v in on_b.items())

        h.wait_for(lambda: settled("Docs/x.txt", "docs/y.txt", "docs/sub/z.txt"), 60, "each directory's files on b")
        assert not any(row["held"] for row in h.status_json()["sync"]["folders"]["docs"]["services"].values())
        (copy,) = apart(b)
        assert copy.endswith("-b"), copy
        first = copy.split(".conflict-")[0]  # the directory that came second, set apart
        plug = h.pid("plug-b")
        os.kill(plug, signal.SIGKILL)
        h.wait_for(lambda: h.process("plug-b").get("pid") not in (None, plug)
                   and h.process("plug-b")["state"] == "running", 30, "plug-b restarted")
        (a / first / "w.txt").write_text("w")
        h.wait_for(lambda: f"{copy}/w.txt" in tree(b), 60, "a new file of the clashing directory set apart")
        time.sleep(8)  # the hub retries the refused copies meanwhile: still one conflict directory
        assert apart(b) == [copy] and apart(a) == [copy], (apart(a), apart(b))
        assert tree(b)[f"{copy}/w.txt"] == sha(b"w")
        h.stop()
