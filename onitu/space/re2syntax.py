"""Python regexes rewritten for RE2, the non-backtracking engine: only where both answer ``search`` alike.

A template regex comes from a client as Python ``re`` source. RE2 runs in time linear in the input, so a pattern
like ``(a+)+$`` cannot stall the server, but its syntax and semantics differ from Python's in places (``\\d``, ``\\w``
and ``\\s`` are ASCII-only, ``$`` never matches before a final newline, ``\\b`` is ASCII-only, case folding of
the Turkish i). :func:`to_re2` therefore does not pass the source through: it parses it with Python's own parser
and writes the RE2 equivalent of each node, or returns None when a node has no exact equivalent (backreferences,
lookaround, conditionals, atomic groups, possessive repeats, Unicode word boundaries, ``$`` followed by more
pattern, repeat counts over RE2's 1000). Those few patterns are left to Python's ``re`` under a deadline.

Only ``search(...) is not None`` is preserved, which is all a template asks; groups and spans are not.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

try:  # Python's parser is private; without it every pattern takes the bounded Python path
    from re import _constants as C
    from re import _parser
except ImportError:  # pragma: no cover - a Python without them
    C = _parser = None  # type: ignore[assignment]

MAX_COUNT = 1000  # RE2's largest repeat count
I_FAMILY = (0x49, 0x69, 0x130, 0x131)  # I, i, dotted I, dotless i: where Python and RE2 fold case apart

# Python's \s for str patterns (str.isspace), written out: RE2's \s lacks \v and every non-ASCII space.
UNI_SPACE = ((0x09, 0x0D), (0x1C, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
             (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000))
ASCII_SPACE = ((0x09, 0x0D), (0x20, 0x20))


class Untranslatable(Exception):
    """This node has no exact RE2 equivalent."""


def _hex(cp: int) -> str:
    ch = chr(cp)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{cp:x}}}"


def _ranges(pairs: Any) -> str:
    return "".join(_hex(lo) if lo == hi else f"{_hex(lo)}-{_hex(hi)}" for lo, hi in pairs)


def _category(cat: Any, flags: int) -> tuple[str, bool, str]:
    """(RE2 class body of the category or of its complement, whether it is the complement, Python escape)."""
    ascii_ = bool(flags & re.ASCII)
    digit = "0-9" if ascii_ else r"\p{Nd}"
    word = "0-9A-Za-z_" if ascii_ else r"\p{L}\p{N}_"
    space = _ranges(ASCII_SPACE if ascii_ else UNI_SPACE)
    table = {
        C.CATEGORY_DIGIT: (digit, False, r"\d"), C.CATEGORY_NOT_DIGIT: (digit, True, r"\D"),
        C.CATEGORY_WORD: (word, False, r"\w"), C.CATEGORY_NOT_WORD: (word, True, r"\W"),
        C.CATEGORY_SPACE: (space, False, r"\s"), C.CATEGORY_NOT_SPACE: (space, True, r"\S"),
    }
    if cat not in table:
        raise Untranslatable(str(cat))
    return table[cat]


class _Writer:
    def __init__(self, flags: int) -> None:
        self.flags = flags

    def seq(self, items: Any, flags: int, tail: bool) -> str:
        items = list(items)
        return "".join(self.node(op, av, flags, tail and i == len(items) - 1) for i, (op, av) in enumerate(items))

    def node(self, op: Any, av: Any, flags: int, tail: bool) -> str:
        if op is C.LITERAL:
            return self.literal(av, flags)
        if op is C.NOT_LITERAL:
            return self.char_class([(C.NEGATE, None), (C.LITERAL, av)], flags)
        if op is C.IN:
            return self.char_class(av, flags)
        if op is C.ANY:
            return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags, tail) for alt in av[1]) + ")"
        if op is C.SUBPATTERN:
            _group, add, remove, sub = av
            return "(?:" + self.seq(sub, (flags | add) & ~remove, tail) + ")"
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            if lo > MAX_COUNT or (hi is not C.MAXREPEAT and hi > MAX_COUNT):
                raise Untranslatable("repeat count")
            count = f"{{{lo},}}" if hi is C.MAXREPEAT else f"{{{lo},{hi}}}"
            return "(?:" + self.seq(sub, flags, False) + ")" + count
        if op is C.AT:
            return self.at(av, flags, tail)
        raise Untranslatable(str(op))

    def at(self, code: Any, flags: int, tail: bool) -> str:
        multiline = bool(flags & re.MULTILINE)
        if code is C.AT_BEGINNING:
            return "(?m:^)" if multiline else "\\A"
        if code is C.AT_BEGINNING_STRING:
            return "\\A"
        if code is C.AT_END_STRING:
            return "\\z"
        if code is C.AT_END:
            if multiline:
                return "(?m:$)"
            # Python's $ also matches before a final newline; consuming it is the same when nothing follows.
            if tail:
                return "(?:\\n?\\z)"
        if code in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY) and flags & re.ASCII:
            return "\\b" if code is C.AT_BOUNDARY else "\\B"
        raise Untranslatable(str(code))

    def literal(self, cp: int, flags: int) -> str:
        if not flags & re.IGNORECASE:
            return _hex(cp)
        if flags & re.ASCII:  # only ASCII letters fold
            ch = chr(cp)
            return f"[{ch.lower()}{ch.upper()}]" if ch.isascii() and ch.isalpha() else _hex(cp)
        if cp in I_FAMILY:
            return "[" + _ranges((c, c) for c in _python_family(_hex_py(cp), flags)) + "]"
        return f"(?i:{_hex(cp)})"

    def char_class(self, items: Any, flags: int) -> str:
        negate = bool(items) and items[0][0] is C.NEGATE
        py_negate = negate
        members = items[1:] if negate else items
        body, py_body, pairs = [], [], []
        for op, av in members:
            if op is C.LITERAL:
                pairs.append((av, av))
                py_body.append(_hex_py(av))
            elif op is C.RANGE:
                pairs.append(av)
                py_body.append(f"{_hex_py(av[0])}-{_hex_py(av[1])}")
            elif op is C.CATEGORY:
                re2_part, complement, py_part = _category(av, flags)
                if complement:  # RE2 cannot put a complement beside other items: only alone, by negating
                    if len(members) != 1:
                        raise Untranslatable("negated category among other items")
                    negate = not negate
                body.append(re2_part)
                py_body.append(py_part)
            else:
                raise Untranslatable(str(op))
        if not flags & re.IGNORECASE or (flags & re.ASCII and not _letters(pairs)):
            return self._class(negate, _ranges(pairs) + "".join(body), "")
        if flags & re.ASCII:  # fold ASCII letters by hand: RE2's (?i) would fold every letter
            pairs = pairs + _ascii_case_variants(pairs)
            return self._class(negate, _ranges(pairs) + "".join(body), "")
        # The I-family is decided by Python itself; RE2 folds everything else the same way.
        family = _python_family(("^" if py_negate else "") + "".join(py_body), flags, klass=True)
        rest = _without_family(pairs)
        inner = _ranges(rest) + "".join(body)
        if negate:
            inner += _ranges((c, c) for c in I_FAMILY)
        core = self._class(negate, inner, "i")
        return f"(?:{core}|[{_ranges((c, c) for c in family)}])" if family else core

    @staticmethod
    def _class(negate: bool, inner: str, fold: str) -> str:
        if not inner:
            if not negate:
                raise Untranslatable("empty class")
            return f"(?{fold}s:.)" if fold else "(?s:.)"
        klass = f"[{'^' if negate else ''}{inner}]"
        return f"(?{fold}:{klass})" if fold else klass


def _hex_py(cp: int) -> str:
    return f"\\U{cp:08x}"


def _python_family(source: str, flags: int, klass: bool = False) -> list[int]:
    """Which of the I family Python matches with this literal (or class body) and flags."""
    pattern = re.compile(f"[{source}]" if klass else source, flags & (re.IGNORECASE | re.ASCII | re.UNICODE))
    return [c for c in I_FAMILY if pattern.fullmatch(chr(c))]


def _letters(pairs: list) -> bool:
    return any(lo <= ord("z") and hi >= ord("A") for lo, hi in pairs)


def _ascii_case_variants(pairs: list) -> list[tuple[int, int]]:
    out = []
    for lo, hi in pairs:
        for a, z, shift in ((ord("a"), ord("z"), -32), (ord("A"), ord("Z"), 32)):
            s, e = max(lo, a), min(hi, z)
            if s <= e:
                out.append((s + shift, e + shift))
    return out


def _without_family(pairs: list) -> list[tuple[int, int]]:
    out = []
    for lo, hi in pairs:
        start = lo
        for c in I_FAMILY:
            if start <= c <= hi:
                if start < c:
                    out.append((start, c - 1))
                start = c + 1
        if start <= hi:
            out.append((start, hi))
    return out


@lru_cache(maxsize=4096)
def to_re2(source: str, flags: int) -> str | None:
    """The RE2 pattern that ``search`` es exactly like Python's ``re.compile(source, flags)``, or None."""
    if _parser is None:
        return None
    try:
        parsed = _parser.parse(source, flags)
        all_flags = parsed.state.flags
        if all_flags & re.LOCALE:
            return None
        return _Writer(all_flags).seq(parsed, all_flags, True)
    except (Untranslatable, re.error, RecursionError, ValueError, TypeError):
        return None
