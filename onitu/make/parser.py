"""The Makefile reader: GNU make 4.3's line syntax, directives, conditionals, assignments and rules.

``load()`` reads the makefiles into a :class:`Database`; :mod:`onitu.make.graph` resolves goals against it.
Everything GNU make accepts is either read exactly as GNU make reads it or refused with a ``MakeError``
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onitu.make.expand import (
    ASSIGN_OPS,
    Emit,
    Expander,
    Location,
    MakeError,
    Scope,
    Var,
    collapse,
    default_emit,
    fatal,
    find_top,
    first_word,
    join_continued,
    parse_assignment,
    strip_comment,
)
from onitu.make.rules import RuleReader

__all__ = ["Database", "Entry", "MakeError", "PatternRule", "RecipeLine", "load"]

DEFAULT_MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
CONDITIONALS = ("ifdef", "ifndef", "ifeq", "ifneq", "else", "endif")
REFUSED_DIRECTIVES = {"vpath": "the 'vpath' directive", "load": "the 'load' directive",
                      "private": "the 'private' modifier"}


@dataclass
class RecipeLine:
    """One logical recipe line, unexpanded (backslash-newlines kept, the prefix after each removed)."""

    text: str
    file: str
    line: int


@dataclass
class Entry:
    """What the makefiles say about one explicit target."""

    name: str
    prereqs: list[str] = field(default_factory=list)  # normal prerequisites, duplicates kept, GNU's merge order
    order_only: list[str] = field(default_factory=list)
    recipe: list[RecipeLine] | None = None
    file: str | None = None
    line: int | None = None
    stem: str = ""  # static pattern rules: the stem, for $*
    scope: Scope | None = None  # target-specific variables (their parent is set per build)


@dataclass
class PatternRule:
    """An implicit rule ``prefix%suffix: prereq patterns``."""

    target: str
    prereqs: list[str]
    order_only: list[str]
    recipe: list[RecipeLine]
    file: str
    line: int


@dataclass
class _Frame:
    """One open conditional: is its current branch live, has a branch been taken, was ``else`` seen."""

    live: bool
    taken: bool
    seen_else: bool = False
    outer_live: bool = True


class Database:
    """Everything read from the makefiles: variables, explicit targets, pattern rules and special targets."""

    def __init__(self, cwd: Path, expander: Expander) -> None:
        self.cwd = cwd
        self.expander = expander
        self.entries: dict[str, Entry] = {}
        self.patterns: list[PatternRule] = []
        self.mentioned: set[str] = set()  # explicit targets and prerequisites: "ought to exist" for implicit rules
        self.phony: set[str] = set()
        self.silent: set[str] | None = set()  # None: .SILENT without prerequisites (every target)
        self.ignore: set[str] | None = set()
        self.export_all = False
        self.delete_on_error = False
        self.not_parallel = False
        self.makefiles: list[str] = []
        self.default_goal: str | None = None
        self._warnings: list[str] = []

    @property
    def globals(self) -> Scope:
        """The global variable set."""
        return self.expander.globals

    def warnings(self) -> list[str]:
        """The reader's own warnings (``file:line: warning: ...``), for the caller to print on stderr."""
        return list(self._warnings)

    def warn(self, text: str, where: Location) -> None:
        """Record a warning at ``where``."""
        self._warnings.append(f"{where[0]}:{where[1]}: {text}")

    def exports(self) -> dict[str, str]:
        """The recipes' environment: exported variables, plus those from the environment or command line."""
        env: dict[str, str] = {}
        shell = self.expander.environ.get("SHELL")
        if shell is not None:  # GNU hands recipes the SHELL it was given, not the makefile's
            env["SHELL"] = shell
        for name, var in self.globals.vars.items():
            if name == "SHELL" or not _exportable(name) or var.export is False:
                continue
            wanted = var.export or var.origin in ("environment", "command line")
            if wanted or (self.export_all and var.origin not in ("default", "automatic")):
                env[name] = self.expander.value_of(name)
        return env

    def is_silent(self, target: str) -> bool:
        """Is ``target`` under .SILENT?"""
        return self.silent is None or target in self.silent

    def is_ignored(self, target: str) -> bool:
        """Is ``target`` under .IGNORE?"""
        return self.ignore is None or target in self.ignore


def _exportable(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.replace("_", "a").isalnum() and name.isascii()


class _Reader:
    """Reads makefiles into a Database, one logical line at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ex = db.expander
        self.rules = RuleReader(db, self)
        self.missing: list[tuple[str, Location, bool]] = []  # (include name, where, optional)

    # -- files and lines -------------------------------------------------------------------------------------------

    def read_file(self, path: Path, name: str) -> None:
        """Read one makefile (``name`` is how messages call it)."""
        self.db.makefiles.append(name)
        self.ex.define("MAKEFILE_LIST", " ".join(self.db.makefiles), recursive=False, origin="file")
        lines = path.read_text(errors="surrogateescape").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        stack: list[_Frame] = []
        i = 0
        while i < len(lines):
            where = (name, i + 1)
            self.ex.where = where
            live = all(f.live for f in stack)
            if self.rules.pending is not None and lines[i].startswith(self.recipe_prefix()):
                parts, i = join_continued(lines, i)
                if live:
                    self.rules.add_recipe_line(self._recipe_text(parts), where)
                continue
            parts, i = join_continued(lines, i)
            i = self._logical(parts, where, stack, lines, i)
        self.rules.flush()
        if stack:
            raise fatal("missing 'endif'", (name, len(lines) + 1))

    def recipe_prefix(self) -> str:
        """The recipe prefix: the first character of .RECIPEPREFIX, else a tab."""
        var = self.db.globals.vars.get(".RECIPEPREFIX")
        value = self.ex.value_of(".RECIPEPREFIX") if var else ""
        return value[0] if value else "\t"

    def _recipe_text(self, parts: list[str]) -> str:
        """A recipe line as GNU keeps it: backslash-newlines stay, one recipe prefix after each is dropped."""
        prefix = self.recipe_prefix()
        text = parts[0][1:]
        for part in parts[1:]:
            text += "\n" + (part[1:] if part.startswith(prefix) else part)
        return text

    def _logical(self, parts: list[str], where: Location, stack: list[_Frame], lines: list[str], i: int) -> int:
        """Handle one non-recipe logical line; returns the index of the next physical line."""
        text = strip_comment(collapse(parts))
        word, rest = first_word(text)
        if word in CONDITIONALS and not rest.startswith(ASSIGN_OPS):
            self._conditional(word, rest, where, stack)
            return i
        if not all(f.live for f in stack):
            if word == "define" or (word in ("override", "export") and first_word(rest)[0] == "define"):
                return self._skip_define(lines, i, where)
            return i
        if not text.strip():
            return i
        self.rules.flush()
        return self._statement(parts, text, where, lines, i)

    # -- conditionals ----------------------------------------------------------------------------------------------

    def _conditional(self, word: str, rest: str, where: Location, stack: list[_Frame]) -> None:
        if word == "endif":
            if not stack:
                raise fatal("extraneous 'endif'", where)
            if rest.strip():
                self.db.warn("extraneous text after 'endif' directive", where)
            stack.pop()
            return
        if word == "else":
            if not stack:
                raise fatal("extraneous 'else'", where)
            frame = stack[-1]
            if frame.seen_else:
                raise fatal("only one 'else' per conditional", where)
            inner, inner_rest = first_word(rest)
            if inner in CONDITIONALS[:4]:
                # "else ifeq ...": a further test, evaluated only if no branch was taken yet.
                frame.live = frame.outer_live and not frame.taken and self._test(inner, inner_rest, where)
                frame.taken = frame.taken or frame.live
                return
            if rest.strip():
                self.db.warn("extraneous text after 'else' directive", where)
            frame.seen_else = True
            frame.live = frame.outer_live and not frame.taken
            frame.taken = True
            return
        outer = all(f.live for f in stack)
        result = outer and self._test(word, rest, where)
        stack.append(_Frame(result, result, outer_live=outer))

    def _test(self, word: str, rest: str, where: Location) -> bool:
        if word in ("ifdef", "ifndef"):
            name = self.ex.expand(rest).strip()
            if not name or any(c in name for c in " \t"):
                raise fatal(f"invalid syntax in conditional ('{word}' needs one variable name)", where)
            found = self.db.globals.find(name)
            return (found is not None and found[0].value != "") == (word == "ifdef")
        left, right = self._comparands(word, rest.strip(), where)
        return (self.ex.expand(left) == self.ex.expand(right)) == (word == "ifeq")

    def _comparands(self, word: str, text: str, where: Location) -> tuple[str, str]:
        """The two unexpanded arguments of ifeq/ifneq, whitespace trimmed as GNU trims it."""
        if text.startswith("("):
            comma = find_top(text[1:], ",")
            close = find_top(text[1:], ")") if comma >= 0 else -1
            if comma < 0 or close < 0 or close < comma:
                raise fatal("invalid syntax in conditional", where)
            left, right, after = text[1 : comma + 1].rstrip(), text[comma + 2 : close + 1].lstrip(), text[close + 2 :]
        elif text[:1] in ("'", '"'):
            end = text.find(text[0], 1)
            second = text[end + 1 :].lstrip() if end > 0 else ""
            end2 = second.find(second[0], 1) if second[:1] in ("'", '"') else -1
            if end < 0 or end2 < 0:
                raise fatal("invalid syntax in conditional", where)
            left, right, after = text[1:end], second[1:end2], second[end2 + 1 :]
        else:
            raise fatal("invalid syntax in conditional", where)
        if after.strip():
            self.db.warn(f"extraneous text after '{word}' directive", where)
        return left, right

    # -- statements ------------------------------------------------------------------------------------------------

    def _statement(self, parts: list[str], text: str, where: Location, lines: list[str], i: int) -> int:
        """A directive, an assignment or a rule."""
        word, rest = first_word(text)
        if word in REFUSED_DIRECTIVES and rest.strip() and not rest.startswith(ASSIGN_OPS):
            raise fatal(f"{REFUSED_DIRECTIVES[word]} is not supported by onitu make", where)
        if word in ("include", "-include", "sinclude") and not rest.startswith((*ASSIGN_OPS, ":")):
            self._include(rest, where, optional=word != "include")
            return i
        modifiers: set[str] = set()
        while word in ("override", "export", "unexport") and not rest.startswith((*ASSIGN_OPS, ":")):
            modifiers.add(word)
            word, rest = first_word(rest)
        if word == "define":
            return self._define(rest, modifiers, where, lines, i)
        if word == "undefine":
            self._undefine(rest, modifiers, where)
            return i
        body = f"{word} {rest}" if word else rest
        assignment = parse_assignment(body)
        if assignment is not None:
            name, op, value = assignment
            self.assign(self.ex.expand(name).strip(), op, value, modifiers, where)
        elif modifiers & {"export", "unexport"}:
            self._export_names(body, "unexport" not in modifiers, where)
        elif modifiers:
            raise fatal("'override' without a variable assignment", where)
        else:
            self.rules.rule(parts, where)
        return i

    def _export_names(self, body: str, export: bool, where: Location) -> None:
        names = self.ex.expand(body).split()
        if not names:
            self.db.export_all = export
        for name in names:
            var = self.db.globals.vars.get(name)
            if var is None:
                var = self.db.globals.vars[name] = Var("", False, "file")  # GNU defines it, empty
            var.export = export

    def assign(self, name: str, op: str, value: str, modifiers: set[str], where: Location,
               scope: Scope | None = None) -> None:
        """Apply ``name op value`` with GNU's priorities (command line and override beat the makefile)."""
        if not name:
            raise fatal("empty variable name", where)
        scope = scope or self.db.globals
        origin = "override" if "override" in modifiers else "file"
        old = scope.vars.get(name)
        target_var = scope is not self.db.globals
        if old is not None and not _beats(origin, old.origin):
            if "export" in modifiers or "unexport" in modifiers:
                old.export = "unexport" not in modifiers
            return
        if op == "?=" and (scope.find(name) if target_var else old) is not None:
            return
        recursive = op in ("=", "!=", "?=")
        append = False
        if op == "+=":
            if old is not None:
                recursive, append = old.recursive, old.append
                extra = value if old.recursive else self.ex.expand(value, scope)
                value = f"{old.value} {extra}" if old.value else extra
            else:
                recursive, append = True, target_var
        elif op in (":=", "::="):
            value = self.ex.expand(value, scope)
        elif op == "!=":
            from onitu.make.functions import run_shell  # functions imports expand only; no cycle at load

            value = run_shell(self.ex, self.ex.expand(value, scope))
        var = Var(value, recursive, origin, old.export if old else None, append, where)
        if "export" in modifiers or "unexport" in modifiers:
            var.export = "unexport" not in modifiers
        scope.vars[name] = var
        if name == "VPATH" and value.strip():
            raise fatal("VPATH is not supported by onitu make", where)
        fixed = {"SHELL": "/bin/sh", ".SHELLFLAGS": "-c"}  # recipes always run as /bin/sh -c
        if name in fixed and self.ex.value_of(name, scope).strip() != fixed[name]:
            raise fatal(f"{name} other than '{fixed[name]}' is not supported by onitu make", where)

    def _undefine(self, rest: str, modifiers: set[str], where: Location) -> None:
        origin = "override" if "override" in modifiers else "file"
        for name in self.ex.expand(rest).split():
            old = self.db.globals.vars.get(name)
            if old is not None and _beats(origin, old.origin):
                del self.db.globals.vars[name]

    def _define(self, rest: str, modifiers: set[str], where: Location, lines: list[str], i: int) -> int:
        header = rest.strip()
        op = "="
        for candidate in ("::=", ":=", "+=", "?=", "!=", "="):
            if header.endswith(candidate):
                op, header = candidate, header[: -len(candidate)]
                break
        name = self.ex.expand(header).strip()
        body, i = self._define_body(lines, i, where)
        self.assign(name, op, body, modifiers, where)
        return i

    def _define_body(self, lines: list[str], i: int, where: Location) -> tuple[str, int]:
        """The lines up to the matching ``endef`` (nested defines count), continuations collapsed."""
        depth, body = 1, []
        while i < len(lines):
            parts, i = join_continued(lines, i)
            word, _ = first_word(strip_comment(parts[0]))
            if word == "define" or (word in ("override", "export") and "define" in parts[0].split()[:2]):
                depth += 1
            elif word == "endef":
                depth -= 1
                if depth == 0:
                    return "\n".join(body), i
            body.append(collapse(parts))
        raise fatal("missing 'endef', unterminated 'define'", where)

    def _skip_define(self, lines: list[str], i: int, where: Location) -> int:
        return self._define_body(lines, i, where)[1]

    def _include(self, rest: str, where: Location, *, optional: bool) -> None:
        for name in self.ex.expand(rest).split():
            path = self.db.cwd / name
            if path.is_file():
                saved = self.rules.pending
                self.read_file(path, name)
                self.rules.pending = saved
                self.ex.where = where
            else:
                self.missing.append((name, where, optional))


def _beats(new: str, old: str) -> bool:
    """May a definition of origin ``new`` replace one of origin ``old``? (GNU's origin priority)."""
    rank = {"default": 0, "environment": 1, "file": 2, "command line": 3, "override": 4, "automatic": 5}
    return rank[new] >= rank[old]


def _find_makefile(makefile: str | None, cwd: Path) -> tuple[Path, str]:
    if makefile is None:
        for name in DEFAULT_MAKEFILES:
            if (cwd / name).is_file():
                return cwd / name, name
        raise MakeError("*** No targets specified and no makefile found.  Stop.")
    path = cwd / makefile
    if not path.is_file():
        raise MakeError(f"{makefile}: No such file or directory\nonitu make: *** No rule to make target "
                        f"'{makefile}'.  Stop.")
    return path, makefile


def load(makefile: str | None, *, cwd: Path, overrides: dict[str, str], environ: Mapping[str, str],
         goals: Sequence[str] = (), make_command: str = "onitu make", emit: Emit = default_emit) -> Database:
    """Read the makefile like GNU make ``-r -R``.

    ``makefile`` None means GNUmakefile, makefile or Makefile in ``cwd`` (paths are relative to ``cwd``, the -C
    directory). ``overrides`` are command-line ``VAR=value``: they beat the makefile's assignments unless those say
    ``override``; ``environ`` gives defaults that the makefile's assignments beat. ``goals`` are the command-line goals
    (for MAKECMDGOALS), ``make_command`` is what ``$(MAKE)`` expands to, ``emit`` receives ``$(info)``/``$(warning)``
    output.
    """
    path, name = _find_makefile(makefile, cwd)
    ex = Expander(cwd, environ, emit)
    db = Database(cwd, ex)
    for key, value in environ.items():
        if key not in ("SHELL", "MAKEFLAGS", "MFLAGS"):
            ex.globals.vars[key] = Var(value, True, "environment", export=True)
    defaults = {"SHELL": "/bin/sh", "MAKE": make_command, "CURDIR": str(cwd.absolute()),
                "MAKELEVEL": environ.get("MAKELEVEL", "0"), ".SHELLFLAGS": "-c"}
    for key, value in defaults.items():
        ex.define(key, value, recursive=False, origin="file" if key in ("SHELL", "CURDIR") else "default")
    if goals:
        ex.define("MAKECMDGOALS", " ".join(goals), recursive=False, origin="default")
    for key, value in overrides.items():
        ex.define(key, value, recursive=True, origin="command line")
    reader = _Reader(db)
    reader.read_file(path, name)
    _check_makefile_rules(db, reader)
    goal = ex.value_of(".DEFAULT_GOAL").split()
    if len(goal) > 1:
        raise MakeError("*** .DEFAULT_GOAL contains more than one target.  Stop.")
    db.default_goal = goal[0] if goal else None
    ex.where = None
    return db


def _check_makefile_rules(db: Database, reader: _Reader) -> None:
    """GNU would try to remake makefiles that have rules, and fails on missing includes without one."""
    from onitu.make.graph import implicit_rule  # graph builds on this module

    for name in [n for n, _, _ in reader.missing] + db.makefiles:
        entry = db.entries.get(name)
        has_rule = entry is not None and (entry.recipe is not None or entry.prereqs)
        if has_rule or (entry is None and implicit_rule(db, name) is not None):
            raise MakeError(f"*** makefile '{name}' has a rule to remake it; remaking makefiles is not supported by "
                            "onitu make.  Stop.")
    required = [(n, w) for n, w, optional in reader.missing if not optional]
    if required:
        name, where = required[-1]  # GNU reports the last one it tried, in reverse reading order
        raise MakeError(f"{where[0]}:{where[1]}: {name}: No such file or directory\nonitu make: *** No rule to make "
                        f"target '{name}'.  Stop.", where[0], where[1])

