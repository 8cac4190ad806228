"""The lexical layer of makefiles: errors with locations, continued lines, comments, references, patterns.

Everything here works on text alone (no variables): the reader, the expander and the functions build on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

Location = tuple[str, int]


class MakeError(Exception):
    """A GNU-make-style fatal error.

    ``str(err)`` is the message without the program prefix: ``Makefile:12: *** missing separator.  Stop.`` when
    ``file``/``line`` are known, else ``*** No targets.  Stop.`` (the CLI then prefixes ``onitu make: ``).
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


def fatal(text: str, where: Location | None) -> MakeError:
    """The error GNU make prints as ``file:line: *** text.  Stop.`` (``*** text.  Stop.`` without a location)."""
    if where is None:
        return MakeError(f"*** {text}.  Stop.")
    return MakeError(f"{where[0]}:{where[1]}: *** {text}.  Stop.", where[0], where[1])



def matching_close(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the ``closing`` that balances an already-open ``opening`` (only that kind counts), or -1."""
    depth = 0
    i = start
    while True:  # from one bracket to the next with str.find: a Python loop over every character is slow
        close = text.find(closing, i)
        if close < 0:
            return -1
        open_at = text.find(opening, i, close)
        if open_at >= 0:
            depth += 1
            i = open_at + 1
        elif depth == 0:
            return close
        else:
            depth -= 1
            i = close + 1


def split_pattern(pattern: str) -> tuple[str, str] | None:
    """(prefix, suffix) around the first unquoted ``%``; None when there is none.

    As in GNU make, ``\\%`` is a literal % and ``\\\\%`` a literal backslash before a live %.
    """
    first = pattern.find("%")
    if first < 0:
        return None
    if "\\" not in pattern:  # the common case, without a walk over the characters
        return pattern[:first], pattern[first + 1 :]
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "%":
            return "".join(out), pattern[i + 1 :]
        if c == "\\":
            j = i
            while j < n and pattern[j] == "\\":
                j += 1
            if j < n and pattern[j] == "%":
                out.append("\\" * ((j - i) // 2))
                if (j - i) % 2 == 0:
                    return "".join(out), pattern[j + 1 :]
                out.append("%")
                i = j + 1
                continue
            out.append(pattern[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return None


def pattern_match(parts: tuple[str, str], word: str) -> str | None:
    """The stem if ``word`` matches prefix%suffix, else None."""
    prefix, suffix = parts
    if len(word) >= len(prefix) + len(suffix) and word.startswith(prefix) and word.endswith(suffix):
        return word[len(prefix) : len(word) - len(suffix)]
    return None


def patsubst_words(text: str, pattern: str, replacement: str) -> str:
    """``$(patsubst)``: replace each whitespace-separated word matching ``pattern``; words joined by one space."""
    pat = split_pattern(pattern)
    if pat is None:  # GNU replaces whole words in place here, keeping the spacing
        return re.sub(r"(?<!\S)" + re.escape(pattern) + r"(?!\S)", lambda m: replacement, text)
    words = text.split()
    rep = split_pattern(replacement)
    out = []
    for word in words:
        stem = pattern_match(pat, word)
        if stem is None:
            out.append(word)
        else:
            out.append(rep[0] + stem + rep[1] if rep is not None else replacement)
    return " ".join(out)



ASSIGN_OPS = ("=", ":=", "::=", "+=", "?=", "!=")


def join_continued(lines: list[str], i: int) -> tuple[list[str], int]:
    """The physical lines of the logical line starting at ``lines[i]`` (an odd number of trailing backslashes
    continues a line) and the index after them."""
    parts = [lines[i]]
    i += 1
    while i < len(lines) and (len(parts[-1]) - len(parts[-1].rstrip("\\"))) % 2 == 1:
        parts.append(lines[i])
        i += 1
    return parts, i


def collapse(parts: list[str]) -> str:
    """Join continued lines outside recipes: each backslash-newline and the blanks around it become one space."""
    text = parts[0]
    for part in parts[1:]:
        text = text[:-1].rstrip(" \t") + " " + part.lstrip(" \t")
    if len(parts) > 1 and (len(text) - len(text.rstrip("\\"))) % 2 == 1:
        text = text[:-1].rstrip(" \t") + " "  # a continuation on the file's last line
    return text


def skip_reference(text: str, i: int) -> int:
    """``text[i]`` is ``$``: the index after the reference it starts (``$(...)``, ``${...}``, ``$x``)."""
    if i + 1 < len(text) and text[i + 1] in "({":
        end = matching_close(text, i + 2, text[i + 1], ")" if text[i + 1] == "(" else "}")
        return len(text) if end < 0 else end + 1
    return i + 2


_SCANNERS: dict[str, re.Pattern[str]] = {}


def outside_refs(text: str, chars: str) -> Iterator[tuple[int, str]]:
    """(index, character) of each of ``chars`` in ``text`` outside variable references (found with a compiled
    regular expression: makefile lines are scanned often, and character by character in Python is slow)."""
    scanner = _SCANNERS.get(chars)
    if scanner is None:
        scanner = _SCANNERS[chars] = re.compile("[" + re.escape(chars + "$") + "]")
    i = 0
    while (m := scanner.search(text, i)) is not None:
        j = m.start()
        c = text[j]
        if c == "$":
            i = skip_reference(text, j)
            continue
        yield j, c
        i = j + 1


def find_outside_refs(text: str, chars: str) -> int:
    """Index of the first of ``chars`` outside variable references (a ``\\#`` is no comment), or -1."""
    if "$" not in text and "\\" not in text:  # nothing to skip, no escaped '#': the first one found
        best = len(text)
        for c in chars:
            i = text.find(c, 0, best)
            if i >= 0:
                best = i
        return best if best < len(text) else -1
    for i, c in outside_refs(text, chars):
        if c != "#" or (len(text[:i]) - len(text[:i].rstrip("\\"))) % 2 == 0:
            return i
    return -1


def strip_comment(text: str) -> str:
    """Drop a ``#`` comment (outside references); ``\\#`` becomes ``#`` and backslashes before a ``#`` halve."""
    if "#" not in text:
        return text
    out: list[str] = []
    start = i = 0
    while i < len(text):
        c = text[i]
        if c == "$":
            i = skip_reference(text, i)
            continue
        if c == "#":
            before = text[start:i]
            slashes = len(before) - len(before.rstrip("\\"))
            out.append(before[: len(before) - slashes] + "\\" * (slashes // 2))
            if slashes % 2 == 0:
                return "".join(out)
            out.append("#")
            start = i + 1
        i += 1
    out.append(text[start:])
    return "".join(out)


def find_top(text: str, char: str) -> int:
    """Index of ``char`` outside parentheses (for ``ifeq (a,b)``), or -1."""
    depth = 0
    for i, c in enumerate(text):
        if c == char and depth == 0:
            return i
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
    return -1


def first_word(text: str) -> tuple[str, str]:
    """The first blank-separated word of ``text`` and the rest, blanks trimmed on the left."""
    m = _WORD.match(text)  # always matches (maybe empty)
    return m.group(1), text[m.end() :]  # type: ignore[union-attr]


_WORD = re.compile(r"[ \t]*([^ \t]*)[ \t]*")
_ASSIGN_CHARS = re.compile(r"[=:]")


def parse_assignment(text: str) -> tuple[str, str, str] | None:
    """``(name, operator, value)`` if ``text`` is a variable assignment, else None (a rule or an error): the first
    ``=`` or ``:`` outside references decides."""
    if "=" not in text:  # every assignment operator has one (most lines are rules and recipes)
        return None
    if "$" in text:
        found = next(outside_refs(text, "=:"), None)
    else:  # no reference to skip: one search (this runs on every line read)
        m = _ASSIGN_CHARS.search(text)
        found = (m.start(), m.group()) if m else None
    if found is None:
        return None
    i, c = found
    if c == "=":
        op = text[i - 1] + "=" if i > 0 and text[i - 1] in "+?!" else "="
        name, value = text[: i + 1 - len(op)], text[i + 1 :]
    else:
        op = "::=" if text.startswith("::=", i) else ":=" if text.startswith(":=", i) else ""
        if not op:
            return None
        name, value = text[:i], text[i + len(op) :]
    name = name.strip()
    if " " in name or "\t" in name:
        return None
    return name, op, value.lstrip(" \t")


def normalize(name: str) -> str:
    """A file name as GNU make keys it: ``./`` and the slashes after it dropped (``./x.d`` is ``x.d``); a name left
    empty is ``./``."""
    while len(name) > 2 and name.startswith("./"):
        name = name[2:].lstrip("/")
    return name or "./"


def words_outside_refs(text: str) -> list[str]:
    """Blank-separated words of ``text``, where blanks inside ``$(...)`` do not separate."""
    words: list[str] = []
    start = None
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\n":
            if start is not None:
                words.append(text[start:i])
                start = None
            i += 1
            continue
        if start is None:
            start = i
        i = skip_reference(text, i) if c == "$" else i + 1
    if start is not None:
        words.append(text[start:])
    return words
