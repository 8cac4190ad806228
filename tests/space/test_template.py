"""Matching: Rinda's Template#match cases (test_00_template) and properties of Ruby's == and ===."""

from __future__ import annotations

import numbers
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onitu.space import InvalidTuple, Range, Symbol, Template
from onitu.space.template import equal


def m(template, tup) -> bool:
    return Template(template).match(tup)


def test_rinda_template_cases():
    assert m([1, 2, 3], (1, 2, 3))
    assert not m([1, 2, 3], (1, None, 3))
    tmpl = [re.compile("^rinda", re.I), None, Symbol("hello")]
    assert m(tmpl, ("Rinda", 2, Symbol("hello")))
    assert not m(tmpl, ("Rinda", 2, Symbol))
    assert not m(tmpl, (1, 2, Symbol("hello")))
    assert m(tmpl, (re.compile("^rinda", re.I), 2, Symbol("hello")))  # a stored regex matches by ==
    assert m([Symbol], (Symbol("hello"),))
    assert m([Symbol], (Symbol,))
    assert not m([Symbol], ("Symbol",))


def test_hash_templates_list_every_key():
    tmpl = {"message": str, "name": str}
    assert m(tmpl, {"message": "Hello", "name": "Foo"})
    assert not m(tmpl, {"message": "Hello", "name": "Foo", "1": 2})
    assert not m(tmpl, {"message": "Hello", "no_name": "Foo"})
    assert m({"message": str, "name": None}, {"message": "Hello", "name": "Foo"})
    assert not m({"name": str}, {"message": "Hello", "name": "Foo"})
    with pytest.raises(InvalidTuple):
        Template({Symbol("message"): str, "name": str})


def test_shapes():
    assert m([], {}) and m({}, ())
    assert not m([None], {"a": 1})
    assert not m({"a": None}, ("x",))
    assert not m([None, None], (1,))


def test_types_and_booleans():
    assert m([int], (3,)) and not m([int], (3.0,)) and not m([int], (True,))
    assert m([numbers.Number], (3.0,)) and not m([numbers.Number], (False,))
    assert m([bool], (True,)) and not m([bool], (1,))
    assert m([list], ([1],)) and m([dict], ({"a": 1},))
    assert not m([1], (True,)) and not m([True], (1,)) and not m([0], (False,))
    assert m([3.0], (3,)) and m([3], (3.0,))


def test_ranges():
    assert m([Range(1, 5)], (5,)) and not m([Range(1, 5, exclusive=True)], (5,))
    assert m([Range(1, 5)], (2.5,)) and not m([Range(1, 5)], ("3",)) and not m([Range(1, 5)], (True,))
    assert m([Range("a", "c")], ("bb",))
    assert m([Range(10, None)], (10**12,)) and not m([Range(10, None)], (9,))
    assert m([Range(1, 5)], (Range(1.0, 5.0),))  # a stored range matches an equal range
    with pytest.raises(InvalidTuple):
        Range(1, "z")


def test_nested_values_compare_by_equality_only():
    assert not m([[None, 2]], ([1, 2],))
    assert m([[1.0, 2]], ([1, 2],))
    assert not m([[True]], ([1],))
    assert not m([{"a": int}], ({"a": 1},))
    assert not m([{1: "x"}], ({1.0: "x"},)) or equal({1: "x"}, {1.0: "x"}) is False


def test_symbols_are_not_strings():
    assert Symbol("a") is Symbol("a")
    assert Symbol("a") != "a" and not m(["a"], (Symbol("a"),))
    assert m([re.compile("^a")], (Symbol("abc"),))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=5), st.binary(max_size=5),
                    st.sampled_from([Symbol("a"), Symbol("b")]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


@given(values, values)
def test_equality_is_symmetric(a, b):
    assert equal(a, b) == equal(b, a)


@given(st.lists(values, max_size=5))
def test_every_tuple_matches_itself_and_all_wildcards(tup):
    tup = tuple(tup)
    assert m(list(tup), tup)
    assert m([None] * len(tup), tup)
    assert not m([None] * (len(tup) + 1), tup)
