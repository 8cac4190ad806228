"""Variables and the ``$`` expansion engine, with GNU make's semantics (flavours, origins, target scopes)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

Location = tuple[str, int]
Emit = Callable[[str, str], None]  # (stream "out" | "err", one line without its newline)


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


@dataclass
class Var:
    """One variable definition: raw value, flavour, origin (as ``$(origin)`` names it) and export state."""

    value: str
    recursive: bool
    origin: str
    export: bool | None = None  # None: GNU's default (exported only if it came from the environment/command line)
    append: bool = False  # a target-specific ``+=``: the inherited value comes first, looked up at expansion time
    where: Location | None = None  # where it was defined (GNU names it when a variable references itself)


class Scope:
    """A variable set chained to an outer one (target -> the target that needed it -> ... -> global)."""

    def __init__(self, parent: Scope | None = None) -> None:
        self.vars: dict[str, Var] = {}
        self.parent = parent

    def find(self, name: str) -> tuple[Var, Scope] | None:
        """The innermost definition of ``name`` and the scope holding it."""
        scope: Scope | None = self
        while scope is not None:
            var = scope.vars.get(name)
            if var is not None:
                return var, scope
            scope = scope.parent
        return None


def default_emit(stream: str, line: str) -> None:
    """Print like GNU make: ``$(info)`` to stdout, ``$(warning)`` and warnings to stderr."""
    target = sys.stdout if stream == "out" else sys.stderr
    target.write(line + "\n")
    target.flush()


def matching_close(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the ``closing`` that balances an already-open ``opening`` (only that kind counts), or -1."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == opening:
            depth += 1
        elif c == closing:
            if depth == 0:
                return i
            depth -= 1
    return -1


def split_pattern(pattern: str) -> tuple[str, str] | None:
    """(prefix, suffix) around the first unquoted ``%``; None when there is none.

    As in GNU make, ``\\%`` is a literal % and ``\\\\%`` a literal backslash before a live %.
    """
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


class Expander:
    """Expands text against a scope chain; knows where in the makefiles it is for messages."""

    def __init__(self, cwd: Path, environ: Mapping[str, str], emit: Emit = default_emit) -> None:
        self.cwd = cwd
        self.environ = environ
        self.emit = emit
        self.globals = Scope()
        self.where: Location | None = None
        self._busy: set[int] = set()  # recursive variables being expanded (a self-reference is fatal)
        self.call_args = 0  # how many $(1)... the innermost $(call) defined, hidden from nested calls

    def error(self, text: str) -> MakeError:
        """A fatal error at the current location."""
        return fatal(text, self.where)

    def expand(self, text: str, scope: Scope | None = None) -> str:
        """Expand every ``$`` reference in ``text``."""
        if "$" not in text:
            return text
        scope = scope or self.globals
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            if j + 1 == n:  # a lone trailing $ expands to nothing
                break
            c = text[j + 1]
            if c in "({":
                value, i = self._reference(text, j + 2, c, ")" if c == "(" else "}", scope)
                out.append(value)
                continue
            out.append("$" if c == "$" else self.value_of(c, scope))
            i = j + 2
        return "".join(out)

    def _reference(self, text: str, start: int, opening: str, closing: str, scope: Scope) -> tuple[str, int]:
        """Expand the ``$(...)`` whose body starts at ``start``; return the value and the index after it."""
        from onitu.make.functions import call_function, function_name  # functions builds on this module

        end = matching_close(text, start, opening, closing)
        name = function_name(text, start)
        if name is not None:
            if end < 0:
                raise self.error(f"unterminated call to function '{name}': missing '{closing}'")
            args_start = start + len(name)
            while args_start < end and text[args_start] in " \t\n":
                args_start += 1
            return call_function(self, name, text[args_start:end], opening, closing, scope), end + 1
        first = text.find(closing, start)
        if first < 0:
            raise self.error("unterminated variable reference")
        body = text[start:first]
        if "$" in body:
            if end < 0:
                raise self.error("unterminated variable reference")
            body, first = self.expand(text[start:end], scope), end
        colon = body.find(":")
        if colon >= 0 and "=" in body[colon + 1 :]:
            eq = body.index("=", colon + 1)
            value = self.value_of(body[:colon], scope)
            pattern, replacement = body[colon + 1 : eq], body[eq + 1 :]
            if split_pattern(pattern) is None:  # $(V:.c=.o) is $(V:%.c=%.o)
                pattern, replacement = "%" + pattern, "%" + replacement
            return (patsubst_words(value, pattern, replacement) if value else ""), first + 1
        return self.value_of(body, scope), first + 1

    def value_of(self, name: str, scope: Scope | None = None) -> str:
        """The expanded value of variable ``name`` ("" when undefined)."""
        scope = scope or self.globals
        found = scope.find(name)
        if found is None:
            return ""
        var, holder = found
        if var.append:
            return self._appended(name, holder, scope)
        return self._expand_var(name, var, scope)

    def _expand_var(self, name: str, var: Var, scope: Scope) -> str:
        if not var.recursive:
            return var.value
        if id(var) in self._busy:
            raise fatal(f"Recursive variable '{name}' references itself (eventually)", var.where or self.where)
        self._busy.add(id(var))
        try:
            return self.expand(var.value, scope)
        finally:
            self._busy.discard(id(var))

    def _appended(self, name: str, holder: Scope, scope: Scope) -> str:
        """A target-specific ``+=``: the inherited value, a space, then this piece (each expanded if recursive)."""
        var = holder.vars[name]
        outer = holder.parent.find(name) if holder.parent else None
        base = ""
        if outer is not None:
            base = self._appended(name, outer[1], scope) if outer[0].append else self._expand_var(name, outer[0], scope)
        piece = self._expand_var(name, var, scope)
        return f"{base} {piece}" if base else piece

    def define(self, name: str, value: str, *, recursive: bool, origin: str, scope: Scope | None = None) -> Var:
        """Set a variable outright (no priority checks); keeps an existing export mark."""
        scope = scope or self.globals
        old = scope.vars.get(name)
        var = Var(value, recursive, origin, old.export if old else None)
        scope.vars[name] = var
        return var

    def warn(self, text: str) -> None:
        """A GNU-style warning on stderr, prefixed with the current location."""
        prefix = f"{self.where[0]}:{self.where[1]}: " if self.where else ""
        self.emit("err", prefix + text)


# -- the lexical layer the reader shares with the expander ---------------------------------------------------------

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


def outside_refs(text: str) -> Iterator[tuple[int, str]]:
    """(index, character) of every character of ``text`` outside variable references."""
    i = 0
    while i < len(text):
        if text[i] == "$":
            i = skip_reference(text, i)
            continue
        yield i, text[i]
        i += 1


def find_outside_refs(text: str, chars: str) -> int:
    """Index of the first of ``chars`` outside variable references (a ``\\#`` is no comment), or -1."""
    for i, c in outside_refs(text):
        if c in chars and (c != "#" or (len(text[:i]) - len(text[:i].rstrip("\\"))) % 2 == 0):
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
    text = text.lstrip(" \t")
    i = 0
    while i < len(text) and text[i] not in " \t":
        i += 1
    return text[:i], text[i:].lstrip(" \t")


def parse_assignment(text: str) -> tuple[str, str, str] | None:
    """``(name, operator, value)`` if ``text`` is a variable assignment, else None (a rule or an error)."""
    for i, c in outside_refs(text):
        if c == "=":
            op = text[i - 1] + "=" if i > 0 and text[i - 1] in "+?!" else "="
            name, value = text[: i + 1 - len(op)], text[i + 1 :]
            break
        if c == ":":
            op = "::=" if text.startswith("::=", i) else ":=" if text.startswith(":=", i) else ""
            if not op:
                return None
            name, value = text[:i], text[i + len(op) :]
            break
    else:
        return None
    name = name.strip()
    if any(c in name for c in " \t"):
        return None
    return name, op, value.lstrip(" \t")
