"""fair_sorted sorts big inputs in slices and merges them: the result must be sorted()'s, stability included."""

from __future__ import annotations

import random

from onitu.fairsort import SLICE, fair_sorted, tree_order


def test_big_input_sorts_as_sorted() -> None:
    rng = random.Random(7)
    items = [f"d{rng.randrange(1000)}/f{rng.randrange(10**6)}" for _ in range(3 * SLICE + 17)]
    assert fair_sorted(items) == sorted(items)
    assert fair_sorted(iter(items)) == sorted(items)  # any iterable, as sorted()


def test_equal_keys_keep_their_order_across_slices() -> None:
    items = [(i % 5, i) for i in range(2 * SLICE + 3)]
    assert fair_sorted(items, key=lambda item: item[0]) == sorted(items, key=lambda item: item[0])


def test_small_input() -> None:
    assert fair_sorted({"b", "a"}) == ["a", "b"]
    assert fair_sorted([]) == []


def test_tree_order_is_the_order_of_path_components() -> None:
    paths = ["a", "a/b", "a-c", "a/b/c", "a b", "ab", "a/", "b/a", "a.d/x", "a/b-c", "a/b/c/d", "é/x", "e/x"]
    rng = random.Random(3)
    rng.shuffle(paths)
    assert sorted(paths, key=tree_order) == sorted(paths, key=lambda p: p.split("/"))
