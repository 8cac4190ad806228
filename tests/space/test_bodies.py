"""The packed store's live table (:class:`onitu.space.bodies.Bodies`) against a dict, op by op."""

from __future__ import annotations

import tracemalloc
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from onitu.space import bodies
from onitu.space.bodies import BIG, SEGMENT, YOUNG, Bodies

_op = st.one_of(
    st.tuples(st.just("write"), st.integers(1, 3), st.binary(max_size=40)),  # the next ids: the common case
    st.tuples(st.just("big"), st.integers(1, 3), st.binary(min_size=BIG, max_size=BIG + 8)),
    st.tuples(st.just("old"), st.integers(1, 10_000), st.binary(max_size=40)),  # an id from the past: put or replaced
    st.tuples(st.just("pop"), st.integers(0, 10_000), st.none()),  # a position among the live ids, or a miss
    st.tuples(st.just("burst"), st.integers(1, 3 * YOUNG), st.binary(max_size=20)),  # ages the young into arrays
    st.tuples(st.just("drain"), st.integers(1, 100), st.none()),  # most of the oldest taken: compactions
)


@settings(max_examples=80, deadline=None)
@given(st.lists(_op, max_size=60), st.sampled_from([(16, 4), (SEGMENT, YOUNG)]))
def test_the_table_answers_as_a_dict_whatever_is_written_taken_and_compacted(ops, sizes):
    with mock.patch.object(bodies, "SEGMENT", sizes[0]), mock.patch.object(bodies, "YOUNG", sizes[1]), \
            mock.patch.object(bodies, "MOST_YOUNG", 4 * sizes[1]):
        _compare(ops)


def _compare(ops):
    table, model, newest = Bodies(), {}, 0
    for kind, n, body in ops:
        if kind in ("write", "big"):
            newest += n
            table[newest] = model[newest] = body
        elif kind == "old":
            table[n] = model[n] = body
            newest = max(newest, n)
        elif kind == "burst":
            for _ in range(n):
                newest += 1
                table[newest] = model[newest] = body + newest.to_bytes(4, "big")
        elif kind == "pop":
            keys = sorted(model)
            eid = keys[n % len(keys)] if keys and n % 3 else n + 20_000
            assert table.pop(eid, None) == model.pop(eid, None)
        else:
            for eid in sorted(model)[: len(model) * n // 100]:
                assert table.pop(eid) == model.pop(eid)
        assert len(table) == len(model)
    assert list(table) == sorted(model)
    assert list(table.items()) == sorted(model.items())
    assert all(table[eid] == body and eid in table for eid, body in model.items())
    assert 0 not in table and newest + 1 not in table and "x" not in table


def test_a_copy_stays_as_it_was_while_the_table_changes():
    table = Bodies()
    for eid in range(1, 3 * YOUNG):
        table[eid] = b"%d" % eid
    copy = table.copy()
    for eid in range(1, 3 * YOUNG, 2):
        del table[eid]
    table[10 * YOUNG] = b"new"
    assert dict(copy.items()) == {eid: b"%d" % eid for eid in range(1, 3 * YOUNG)}
    assert len(table) == len(dict(table.items())) == 3 * YOUNG // 2


def test_a_body_stays_the_object_written_while_something_else_holds_it_and_moves_to_the_buffer_after():
    table = Bodies()
    for eid in range(1, 3 * YOUNG):
        table[eid] = b"record %06d" % eid  # held by the table alone
    held = table[3 * YOUNG] = b"record %d, held by the notify history" % YOUNG  # (a literal: held by the code)
    table.settle()  # a store's end of turn
    assert table[1] == b"record %06d" % 1 and table[1] is not table[1]  # a copy out of the buffer each time
    assert table[3 * YOUNG] is held  # young still: a copy in the buffer would be a second one
    del held
    table[3 * YOUNG + 1] = b"next"
    table.settle()
    assert table[3 * YOUNG] is not table[3 * YOUNG]
    assert table.pop(3 * YOUNG + 1) == b"next"


def test_a_tuple_held_costs_its_bytes_and_a_few_dozen_more():
    n = 50_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = Bodies()
        for eid in range(1, n + 1):  # bodies made here, kept only by the table
            table[eid] = b"%0137d" % eid
        for eid in range(1, n, 7):  # some taken: tombstones and waste, kept under a quarter
            del table[eid]
        per_tuple = (tracemalloc.get_traced_memory()[0] - before) / len(table)
    finally:
        tracemalloc.stop()
    assert per_tuple < 137 + 60  # a dict of bytes objects: 137 + about 125
