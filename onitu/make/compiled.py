"""Texts to expand, parsed once into literals, variable references and function calls.

A makefile's variables are expanded over and over (git's ``$(eval)`` templates: tens of thousands of ``$(call)``
s of the same few definitions), and finding the references of the same text on every expansion was most of the
time spent reading it. ``compile_text`` does that scan once; the expander keeps the result per text and runs it.
Errors found while parsing (an unterminated reference, a wrong argument count) are raised only when expansion
reaches them, as when the text was scanned during expansion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from onitu.make.functions import FUNCTIONS, UNSUPPORTED
from onitu.make.text import matching_close, patsubst_words, split_pattern
from onitu.make.variables import Scope

if TYPE_CHECKING:
    from onitu.make.expand import Expander

Node = Callable[["Expander", Scope], str]
Code = tuple["str | Node", ...]  # literals and nodes, in order


def compile_text(text: str) -> Code:
    """The parts of ``text``: literal strings and nodes that expand a reference in a scope."""
    parts: list[str | Node] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            literal.append(text[i:])
            break
        literal.append(text[i:j])
        if j + 1 == n:  # a lone trailing $ expands to nothing
            break
        c = text[j + 1]
        if c == "$":
            literal.append("$")
            i = j + 2
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        if c in "({":
            node, i = _reference(text, j + 2, c, ")" if c == "(" else "}")
        else:
            node, i = _variable(c), j + 2
        parts.append(node)
    if literal:
        parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def run(ex: Expander, code: Code, scope: Scope) -> str:
    """The value of compiled ``code`` in ``scope``."""
    if len(code) == 1:
        part = code[0]
        return part if part.__class__ is str else part(ex, scope)  # type: ignore[operator,return-value]
    return "".join([p if p.__class__ is str else p(ex, scope) for p in code])  # type: ignore[misc,operator]


def function_name(text: str, start: int) -> str | None:
    """The function named at ``text[start:]`` (a word of a-z and '-' followed by whitespace), else None."""
    i = start
    while i < len(text) and ("a" <= text[i] <= "z" or text[i] == "-"):
        i += 1
    if i == start or i >= len(text) or text[i] not in " \t\n":
        return None
    return text[start:i]


def split_args(text: str, opening: str, closing: str, limit: int) -> list[str]:
    """Split on top-level commas (only ``opening``/``closing`` nest, as in GNU make), at most ``limit`` pieces."""
    args: list[str] = []
    depth = begin = i = 0
    while limit == 0 or len(args) < limit - 1:  # from bracket to bracket to comma, not character by character
        comma = text.find(",", i)
        if comma < 0:
            break
        open_at, close_at = text.find(opening, i, comma), text.find(closing, i, comma)
        if open_at < 0 and close_at < 0:
            if depth == 0:
                args.append(text[begin:comma])
                begin = comma + 1
            i = comma + 1
        elif close_at < 0 or 0 <= open_at < close_at:
            depth, i = depth + 1, open_at + 1
        else:
            depth, i = depth - 1, close_at + 1
    args.append(text[begin:])
    return args


def _reference(text: str, start: int, opening: str, closing: str) -> tuple[Node, int]:
    """The node for the ``$(...)`` whose body starts at ``start``, and the index after it."""
    end = matching_close(text, start, opening, closing)
    name = function_name(text, start)
    if name is not None:
        if end < 0:
            return _error(f"unterminated call to function '{name}': missing '{closing}'"), len(text)
        args_start = start + len(name)
        while args_start < end and text[args_start] in " \t\n":
            args_start += 1
        return _function(name, text[args_start:end], opening, closing), end + 1
    first = text.find(closing, start)
    if first < 0:
        return _error("unterminated variable reference"), len(text)
    body = text[start:first]
    if "$" not in body:
        return _named(body), first + 1
    if end < 0:
        return _error("unterminated variable reference"), len(text)
    inner = compile_text(text[start:end])
    return (lambda ex, scope: _resolve(ex, run(ex, inner, scope), scope)), end + 1


def _substitution(body: str) -> tuple[str, str, str] | None:
    """``V:a=b`` as (name, pattern, replacement), with ``%`` added when the pattern has none; else None."""
    colon = body.find(":")
    if colon < 0 or "=" not in body[colon + 1 :]:
        return None
    eq = body.index("=", colon + 1)
    pattern, replacement = body[colon + 1 : eq], body[eq + 1 :]
    if split_pattern(pattern) is None:  # $(V:.c=.o) is $(V:%.c=%.o)
        pattern, replacement = "%" + pattern, "%" + replacement
    return body[:colon], pattern, replacement


def _resolve(ex: Expander, body: str, scope: Scope) -> str:
    """A reference whose body was just expanded: a variable, or a substitution reference."""
    subst = _substitution(body)
    if subst is None:
        return ex.value_of(body, scope)
    value = ex.value_of(subst[0], scope)
    return patsubst_words(value, subst[1], subst[2]) if value else ""


def _named(body: str) -> Node:
    subst = _substitution(body)
    if subst is None:
        return _variable(body)
    name, pattern, replacement = subst

    def substituted(ex: Expander, scope: Scope) -> str:
        value = ex.value_of(name, scope)
        return patsubst_words(value, pattern, replacement) if value else ""

    return substituted


def _variable(name: str) -> Node:
    return lambda ex, scope: ex.value_of(name, scope)


def _error(text: str) -> Node:
    def fail(ex: Expander, scope: Scope) -> str:
        raise ex.error(text)

    return fail


def _function(name: str, text: str, opening: str, closing: str) -> Node:
    """A built-in called on its unexpanded argument text. A lazy one (if, or, and, foreach) gets its arguments
    as they are written; the others get them expanded. Implementations must not modify the list."""
    if name in UNSUPPORTED:
        return _error(f"function '{name}' is not supported by onitu make")
    fn = FUNCTIONS.get(name)
    if fn is None:
        return _error(f"unknown function '{name}'")
    args = split_args(text, opening, closing, fn.max_args)
    if len(args) < fn.min_args:
        return _error(f"insufficient number of arguments ({len(args)}) to function '{name}'")
    impl = fn.impl
    if fn.lazy:
        return lambda ex, scope: impl(ex, args, scope)
    codes = [compile_text(a) if "$" in a else a for a in args]
    if all(c.__class__ is str for c in codes):
        return lambda ex, scope: impl(ex, args, scope)
    return lambda ex, scope: impl(ex, [c if c.__class__ is str else run(ex, c, scope) for c in codes], scope)
