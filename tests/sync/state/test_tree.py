"""onitu.sync.state.tree: "everything below a directory" by bisection equals a scan of every path, whatever was added,
removed and added again, and however many paths wait to be merged. (Entries are directories here: paths are drawn
at random, so any of them may have others below it; a file has nothing below it.)"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from onitu.sync.decide.plan import Observed
from onitu.sync.drivers.contract import is_under
from onitu.sync.plug.known import Known
from onitu.sync.state import tree

# names chosen to sort around "/" and "0": "a-b" and "a.b" sort between "a" and "a/x", "a0" after it
names = st.sampled_from(["a", "a-b", "a.b", "a0", "b", "é", "a b"])
paths = st.lists(names, min_size=1, max_size=4).map("/".join)
DIR, FILE = Observed("dir"), Observed("file", "0" * 64)
steps = st.lists(st.tuples(st.booleans(), paths), max_size=300)


def scan(table: dict, path: str) -> list[str]:
    return sorted(p for p in table if is_under(p, path))


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(paths, min_size=1, max_size=10), st.sampled_from([1, 3, 4096]))
def test_at_and_below_is_a_scan(ops, queries, merge_at):
    tree.MERGE_AT = merge_at  # merged on every add, every few adds, or only when queried
    try:
        table = Known({"a": DIR})
        for i, (add, path) in enumerate(ops):
            if add:
                table[path] = DIR
            else:
                table.pop(path, None)
            if i % 37 == 0:
                for query in queries:
                    assert sorted(table.at_and_below(query)) == scan(table, query)
        for query in [*queries, ""]:
            assert sorted(table.at_and_below(query)) == scan(table, query)
    finally:
        tree.MERGE_AT = 4096


def test_many_deletions_are_dropped_from_the_index_when_it_is_rebuilt():
    table = Known({f"d/{i:05}": FILE for i in range(3000)})
    for i in range(2900):
        del table[f"d/{i:05}"]
    for i in range(100):
        table[f"e/{i:03}"] = FILE
    assert table.at_and_below("d") == [f"d/{i:05}" for i in range(2900, 3000)]
    assert len(table.paths) == 3100  # the dead stay until the big run is rebuilt ...
    for i in range(tree.MERGE_AT):
        table[f"f/{i:05}"] = FILE
    assert table.at_and_below("d") == [f"d/{i:05}" for i in range(2900, 3000)]
    assert len(table.paths) == 200 + tree.MERGE_AT  # ... which drops them (not the path whose add set it off)
    assert table.at_and_below("f") == [f"f/{i:05}" for i in range(tree.MERGE_AT)]


def test_a_tree_moved_in_rebuilds_the_big_run_a_few_dozen_times_not_once_per_merge(monkeypatch):
    """A million paths added a thousand at a time, queried between: the big run used to be sorted again at each
    merge (quadratic: seconds per hundred thousand paths at a million, all of it holding the GIL)."""
    rebuilds = []
    real_sorted = sorted
    monkeypatch.setattr(tree, "sorted", lambda items: rebuilds.append(len(items)) or real_sorted(items), raising=False)
    index = tree.SortedPaths()
    for n in range(200_000):
        index.add(f"d{n // 100:04}/f{n:06}")
        if n % 1000 == 999:
            assert len(index.below(f"d{n // 100:04}", lambda p: True)) == 100
    assert len(index) == 200_000
    big = [n for n in rebuilds if n > 50_000]
    assert len(big) < 30 and sum(rebuilds) < 20 * 200_000, (len(rebuilds), len(big), sum(rebuilds))


def test_a_file_has_nothing_below_it():
    table = Known({"f": FILE, "d": DIR, "d/x": FILE})
    assert table.at_and_below("f") == ["f"] and table.at_and_below("d") == ["d", "d/x"]
    assert table.at_and_below("gone") == []


@settings(max_examples=200, deadline=None)
@given(steps, st.lists(st.one_of(st.just(""), paths), min_size=1, max_size=10))
def test_children_are_a_scan_of_the_direct_entries(ops, queries):
    """The files route's index: the live paths directly in a directory, whatever was added and removed."""
    table: dict[str, Observed] = {}
    sorted_paths = tree.SortedPaths()
    for i, (add, path) in enumerate(ops):
        if add:
            table[path] = DIR
            sorted_paths.add(path)
        else:
            table.pop(path, None)
        if i % 29 == 0 or i == len(ops) - 1:
            for query in queries:
                direct = sorted(p for p in table if p.rpartition("/")[0] == query)
                assert sorted_paths.children(query, table.__contains__) == direct


def test_a_narrow_query_drops_nothing_from_the_folder_index() -> None:
    """The referee asks what lies below a path held by one service; the rebuild of a big index that query causes
    must keep the paths that service lacks (the files route lists them later, and nothing adds them again)."""
    index = tree.Tree(lambda folder, path: True)
    for n in range(2000):
        index.add("docs", f"d/f{n:04}")
    held = {f"d/f{n:04}" for n in range(10)}
    assert index.below("docs", "d", held.__contains__) == sorted(held)
    assert len(index.children("docs", "d", lambda p: True)) == 2000


def test_the_folder_index_drops_what_its_owner_no_longer_knows_and_takes_it_back() -> None:
    """Deleted paths leave the index once it has doubled (by the owner's own test of existence, not a query's), so
    it does not grow with every file ever seen; a path that comes back is found again."""
    known = {f"d/f{n:04}" for n in range(2000)}
    index = tree.Tree(lambda folder, path: folder == "docs" and path in known)
    for path in sorted(known):
        index.add("docs", path)
    assert len(index.children("docs", "d", lambda p: True)) == 2000
    known.clear()  # all deleted; the rebuild that doubles the index drops them
    for n in range(100):
        known.add(f"e/g{n:03}")
        index.add("docs", f"e/g{n:03}")
    for n in range(2000):
        known.add(f"f/h{n:04}")
        index.add("docs", f"f/h{n:04}")
    assert index.children("docs", "d", lambda p: True) == []
    assert len(index.children("docs", "e", lambda p: True)) == 100
    known.add("d/f0007")
    index.add("docs", "d/f0007")
    assert index.children("docs", "d", lambda p: True) == ["d/f0007"]
    assert index.children("other", "", lambda p: True) == []
