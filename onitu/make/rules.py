"""Rule lines: explicit, double-colon, grouped, static pattern and pattern rules, target- and pattern-specific
variables, and the special targets."""

from __future__ import annotations

import glob
import re
from typing import Protocol

from onitu.make.builtins import replace_pattern_rule
from onitu.make.database import Colon, Database, Deferred, PatternRule, Prereq, RecipeLine
from onitu.make.text import (
    Location,
    collapse,
    fatal,
    find_outside_refs,
    first_word,
    normalize,
    parse_assignment,
    pattern_match,
    split_pattern,
    strip_comment,
)
from onitu.make.variables import Scope

# Special targets that change nothing observable here, and those refused with an error naming file and line.
IGNORED_SPECIALS = {".LOW_RESOLUTION_TIME", ".EXTRA_PREREQS"}
REFUSED_SPECIALS = {".POSIX"}
SPECIALS = {".PHONY", ".SILENT", ".IGNORE", ".SUFFIXES", ".EXPORT_ALL_VARIABLES", ".DELETE_ON_ERROR", ".NOTPARALLEL",
            ".PRECIOUS", ".SECONDARY", ".INTERMEDIATE", ".NOTINTERMEDIATE", ".DEFAULT", ".ONESHELL",
            ".SECONDEXPANSION", *IGNORED_SPECIALS}


class _Assigner(Protocol):
    def assign(self, name: str, op: str, value: str, modifiers: set[str], where: Location,
               scope: Scope | None = None) -> None: ...

    def recipe_prefix(self) -> str: ...


class _Pending:
    """A rule line whose recipe lines may still follow."""

    __slots__ = ("double", "grouped", "pattern", "recipe", "recipe_where", "targets", "where")

    def __init__(self, where: Location, pattern: bool, double: bool, grouped: bool,
                 targets: list[tuple[str, str, list[Prereq], list[str]]]) -> None:
        self.where, self.pattern, self.double, self.grouped = where, pattern, double, grouped
        self.targets = targets  # (target, stem, prereqs, order-only)
        self.recipe: list[RecipeLine] | None = None
        self.recipe_where: Location | None = None


_GLOB = re.compile(r"[*?\[]")


def file_words(text: str, cwd: str) -> list[str]:
    """Target or prerequisite names: wildcards expanded (kept when nothing matches), archive groups
    (``lib.a(x.o y.o)``) spread, a leading ``./`` dropped."""
    out = []
    words = text.split()
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        open_at = word.find("(")
        if open_at > 0 and not word.endswith(")"):  # lib.a(x.o y.o): the group runs to the word ending with ')'
            members = [word[open_at + 1 :]]
            while i < len(words) and not members[-1].endswith(")"):
                members.append(words[i])
                i += 1
            members[-1] = members[-1].removesuffix(")")
            out.extend(f"{word[:open_at]}({m})" for m in members if m)
            continue
        if _GLOB.search(word) is None:
            out.append(normalize(word) if word.startswith("./") else word)
            continue
        out.extend(normalize(name) for name in sorted(glob.glob(word, root_dir=cwd)) or [word])
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
        assert self.pending is not None
        if self.pending.recipe is None:
            self.pending.recipe, self.pending.recipe_where = [], where
        self.pending.recipe.append(RecipeLine(text, where[0], where[1]))

    def rule(self, parts: list[str], where: Location) -> None:
        """Read a rule line (or a target-specific assignment); ``parts`` are its physical lines."""
        ex = self.db.expander
        raw = parts[0] if len(parts) == 1 else "\n".join(parts)
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
        double = rest.startswith(":")
        if double:
            rest = rest[1:]
        grouped = head.rstrip().endswith("&")
        if grouped:
            head = head.rstrip()[:-1]
        targets = file_words(head if expanded else ex.expand(head), str(self.db.cwd))
        if not expanded and self._target_variable(targets, rest, recipe, where):
            return
        self.pending = self._pending(targets, rest, where, double, grouped, expanded)
        if recipe is not None:
            self.pending.recipe, self.pending.recipe_where = [], where
            lines = recipe.split("\n")
            text = lines[0] + "".join("\n" + (ln[1:] if ln.startswith(prefix) else ln) for ln in lines[1:])
            self.pending.recipe.append(RecipeLine(text, where[0], where[1]))

    def _target_variable(self, targets: list[str], rest: str, recipe: str | None, where: Location) -> bool:
        """Handle ``targets: [override|export] VAR op value``; False when ``rest`` is no assignment."""
        text = rest if recipe is None else f"{rest};{recipe}"
        if "=" not in text:  # the common case: no assignment, a rule
            return False
        modifiers: set[str] = set()
        body = text.lstrip(" \t")
        word, tail = first_word(body)
        while word in ("override", "export", "unexport", "private") and parse_assignment(tail) is not None:
            modifiers.add(word)
            body = tail
            word, tail = first_word(body)
        assignment = parse_assignment(body)
        if assignment is None:
            return False
        if "private" in modifiers:
            raise fatal("the 'private' modifier is not supported by onitu make", where)
        name, op, value = assignment
        name = self.db.expander.expand(name).strip()
        glob_var = self.db.globals.vars.get(name)
        for target in targets:
            # A command-line setting beats a target-specific one unless that says override, as in GNU make.
            if glob_var is not None and glob_var.origin == "command line" and "override" not in modifiers:
                continue
            parts = split_pattern(target)
            if parts is not None:
                scope = next((s for p, s in self.db.pattern_vars if p == parts), None)
                if scope is None:
                    scope = Scope(self.db.globals)
                    self.db.pattern_vars.append((parts, scope))
            else:
                entry = self.db.entry(target)
                if entry.scope is None:
                    entry.scope = Scope(self.db.globals)
                scope = entry.scope
            self.reader.assign(name, op, value, modifiers, where, scope=scope)
        self.pending = None
        return True

    def _pending(self, targets: list[str], rest: str, where: Location, double: bool, grouped: bool,
                 expanded: bool) -> _Pending:
        ex = self.db.expander
        cwd = str(self.db.cwd)
        if not expanded:
            rest = ex.expand(rest)
        static = find_outside_refs(rest, ":")
        target_pattern = rest[:static] if static >= 0 else None
        if static >= 0:
            rest = rest[static + 1 :]
        # After .SECONDEXPANSION, prerequisites that still hold a reference are expanded again at build time.
        deferred = self.db.second_expansion and "$" in rest
        text = rest
        bar = text.find("|") if not deferred else -1
        normal, order_only = (text[:bar], text[bar + 1 :]) if bar >= 0 else (text, "")
        patterns = [t for t in targets if "%" in t and split_pattern(t) is not None]
        if patterns:
            if len(patterns) != len(targets):
                raise fatal("mixed implicit and normal rules", where)
            if target_pattern is not None:
                raise fatal("mixed implicit and static pattern rules", where)
            if deferred:
                return _Pending(where, True, double, grouped, [(t, "", [Deferred(text)], []) for t in targets])
            return _Pending(where, True, double, grouped,
                            [(t, "", [normalize(p) for p in normal.split()], order_only.split()) for t in targets])
        self._check_specials(targets, where)
        if target_pattern is None:
            if deferred:
                return _Pending(where, False, double, grouped, [(t, "", [Deferred(text)], []) for t in targets])
            prereqs: list[Prereq] = list(file_words(normal, cwd))
            items = [(t, "", prereqs, file_words(order_only, cwd)) for t in targets]
            return _Pending(where, False, double, grouped, items)
        parts = split_pattern(target_pattern.strip())
        if parts is None:
            raise fatal("target pattern contains no '%'", where)
        items = []
        for target in targets:
            stem = pattern_match(parts, target)
            if stem is None:
                self.db.warn(f"target '{target}' doesn't match the target pattern", where)
                items.append((target, "", [], []))
                continue
            if deferred:
                items.append((target, stem, [Deferred(text, stem)], []))
                continue
            items.append((target, stem, [normalize(substitute(p, stem)) for p in normal.split()],
                          [normalize(substitute(p, stem)) for p in order_only.split()]))
        return _Pending(where, False, double, grouped, items)

    def _check_specials(self, targets: list[str], where: Location) -> None:
        for target in targets:
            if target in REFUSED_SPECIALS:
                raise fatal(f"special target '{target}' is not supported by onitu make", where)

    def flush(self) -> None:
        """Record the pending rule now that its recipe (if any) is complete."""
        p, self.pending = self.pending, None
        if p is None:
            return
        if p.pattern:
            targets = [t for t, *_ in p.targets]
            _, _, prereqs, order_only = p.targets[0]
            second = any(isinstance(d, Deferred) for d in prereqs)
            names = [d.text if isinstance(d, Deferred) else d for d in prereqs]
            replace_pattern_rule(self.db, PatternRule(targets, names, order_only, p.recipe, *p.where,
                                                      terminal=p.double, second=second), override=True)
            return
        if p.grouped and p.recipe is None:
            raise fatal("grouped targets must provide a recipe", p.where)
        group = tuple(t for t, *_ in p.targets) if p.grouped and len(p.targets) > 1 else ()
        for target, stem, prereqs, order_only in p.targets:
            if target in SPECIALS:
                self._special(target, prereqs, order_only, p)
                continue
            self._record(target, stem, prereqs, order_only, p, group)
        self._default_goal([t for t, *_ in p.targets])

    def _record(self, target: str, stem: str, prereqs: list[Prereq], order_only: list[str], p: _Pending,
                group: tuple[str, ...]) -> None:
        db = self.db
        entry = db.entry(target)
        db.mentioned.add(target)
        db.mentioned.update(d for d in prereqs if isinstance(d, str))
        db.mentioned.update(order_only)
        if p.double:
            if entry.is_target and entry.colons is None:
                raise fatal(f"target file '{target}' has both : and :: entries", p.where)
            entry.is_target = True
            entry.colons = entry.colons or []
            entry.colons.append(Colon(list(prereqs), list(order_only), p.recipe, *p.where))
            if entry.file is None:
                entry.file, entry.line = p.where
            return
        if entry.colons is not None:
            raise fatal(f"target file '{target}' has both : and :: entries", p.where)
        if stem:
            entry.stem = stem
        if group:
            entry.group = group
        if p.recipe is None:
            entry.prereqs += prereqs
            entry.order_only += order_only
            if entry.file is None or not entry.is_target:
                entry.file, entry.line = p.where
            entry.is_target = True
            return
        if entry.recipe is not None and entry.recipe is not p.recipe and entry.is_target:
            old = entry.recipe[0] if entry.recipe else None
            assert p.recipe_where is not None
            db.warn(f"warning: overriding recipe for target '{target}'", p.recipe_where)
            if old is not None:
                db.warn(f"warning: ignoring old recipe for target '{target}'", (old.file, old.line))
        # GNU puts the prerequisites of the rule that has the recipe first.
        entry.prereqs = prereqs + entry.prereqs
        entry.order_only = order_only + entry.order_only
        entry.recipe = p.recipe
        entry.file, entry.line = p.where
        entry.is_target = True

    def _special(self, target: str, deferred: list[Prereq], order_only: list[str], p: _Pending) -> None:
        db = self.db
        prereqs = [d for d in deferred if isinstance(d, str)]
        if target not in (".SUFFIXES", ".DEFAULT"):
            db.mentioned.update(prereqs)
        if target == ".PHONY":
            db.phony.update(prereqs)
        elif target in (".SILENT", ".IGNORE"):
            attr = "silent" if target == ".SILENT" else "ignore"
            current = getattr(db, attr)
            if not prereqs:
                setattr(db, attr, None)
            elif current is not None:
                current.update(prereqs)
        elif target == ".PRECIOUS":
            if prereqs:
                db.precious.add(prereqs)
        elif target == ".SECONDARY":
            db.secondary.add(prereqs)
        elif target == ".INTERMEDIATE":
            db.intermediate.update(prereqs)
        elif target == ".NOTINTERMEDIATE":
            db.notintermediate.add(prereqs)
        elif target == ".SUFFIXES":
            db.suffixes = db.suffixes + [s for s in prereqs if s not in db.suffixes] if prereqs else []
            db.expander.define("SUFFIXES", " ".join(db.suffixes), recursive=False, origin="default")
        elif target == ".DEFAULT":
            if p.recipe is not None or not prereqs:
                db.default_recipe = p.recipe
        elif target == ".EXPORT_ALL_VARIABLES":
            db.export_all = True
        elif target == ".DELETE_ON_ERROR":
            db.delete_on_error = True
        elif target == ".NOTPARALLEL":
            db.not_parallel = True
        elif target == ".ONESHELL":
            db.oneshell = True
        elif target == ".SECONDEXPANSION":
            db.second_expansion = True

    def _default_goal(self, targets: list[str]) -> None:
        ex = self.db.expander
        if ex.value_of(".DEFAULT_GOAL").strip():
            return
        for target in targets:
            entry = self.db.entries.get(target)
            if entry is not None and entry.is_target and (not target.startswith(".") or "/" in target):
                ex.define(".DEFAULT_GOAL", target, recursive=False, origin="default")
                return
