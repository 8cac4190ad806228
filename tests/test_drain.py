"""onitu.drain: a big list gone through so that each item is freed once the loop is past it (a million records freed
at once at the end of the referee's load held the GIL for seconds: killed as hung at every start)."""

from __future__ import annotations

import weakref

from onitu.drain import drained


class Item:
    pass


def test_items_come_in_order_and_each_is_freed_once_the_loop_is_past_it() -> None:
    items = [Item() for _ in range(6)]
    refs = [weakref.ref(item) for item in items]
    n = 0
    for item in drained(items):  # (not enumerate: it keeps the last item in the pair it reuses)
        assert item is refs[n]()
        del item
        assert [ref() is None for ref in refs] == [i <= n for i in range(6)]
        n += 1
    assert n == 6
    assert items == []


def test_an_empty_list_gives_nothing() -> None:
    assert list(drained([])) == []
