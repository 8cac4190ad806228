"""The ``$`` expansion engine, with GNU make's semantics (flavours, origins, target scopes)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from onitu.make.compiled import Code, compile_text, run
from onitu.make.text import Location, MakeError, fatal
from onitu.make.variables import Scope, Var

CODE_CACHE = 20_000  # parsed texts kept per build (each a few hundred bytes)

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
        self._code: dict[str, Code] = {}  # each text expanded, parsed once

    def error(self, text: str) -> MakeError:
        """A fatal error at the current location."""
        return fatal(text, self.where)

    def expand(self, text: str, scope: Scope | None = None) -> str:
        """Expand every ``$`` reference in ``text``."""
        if "$" not in text:
            return text
        code = self._code.get(text)
        if code is None:
            if len(self._code) >= CODE_CACHE:  # texts made by $(call)/$(eval) are often unique: do not keep them all
                self._code.clear()
            code = self._code[text] = compile_text(text)
        return run(self, code, scope or self.globals)

    def value_of(self, name: str, scope: Scope | None = None) -> str:
        """The expanded value of variable ``name`` ("" when undefined)."""
        scope = scope or self.globals
        found = scope.find(name)
        if found is None:
            return ""
        var = found[0]
        if var.append:
            return self._appended(name, found[1], scope)
        if not var.recursive:
            return var.value
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


