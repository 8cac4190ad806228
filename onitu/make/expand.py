"""The ``$`` expansion engine, with GNU make's semantics (flavours, origins, target scopes)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from onitu.make.functions import call_function, function_name
from onitu.make.text import Location, MakeError, fatal, matching_close, patsubst_words, split_pattern
from onitu.make.variables import Scope, Var

Emit = Callable[[str, str], None]  # (stream "out" | "err", one line without its newline)


def default_emit(stream: str, line: str) -> None:
    """Print like GNU make: ``$(info)`` to stdout, ``$(warning)`` and warnings to stderr."""
    target = sys.stdout if stream == "out" else sys.stderr
    target.write(line + "\n")
    target.flush()



class Expander:
    """Expands text against a scope chain; knows where in the makefiles it is for messages."""

    def __init__(self, cwd: Path, environ: Mapping[str, str], emit: Emit = default_emit) -> None:
        self.cwd = cwd
        self.environ = environ
        self.emit = emit
        self.program = "onitu make"  # how make names itself in its messages ("onitu make[1]" in a sub-make)
        self.globals = Scope()
        self.where: Location | None = None
        self._busy: set[int] = set()  # recursive variables being expanded (a self-reference is fatal)
        self.call_args = 0  # how many $(1)... the innermost $(call) defined, hidden from nested calls
        self.evaluate: Callable[[str], None] | None = None  # $(eval): the reader reads the text as makefile lines

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


