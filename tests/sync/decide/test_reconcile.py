"""onitu.sync.decide.reconcile: table-driven cases (agreed state, replicas → expected orders), then the details."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from onitu.sync.decide.metadata import FileMeta, VersionVector
from onitu.sync.decide.plan import (
    Action,
    Copy,
    Delete,
    KeepConflict,
    MarkUnavailable,
    Mkdir,
    Move,
    Observed,
    Replica,
    tree_content_id,
)
from onitu.sync.decide.reconcile import conflict_name, reconcile

WHEN = datetime(2024, 5, 6, 7, 8, 9)
STAMP = "20240506-070809"
DIR = "/"  # in the tables, the content of a directory


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def meta(path: str, text: str | None, version: dict[str, int] | None = None, mtime: int = 0) -> FileMeta:
    """Agreed metadata: a file with ``text``, a directory (DIR) or a tombstone (None)."""
    vv = VersionVector(version or {"A": 1})
    if text is None:
        return FileMeta(path, version=vv, tombstone=True)
    if text == DIR:
        return FileMeta(path, "dir", version=vv)
    return FileMeta(path, "file", len(text), sha(text), vv, False, mtime)


def agreed(entries: dict[str, str | None], version: dict[str, int] | None = None) -> dict[str, FileMeta]:
    return {path: meta(path, text, version) for path, text in entries.items()}


def seen(text: str, mtime: int = 0) -> Observed:
    if text == DIR:
        return Observed("dir", fingerprint="fp-dir")
    return Observed("file", sha(text), len(text), mtime, f"fp-{text}")


def rep(service: str, now: dict[str, str | tuple[str, int]], held: dict[str, FileMeta] | None = None,
        unavailable: str | None = None) -> Replica:
    """A replica; ``now`` values are a text or (text, mtime); ``held`` defaults to nothing held."""
    observed = {p: seen(*v) if isinstance(v, tuple) else seen(v) for p, v in now.items()}
    return Replica(service, observed, held or {}, unavailable)


def short(action: Action) -> tuple:
    match action:
        case Copy(path, to, sources):
            return ("copy", path, to, "".join(sources))
        case Mkdir(path, on):
            return ("mkdir", path, on)
        case Delete(path, on):
            return ("delete", path, on)
        case Move(src, dst, on):
            return ("move", src, dst, on)
        case KeepConflict(path, on, conflict):
            return ("conflict", path, on, conflict)
        case MarkUnavailable(service):
            return ("unavailable", service)
    raise AssertionError(action)


def cf(path: str, service: str) -> str:
    return conflict_name(path, WHEN, service)


X = agreed({"f": "x", "g": "z"})  # two files everybody holds at version {A: 1}
X2 = agreed({"f": "x", "g": "z"}, {"A": 2})
D = agreed({"d": DIR, "d/1": "one", "d/2": "two", "e": "e", "f": "f", "g": "g"})
STALE = {"f": meta("f", "x1", {"A": 1})}  # what a replica that missed the latest version holds
LATEST = agreed({"f": "x2"}, {"A": 2})

CASES = {
    "nothing changed": (X, [rep("A", {"f": "x", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], []),
    "create": ({}, [rep("A", {"f": "x"}), rep("B", {})], [("copy", "f", "B", "A")]),
    "create in a new directory": (
        {}, [rep("A", {"d": DIR, "d/f": "x"}), rep("B", {})], [("mkdir", "d", "B"), ("copy", "d/f", "B", "A")],
    ),
    "modify": (
        X, [rep("A", {"f": "y", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], [("copy", "f", "B", "A")],
    ),
    "delete": (X, [rep("A", {"g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], [("delete", "f", "B")]),
    "delete everywhere already": (X, [rep("A", {"g": "z"}, X), rep("B", {"g": "z"}, X)], []),
    "rename is a move": (
        X, [rep("A", {"h": "x", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], [("move", "f", "h", "B")],
    ),
    "rename into a new directory": (
        X, [rep("A", {"n": DIR, "n/h": "x", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)],
        [("move", "f", "n/h", "B"), ("mkdir", "n", "B")],
    ),
    "directory rename is one move": (
        D,
        [rep("A", {"k": DIR, "k/1": "one", "k/2": "two", "e": "e", "f": "f", "g": "g"}, D),
         rep("B", {"d": DIR, "d/1": "one", "d/2": "two", "e": "e", "f": "f", "g": "g"}, D)],
        [("move", "d", "k", "B")],
    ),
    "rename on a replica still behind: copy and delete": (
        X2, [rep("A", {"h": "x", "g": "z"}, X2), rep("B", {"f": "x1", "g": "z"}, X | {"f": meta("f", "x1")})],
        [("delete", "f", "B"), ("copy", "h", "B", "A")],
    ),
    "rename vs modify: both kept": (
        X, [rep("A", {"h": "x", "g": "z"}, X), rep("B", {"f": "y", "g": "z"}, X)],
        [("copy", "f", "A", "B"), ("copy", "h", "B", "A")],
    ),
    "modify vs delete: modification wins": (
        X, [rep("A", {"f": "y", "g": "z"}, X), rep("B", {"g": "z"}, X)], [("copy", "f", "B", "A")],
    ),
    "modify vs delete of an older version": (
        agreed({"f": None, "g": "z"}, {"A": 2}),
        [rep("A", {"g": "z"}, agreed({"f": None, "g": "z"}, {"A": 2})), rep("B", {"f": "y", "g": "z"}, X)],
        [("copy", "f", "A", "B")],
    ),
    "modify vs modify: newer wins, other kept": (
        X, [rep("A", {"f": ("y", 2), "g": "z"}, X), rep("B", {"f": ("w", 1), "g": "z"}, X)],
        [("conflict", "f", "B", cf("f", "B")), ("copy", "f", "B", "A"), ("copy", cf("f", "B"), "A", "B")],
    ),
    "modify vs modify: same time, smaller service name wins": (
        X, [rep("B", {"f": ("w", 5), "g": "z"}, X), rep("A", {"f": ("y", 5), "g": "z"}, X)],
        [("conflict", "f", "B", cf("f", "B")), ("copy", "f", "B", "A"), ("copy", cf("f", "B"), "A", "B")],
    ),
    "create vs create, different content": (
        {}, [rep("A", {"f": ("y", 1)}), rep("B", {"f": ("w", 2)})],
        [("conflict", "f", "A", cf("f", "A")), ("copy", "f", "A", "B"), ("copy", cf("f", "A"), "B", "A")],
    ),
    "create vs create, same content": ({}, [rep("A", {"f": "y"}), rep("B", {"f": "y"})], []),
    "modify vs modify, same content": (
        X, [rep("A", {"f": "y", "g": "z"}, X), rep("B", {"f": "y", "g": "z"}, X)], [],
    ),
    "dir vs file: the directory wins": (
        {}, [rep("A", {"p": DIR, "p/x": "1"}), rep("B", {"p": ("file", 99)})],
        [("conflict", "p", "B", cf("p", "B")), ("mkdir", "p", "B"), ("copy", cf("p", "B"), "A", "B"),
         ("copy", "p/x", "B", "A")],
    ),
    "file replaced by a directory": (
        agreed({"p": "x", "q": "q"}),
        [rep("A", {"p": DIR, "p/y": "y", "q": "q"}, agreed({"p": "x", "q": "q"})),
         rep("B", {"p": "x", "q": "q"}, agreed({"p": "x", "q": "q"}))],
        [("delete", "p", "B"), ("mkdir", "p", "B"), ("copy", "p/y", "B", "A")],
    ),
    "unavailable replica: nothing inferred": (
        X, [rep("A", {}, X, unavailable="root missing"), rep("B", {"f": "x", "g": "z"}, X)],
        [("unavailable", "A")],
    ),
    "unavailable replica: gets no orders": (
        X, [rep("A", {}, X, unavailable="unmounted"), rep("B", {"f": "y", "g": "z"}, X)], [("unavailable", "A")],
    ),
    "three replicas: stale change is a conflict": (
        LATEST,
        [rep("A", {"f": "x2"}, LATEST), rep("B", {"f": "x2"}, LATEST), rep("C", {"f": "mine"}, STALE)],
        [("conflict", "f", "C", cf("f", "C")), ("copy", "f", "C", "AB"), ("copy", cf("f", "C"), "A", "C"),
         ("copy", cf("f", "C"), "B", "C")],
    ),
    "three replicas: a replica that caught up is no rival of the agreed version": (
        LATEST,
        [rep("A", {"f": "x2"}, LATEST), rep("B", {"f": ("mine", 9)}, STALE), rep("C", {"f": "x2"}, STALE)],
        [("conflict", "f", "B", cf("f", "B")), ("copy", "f", "B", "AC"), ("copy", cf("f", "B"), "A", "B"),
         ("copy", cf("f", "B"), "C", "B")],
    ),
    "three replicas: stale, unchanged replica is updated": (
        LATEST, [rep("A", {"f": "x2"}, LATEST), rep("B", {"f": "x2"}, LATEST), rep("C", {"f": "x1"}, STALE)],
        [("copy", "f", "C", "AB")],
    ),
    "three replicas: stale deletion is undone": (
        LATEST, [rep("A", {"f": "x2"}, LATEST), rep("B", {"f": "x2"}, LATEST), rep("C", {}, STALE)],
        [("copy", "f", "C", "AB")],
    ),
    "new replica gets everything": (
        X, [rep("A", {"f": "x", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X), rep("C", {})],
        [("copy", "f", "C", "AB"), ("copy", "g", "C", "AB")],
    ),
    "deleted directory: children first": (
        D, [rep("A", {"e": "e", "f": "f", "g": "g"}, D),
            rep("B", {"d": DIR, "d/1": "one", "d/2": "two", "e": "e", "f": "f", "g": "g"}, D)],
        [("delete", "d/1", "B"), ("delete", "d/2", "B"), ("delete", "d", "B")],
    ),
    "deleted directory kept for a file added in it": (
        D, [rep("A", {"e": "e", "f": "f", "g": "g"}, D),
            rep("B", {"d": DIR, "d/1": "one", "d/2": "two", "d/new": "n", "e": "e", "f": "f", "g": "g"}, D)],
        [("delete", "d/1", "B"), ("delete", "d/2", "B"), ("mkdir", "d", "A"), ("copy", "d/new", "A", "B")],
    ),
}


@pytest.mark.parametrize(("ancestors", "replicas", "expected"), CASES.values(), ids=CASES.keys())
def test_reconcile(ancestors: dict[str, FileMeta], replicas: list[Replica], expected: list[tuple]) -> None:
    plan = reconcile(ancestors, replicas, when=WHEN)
    assert [short(a) for a in plan.actions] == expected
    assert plan.held == ()
    # the outcome does not depend on the order replicas are given in
    assert reconcile(ancestors, replicas[::-1], when=WHEN) == plan


def test_agreed_metadata_records_the_winner() -> None:
    plan = reconcile(X, [rep("A", {"f": ("y", 7), "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], when=WHEN)
    assert plan.agreed == {"f": FileMeta("f", "file", 1, sha("y"), VersionVector({"A": 2}), False, 7)}
    plan = reconcile(X, [rep("A", {"f": "x", "g": "z"}, X), rep("B", {"g": "z"}, X)], when=WHEN)
    assert plan.agreed == {"f": FileMeta("f", version=VersionVector({"A": 1, "B": 1}), tombstone=True)}
    plan = reconcile({}, [rep("A", {"f": ("y", 1)}), rep("B", {"f": ("w", 2)})], when=WHEN)
    assert plan.agreed["f"].sha256 == sha("w") and plan.agreed["f"].version == VersionVector({"B": 1})
    loser = plan.agreed[cf("f", "A")]
    assert loser.sha256 == sha("y") and loser.version == VersionVector({"A": 1}) and not loser.tombstone


def test_orders_carry_the_content_they_were_decided_on() -> None:
    """Guards name the content the referee saw (the plug turns it into the fingerprint it reported)."""
    plan = reconcile(X, [rep("A", {"f": ("y", 2), "g": "z"}, X), rep("B", {"f": ("w", 1), "g": "z"}, X)], when=WHEN)
    keep, copy_winner = plan.actions[0], plan.actions[1]
    assert keep == KeepConflict("f", "B", cf("f", "B"), sha("w"))
    assert copy_winner == Copy("f", "B", ("A",), sha("y"), 1, None)  # B's version was moved aside first
    plan = reconcile(X, [rep("A", {"f": "y", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], when=WHEN)
    assert plan.actions == (Copy("f", "B", ("A",), sha("y"), 1, sha("x")),)
    plan = reconcile(X, [rep("A", {"g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], when=WHEN)
    assert plan.actions == (Delete("f", "B", sha("x")),)

    plan = reconcile(X, [rep("A", {"h": "x", "g": "z"}, X), rep("B", {"f": "x", "g": "z"}, X)], when=WHEN)
    assert plan.actions == (Move("f", "h", "B", sha("x")),)


def test_a_directory_moves_only_as_the_referee_saw_it() -> None:
    """A directory moved whole names everything in it: a file put there unseen must not be carried off."""
    renamed = {"k": DIR, "k/1": "one", "k/2": "two", "e": "e", "f": "f", "g": "g"}
    as_is = {"d": DIR, "d/1": "one", "d/2": "two", "e": "e", "f": "f", "g": "g"}
    plan = reconcile(D, [rep("A", renamed, D), rep("B", as_is, D)], when=WHEN)
    inside = {"": ("dir", None), "1": ("file", sha("one")), "2": ("file", sha("two"))}
    assert plan.actions == (Move("d", "k", "B", tree_content_id(inside)),)
    assert tree_content_id(inside) != tree_content_id({**inside, "3": ("file", sha("three"))})
    assert tree_content_id(inside) != tree_content_id({**inside, "2": ("file", sha("two!"))})


MANY = agreed({f"f{i}": f"content {i}" for i in range(10)})


@pytest.mark.parametrize(("deleted", "held"), [(5, False), (6, True), (10, True)])
def test_mass_deletion_is_held_for_approval(deleted: int, held: bool) -> None:
    remaining = {f"f{i}": f"content {i}" for i in range(deleted, 10)}
    everything = {f"f{i}": f"content {i}" for i in range(10)}
    plan = reconcile(MANY, [rep("A", remaining, MANY), rep("B", everything, MANY)], when=WHEN)
    deletes = [("delete", f"f{i}", "B") for i in range(deleted)]
    if not held:
        assert [short(a) for a in plan.actions] == deletes and plan.held == ()
        return
    assert plan.actions == () and plan.agreed == {}
    (hold,) = plan.held
    assert (hold.service, hold.deleted, hold.total) == ("A", deleted, 10)
    assert [short(a) for a in hold.actions] == deletes
    assert set(hold.agreed) == {f"f{i}" for i in range(deleted)} and all(m.tombstone for m in hold.agreed.values())


def test_deletion_threshold_is_configurable_and_renames_do_not_count() -> None:
    remaining = {f"f{i}": f"content {i}" for i in range(3, 10)}
    everything = {f"f{i}": f"content {i}" for i in range(10)}
    replicas = [rep("A", remaining, MANY), rep("B", everything, MANY)]
    assert reconcile(MANY, replicas, when=WHEN).held == ()
    assert reconcile(MANY, replicas, when=WHEN, deletion_threshold=0.2).held[0].deleted == 3
    renamed = {f"g{i}": f"content {i}" for i in range(10)}
    plan = reconcile(MANY, [rep("A", renamed, MANY), rep("B", everything, MANY)], when=WHEN)
    assert plan.held == () and [short(a) for a in plan.actions] == [("move", f"f{i}", f"g{i}", "B") for i in range(10)]


def test_modification_is_not_held_with_the_deletions() -> None:
    remaining = {"f9": "content 9"}
    everything = {f"f{i}": f"content {i}" for i in range(10)} | {"f0": "changed on B"}
    plan = reconcile(MANY, [rep("A", remaining, MANY), rep("B", everything, MANY)], when=WHEN)
    assert [short(a) for a in plan.actions] == [("copy", "f0", "A", "B")]
    assert len(plan.held[0].actions) == 8


class Routes:
    """B takes no *.raw and is write-only ('w'); C is read-only ('r')."""

    def selects(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        return not (service == "B" and path.endswith(".raw")) and service != "C"

    def reads(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        return service != "B"


def test_routing_decides_who_holds_and_who_is_read() -> None:
    replicas = [rep("A", {"big.raw": "raw", "doc": "d"}), rep("B", {}), rep("C", {})]
    plan = reconcile({}, replicas, when=WHEN, routing=Routes())
    assert [short(a) for a in plan.actions] == [("copy", "doc", "B", "A")]  # C is never written to
    # a change on C (read-only) is read and propagated; one on B (write-only) is not, and gets overwritten
    anc = agreed({"doc": "d"})
    plan = reconcile(anc, [rep("A", {"doc": "d"}, anc), rep("B", {"doc": "b"}, anc), rep("C", {"doc": "c"}, anc)],
                     when=WHEN, routing=Routes())
    assert [short(a) for a in plan.actions] == [("copy", "doc", "A", "C"), ("copy", "doc", "B", "C")]
    assert plan.agreed["doc"].sha256 == sha("c")


def test_unavailable_replica_is_marked_and_skipped_even_as_a_source() -> None:
    plan = reconcile(X, [rep("A", {"f": "x", "g": "z"}, X, "gone"), rep("B", {"f": "x", "g": "z"}, X), rep("C", {})],
                     when=WHEN)
    assert plan.actions[0] == MarkUnavailable("A", "gone")
    assert [short(a) for a in plan.actions[1:]] == [("copy", "f", "C", "B"), ("copy", "g", "C", "B")]


@pytest.mark.parametrize(("path", "service", "expected"), [
    ("f", "B", f"f.conflict-{STAMP}-B"),
    ("dir/report.final.pdf", "laptop", f"dir/report.final.conflict-{STAMP}-laptop.pdf"),
    (".bashrc", "A", f".bashrc.conflict-{STAMP}-A"),
    ("a.b/Makefile", "A", f"a.b/Makefile.conflict-{STAMP}-A"),
])
def test_conflict_name(path: str, service: str, expected: str) -> None:
    assert conflict_name(path, WHEN, service) == expected


def test_conflict_name_avoids_taken_names_and_stays_short() -> None:
    first = conflict_name("f.txt", WHEN, "A")
    assert conflict_name("f.txt", WHEN, "A", {first}) == f"f.conflict-{STAMP}-A-2.txt"
    long = "é" * 120 + ".txt"  # 244 bytes
    name = conflict_name(long, WHEN, "A")
    assert len(name.encode()) <= 255 and name.endswith(f".conflict-{STAMP}-A.txt") and name.startswith("é")
