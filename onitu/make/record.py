"""Equality and repr for the plain classes every ``onitu make`` run loads.

They were dataclasses; but importing :mod:`dataclasses` and generating each class's methods (compiled from source
at every start) took a third of ``onitu make``'s own start-up, which every build pays, as a one-rule build shows.
Here each class writes its ``__init__`` by hand and names its fields once.
"""

from __future__ import annotations


class Record:
    """Equal to a record of the same class whose ``COMPARED`` fields (default: all ``FIELDS``) are equal; shown
    with its ``FIELDS``. Not hashable: see :class:`FrozenRecord`."""

    FIELDS: tuple[str, ...] = ()
    COMPARED: tuple[str, ...] | None = None

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in (self.COMPARED or self.FIELDS))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.FIELDS)})"


class FrozenRecord(Record):
    """A record never changed once made (by convention): hashable by its compared fields."""

    def __hash__(self) -> int:
        return hash(self._key())
