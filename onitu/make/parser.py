"""The Makefile reader: GNU make 4.3's line syntax, directives, conditionals, assignments and rules.

``load()`` reads the makefiles into a :class:`Database` (GNU's built-in rules and variables first, unless -r/-R);
:mod:`onitu.make.graph` resolves goals against it. Everything GNU make accepts is either read exactly as GNU make
reads it or refused with a ``MakeError`` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from onitu.make import builtins
from onitu.make.database import Database, Entry, MakefileGoal, PatternRule, RecipeLine
from onitu.make.expand import Emit, Expander, default_emit
from onitu.make.functions import run_shell
from onitu.make.options import Options, parse_makeflags
from onitu.make.rules import RuleReader
from onitu.make.text import (
    ASSIGN_OPS,
    Location,
    MakeError,
    collapse,
    fatal,
    find_top,
    first_word,
    join_continued,
    parse_assignment,
    strip_comment,
)
from onitu.make.variables import Scope, Var, beats

__all__ = ["Database", "Entry", "MakeError", "PatternRule", "RecipeLine", "load"]

DEFAULT_MAKEFILES = ("GNUmakefile", "makefile", "Makefile")
CONDITIONALS = ("ifdef", "ifndef", "ifeq", "ifneq", "else", "endif")
REFUSED_DIRECTIVES = {"load": "the 'load' directive", "private": "the 'private' modifier"}
INCLUDE_DIRS = ("/usr/local/include", "/usr/include")  # GNU's default search path for include
FEATURES = ("target-specific order-only second-expansion else-if shortest-stem undefine oneshell nocomment "
            "grouped-target archives jobserver check-symlink")


class _Frame:
    """One open conditional: is its current branch live, has a branch been taken, was ``else`` seen."""

    __slots__ = ("live", "outer_live", "seen_else", "taken")

    def __init__(self, live: bool, taken: bool, *, outer_live: bool = True) -> None:
        self.live, self.taken, self.seen_else, self.outer_live = live, taken, False, outer_live


class _Reader:
    """Reads makefiles into a Database, one logical line at a time."""

    def __init__(self, db: Database, include_dirs: Sequence[str] = ()) -> None:
        self.db = db
        self.ex = db.expander
        self.rules = RuleReader(db, self)
        self.include_dirs = list(include_dirs)
        self.ex.evaluate = self.evaluate

    # -- files and lines -------------------------------------------------------------------------------------------

    def read_file(self, path: Path, name: str, where: Location | None = None, optional: bool = False) -> None:
        """Read one makefile (``name`` is how messages call it; ``where``: the include line that reads it)."""
        self.db.makefiles.append(name)
        self.db.makefile_goals.append(MakefileGoal(name, where, optional))
        self.ex.define("MAKEFILE_LIST", " ".join(self.db.makefiles), recursive=False, origin="file")
        lines = path.read_text(errors="surrogateescape").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self._read_lines(lines, name, 1)

    def evaluate(self, text: str) -> None:
        """``$(eval text)``: read ``text`` as makefile lines, at the location of the eval (GNU's eval_buffer)."""
        where, pending = self.ex.where, self.rules.pending
        self.rules.pending = None
        name, line = where or ("<eval>", 1)
        try:
            self._read_lines(text.split("\n"), name, line)
        finally:
            self.ex.where, self.rules.pending = where, pending

    def _read_lines(self, lines: list[str], name: str, first: int) -> None:
        stack: list[_Frame] = []
        i = 0
        while i < len(lines):
            where = (name, first + i)
            self.ex.where = where
            live = not stack or all(f.live for f in stack)
            if self.rules.pending is not None and lines[i][:1] == self.recipe_prefix() and lines[i]:
                parts, i = join_continued(lines, i)
                if live:
                    self.rules.add_recipe_line(self._recipe_text(parts), where)
                continue
            line = lines[i]
            if not line or (line[0] == "#" and not line.endswith("\\")):  # blank, or a comment: nothing to read
                i += 1
                continue
            parts, i = join_continued(lines, i)
            i = self._logical(parts, where, stack, lines, i)
        self.rules.flush()
        if stack:
            raise fatal("missing 'endif'", (name, first + len(lines)))

    def recipe_prefix(self) -> str:
        """The recipe prefix: the first character of .RECIPEPREFIX, else a tab."""
        if ".RECIPEPREFIX" not in self.db.globals.vars:
            return "\t"
        value = self.ex.value_of(".RECIPEPREFIX")
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
        if stack and not all(f.live for f in stack):
            if word == "define" or (word in ("override", "export") and first_word(rest)[0] == "define"):
                return self._skip_define(lines, i, where)
            return i
        if not text.strip():
            return i
        self.rules.flush()
        return self._statement(parts, text, (word, rest), where, lines, i)

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

    def _statement(self, parts: list[str], text: str, split: tuple[str, str], where: Location, lines: list[str],
                   i: int) -> int:
        """A directive, an assignment or a rule (``split``: its first word and the rest)."""
        body = text.lstrip(" \t")
        word, rest = split
        if word in REFUSED_DIRECTIVES and rest.strip() and not rest.startswith(ASSIGN_OPS):
            raise fatal(f"{REFUSED_DIRECTIVES[word]} is not supported by onitu make", where)
        if word in ("include", "-include", "sinclude") and not rest.startswith((*ASSIGN_OPS, ":")):
            self._include(rest, where, optional=word != "include")
            return i
        if word == "vpath" and not rest.startswith((*ASSIGN_OPS, ":")):
            self._vpath(rest, where)
            return i
        modifiers: set[str] = set()
        while word in ("override", "export", "unexport") and not rest.startswith((*ASSIGN_OPS, ":")):
            modifiers.add(word)
            body = rest  # the words after the modifier, spacing kept (a value's inner blanks count)
            word, rest = first_word(body)
        if word == "define":
            return self._define(rest, modifiers, where, lines, i)
        if word == "undefine":
            self._undefine(rest, modifiers, where)
            return i
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

    def _vpath(self, rest: str, where: Location) -> None:
        """``vpath PATTERN DIRS`` adds a search path; ``vpath PATTERN`` clears it; ``vpath`` clears them all."""
        words = self.ex.expand(rest).split()
        if not words:
            self.db.vpaths.clear()
            return
        dirs = [d for w in words[1:] for d in w.split(":") if d]
        if dirs:
            self.db.vpaths.append((words[0], dirs))
        else:
            self.db.vpaths = [v for v in self.db.vpaths if v[0] != words[0]]

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
        if old is not None and not beats(origin, old.origin):
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
            value = run_shell(self.ex, self.ex.expand(value, scope), scope)
        var = Var(value, recursive, origin, old.export if old else None, append, where)
        if "export" in modifiers or "unexport" in modifiers:
            var.export = "unexport" not in modifiers
        scope.vars[name] = var

    def _undefine(self, rest: str, modifiers: set[str], where: Location) -> None:
        origin = "override" if "override" in modifiers else "file"
        for name in self.ex.expand(rest).split():
            old = self.db.globals.vars.get(name)
            if old is not None and beats(origin, old.origin):
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
            found = self._find_include(name)
            if found is not None:
                path, shown = found
                saved = self.rules.pending
                self.read_file(path, shown, where, optional)
                self.rules.pending = saved
                self.ex.where = where
            else:
                self.db.makefile_goals.append(MakefileGoal(name, where, optional, found=False))
                self.db.mentioned.add(name)

    def _find_include(self, name: str) -> tuple[Path, str] | None:
        """The file ``include`` reads and the name make then calls it: relative to the make directory, else in
        the -I and the default directories (``inc/x.mk``, as GNU names it in MAKEFILE_LIST and when remaking)."""
        path = self.db.cwd / name
        if path.is_file() or name.startswith("/"):
            return (path, name) if path.is_file() else None
        for directory in [*self.include_dirs, *INCLUDE_DIRS]:
            candidate = self.db.cwd / directory / name
            if candidate.is_file():
                return candidate, f"{directory.rstrip('/')}/{name}"
        return None


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


def load(makefiles: Sequence[str] | str | None, *, cwd: Path, overrides: Mapping[str, str],
         environ: Mapping[str, str], goals: Sequence[str] = (), make_command: str = "onitu make",
         emit: Emit = default_emit, options: Options | None = None, builtin: bool = True, restarts: int = 0
         ) -> Database:
    """Read the makefiles as GNU make does.

    ``makefiles`` None means GNUmakefile, makefile or Makefile in ``cwd`` (paths are relative to ``cwd``, the -C
    directory). ``overrides`` are command-line ``VAR=value``: they beat the makefile's assignments unless those say
    ``override``; ``environ`` gives defaults that the makefile's assignments beat (unless -e). ``goals`` are the
    command-line goals (for MAKECMDGOALS), ``make_command`` is what ``$(MAKE)`` expands to, ``emit`` receives
    ``$(info)``/``$(warning)`` output. ``options`` are the command line's switches (-r, -R, -e, -I, --eval, and what
    MAKEFLAGS says); ``builtin=False`` reads as ``-r -R`` would.
    """
    opts = options or Options()
    rules = builtin and not opts.no_builtin_rules and not opts.no_builtin_variables
    variables = builtin and not opts.no_builtin_variables
    ex = Expander(cwd, environ, emit)
    level = environ.get("MAKELEVEL", "0")
    ex.program = make_command if level in ("", "0") or not level.isdigit() else f"{make_command}[{level}]"
    db = Database(cwd, ex)
    origin = "environment override" if opts.env_overrides else "environment"
    for key, value in environ.items():
        if key not in ("SHELL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
            ex.globals.vars[key] = Var(value, True, origin, export=True)
    builtins.install(db, rules=rules, variables=variables)
    defaults = {"SHELL": "/bin/sh", "MAKE_COMMAND": make_command, "CURDIR": str(cwd.absolute()),
                "MAKELEVEL": level if level.isdigit() else "0", ".SHELLFLAGS": "-c", "MAKE_VERSION": "4.3",
                "MAKE_HOST": "x86_64-pc-linux-gnu", ".FEATURES": FEATURES, "MAKEFILES": "",
                ".INCLUDE_DIRS": " ".join(INCLUDE_DIRS), "MAKEFLAGS": opts.makeflags(), "MFLAGS": opts.mflags()}
    for key, value in defaults.items():
        ex.define(key, value, recursive=False, origin="file" if key in ("SHELL", "CURDIR", "MAKEFLAGS") else "default")
    ex.define("MAKE", "$(MAKE_COMMAND)", recursive=True, origin="default")
    if goals:
        ex.define("MAKECMDGOALS", " ".join(goals), recursive=False, origin="default")
    if restarts:
        ex.define("MAKE_RESTARTS", str(restarts), recursive=False, origin="override")
    for key, value in overrides.items():
        ex.define(key, value, recursive=True, origin="command line")
    reader = _Reader(db, opts.include_dirs)
    for text in opts.evals:
        reader.evaluate(text)
    names = [makefiles] if isinstance(makefiles, str) else list(makefiles or [])
    for name in names or [None]:
        path, shown = _find_makefile(name, cwd)
        reader.read_file(path, shown)
    _reread_makeflags(db, opts)
    builtins.convert_suffix_rules(db)
    goal = ex.value_of(".DEFAULT_GOAL").split()
    if len(goal) > 1:
        raise MakeError("*** .DEFAULT_GOAL contains more than one target.  Stop.")
    db.default_goal = goal[0] if goal else None
    ex.where = None
    return db


def _reread_makeflags(db: Database, opts: Options) -> None:
    """``MAKEFLAGS += -rR`` in a makefile drops the built-in rules or variables, as in GNU make."""
    said = parse_makeflags(db.expander.value_of("MAKEFLAGS"), Options())
    if said.no_builtin_rules and not opts.no_builtin_rules:
        builtins.drop_rules(db)
    if said.no_builtin_variables and not opts.no_builtin_variables:
        builtins.drop_variables(db)
