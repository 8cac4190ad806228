"""What waits on the user: deletions held for approval, and conflict copies to resolve.

Both are kept in the space, written with the ledger's records: ``(PENDING, folder, service, info)`` per replica
whose deletions exceeded the threshold (``info["paths"]``: every path decided with them, held until ``onitu
approve``), and ``(CONFLICT, folder, conflict path, info)`` per conflict copy (``info``: the path it is a version of,
the service where that version was made, when), until ``onitu resolve``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from datetime import UTC, datetime
from typing import Any

from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import HeldPlan, KeepConflict, paths_of
from onitu.sync.state.ledger import Ledger

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Awaiting:
    """Deletions held for approval, per (folder, service); conflict copies, per (folder, conflict path)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.held_deletions: dict[Key, set[str]] = {}  # (folder, service) -> paths held for approval
        self.conflicts: dict[Key, dict[str, Any]] = {}  # (folder, conflict path) -> record

    def load(self, space: Any) -> None:
        """Read both from the space."""
        for _, folder, service, info in space.read_all((tuples.PENDING, None, None, None)):
            with contextlib.suppress(TypeError, KeyError):
                self.held_deletions[folder, service] = set(info["paths"])
        for _, folder, conflict, info in space.read_all((tuples.CONFLICT, None, None, None)):
            if isinstance(folder, str) and isinstance(conflict, str) and isinstance(info, dict):
                self.conflicts[folder, conflict] = info

    # -- deletions held for approval ------------------------------------------------------------------------------

    def hold(self, folder: str, plan: HeldPlan) -> None:
        """Hold a replica's deletions (with everything decided with them) until they are approved or rejected."""
        paths = set(plan.agreed) | {p for a in plan.actions for p in paths_of(a)}
        key = (folder, plan.service)
        held = self.held_deletions[key] = self.held_deletions.get(key, set()) | paths
        info = {"deleted": plan.deleted, "total": plan.total, "paths": sorted(held),
                "when": datetime.now(UTC).isoformat()}
        log.warning("%s deleted %d of %d entries of %s: held until `onitu approve`", plan.service, plan.deleted,
                    plan.total, folder)
        old = [("take", (tuples.PENDING, folder, plan.service, None))] if len(held) > len(paths) else []
        self.ledger.also([*old, ("write", (tuples.PENDING, folder, plan.service, info), None)])

    def held_paths(self, folder: str, service: str) -> set[str]:
        """The paths of ``folder`` held for approval of ``service``'s deletions."""
        return self.held_deletions.get((folder, service), set())

    def is_held(self, folder: str, path: str) -> bool:
        """Whether ``path`` is held for approval, whoever's deletions it waits on."""
        return any(path in paths for (f, _), paths in self.held_deletions.items() if f == folder)

    def held_keys(self, folder: str | None, service: str | None) -> list[Key]:
        """The (folder, service) whose deletions are held, of ``folder`` and ``service`` when given."""
        return [k for k in self.held_deletions if folder in (None, k[0]) and service in (None, k[1])]

    def release(self, key: Key) -> set[str]:
        """No longer hold the deletions of ``key`` (its record is taken with the ledger's next commit); their paths."""
        self.ledger.also([("take", (tuples.PENDING, *key, None))])
        return self.held_deletions.pop(key)

    # -- conflicts ------------------------------------------------------------------------------------------------

    def conflict(self, folder: str, action: KeepConflict) -> None:
        """Record the conflict copy ``action`` makes (once), in the batch of the order that makes it."""
        self.set_aside(folder, action.conflict, action.path, action.on, [(folder, action.path)])

    def set_aside(self, folder: str, conflict: str, path: str, service: str,
                  with_paths: list[tuple[str, str]] | None = None) -> None:
        """Record (once) that ``conflict`` on ``service`` holds a version of ``path`` kept aside: a losing version,
        or a name that collided with ``path``'s (renamed by the plug); committed with ``with_paths``' records."""
        if (folder, conflict) in self.conflicts:
            return
        info = {"path": path, "service": service, "when": datetime.now(UTC).isoformat()}
        self.conflicts[folder, conflict] = info
        self.ledger.also([("write", (tuples.CONFLICT, folder, conflict, info), None)], with_paths or [])

    def conflicts_matching(self, patterns: list[str], folder: str | None) -> list[tuple[str, str, dict[str, Any]]]:
        """(folder, conflict path, record) of the conflicts whose original or conflict path matches one of
        ``patterns`` (globs)."""
        def matches(path: str) -> bool:
            return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)

        return [(f, c, info) for (f, c), info in self.conflicts.items() if folder in (None, f)
                and (matches(c) or matches(str(info.get("path"))))]

    def resolved(self, folder: str, conflict: str) -> None:
        """Forget a conflict copy (its record is taken with the ledger's next commit)."""
        self.ledger.also([("take", (tuples.CONFLICT, folder, conflict, None))])
        del self.conflicts[folder, conflict]

    def never_made(self, folder: str, conflict: str, busy: bool) -> None:
        """The conflict copy ``conflict`` will not be made: the order that was to set it aside was withdrawn (its
        replica went away). Unless a replica holds it or another order under way (``busy``) is making it, it is
        neither listed nor agreed on any more: nobody could copy it from anywhere, and when the path is decided
        again, a conflict that still is one gets a new name."""
        agreed = self.ledger.agreed[folder]
        if busy or (folder, conflict) not in self.conflicts or agreed.holders(conflict):
            return
        meta = agreed.get(conflict)
        if meta is not None and not meta.tombstone:
            self.ledger.agree(folder, FileMeta(conflict, meta.kind, version=meta.version.bump("onitu"),
                                               tombstone=True, mtime_ns=meta.mtime_ns))
        self.resolved(folder, conflict)

    def conflict_count(self, folder: str) -> int:
        """The conflicts of ``folder``."""
        return sum(1 for f, _ in self.conflicts if f == folder)
