"""The dependency graph of a build: the goals and everything they need, each file resolved against explicit
rules, double-colon rules, the second expansion and implicit rules (with chains of intermediate files).

Resolution walks the goals depth first, prerequisites left to right (GNU make's order), so target-specific
variables are inherited from the target that first needed a file, as in GNU make. A prerequisite that leads back to
a target on the current path is dropped with GNU's "Circular a <- b dependency dropped." message.
"""

from __future__ import annotations

from collections.abc import Sequence

from onitu.make.database import Database, Entry, Prereq, RecipeLine
from onitu.make.implicit import Found, Search
from onitu.make.locate import Locator
from onitu.make.recipe import Autos, Command, automatic_scope, expand, stem_from_suffix
from onitu.make.rules import file_words
from onitu.make.text import MakeError, pattern_match
from onitu.make.variables import Scope, Var


class Node:
    """One file (or phony target) of the build; for a double-colon target, one node per rule as well."""

    def __init__(self, name: str, all_prereqs: list[str], order_only: list[str], phony: bool,
                 recipe: list[RecipeLine] | None, stem: str, file: str | None, line: int | None, is_target: bool,
                 scope: Scope, key: str = "", *, double_colon: bool = False, db: Database | None = None) -> None:
        self.name = name
        self.all_prereqs = all_prereqs  # normal prerequisites with duplicates ($+), an implicit rule's first
        self.order_only = order_only  # after '|' ($|), those that are also normal left out
        self.phony, self.recipe, self.file, self.line = phony, recipe, file, line
        self.stem = stem  # $*
        self.is_target = is_target  # named as a target by some rule (or given an implicit rule, or .PHONY)
        self.scope = scope  # target- and pattern-specific variables, chained to the parent's
        self.key = key or name  # the graph's key: the name, or "name::N" for the Nth rule of a double-colon target
        self.intermediate = False  # made by a chain of implicit rules (or .INTERMEDIATE): rebuilt only when needed
        self.chained = False  # entered by a chain of implicit rules (not named by the makefiles)
        self.secondary = False  # intermediate, but never deleted
        self.precious = False
        self.also_make: tuple[str, ...] = ()  # made by the same run of the recipe (grouped targets, patterns)
        self.colons: list[str] = []  # a double-colon target: its rules' keys, in order
        self.double_colon = double_colon  # this node is one rule of a double-colon target
        self.db = db

    def __repr__(self) -> str:
        return f"Node({self.key!r})"

    @property
    def prereqs(self) -> list[str]:
        """Normal prerequisites without duplicates ($^)."""
        return list(dict.fromkeys(self.all_prereqs))

    @property
    def has_recipe(self) -> bool:
        return self.recipe is not None

    def deps(self) -> list[str]:
        """What must be handled before this node: prerequisites then order-only ones, without duplicates (for a
        double-colon target, its rules)."""
        if self.colons:
            return list(self.colons)
        return list(dict.fromkeys([*self.all_prereqs, *self.order_only]))

    def commands(self, newer: Sequence[str], path: dict[str, str] | None = None) -> list[Command]:
        """Expand the recipe now (GNU expands it just before running it); ``newer`` is ``$?``, ``path`` maps
        prerequisites found by vpath to the name they were found under."""
        assert self.db is not None
        if self.recipe is None:
            return []
        where = path or {}
        autos = Autos(self.name, [where.get(p, p) for p in self.all_prereqs], [where.get(p, p) for p in newer],
                      [where.get(p, p) for p in self.order_only], self.stem)
        return expand(self.db, self.recipe, automatic_scope(self.scope, autos), self.name)


class Graph:
    """The targets reachable from the goals, resolved, with cycles dropped as GNU drops them."""

    def __init__(self, db: Database, goals: list[str]) -> None:
        self.db = db
        self.goals = goals
        self.nodes: dict[str, Node] = {}
        self.messages: list[str] = []  # GNU's "Circular ... dependency dropped." lines, for stderr
        self.locate = Locator(db)
        self.search = Search(db, self._known, self.locate.exists, self._second)
        self._order: list[str] = []
        self._found: dict[str, tuple[Found, Node]] = {}  # intermediate files entered by a chain, not resolved yet
        self._no_implicit: set[str] = set()  # found by a terminal rule: no search of their own
        self._rules: dict[str, Node] = {}  # the rules of double-colon targets, until the walk reaches them

    @classmethod
    def build(cls, db: Database, goals: Sequence[str]) -> Graph:
        """Resolve ``goals`` (default: the default goal) and everything they need."""
        chosen = list(goals) or ([db.default_goal] if db.default_goal else [])
        if not chosen:
            raise MakeError("*** No targets.  Stop.")
        graph = cls(db, chosen)
        for goal in chosen:
            graph._visit(goal)
        return graph

    def order(self) -> list[str]:
        """Every node key in the order GNU make -j1 considers them (post-order, prerequisites left to right)."""
        return list(self._order)

    def _visit(self, goal: str) -> None:
        """Depth-first, prerequisites left to right, post-order: GNU make -j1's order."""
        if goal in self.nodes:
            return
        self.nodes[goal] = self._resolve(goal, None)
        stack: list[tuple[str, list[str]]] = [(goal, self.nodes[goal].deps()[::-1])]
        on_path = {goal}
        while stack:
            key, pending = stack[-1]
            if not pending:
                stack.pop()
                on_path.discard(key)
                self._order.append(key)
                continue
            dep = pending.pop()
            if dep in on_path:
                self._drop(self.nodes[key], dep)
                continue
            if dep in self.nodes:
                continue
            self.nodes[dep] = self._resolve(dep, self.nodes[key])
            stack.append((dep, self.nodes[dep].deps()[::-1]))
            on_path.add(dep)

    def _drop(self, node: Node, dep: str) -> None:
        self.messages.append(f"Circular {node.name} <- {self.nodes[dep].name} dependency dropped.")
        for names in (node.all_prereqs, node.order_only, node.colons):
            if dep in names:
                names.remove(dep)

    # -- one file ----------------------------------------------------------------------------------------------

    def _resolve(self, name: str, parent: Node | None) -> Node:
        db = self.db
        rule = self._rules.pop(name, None)
        if rule is not None:
            return rule
        entered = self._found.pop(name, None)
        if entered is not None:
            return self._intermediate(*entered)
        entry = db.entries.get(name)
        phony = name in db.phony
        scope = self._scope(name, parent, entry.scope if entry else None)
        if entry is not None and entry.colons:
            return self._double_colon(name, entry, phony, scope)
        stem = entry.stem if entry else ""
        prereqs, order_only = self._expand_deferred(entry.prereqs if entry else [], name, stem, scope)
        order_only += entry.order_only if entry else []
        recipe = entry.recipe if entry else None
        file, line = (entry.file, entry.line) if entry else (None, None)
        is_target = (entry is not None and entry.is_target) or phony
        node = Node(name, prereqs, [], phony, recipe, stem, file, line, is_target, scope, db=db)
        if recipe is None and not phony and name not in self._no_implicit:
            found = self.search.find(name, prereqs + order_only)
            if found is not None:
                self._apply(node, found)
                prereqs, order_only = node.all_prereqs, [*node.order_only, *order_only]
        if node.recipe is None and not node.is_target and db.default_recipe is not None:
            node.recipe = db.default_recipe
        node.all_prereqs = prereqs
        normal = set(prereqs)
        node.order_only = [p for p in order_only if p not in normal]  # both normal and order-only: normal, as GNU
        if entry is not None and entry.group:
            node.also_make = tuple(t for t in entry.group if t != name)
        self._flags(node)
        return node

    def _apply(self, node: Node, found: Found) -> None:
        """Give ``node`` the implicit rule ``found`` (its prerequisites first, then the explicit ones)."""
        rule = found.rule
        node.all_prereqs = [d for d, oo in found.prereqs if not oo] + node.all_prereqs
        node.order_only = [d for d, oo in found.prereqs if oo]
        node.recipe, node.stem, node.file, node.line = rule.recipe, found.stem, rule.file, rule.line
        node.is_target = True
        node.also_make = tuple(found.also_make)
        node.precious = found.target in self.db.precious.names
        for dep, sub in found.intermediates.items():
            self._found[dep] = (sub, node)
        if rule.terminal:
            self._no_implicit.update(d for d, _ in found.prereqs if d not in found.intermediates)

    def _intermediate(self, found: Found, parent: Node) -> Node:
        """A file no rule names, made by a chain of implicit rules: GNU's intermediate file."""
        scope = self._scope(found.name, parent, None)
        node = Node(found.name, [], [], False, None, "", None, None, True, scope, db=self.db)
        self._apply(node, found)
        self._flags(node)
        node.intermediate = found.name not in self.db.notintermediate and found.target not in self.db.notintermediate
        node.chained = True
        return node

    def _double_colon(self, name: str, entry: Entry, phony: bool, scope: Scope) -> Node:
        assert entry.colons is not None
        node = Node(name, [], [], phony, None, entry.stem, entry.file, entry.line, True, scope, db=self.db)
        for i, colon in enumerate(entry.colons):
            prereqs, order_only = self._expand_deferred(colon.prereqs, name, entry.stem, scope)
            rule = Node(name, prereqs, order_only + colon.order_only, phony, colon.recipe, entry.stem, colon.file,
                        colon.line, True, scope, key=f"{name}::{i}", double_colon=True, db=self.db)
            rule.stem = rule.stem or stem_from_suffix(name, self.db.suffixes)
            self._rules[rule.key] = rule
            node.colons.append(rule.key)
        self._flags(node)
        return node

    def _flags(self, node: Node) -> None:
        db, name = self.db, node.name
        if not node.stem and node.recipe is not None:
            node.stem = stem_from_suffix(_member_of(name), db.suffixes)
        node.precious = node.precious or name in db.precious.names
        if name in db.intermediate or name in db.secondary.names:
            node.intermediate = name not in db.notintermediate
        node.secondary = db.secondary.every or name in db.secondary.names

    # -- variables and the second expansion ------------------------------------------------------------------

    def _scope(self, name: str, parent: Node | None, own: Scope | None) -> Scope:
        """Target-specific variables over pattern-specific ones over the parent's (GNU's inheritance)."""
        base = parent.scope if parent is not None else self.db.globals
        matching = [(len(p[0]) + len(p[1]), i, s) for i, (p, s) in enumerate(self.db.pattern_vars)
                    if pattern_match(p, name)]  # a non-empty stem, as GNU's lookup_pattern_var wants
        if matching:
            merged = Scope(base)
            for _, _, pattern_scope in sorted(matching, key=lambda m: (m[0], m[1])):
                for var_name, var in pattern_scope.vars.items():
                    old = merged.vars.get(var_name)
                    if var.append and old is not None:
                        var = Var(f"{old.value} {var.value}", old.recursive, old.origin, old.export, old.append)
                    merged.vars[var_name] = var
            base = merged
        scope = Scope(base)
        if own is not None:
            scope.vars = own.vars
        return scope

    def _expand_deferred(self, items: list[Prereq], name: str, stem: str, scope: Scope
                         ) -> tuple[list[str], list[str]]:
        """Prerequisites with the second expansion applied (``$$@`` is the target, ``$$<`` the first prereq...)."""
        prereqs: list[str] = []
        order_only: list[str] = []
        for item in items:
            if isinstance(item, str):
                prereqs.append(item)
                continue
            text = item.text.replace("%", "$*") if item.stem else item.text
            for dep, oo in self._second(text, name, item.stem or stem, scope, prereqs):
                (order_only if oo else prereqs).append(dep)
        return prereqs, order_only

    def _second(self, text: str, target: str, stem: str, scope: Scope | None = None,
                known: Sequence[str] = ()) -> list[tuple[str, bool]]:
        """Expand ``text`` again with the automatic variables of ``target``; (name, order-only) pairs."""
        autos = automatic_scope(scope or self.db.globals, Autos(target, list(known), [], [], stem))
        expanded = self.db.expander.expand(text, autos)
        normal, _, order_only = expanded.partition("|")
        cwd = str(self.db.cwd)
        return [(n, False) for n in file_words(normal, cwd)] + [(n, True) for n in file_words(order_only, cwd)]

    def _known(self, name: str) -> bool:
        return name in self.db.mentioned or name in self.nodes

    def subtree(self, goal: str) -> list[str]:
        """The post-order node keys under ``goal``."""
        seen: set[str] = {goal}
        result: list[str] = []
        stack: list[tuple[str, list[str]]] = [(goal, self.nodes[goal].deps()[::-1])]
        while stack:
            key, pending = stack[-1]
            if not pending:
                stack.pop()
                result.append(key)
                continue
            dep = pending.pop()
            if dep not in seen and dep in self.nodes:
                seen.add(dep)
                stack.append((dep, self.nodes[dep].deps()[::-1]))
        return result


def _member_of(name: str) -> str:
    if name.endswith(")") and "(" in name:
        return name[name.index("(") + 1 : -1]
    return name
