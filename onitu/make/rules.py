"""Rule lines: explicit, static pattern and pattern rules, target-specific variables and special targets."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from onitu.make.expand import (
    Location,
    Scope,
    collapse,
    fatal,
    find_outside_refs,
    first_word,
    parse_assignment,
    pattern_match,
    split_pattern,
    strip_comment,
)

if TYPE_CHECKING:
    from onitu.make.parser import Database, Entry, RecipeLine

# Special targets GNU make gives a meaning this reader keeps, ignores (no observable effect here) or refuses.
IGNORED_SPECIALS = {".PRECIOUS", ".LOW_RESOLUTION_TIME"}
REFUSED_SPECIALS = {".ONESHELL", ".SECONDEXPANSION", ".POSIX", ".DEFAULT", ".INTERMEDIATE", ".SECONDARY",
                    ".NOTINTERMEDIATE"}
KEPT_SPECIALS = {".PHONY", ".SILENT", ".IGNORE", ".SUFFIXES", ".EXPORT_ALL_VARIABLES", ".DELETE_ON_ERROR",
                 ".NOTPARALLEL"}


class _Assigner(Protocol):
    def assign(self, name: str, op: str, value: str, modifiers: set[str], where: Location,
               scope: Scope | None = None) -> None: ...

    def recipe_prefix(self) -> str: ...


@dataclass
class _Pending:
    """A rule line whose recipe lines may still follow."""

    where: Location
    pattern: bool
    targets: list[tuple[str, str, list[str], list[str]]]  # (target, stem, prereqs, order-only)
    recipe: list[RecipeLine] | None = None
    recipe_where: Location | None = None


def file_words(text: str, cwd: str) -> list[str]:
    """Target or prerequisite names: wildcards expanded (kept when nothing matches), a leading ``./`` dropped."""
    out = []
    for word in text.split():
        matches = sorted(glob.glob(word, root_dir=cwd)) if any(c in word for c in "*?[") else []
        for name in matches or [word]:
            while name.startswith("./") and len(name) > 2:
                name = name[2:]
            out.append(name)
    return out


def substitute(pattern: str, stem: str) -> str:
    """A prerequisite pattern with its first ``%`` replaced by ``stem`` (no % : unchanged)."""
    parts = split_pattern(pattern)
    return pattern if parts is None else parts[0] + stem + parts[1]


class RuleReader:
    """Turns rule lines into Database entries; a rule is recorded once its recipe lines have been read."""

    def __init__(self, db: Database, reader: _Assigner) -> None:
        self.db = db
        self.reader = reader
        self.pending: _Pending | None = None

    def add_recipe_line(self, text: str, where: Location) -> None:
        """A recipe line for the rule being read."""
        from onitu.make.parser import RecipeLine

        assert self.pending is not None
        if self.pending.recipe is None:
            self.pending.recipe, self.pending.recipe_where = [], where
        self.pending.recipe.append(RecipeLine(text, where[0], where[1]))

    def rule(self, parts: list[str], where: Location) -> None:
        """Read a rule line (or a target-specific assignment); ``parts`` are its physical lines."""
        from onitu.make.parser import RecipeLine

        ex = self.db.expander
        raw = "\n".join(parts)
        cut = find_outside_refs(raw, ";#")
        recipe = raw[cut + 1 :] if cut >= 0 and raw[cut] == ";" else None
        text = strip_comment(collapse(raw[:cut].split("\n") if cut >= 0 else parts))
        prefix = self.reader.recipe_prefix()
        if parts[0].startswith(prefix):
            raise fatal("recipe commences before first target", where)
        expanded = False
        colon = find_outside_refs(text, ":")
        if colon < 0:
            text, expanded = ex.expand(text), True
            if not text.strip():
                return
            colon = text.find(":")
            if colon < 0:
                hint = " (did you mean TAB instead of 8 spaces?)" if parts[0].startswith(" " * 8) else ""
                raise fatal(f"missing separator{hint}", where)
        head, rest = text[:colon], text[colon + 1 :]
        if rest.startswith(":"):
            raise fatal("double-colon rules are not supported by onitu make", where)
        if head.rstrip().endswith("&"):
            raise fatal("grouped targets (&:) are not supported by onitu make", where)
        targets = file_words(head if expanded else ex.expand(head), str(self.db.cwd))
        if not expanded and self._target_variable(targets, rest, recipe, where):
            return
        if not expanded:
            rest = ex.expand(rest)
        self.pending = self._pending(targets, rest, where)
        if recipe is not None:
            self.pending.recipe, self.pending.recipe_where = [], where
            lines = recipe.split("\n")
            text = lines[0] + "".join("\n" + (ln[1:] if ln.startswith(prefix) else ln) for ln in lines[1:])
            self.pending.recipe.append(RecipeLine(text, where[0], where[1]))

    def _target_variable(self, targets: list[str], rest: str, recipe: str | None, where: Location) -> bool:
        """Handle ``targets: [override|export] VAR op value``; False when ``rest`` is no assignment."""
        text = rest if recipe is None else f"{rest};{recipe}"
        modifiers: set[str] = set()
        word, tail = first_word(text)
        while word in ("override", "export", "unexport", "private") and parse_assignment(tail) is not None:
            modifiers.add(word)
            word, tail = first_word(tail)
        body = f"{word} {tail}" if modifiers else text
        assignment = parse_assignment(body)
        if assignment is None:
            return False
        if "private" in modifiers:
            raise fatal("the 'private' modifier is not supported by onitu make", where)
        name, op, value = assignment
        name = self.db.expander.expand(name).strip()
        glob_var = self.db.globals.vars.get(name)
        for target in targets:
            if split_pattern(target) is not None:
                raise fatal("pattern-specific variables are not supported by onitu make", where)
            # A command-line setting beats a target-specific one unless that says override, as in GNU make.
            if glob_var is not None and glob_var.origin == "command line" and "override" not in modifiers:
                continue
            entry = self._entry(target, where)
            if entry.scope is None:
                entry.scope = Scope(self.db.globals)
            self.reader.assign(name, op, value, modifiers, where, scope=entry.scope)
        self.pending = None
        return True

    def _pending(self, targets: list[str], rest: str, where: Location) -> _Pending:
        cwd = str(self.db.cwd)
        static = find_outside_refs(rest, ":")
        target_pattern = rest[:static].strip() if static >= 0 else None
        if static >= 0:
            rest = rest[static + 1 :]
        bar = rest.find("|")
        normal, order_only = (rest[:bar], rest[bar + 1 :]) if bar >= 0 else (rest, "")
        patterns = [t for t in targets if split_pattern(t) is not None]
        if patterns:
            if len(patterns) != len(targets) or target_pattern is not None:
                raise fatal("mixed implicit and normal rules", where)
            if len(targets) > 1:
                raise fatal("pattern rules with several targets are not supported by onitu make", where)
            if targets[0] == "%":
                raise fatal("match-anything pattern rules (%:) are not supported by onitu make", where)
            return _Pending(where, True, [(targets[0], "", normal.split(), order_only.split())])
        self._check_specials(targets, normal, where)
        if target_pattern is None:
            items = [(t, "", file_words(normal, cwd), file_words(order_only, cwd)) for t in targets]
            return _Pending(where, False, items)
        parts = split_pattern(target_pattern)
        if parts is None:
            raise fatal("target pattern contains no '%'", where)
        items = []
        for target in targets:
            stem = pattern_match(parts, target)
            if stem is None:
                self.db.warn(f"target '{target}' doesn't match the target pattern", where)
                items.append((target, "", [], []))
                continue
            items.append((target, stem, [substitute(p, stem) for p in normal.split()],
                          [substitute(p, stem) for p in order_only.split()]))
        return _Pending(where, False, items)

    def _check_specials(self, targets: list[str], prereqs: str, where: Location) -> None:
        for target in targets:
            if target in REFUSED_SPECIALS:
                raise fatal(f"special target '{target}' is not supported by onitu make", where)
            if target == ".SUFFIXES" and prereqs.split():
                raise fatal("suffix rules (.SUFFIXES with suffixes) are not supported by onitu make", where)

    def _entry(self, name: str, where: Location) -> Entry:
        from onitu.make.parser import Entry

        entry = self.db.entries.get(name)
        if entry is None:
            entry = self.db.entries[name] = Entry(name)
        return entry

    def flush(self) -> None:
        """Record the pending rule now that its recipe (if any) is complete."""
        p, self.pending = self.pending, None
        if p is None:
            return
        if p.pattern:
            self._record_pattern(p)
            return
        for target, stem, prereqs, order_only in p.targets:
            if target in KEPT_SPECIALS or target in IGNORED_SPECIALS:
                self._special(target, prereqs)
                continue
            self._record(target, stem, prereqs, order_only, p)
        self._default_goal([t for t, *_ in p.targets])

    def _record(self, target: str, stem: str, prereqs: list[str], order_only: list[str], p: _Pending) -> None:
        entry = self._entry(target, p.where)
        self.db.mentioned.add(target)
        self.db.mentioned.update(prereqs)
        self.db.mentioned.update(order_only)
        if stem:
            entry.stem = stem
        if p.recipe is None:
            entry.prereqs += prereqs
            entry.order_only += order_only
            if entry.file is None:
                entry.file, entry.line = p.where
            return
        if entry.recipe is not None and entry.recipe is not p.recipe:
            old = entry.recipe[0] if entry.recipe else None
            assert p.recipe_where is not None
            self.db.warn(f"warning: overriding recipe for target '{target}'", p.recipe_where)
            if old is not None:
                self.db.warn(f"warning: ignoring old recipe for target '{target}'", (old.file, old.line))
        # GNU puts the prerequisites of the rule that has the recipe first.
        entry.prereqs = prereqs + entry.prereqs
        entry.order_only = order_only + entry.order_only
        entry.recipe = p.recipe
        entry.file, entry.line = p.where

    def _record_pattern(self, p: _Pending) -> None:
        from onitu.make.parser import PatternRule

        target, _, prereqs, order_only = p.targets[0]
        # A rule with the same target and prerequisites replaces (or, without a recipe, cancels) the old one.
        self.db.patterns = [r for r in self.db.patterns if (r.target, r.prereqs) != (target, prereqs)]
        if p.recipe is not None:
            self.db.patterns.append(PatternRule(target, prereqs, order_only, p.recipe, *p.where))

    def _special(self, target: str, prereqs: list[str]) -> None:
        db = self.db
        if target == ".PHONY":
            db.phony.update(prereqs)
        elif target in (".SILENT", ".IGNORE"):
            attr = "silent" if target == ".SILENT" else "ignore"
            current = getattr(db, attr)
            if not prereqs:
                setattr(db, attr, None)
            elif current is not None:
                current.update(prereqs)
        elif target == ".EXPORT_ALL_VARIABLES":
            db.export_all = True
        elif target == ".DELETE_ON_ERROR":
            db.delete_on_error = True
        elif target == ".NOTPARALLEL":
            db.not_parallel = True

    def _default_goal(self, targets: list[str]) -> None:
        ex = self.db.expander
        if ex.value_of(".DEFAULT_GOAL").strip():
            return
        for target in targets:
            if target in self.db.entries and (not target.startswith(".") or "/" in target):
                ex.define(".DEFAULT_GOAL", target, recursive=False, origin="default")
                return
