"""Variables: one definition (flavour, origin, export state) and the scopes they live in."""

from __future__ import annotations

from onitu.make.record import Record
from onitu.make.text import Location

# GNU's origin priority: a definition may replace another of the same or a lower rank.
RANK = {"default": 0, "environment": 1, "file": 2, "environment override": 3, "command line": 4, "override": 5,
        "automatic": 6}


class Var(Record):
    """One variable definition: raw value, flavour, origin (as ``$(origin)`` names it) and export state."""

    FIELDS = ("value", "recursive", "origin", "export", "append", "where")

    def __init__(self, value: str, recursive: bool, origin: str, export: bool | None = None, append: bool = False,
                 where: Location | None = None) -> None:
        self.value, self.recursive, self.origin = value, recursive, origin
        self.export = export  # None: GNU's default (exported only if it came from the environment/command line)
        self.append = append  # a target-specific ``+=``: the inherited value comes first, looked up at expansion time
        self.where = where  # where it was defined (GNU names it when a variable references itself)


class Scope:
    """A variable set chained to an outer one (target -> the target that needed it -> ... -> global)."""

    computed = False  # a scope whose variables are made when first asked for answers for itself (see find)

    def __init__(self, parent: Scope | None = None) -> None:
        self.vars: dict[str, Var] = {}
        self.parent = parent

    def find(self, name: str) -> tuple[Var, Scope] | None:
        """The innermost definition of ``name`` and the scope holding it."""
        var = self.vars.get(name)
        if var is not None:
            return var, self
        scope = self.parent
        while scope is not None:
            if scope.computed:  # e.g. a $(call)'s scope over the automatic variables
                return scope.find(name)
            var = scope.vars.get(name)
            if var is not None:
                return var, scope
            scope = scope.parent
        return None


def beats(new: str, old: str) -> bool:
    """May a definition of origin ``new`` replace one of origin ``old``? (GNU's origin priority)."""
    return RANK[new] >= RANK[old]
