"""The dependency graph of a build: goals resolved against explicit and pattern rules, GNU make's out-of-date rule
and recipe expansion with automatic variables."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

from onitu.make.expand import Expander, MakeError, Scope, Var, matching_close, pattern_match, split_pattern
from onitu.make.parser import Database, PatternRule, RecipeLine
from onitu.make.rules import substitute

Mtime = Callable[[str], float | None]


@dataclass(frozen=True)
class Command:
    """One shell command of a recipe, as GNU make would run it with ``/bin/sh -c``."""

    text: str  # fully expanded, prefixes (@ - +) removed
    echo: str  # what is echoed before running it
    silent: bool  # '@' or .SILENT
    ignore: bool  # '-' or .IGNORE
    force: bool  # '+' or a $(MAKE) reference: runs even under -n
    file: str | None = field(default=None, compare=False)  # where the recipe line is, for error messages
    line: int | None = field(default=None, compare=False)


@dataclass
class Node:
    """One file (or phony target) of the build."""

    name: str
    prereqs: list[str]  # normal prerequisites, duplicates removed ($^)
    all_prereqs: list[str]  # with duplicates ($+)
    order_only: list[str]  # after '|' ($|)
    phony: bool
    has_recipe: bool
    stem: str  # $*
    file: str | None
    line: int | None
    is_target: bool = False  # named as a target by some rule (or given an implicit rule, or .PHONY)
    recipe: list[RecipeLine] = field(default_factory=list, repr=False)
    scope: Scope | None = field(default=None, repr=False)  # target-specific variables, chained to the parent's
    db: Database | None = field(default=None, repr=False, compare=False)

    def commands(self, newer: Sequence[str]) -> list[Command]:
        """Expand the recipe now (GNU expands it just before running it); ``newer`` is ``$?``."""
        assert self.db is not None
        ex = self.db.expander
        scope = Scope(self.scope or self.db.globals)
        autos = {"@": self.name, "<": self.all_prereqs[0] if self.all_prereqs else "", "^": " ".join(self.prereqs),
                 "+": " ".join(self.all_prereqs), "?": " ".join(newer), "*": self.stem,
                 "|": " ".join(_dedup(self.order_only))}
        for key, value in autos.items():
            words = value.split()
            scope.vars[key] = Var(value, False, "automatic")
            if key == "|":  # GNU has no $(|D) or $(|F)
                continue
            scope.vars[key + "D"] = Var(" ".join(_dir_of(w) for w in words), False, "automatic")
            scope.vars[key + "F"] = Var(" ".join(w[w.rfind("/") + 1 :] for w in words), False, "automatic")
        silent, ignore = self.db.is_silent(self.name), self.db.is_ignored(self.name)
        out: list[Command] = []
        try:
            for line in self.recipe:
                ex.where = (line.file, line.line)
                flags = _prefix_flags(line.text)[0]
                force = "$(MAKE)" in line.text or "${MAKE}" in line.text
                for piece in _split_commands(ex.expand(_join_in_refs(line.text), scope)):
                    more, text = _prefix_flags(piece)
                    if text.strip():
                        both = flags | more
                        out.append(Command(text, text, silent or "@" in both, ignore or "-" in both,
                                           force or "+" in both, line.file, line.line))
        finally:
            ex.where = None
        return out


@dataclass
class Decision:
    """Whether a target's recipe must run (for a recipe-less target: whether it counts as remade), and ``$?``."""

    run: bool
    newer: list[str]


def _dedup(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _dir_of(word: str) -> str:
    """``$(@D)``: the directory part without its trailing slash, ``.`` when there is none."""
    if "/" not in word:
        return "."
    return word[: word.rfind("/")]


def _prefix_flags(text: str) -> tuple[set[str], str]:
    """The ``@ - +`` prefixes (blanks may come before and between them) and the text after them."""
    i = 0
    while i < len(text) and text[i] in "@-+ \t":
        i += 1
    return set(text[:i]) - {" ", "\t"}, text[i:]


def _join_in_refs(text: str) -> str:
    """Inside ``$(...)`` of a recipe line, a backslash-newline and the blanks around it become one space."""
    if "\\\n" not in text or "$" not in text:
        return text
    out, i = [], 0
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        if j + 1 < len(text) and text[j + 1] in "({":
            end = matching_close(text, j + 2, text[j + 1], ")" if text[j + 1] == "(" else "}")
            end = len(text) - 1 if end < 0 else end
            ref = text[j : end + 1]
            while "\\\n" in ref:
                k = ref.index("\\\n")
                ref = ref[:k].rstrip(" \t") + " " + ref[k + 2 :].lstrip(" \t")
            out.append(ref)
            i = end + 1
        else:
            out.append(text[j : j + 2])
            i = j + 2
    out.append(text[i:])
    return "".join(out)


def _split_commands(text: str) -> list[str]:
    """Split an expanded recipe line at newlines that are not backslash-escaped (each runs as its own shell)."""
    pieces, start = [], 0
    for i, c in enumerate(text):
        if c == "\n" and (len(text[:i]) - len(text[:i].rstrip("\\"))) % 2 == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


def implicit_rule(db: Database, name: str) -> tuple[PatternRule, str, list[str], list[str]] | None:
    """The pattern rule GNU make would pick for ``name`` (rule, stem, prerequisites, order-only), or None.

    Raises MakeError when only a chain of implicit rules could make it (GNU would chain; onitu make does not).
    """
    candidates = _candidates(db, name)
    for rule, stem, prereqs, order_only in candidates:
        if all(_ought_to_exist(db, p) for p in prereqs + order_only):
            return rule, stem, prereqs, order_only
    for rule, _, prereqs, order_only in candidates:
        missing = [p for p in prereqs + order_only if not _ought_to_exist(db, p)]
        if all(any(all(_ought_to_exist(db, q) for q in c[2] + c[3]) for c in _candidates(db, p)) for p in missing):
            raise MakeError(f"*** '{name}' needs a chain of implicit rules ('{missing[0]}' from rule "
                            f"{rule.file}:{rule.line} is itself made by a pattern rule), which onitu make does not "
                            "support.  Stop.")
    return None


def _candidates(db: Database, name: str) -> list[tuple[PatternRule, str, list[str], list[str]]]:
    """Pattern rules whose target matches ``name``, shortest stem first (GNU's preference), then file order."""
    slash = name.rfind("/")
    directory, base = name[: slash + 1], name[slash + 1 :]
    found = []
    for index, rule in enumerate(db.patterns):
        parts = split_pattern(rule.target)
        assert parts is not None
        # A pattern without a slash matches the file name without its directory, which goes back onto the stem.
        prefix = "" if "/" in rule.target else directory
        stem = pattern_match(parts, name if not prefix else base)
        if stem is None:
            continue

        def subst(p: str, stem: str = stem, prefix: str = prefix) -> str:
            return prefix + substitute(p, stem) if split_pattern(p) is not None else p

        found.append((len(stem), index, rule, prefix + stem, [subst(p) for p in rule.prereqs],
                      [subst(p) for p in rule.order_only]))
    found.sort(key=lambda c: (c[0], c[1]))
    return [(rule, stem, prereqs, oo) for _, _, rule, stem, prereqs, oo in found]


def _ought_to_exist(db: Database, name: str) -> bool:
    return name in db.mentioned or os.path.lexists(db.cwd / name)


class Graph:
    """The targets reachable from the goals, resolved, checked for cycles and missing sources."""

    def __init__(self, db: Database, goals: list[str]) -> None:
        self.db = db
        self.goals = goals
        self.nodes: dict[str, Node] = {}
        self._order: list[str] = []

    @classmethod
    def build(cls, db: Database, goals: Sequence[str]) -> Graph:
        """Resolve ``goals`` (default: the default goal) and everything they need; nothing runs if this raises."""
        chosen = list(goals) or ([db.default_goal] if db.default_goal else [])
        if not chosen:
            raise MakeError("*** No targets.  Stop.")
        graph = cls(db, chosen)
        for goal in chosen:
            graph._visit(goal)
        return graph

    def _visit(self, goal: str) -> None:
        """Depth-first, prerequisites left to right, post-order: GNU make -j1's order."""
        if goal in self.nodes:
            return
        self.nodes[goal] = self._resolve(goal, None)
        stack: list[tuple[str, list[str]]] = [(goal, self._deps(goal))]
        on_path = {goal}
        while stack:
            name, pending = stack[-1]
            if not pending:
                stack.pop()
                on_path.discard(name)
                self._order.append(name)
                continue
            dep = pending.pop()
            if dep in on_path:
                path = [n for n, _ in stack]
                cycle = [*path[path.index(dep) :], dep]
                raise MakeError(f"*** Circular dependency: {' <- '.join(cycle)}.  Stop.")
            if dep in self.nodes:
                continue
            self.nodes[dep] = self._resolve(dep, self.nodes[name])
            stack.append((dep, self._deps(dep)))
            on_path.add(dep)

    def _deps(self, name: str) -> list[str]:
        """The prerequisites still to visit, last first (the stacks pop from the end)."""
        node = self.nodes[name]
        return _dedup(node.prereqs + node.order_only)[::-1]

    def _resolve(self, name: str, parent: Node | None) -> Node:
        db = self.db
        entry = db.entries.get(name)
        phony = name in db.phony
        prereqs = list(entry.prereqs) if entry else []
        order_only = list(entry.order_only) if entry else []
        recipe = entry.recipe if entry else None
        stem, file, line = (entry.stem, entry.file, entry.line) if entry else ("", None, None)
        if recipe is None and not phony:
            found = implicit_rule(db, name)
            if found is not None:
                rule, stem, implicit, implicit_oo = found
                prereqs, order_only = implicit + prereqs, implicit_oo + order_only
                recipe, file, line = rule.recipe, rule.file, rule.line
        is_target = entry is not None or phony or recipe is not None
        if not is_target and not os.path.lexists(db.cwd / name):
            needed = f", needed by '{parent.name}'" if parent else ""
            raise MakeError(f"*** No rule to make target '{name}'{needed}.  Stop.")
        scope = Scope(parent.scope if parent and parent.scope else db.globals)
        if entry is not None and entry.scope is not None:
            scope.vars = entry.scope.vars
        normal = set(prereqs)
        order_only = [p for p in order_only if p not in normal]  # a prerequisite that is both is normal, as in GNU
        return Node(name, _dedup(prereqs), prereqs, order_only, phony, recipe is not None, stem, file, line,
                    is_target, list(recipe or []), scope, db)

    def order(self) -> list[str]:
        """Every node in the order GNU make -j1 considers them (post-order, prerequisites left to right)."""
        return list(self._order)

    def decide(self, name: str, mtime: Mtime, remade: Set[str], always: bool) -> Decision:
        """GNU make's out-of-date rule for ``name``, whose prerequisites are all handled already.

        ``mtime`` gives current modification times (None: missing); ``remade`` holds the targets whose recipe ran,
        phony targets and recipe-less targets that were remade; ``always`` is -B.
        """
        node = self.nodes[name]
        this = None if node.phony else mtime(name)
        run = this is None
        changed_any = False
        newer: list[str] = []
        for dep in node.prereqs:
            dep_node = self.nodes.get(dep)
            dep_time = None if dep_node is not None and dep_node.phony else mtime(dep)
            # GNU: a prerequisite "changed" if it is missing or its recipe ran (its mtime moved).
            changed = dep_time is None or (dep in remade and dep_node is not None and dep_node.has_recipe)
            later = dep_time is None or (this is not None and dep_time > this)
            changed_any = changed_any or changed
            run = run or later
            if always or changed or later or this is None:
                newer.append(dep)
        if this is not None and node.is_target and not node.has_recipe and not changed_any and not always:
            run = False  # GNU: no recipe and no prerequisite actually changed
        elif always and node.has_recipe:
            run = True
        return Decision(run, newer)

    def dry_run(self, always: bool, mtime: Mtime) -> tuple[list[str], list[str]]:
        """What ``make -n`` (``-B`` if ``always``) prints for the goals: (stdout lines, stderr lines)."""
        out: list[str] = []
        err: list[str] = []
        ex: Expander = self.db.expander
        saved_emit = ex.emit
        ex.emit = lambda stream, text: (out if stream == "out" else err).append(text)
        ran: set[str] = set()
        remade: set[str] = set()
        done: set[str] = set()

        def pretend(path: str) -> float | None:
            return math.inf if path in ran else mtime(path)  # a target that would be remade is brand new

        try:
            commands_started = 0
            for goal in self.goals:
                started = commands_started
                for name in self.subtree(goal):
                    if name in done:
                        continue
                    done.add(name)
                    node = self.nodes[name]
                    decision = self.decide(name, pretend, remade, always)
                    if not decision.run:
                        continue
                    remade.add(name)
                    if node.has_recipe:
                        commands = node.commands(decision.newer)
                        ran.add(name)
                        commands_started += len(commands)
                        out.extend(line for c in commands for line in c.echo.split("\n"))
                if commands_started == started:
                    node = self.nodes[goal]
                    quiet = node.phony or not node.has_recipe
                    out.append(f"onitu make: Nothing to be done for '{goal}'." if quiet
                               else f"onitu make: '{goal}' is up to date.")
        finally:
            ex.emit = saved_emit
        return out, err

    def subtree(self, goal: str) -> list[str]:
        """The post-order nodes under ``goal`` (a slice of order())."""
        seen: set[str] = set()
        result: list[str] = []
        stack: list[tuple[str, list[str]]] = [(goal, self._deps(goal))]
        seen.add(goal)
        while stack:
            name, pending = stack[-1]
            if not pending:
                stack.pop()
                result.append(name)
                continue
            dep = pending.pop()
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, self._deps(dep)))
        return result
