"""What the makefiles say, once read: explicit targets, pattern rules, special targets, vpath, pattern variables.

The reader (:mod:`onitu.make.parser`) fills a :class:`Database`; :mod:`onitu.make.graph` resolves goals against it.
"""

from __future__ import annotations

from pathlib import Path

from onitu.make.expand import Expander
from onitu.make.record import FrozenRecord, Record
from onitu.make.text import Location, pattern_match, split_pattern
from onitu.make.variables import Scope


class RecipeLine(Record):
    """One logical recipe line, unexpanded (backslash-newlines kept, the prefix after each removed)."""

    FIELDS = ("text", "file", "line")

    def __init__(self, text: str, file: str, line: int) -> None:
        self.text, self.file, self.line = text, file, line


class Deferred(FrozenRecord):
    """Prerequisite text kept for the second expansion (rules read after ``.SECONDEXPANSION:``)."""

    FIELDS = ("text", "stem")

    def __init__(self, text: str, stem: str = "") -> None:
        self.text = text
        self.stem = stem  # a static pattern rule's stem: the text's % stand for it


Prereq = str | Deferred


class Colon(Record):
    """One double-colon rule of a target: its own prerequisites and recipe, updated on its own."""

    FIELDS = ("prereqs", "order_only", "recipe", "file", "line")

    def __init__(self, prereqs: list[Prereq], order_only: list[str], recipe: list[RecipeLine] | None, file: str,
                 line: int) -> None:
        self.prereqs, self.order_only, self.recipe, self.file, self.line = prereqs, order_only, recipe, file, line


class Entry(Record):
    """What the makefiles say about one explicit target."""

    FIELDS = ("name", "prereqs", "order_only", "recipe", "file", "line", "stem", "scope", "is_target", "colons",
              "group")

    def __init__(self, name: str) -> None:
        self.name = name
        self.prereqs: list[Prereq] = []  # normal prerequisites, duplicates kept, GNU's merge order
        self.order_only: list[str] = []
        self.recipe: list[RecipeLine] | None = None
        self.file: str | None = None
        self.line: int | None = None
        self.stem = ""  # static pattern rules: the stem, for $*
        self.scope: Scope | None = None  # target-specific variables (their parent is set per build)
        self.is_target = False  # named as a target of a rule (not only in target-specific variables)
        self.colons: list[Colon] | None = None  # a double-colon target's rules, in order
        self.group: tuple[str, ...] = ()  # grouped targets (a b &: ...) made by the same run of the recipe


class PatternRule(Record):
    """An implicit rule ``%.o %.h: prereq patterns``; ``terminal`` for a double-colon one (``%:: %,v``)."""

    FIELDS = ("targets", "prereqs", "order_only", "recipe", "file", "line", "terminal", "second", "builtin")

    def __init__(self, targets: list[str], prereqs: list[str], order_only: list[str],
                 recipe: list[RecipeLine] | None, file: str, line: int, terminal: bool = False, second: bool = False,
                 builtin: bool = False) -> None:
        self.targets, self.prereqs, self.order_only, self.recipe = targets, prereqs, order_only, recipe
        self.file, self.line, self.terminal, self.builtin = file, line, terminal, builtin
        self.second = second  # prerequisites are expanded again, with $* and $@ set (.SECONDEXPANSION)
        # (prefix, suffix) of each target and prerequisite, split once: implicit rule search runs them often
        self.target_parts = [split_pattern(t) or (t, "") for t in targets]
        self.prereq_parts = [split_pattern(p) for p in prereqs]
        self.order_only_parts = [split_pattern(p) for p in order_only]


class MakefileGoal(FrozenRecord):
    """A makefile that was read, or that an include named: make tries to remake it before anything else."""

    FIELDS = ("name", "where", "optional", "found")

    def __init__(self, name: str, where: Location | None, optional: bool, found: bool = True) -> None:
        self.name = name
        self.where = where  # the include line (None: a makefile named by -f, or found by default)
        self.optional = optional  # -include / sinclude: failing to make it is no error
        self.found = found


class NameSet:
    """Names and %-patterns given to a special target (.PRECIOUS, .SECONDARY, ...); ``every`` when it has none."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.patterns: list[tuple[str, str]] = []
        self.every = False

    def add(self, names: list[str]) -> None:
        if not names:
            self.every = True
        for name in names:
            parts = split_pattern(name)
            if parts is None:
                self.names.add(name)
            else:
                self.patterns.append(parts)
                self.names.add(name)  # GNU also looks a pattern rule's target up as a name (.PRECIOUS: %.o)

    def __contains__(self, name: object) -> bool:
        if self.every or name in self.names:
            return True
        return isinstance(name, str) and any(pattern_match(p, name) is not None for p in self.patterns)


class Database:
    """Everything read from the makefiles: variables, explicit targets, pattern rules and special targets."""

    def __init__(self, cwd: Path, expander: Expander) -> None:
        self.cwd = cwd
        self.expander = expander
        self.entries: dict[str, Entry] = {}
        self.patterns: list[PatternRule] = []
        self.pattern_index: dict[tuple[tuple[str, ...], tuple[str, ...]], PatternRule] = {}  # by targets, prereqs
        self.mentioned: set[str] = set()  # explicit targets and prerequisites: "ought to exist" for implicit rules
        self.phony: set[str] = set()
        self.silent: set[str] | None = set()  # None: .SILENT without prerequisites (every target)
        self.ignore: set[str] | None = set()
        self.precious = NameSet()
        self.secondary = NameSet()
        self.intermediate: set[str] = set()
        self.notintermediate = NameSet()
        self.suffixes: list[str] = []
        self.default_recipe: list[RecipeLine] | None = None  # .DEFAULT's recipe
        self.pattern_vars: list[tuple[tuple[str, str], Scope]] = []  # (pattern parts, its variables)
        self.vpaths: list[tuple[str, list[str]]] = []  # the vpath directive: (pattern, directories), in order
        self.makefile_goals: list[MakefileGoal] = []  # every makefile read or included, in reading order
        self.export_all = False
        self.delete_on_error = False
        self.not_parallel = False
        self.oneshell = False
        self.second_expansion = False
        self.makefiles: list[str] = []
        self.default_goal: str | None = None
        self.builtin_rules = True  # -r clears it; GNU's catalogue is read then
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

    def entry(self, name: str) -> Entry:
        """The entry of ``name``, created empty if it has none yet."""
        found = self.entries.get(name)
        if found is None:
            found = self.entries[name] = Entry(name)
        return found


def _exportable(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.replace("_", "a").isalnum() and name.isascii()
