"""What the makefiles say, once read: explicit targets, pattern rules, special targets, vpath, pattern variables.

The reader (:mod:`onitu.make.parser`) fills a :class:`Database`; :mod:`onitu.make.graph` resolves goals against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from onitu.make.expand import Expander
from onitu.make.text import Location, pattern_match, split_pattern
from onitu.make.variables import Scope


@dataclass
class RecipeLine:
    """One logical recipe line, unexpanded (backslash-newlines kept, the prefix after each removed)."""

    text: str
    file: str
    line: int


@dataclass(frozen=True)
class Deferred:
    """Prerequisite text kept for the second expansion (rules read after ``.SECONDEXPANSION:``)."""

    text: str
    stem: str = ""  # a static pattern rule's stem: the text's % stand for it


Prereq = str | Deferred


@dataclass
class Colon:
    """One double-colon rule of a target: its own prerequisites and recipe, updated on its own."""

    prereqs: list[Prereq]
    order_only: list[str]
    recipe: list[RecipeLine] | None
    file: str
    line: int


@dataclass
class Entry:
    """What the makefiles say about one explicit target."""

    name: str
    prereqs: list[Prereq] = field(default_factory=list)  # normal prerequisites, duplicates kept, GNU's merge order
    order_only: list[str] = field(default_factory=list)
    recipe: list[RecipeLine] | None = None
    file: str | None = None
    line: int | None = None
    stem: str = ""  # static pattern rules: the stem, for $*
    scope: Scope | None = None  # target-specific variables (their parent is set per build)
    is_target: bool = False  # named as a target of a rule (not only in target-specific variables)
    colons: list[Colon] | None = None  # a double-colon target's rules, in order
    group: tuple[str, ...] = ()  # grouped targets (a b &: ...) made by the same run of the recipe


@dataclass
class PatternRule:
    """An implicit rule ``%.o %.h: prereq patterns``; ``terminal`` for a double-colon one (``%:: %,v``)."""

    targets: list[str]
    prereqs: list[str]
    order_only: list[str]
    recipe: list[RecipeLine] | None
    file: str
    line: int
    terminal: bool = False
    second: bool = False  # prerequisites are expanded again, with $* and $@ set (.SECONDEXPANSION)
    builtin: bool = False

    def __post_init__(self) -> None:
        # (prefix, suffix) of each target and prerequisite, split once: implicit rule search runs them often
        self.target_parts = [split_pattern(t) or (t, "") for t in self.targets]
        self.prereq_parts = [split_pattern(p) for p in self.prereqs]
        self.order_only_parts = [split_pattern(p) for p in self.order_only]


@dataclass(frozen=True)
class MakefileGoal:
    """A makefile that was read, or that an include named: make tries to remake it before anything else."""

    name: str
    where: Location | None  # the include line (None: a makefile named by -f, or found by default)
    optional: bool  # -include / sinclude: failing to make it is no error
    found: bool = True


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
