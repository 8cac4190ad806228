"""GNU make's implicit rule search: which pattern rule makes a file, through chains of intermediate files.

The rules, as GNU make 4.3 applies them (implicit.c, and the manual's "Implicit Rule Search Algorithm"):

1. Every pattern rule with a target pattern matching the name is a candidate; a pattern without a slash matches
   the name without its directory, and the directory goes back in front of the stem and of each prerequisite.
2. Candidates are tried shortest stem first, then in the order the rules were defined. Once a rule whose target
   is not just ``%`` matched, the non-terminal match-anything rules (``%: ...``) are dropped.
3. A rule applies when each prerequisite exists, is mentioned in the makefiles, or is found by vpath. Only when no
   rule applies that way, rules are tried again allowing a prerequisite that some other rule could make: an
   *intermediate* file, found by the same search one level down, where match-anything rules must be terminal
   and a rule already in use higher up is skipped. A name that no rule can make is remembered as impossible.
4. A rule with prerequisites but no recipe cancels a rule (it is never used); a rule with neither exists only
   to count as "specific" in step 2 (GNU's ``%.c:`` rules converted from suffixes).
"""

from __future__ import annotations

from collections.abc import Callable

from onitu.make.database import Database, PatternRule
from onitu.make.text import normalize, words_outside_refs


class Found:
    """A pattern rule that makes ``name``: its stem and prerequisites, some of them intermediate files.

    (This and _Try are plain classes: a dataclass costs a third of a millisecond at every start.)"""

    __slots__ = ("also_make", "intermediates", "name", "prereqs", "rule", "stem", "target")

    def __init__(self, name: str, rule: PatternRule, target: str, stem: str, prereqs: list[tuple[str, bool]],
                 intermediates: dict[str, Found] | None = None, also_make: list[str] | None = None) -> None:
        self.name, self.rule = name, rule
        self.target = target  # the rule's target pattern that matched
        self.stem = stem  # with the directory put back when the pattern had none
        self.prereqs = prereqs  # (name, order-only), in the rule's order
        self.intermediates = {} if intermediates is None else intermediates  # prerequisite -> how it is made
        self.also_make = [] if also_make is None else also_make  # the rule's other targets, for this stem


class _Try:
    """A pattern rule whose target matched, to be tried (a plain class: one is made per rule tried)."""

    __slots__ = ("dir_prefix", "order", "rule", "stem", "stem_len", "target")

    def __init__(self, rule: PatternRule, target: str, stem_len: int, order: int, dir_prefix: str, stem: str
                 ) -> None:
        self.rule, self.target, self.stem_len, self.order, self.stem = rule, target, stem_len, order, stem
        self.dir_prefix = dir_prefix  # the name's directory when the target pattern has no slash, else ""


class Search:
    """Implicit rule searches against one database; remembers the names found impossible."""

    def __init__(self, db: Database, known: Callable[[str], bool], exists: Callable[[str], bool],
                 expand_second: Callable[[str, str, str], list[tuple[str, bool]]]) -> None:
        """``known(name)``: named in the makefiles (or already entered); ``exists(name)``: on disk or by vpath;
        ``expand_second(text, target, stem)``: a second-expansion prerequisite text, as (name, order-only)."""
        self.db, self.known, self.exists, self.expand_second = db, known, exists, expand_second
        self.impossible: set[str] = set()
        self._index: dict[str, list[tuple[int, PatternRule, str, str, str]]] | None = None

    def find(self, name: str, explicit: list[str] | None = None) -> Found | None:
        """The rule GNU would use for ``name`` (``explicit``: its explicit prerequisites), else None."""
        found = self._search(name, name, explicit or [], 0, set())
        if found is None and _member(name) is not None:
            found = self._search(name, "(" + _member(name) + ")", explicit or [], 0, set())  # type: ignore[operator]
        return found

    def _by_last_char(self, filename: str) -> list[tuple[int, PatternRule, str, str, str]]:
        """The rule targets that may match ``filename``: those whose suffix ends with its last character, and
        those with no suffix, in the rules' order (an index built once: there are ~100 built-in rules)."""
        if self._index is None:
            self._index = {}
            for i, rule in enumerate(self.db.patterns):
                for target, (prefix, suffix) in zip(rule.targets, rule.target_parts, strict=True):
                    self._index.setdefault(suffix[-1:], []).append((i, rule, target, prefix, suffix))
        found = self._index.get(filename[-1:], []) if filename else []
        return sorted([*found, *self._index.get("", [])], key=lambda item: item[0]) if found else \
            self._index.get("", [])

    def _candidates(self, filename: str, recursions: int, in_use: set[int]) -> list[_Try]:
        archive = filename.startswith("(") or _member(filename) is not None
        slash = -1 if archive else filename.rfind("/", 0, len(filename) - 1)
        directory = filename[: slash + 1]
        tries: list[_Try] = []
        specific = False
        for _, rule, target, prefix, suffix in self._by_last_char(filename):
            if rule.prereqs and rule.recipe is None:  # cancelled
                continue
            if id(rule) in in_use:
                continue
            if recursions > 0 and target == "%" and not rule.terminal:
                continue
            use_dir = bool(directory) and "/" not in target
            base = filename[len(directory):] if use_dir else filename
            # the % stands for one character at least (GNU: a pattern longer than the name cannot match)
            if len(base) <= len(prefix) + len(suffix) or not base.startswith(prefix) or not base.endswith(suffix):
                continue
            stem = base[len(prefix): len(base) - len(suffix)]
            if target != "%":
                specific = True
            if not rule.prereqs and rule.recipe is None:
                continue
            prefix_dir = directory if use_dir else ""
            tries.append(_Try(rule, target, len(stem) + len(prefix_dir), len(tries), prefix_dir, stem))
        tries.sort(key=lambda t: (t.stem_len, t.order))
        if specific:
            tries = [t for t in tries if t.rule.terminal or "%" not in t.rule.targets]
        return tries

    def _search(self, name: str, filename: str, explicit: list[str], recursions: int, in_use: set[int]
                ) -> Found | None:
        tries = self._candidates(filename, recursions, in_use)
        failed: set[int] = set()
        for intermediate_ok in (False, True):
            for t in tries:
                if t.order in failed or (intermediate_ok and t.rule.terminal):
                    continue
                found = self._try(name, t, explicit, recursions, in_use, intermediate_ok)
                if found is None:
                    continue
                if found is _IMPOSSIBLE:
                    failed.add(t.order)
                    continue
                return found
        return None

    def _try(self, name: str, t: _Try, explicit: list[str], recursions: int, in_use: set[int],
             intermediate_ok: bool) -> Found | None:
        rule = t.rule
        prereqs: list[tuple[str, bool]] = []
        intermediates: dict[str, Found] = {}
        if rule.prereqs or rule.order_only:
            in_use = in_use | {id(rule)}
            for dep, order_only in self._prereqs(name, t):
                if dep in self.impossible:
                    return _IMPOSSIBLE
                if dep in explicit or self.known(dep) or self.exists(dep):
                    prereqs.append((dep, order_only))
                    continue
                if not intermediate_ok:
                    return None
                sub = self._search(dep, dep, [], recursions + 1, in_use)
                if sub is None:
                    self.impossible.add(dep)
                    return None
                prereqs.append((dep, order_only))
                intermediates[dep] = sub
        # made only for a rule that applies (most tries fail, and a search makes ~170 of them for a name)
        return Found(name, rule, t.target, t.dir_prefix + t.stem, prereqs, intermediates, self._also(rule, t))

    def _prereqs(self, name: str, t: _Try) -> list[tuple[str, bool]]:
        """The rule's prerequisites for this match (``%`` is the stem, the directory put back)."""
        rule = t.rule
        if rule.second:
            stem_ref = "$(*F)" if t.dir_prefix else "$*"
            out: list[tuple[str, bool]] = []
            order_only = False
            for text in rule.prereqs:
                for word in words_outside_refs(text):
                    if word == "|":
                        order_only = True
                        continue
                    has_stem = "%" in word
                    for dep, oo in self.expand_second(word.replace("%", stem_ref, 1), name, t.dir_prefix + t.stem):
                        dep = t.dir_prefix + dep if t.dir_prefix and has_stem else dep
                        out.append((normalize(dep), oo or order_only))
                        order_only = order_only or oo
            return out

        def subst(p: str, parts: tuple[str, str] | None) -> str:
            return p if parts is None else normalize(t.dir_prefix + parts[0] + t.stem + parts[1])

        return ([(subst(p, parts), False) for p, parts in zip(rule.prereqs, rule.prereq_parts, strict=True)]
                + [(subst(p, parts), True) for p, parts in zip(rule.order_only, rule.order_only_parts, strict=True)])

    @staticmethod
    def _also(rule: PatternRule, t: _Try) -> list[str]:
        out = []
        for target, parts in zip(rule.targets, rule.target_parts, strict=True):
            if target != t.target:
                out.append(parts[0] + t.dir_prefix + t.stem + parts[1])
        return out


_IMPOSSIBLE = Found("", PatternRule([], [], [], None, "", 0), "", "", [])


def _member(name: str) -> str | None:
    """``lib.a(x.o)``: the member name ``x.o``; None for other names."""
    if name.endswith(")") and "(" in name and not name.startswith("("):
        return name[name.index("(") + 1 : -1]
    return None


def archive_parts(name: str) -> tuple[str, str] | None:
    """``lib.a(x.o)`` -> (``lib.a``, ``x.o``); None for a name that is no archive member."""
    member = _member(name)
    return None if member is None else (name[: name.index("(")], member)
