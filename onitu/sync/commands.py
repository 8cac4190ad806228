"""The referee's side of ``onitu status``, ``approve``, ``reject`` and ``resolve``.

The CLI writes ``(REQUEST, id, body)``; the referee carries it out between two decisions (so it never races one)
and answers ``(REPLY, id, result)``. It also publishes its view of every folder and service as a ``STATUS`` tuple
that ``onitu status`` reads.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from typing import TYPE_CHECKING, Any

from onitu.space.errors import SpaceError
from onitu.sync import tuples
from onitu.sync.decide.metadata import FileMeta
from onitu.sync.decide.plan import Copy

if TYPE_CHECKING:
    from onitu.sync.referee import Referee

log = logging.getLogger(__name__)


class Commands:
    """Requests from the CLI, and the published status."""

    def __init__(self, referee: Referee) -> None:
        self.referee = referee
        self.conflicts: dict[tuple[str, str], dict[str, Any]] = {}  # (folder, conflict path) -> record

    def load(self) -> None:
        """Read the conflict records."""
        for _, folder, conflict, info in self.referee.space.read_all((tuples.CONFLICT, None, None, None)):
            if isinstance(folder, str) and isinstance(conflict, str) and isinstance(info, dict):
                self.conflicts[folder, conflict] = info

    def poll(self) -> None:
        """Answer pending requests and publish the status."""
        space = self.referee.space
        for tup in space.read_all((tuples.REQUEST, None, None)):
            with contextlib.suppress(SpaceError):
                space.take(tup, timeout=0)
                try:
                    result = self.handle(tup[2])
                except (ValueError, TypeError, KeyError) as exc:
                    result = {"ok": False, "error": str(exc)}
                space.write((tuples.REPLY, tup[1], result), 120.0)
        status = self.summary()
        ops: list[tuple] = [("write", (tuples.STATUS, status), 5.0)]
        if space.read_all((tuples.STATUS, None)):
            ops.insert(0, ("take", (tuples.STATUS, None)))
        with contextlib.suppress(SpaceError):
            space.batch(ops)

    def handle(self, body: Any) -> dict[str, Any]:
        """Carry out one request."""
        if not isinstance(body, dict) or body.get("op") not in ("approve", "reject", "resolve"):
            raise ValueError("unknown request")
        folder = body.get("folder")
        if folder is not None and folder not in self.referee.folders:
            raise ValueError(f"unknown folder {folder!r}")
        if body["op"] == "resolve":
            return self.resolve(str(body.get("pattern", "")), str(body.get("keep", "")), folder)
        return self.release(body["op"] == "approve", folder, body.get("service"))

    # -- held deletions -------------------------------------------------------------------------------------------

    def release(self, approve: bool, folder: str | None, service: str | None) -> dict[str, Any]:
        """Carry out (approve) or undo (reject: the files are copied back) deletions held for approval."""
        ref = self.referee
        done = []
        for key in [k for k in ref.awaiting if folder in (None, k[0]) and service in (None, k[1])]:
            paths = ref.awaiting.pop(key)
            held_folder, deleter = key
            if approve:
                states = {s: ref.plugs.state(s, held_folder) for s in ref.folders[held_folder]}
                if "wait" in states.values():
                    ref.awaiting[key] = paths
                    raise ValueError(f"{held_folder}: a replica is still being listed; try again in a moment")
                ref.ledger.also([("take", (tuples.PENDING, held_folder, deleter, None))])
                ref.pass_paths(held_folder, sorted(paths), states, approved=deleter)
            else:
                held = ref.ledger.held[deleter, held_folder]
                for path in paths:  # as if it never had them: they are copied back to it
                    if path in held and ref.mirror.get(deleter, held_folder, path) is None:
                        ref.ledger.hold(deleter, held_folder, path, None)
                ref.ledger.also([("take", (tuples.PENDING, held_folder, deleter, None))])
                ref.ledger.commit(ref.space)
                ref.dirty[held_folder].update(paths)
            ref.deletions.judged(deleter, held_folder)
            done.append({"folder": held_folder, "service": deleter, "paths": len(paths)})
        return {"ok": True, "released": done}

    # -- conflicts ------------------------------------------------------------------------------------------------

    def resolve(self, pattern: str, keep: str, folder: str | None) -> dict[str, Any]:
        """Keep one side, or both, of the conflicts whose original or conflict path matches ``pattern``."""
        if keep not in tuples.KEEP:
            raise ValueError(f"keep must be one of {', '.join(tuples.KEEP)}")
        ref = self.referee
        matched = [(f, c, info) for (f, c), info in self.conflicts.items() if folder in (None, f)
                   and (fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(str(info.get("path")), pattern))]
        for f, conflict, info in matched:
            if ref.is_busy(f, conflict) or ref.is_busy(f, str(info.get("path"))):
                raise ValueError(f"{f}/{conflict}: a transfer is under way; try again in a moment")
        for f, conflict, info in matched:
            meta = ref.ledger.agreed[f].get(conflict)
            if keep == "conflict" and meta is not None and not meta.tombstone:
                self._promote(f, conflict, str(info["path"]), meta)
            if keep != "both" and meta is not None and not meta.tombstone:
                ref.ledger.agree(f, FileMeta(conflict, meta.kind, version=meta.version.bump("onitu"),
                                             tombstone=True, mtime_ns=meta.mtime_ns))
                ref.dirty[f].add(conflict)
            ref.ledger.also([("take", (tuples.CONFLICT, f, conflict, None))])
            del self.conflicts[f, conflict]
        ref.ledger.commit(ref.space)
        return {"ok": True, "resolved": [[f, c, i.get("path")] for f, c, i in matched]}

    def _promote(self, folder: str, conflict: str, path: str, meta: FileMeta) -> None:
        """Make the conflict copy's content the agreed version of ``path``, copied to every replica from it."""
        ref = self.referee
        current = ref.ledger.agreed[folder].get(path)
        version = (current.version.merge(meta.version) if current else meta.version).bump("onitu")
        new = FileMeta(path, "file", meta.size, meta.sha256, version, False, meta.mtime_ns)
        ref.ledger.agree(folder, new)
        services = ref.folders[folder]
        holders = [s for s in services if (o := ref.mirror.get(s, folder, conflict)) is not None
                   and o.sha256 == meta.sha256]
        if not holders:
            raise ValueError(f"{folder}/{conflict}: no live replica holds the conflict copy")
        copies = []
        for service in services:
            if ref.plugs.state(service, folder) is None and ref.rules.selects(service, folder, path, meta.size):
                now = ref.mirror.get(service, folder, path)
                copies.append((folder, Copy(path, service, tuple(holders), meta.sha256, meta.size,
                                            now.guard if now else None, conflict)))
        ref.send(copies)

    # -- status ---------------------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Per folder and service: state, files and bytes pending; conflicts and held deletions per folder."""
        ref = self.referee
        pending: dict[tuple[str, str], list[int]] = {}
        for order in ref.orders.values():
            counts = pending.setdefault((order.folder, order.service), [0, 0])
            counts[0] += order.count
            counts[1] += order.size
        folders = {}
        for folder, services in ref.folders.items():
            rows = {}
            for service in services:
                state = ref.plugs.state(service, folder)
                files, size = pending.get((folder, service), [0, 0])
                label = ("listing" if state == "wait" else f"unavailable: {state}" if state
                         else "syncing" if files else "in sync")
                rows[service] = {"state": label, "files": files, "bytes": size,
                                 "held": len(ref.awaiting.get((folder, service), ()))}
            conflicts = sum(1 for f, _ in self.conflicts if f == folder)
            undecided = len(ref.dirty[folder]) + sum(len(paths) for paths, _ in ref.queued[folder])
            folders[folder] = {"services": rows, "conflicts": conflicts, "undecided": undecided}
        return {"folders": folders}
