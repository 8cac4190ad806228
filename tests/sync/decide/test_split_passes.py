"""Splitting the paths of a decision into passes: nothing lost, trees and renames kept whole, sizes bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onitu.sync.decide.split_passes import split
from onitu.sync.drivers.contract import is_under

NAMES = st.sampled_from(["a", "b", "a b", "a-b", "c.txt", "z"])
PATHS = st.lists(NAMES, min_size=1, max_size=4).map("/".join)


def closed(paths: set[str]) -> set[str]:
    """``paths`` with every parent directory, as a referee's ready set has them."""
    out = set(paths)
    for path in paths:
        while "/" in path:
            path = path.rpartition("/")[0]
            out.add(path)
    return out


@given(st.sets(PATHS, max_size=60).map(closed), st.lists(st.tuples(PATHS, PATHS), max_size=4),
       st.integers(1, 12))
def test_every_path_once_trees_and_renames_whole(paths, renames, size):
    passes = split(sorted(paths), renames, size)
    flat = [p for chunk in passes for p in chunk]
    assert sorted(flat) == sorted(paths)
    where = {p: i for i, chunk in enumerate(passes) for p in chunk}
    for path in paths:
        for other in paths:
            if is_under(other, path):
                assert where[other] == where[path], (path, other)
    for src, dst in renames:
        if src in where and dst in where:
            assert where[src] == where[dst]
    for chunk in passes:  # over size only as one tree, or trees joined by renames, on its own
        if len(chunk) > size:
            tops = {p for p in chunk if not any(is_under(p, q) and p != q for q in chunk)}
            top = {p: next(t for t in tops if is_under(p, t)) for p in chunk}
            joined = {min(tops)}
            for _ in tops:
                joined |= {top[b] for s, d in renames if s in top and d in top
                           for a, b in ((s, d), (d, s)) if top[a] in joined}
            assert joined == tops, chunk

def test_only_trees_that_must_stay_whole_are_kept_whole():
    paths = ["new", *(f"new/f{i}" for i in range(5)), "gone", *(f"gone/f{i}" for i in range(5))]
    passes = split(paths, [], 3, whole=lambda p: p == "gone")
    assert ["gone", *(f"gone/f{i}" for i in range(5))] in passes  # deleted somewhere: decided with its content
    assert all(len(chunk) <= 3 for chunk in passes if "gone" not in chunk)  # a new tree is split like any paths
    assert sorted(p for chunk in passes for p in chunk) == sorted(paths)


def test_subtrees_sort_together_whatever_the_names():
    # "a b" and "a-b" sort between "a" and "a/x" byte-wise: a split by plain sorting would cut "a" from "a/x"
    assert split(["a", "a b", "a-b", "a/x", "a/y"], [], 2) == [["a", "a/x", "a/y"], ["a b", "a-b"]]
