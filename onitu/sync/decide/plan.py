"""The vocabulary of a reconcile pass: what replicas report, the orders it gives and the plan it returns.

Kept apart from :mod:`onitu.sync.decide.reconcile` so that the referee, the plug and
:mod:`onitu.sync.decide.renames` share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from onitu.sync.decide.metadata import Causality, FileMeta, Kind

Content = tuple[Kind, str | None]  # ("file", sha256) or ("dir", None); None: nothing there


@dataclass(frozen=True, slots=True)
class Observed:
    """What one replica has at one path now. ``fingerprint`` (from the driver's Stat) is for the plug: an order
    names the content it expects (:attr:`content_id`), which the plug turns into the fingerprint of what it last
    reported there, the driver's precondition."""

    kind: Kind = "file"
    sha256: str | None = None
    size: int = 0
    mtime_ns: int = 0
    fingerprint: str = ""

    @property
    def content(self) -> Content:
        """What the replica holds, for comparisons."""
        return (self.kind, self.sha256)

    @property
    def content_id(self) -> str:
        """What an order about this entry expects to find there: ``dir``, or the file's sha256."""
        return "dir" if self.kind == "dir" else self.sha256 or ""


TREE = "tree:"  # the prefix of the content id of a directory moved whole (see tree_content_id)


def tree_content_id(tree: Mapping[str, Content]) -> str:
    """The content id of a directory moved whole: a digest of everything in it (relative name, '' for the directory
    itself -> content). A plug moves the directory only if it holds exactly that: a file put there that the hub has
    not seen would otherwise be carried off to a path nobody gave it."""
    digest = hashlib.sha256()
    for rel, (kind, sha) in sorted(tree.items()):
        digest.update(f"{rel}\0{kind}\0{sha or ''}\0".encode())  # no name holds a NUL: unambiguous
    return TREE + digest.hexdigest()


@dataclass(frozen=True)
class Replica:
    """One service's side of a folder: what is there now, and per path the agreed version it last held."""

    service: str
    now: Mapping[str, Observed] = field(default_factory=dict)
    held: Mapping[str, FileMeta] = field(default_factory=dict)
    unavailable: str | None = None  # the reason, when its root cannot be trusted


class Routing(Protocol):
    """Which services hold (``selects``) and are read for (``reads``) a path; see
    :class:`onitu.sync.decide.rules.Rules`."""

    def selects(self, service: str, path: str, size: int, is_dir: bool) -> bool: ...

    def reads(self, service: str, path: str, size: int, is_dir: bool) -> bool: ...


@dataclass(frozen=True)
class Copy:
    """Transfer the file ``path`` (content ``sha256``) to service ``to`` from any of ``sources`` (in any order)."""

    path: str
    to: str
    sources: tuple[str, ...]
    sha256: str
    size: int
    replaces: str | None  # the content id of what is at the destination (None: nothing); see Observed.content_id
    source_path: str | None = None  # where the sources hold it, when not at ``path`` (resolving a conflict)


@dataclass(frozen=True)
class Mkdir:
    """Create the directory ``path`` on service ``on``."""

    path: str
    on: str


@dataclass(frozen=True)
class Delete:
    """Remove ``path`` (a file, or a directory once empty) on service ``on``."""

    path: str
    on: str
    replaces: str


@dataclass(frozen=True)
class Move:
    """Rename ``src`` to ``dst`` on service ``on`` (a directory moves with everything below it, if it holds
    what :func:`tree_content_id` says)."""

    src: str
    dst: str
    on: str
    replaces: str


@dataclass(frozen=True)
class KeepConflict:
    """Rename the losing version at ``path`` on service ``on`` to ``conflict`` (it is then copied elsewhere)."""

    path: str
    on: str
    conflict: str
    replaces: str


@dataclass(frozen=True)
class MarkUnavailable:
    """The service's root cannot be trusted; it was left out of this pass."""

    service: str
    reason: str


Action = Copy | Mkdir | Delete | Move | KeepConflict | MarkUnavailable


@dataclass(frozen=True)
class HeldPlan:
    """Deletions from one replica that exceeded the threshold: run ``actions``, record ``agreed``, once approved."""

    service: str
    deleted: int
    total: int
    actions: tuple[Action, ...]
    agreed: Mapping[str, FileMeta]


@dataclass(frozen=True)
class Plan:
    """The orders of one pass (in execution order), the new agreed metadata, and the plans awaiting approval."""

    actions: tuple[Action, ...]
    agreed: Mapping[str, FileMeta]
    held: tuple[HeldPlan, ...] = ()


def content_of(meta: FileMeta | Observed | None) -> Content | None:
    """The content an agreed version or an observation stands for (None: nothing, or a tombstone)."""
    if meta is None or (isinstance(meta, FileMeta) and meta.tombstone):
        return None
    return (meta.kind, meta.sha256)


def is_clean(held: FileMeta | None, agreed: FileMeta | None) -> bool:
    """Whether a replica that held ``held`` was up to date with ``agreed`` (so its change is not a conflict): it
    held the agreed version, a later one, or the same bytes (reached apart, or under an older version)."""
    if content_of(held) == content_of(agreed):
        return True
    return held is not None and agreed is not None and held.version.compare(agreed.version) in (
        Causality.EQUAL, Causality.DESCENDS)




def service_of(action: Action) -> str:
    """The service an action is addressed to."""
    return action.to if isinstance(action, Copy) else action.service if isinstance(action, MarkUnavailable) \
        else action.on


def paths_of(action: Action) -> tuple[str, ...]:
    """The paths an action changes, then the one it reads from (a copy resolving a conflict reads another)."""
    if isinstance(action, Move):
        return (action.src, action.dst)
    if isinstance(action, KeepConflict):
        return (action.path, action.conflict)
    if isinstance(action, Copy) and action.source_path:
        return (action.path, action.source_path)
    return () if isinstance(action, MarkUnavailable) else (action.path,)
