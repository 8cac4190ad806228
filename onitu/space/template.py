"""Tuples, templates and matching, with Ruby Rinda's semantics.

A *tuple* is a Python tuple (or list) of plain values, or a dict with ``str`` keys (a Rinda "hash tuple").
A *template* has the same shape; at its top level an element may also be

- ``None``: matches anything (including ``None``);
- a type (``int``, ``float``, ``numbers.Number``, ``str``, ``bytes``, ``bool``, ``list``, ``dict``, ``Symbol``):
  matches instances, as Ruby's ``Class#===`` (``True`` is not an ``int`` here);
- a :class:`Range`: matches numbers or strings it covers;
- a compiled regex: matches strings (and symbol names) it finds a match in;

and any other value matches by value (``3.0`` matches ``3``; ``True`` matches only ``True``). Inside nested lists
and dicts only equality applies, as in Rinda.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from onitu.space.errors import InvalidTuple

Value = Any
TupleLike = tuple | list | dict
Pattern = re.Pattern


class Symbol:
    """An interned, immutable name distinct from ``str`` (Ruby's Symbol): ``Symbol("task") != "task"``."""

    __slots__ = ("_hash", "name")
    _interned: dict[str, Symbol] = {}
    _INTERN_LIMIT = 100_000  # past this many names (a hostile peer?), new ones are no longer interned
    name: str

    def __new__(cls, name: str) -> Symbol:
        sym = cls._interned.get(name)
        if sym is not None:
            return sym
        if not isinstance(name, str):
            raise TypeError(f"Symbol name must be str, not {type(name).__name__}")
        sym = super().__new__(cls)
        object.__setattr__(sym, "name", name)
        object.__setattr__(sym, "_hash", hash((Symbol, name)))
        if len(cls._interned) < cls._INTERN_LIMIT:
            cls._interned[name] = sym
        return sym

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Symbol is immutable")

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Symbol and other.name == self.name)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Symbol({self.name!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (Symbol, (self.name,))


class Range:
    """Numbers or strings from ``lo`` to ``hi`` (``hi`` excluded when ``exclusive``); ``None`` leaves an end open."""

    __slots__ = ("exclusive", "hi", "lo")

    def __init__(self, lo: Value, hi: Value, exclusive: bool = False) -> None:
        kinds = {_range_kind(v) for v in (lo, hi) if v is not None}
        if not kinds or len(kinds) != 1 or None in kinds:
            raise InvalidTuple(f"Range bounds must be two numbers or two strings, got {lo!r}, {hi!r}")
        self.lo, self.hi, self.exclusive = lo, hi, bool(exclusive)

    def covers(self, x: Value) -> bool:
        kind = _range_kind(x)
        if kind is None or kind != _range_kind(self.lo if self.lo is not None else self.hi):
            return False
        if self.lo is not None and x < self.lo:
            return False
        if self.hi is None:
            return True
        return x < self.hi if self.exclusive else x <= self.hi

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Range
            and other.exclusive == self.exclusive
            and equal(self.lo, other.lo)
            and equal(self.hi, other.hi)
        )

    def __hash__(self) -> int:
        return hash((Range, self.lo, self.hi, self.exclusive))

    def __repr__(self) -> str:
        tail = ", exclusive=True" if self.exclusive else ""
        return f"Range({self.lo!r}, {self.hi!r}{tail})"


def _range_kind(v: Value) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return None


# Types a template may use as matchers, by their wire name. bool is never an int, as in Ruby.
TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "Number": numbers.Number,
    "str": str,
    "bytes": bytes,
    "bool": bool,
    "list": list,
    "dict": dict,
    "Symbol": Symbol,
}
TYPE_NAMES = {t: n for n, t in TYPES.items()}


def type_matches(t: type, x: Value) -> bool:
    """Ruby's ``Class#===`` for the supported types."""
    if t is bool:
        return type(x) is bool
    if type(x) is bool:
        return False
    if t is list:
        return isinstance(x, list | tuple)
    return isinstance(x, t)


_NUMERIC = (int, float)


def equal(a: Value, b: Value) -> bool:
    """Ruby's ``==``: numbers by value (``3 == 3.0``), booleans and ``None`` only themselves, deep for containers."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool or a is None or b is None:
        return a is b
    if ta in _NUMERIC and tb in _NUMERIC:
        return a == b
    if ta in (list, tuple):
        return tb in (list, tuple) and len(a) == len(b) and all(map(equal, a, b))
    if ta is dict:
        return tb is dict and _dict_equal(a, b)
    return ta is tb and a == b


def _dict_equal(a: dict, b: dict) -> bool:
    if len(a) != len(b):
        return False
    # Ruby compares hash keys with eql?, so 1 and 1.0 (or True and 1) are different keys.
    if not all(type(k) is str for k in a):
        a = {(type(k), k): v for k, v in a.items()}
        b = {(type(k), k): v for k, v in b.items()}
    missing = object()
    return all(equal(v, b.get(k, missing)) for k, v in a.items())


def element_matches(t: Value, x: Value) -> bool:
    """Does template element ``t`` match tuple element ``x`` (Rinda: nil, ``==``, then ``===``)?"""
    if t is None or equal(t, x):
        return True
    if isinstance(t, type):
        return type_matches(t, x)
    if type(t) is Range:
        return t.covers(x)
    if type(t) is Pattern:
        if type(x) is Symbol:
            x = x.name
        return type(x) is str and t.search(x) is not None
    return False


RegexCompiler = Callable[[Pattern], Callable[[str], bool]]


def _element_check(t: Value, regex: RegexCompiler | None) -> Callable[[Value], bool]:
    """A fast predicate for one template element (the common constants skip the generic path)."""
    kind = type(t)
    if kind is Pattern and regex is not None:
        search = regex(t)
        return lambda x: search(x.name if type(x) is Symbol else x) if type(x) in (str, Symbol) else False
    if kind is str or kind is bytes or kind is Symbol:
        return t.__eq__ if kind is Symbol else (lambda x: type(x) is kind and x == t)
    if kind is int or kind is float:
        return lambda x: x == t and type(x) is not bool and type(x) in _NUMERIC
    if kind is bool:
        return lambda x: x is t
    return lambda x: element_matches(t, x)


_EXACT = (str, bytes, Symbol)


def check_tuple(tup: object, what: str = "tuple") -> tuple | dict:
    """Validate the top level of a tuple or template; return it as a tuple or dict."""
    if type(tup) is tuple:
        return tup
    if type(tup) is list:
        return tuple(tup)
    if type(tup) is dict:
        for k in tup:
            if type(k) is not str:
                raise InvalidTuple(f"{what} keys must be str, got {k!r} in {tup!r}")
        return tup
    raise InvalidTuple(f"{what} must be a tuple, list or dict with str keys, not {type(tup).__name__}: {tup!r}")


class Template:
    """A compiled template: ``Template(("task", None, int)).match(("task", "x", 3))``.

    ``regex`` turns a regex element into the predicate that runs it (the server bounds them); by default the
    regex's own ``search``.
    """

    __slots__ = ("checks", "exact_head", "is_dict", "pattern", "size")

    def __init__(self, pattern: Sequence | Mapping, regex: RegexCompiler | None = None) -> None:
        self.pattern = check_tuple(pattern, "template")
        self.size = len(self.pattern)
        self.is_dict = type(self.pattern) is dict
        items = self.pattern.items() if self.is_dict else enumerate(self.pattern)
        self.checks = [(key, _element_check(t, regex)) for key, t in items if t is not None]
        # n when the template is n leading str/bytes/Symbol constants and wildcards: a tuple of its size whose
        # first n elements equal those (as dict keys: no 1 == True == 1.0 there) matches it; else 0
        exact = not self.is_dict and all(key == i and type(self.pattern[i]) in _EXACT
                                         for i, (key, _) in enumerate(self.checks))
        self.exact_head = len(self.checks) if exact else 0

    def match(self, tup: tuple | dict) -> bool:
        if len(tup) != self.size:
            return False
        if (type(tup) is dict) is not self.is_dict and self.size:
            return False
        if self.is_dict and any(k not in tup for k in self.pattern):
            return False
        for key, check in self.checks:
            if not check(tup[key]):
                return False
        return True

    def head(self, n: int) -> tuple | None:
        """The first ``n`` elements if they are all plain constants (usable as an index key), else None."""
        if self.is_dict or self.size < n:
            return None
        head = self.pattern[:n]
        for t in head:
            if t is None or isinstance(t, type) or type(t) in (Range, Pattern):
                return None
        return head

    def __repr__(self) -> str:
        return f"Template({self.pattern!r})"
