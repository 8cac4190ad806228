"""What a plug reports: what its replica holds, as it changes, and the results of the orders it carried out.

Reports are observations, not events: for each changed path, what is there now (kind, sha256, size, mtime) or None.
A full listing (at start, after an event overflow, periodically, when the root comes back, and when a restarted
referee asks) is sent as it is made, then ended: the referee decides what it shows as it arrives, and tells what
disappeared at its end; orders carried out while it is being made are accounted for in it. Reports and results are
numbered in one sequence and leave through one ordered outbox (:mod:`onitu.sync.plug.outbox`): the referee applies
them in the order the plug saw things.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from onitu.space.template import Range
from onitu.sync import tuples
from onitu.sync.decide.plan import Action, Observed
from onitu.sync.drivers.contract import Availability, ChangeEvent, Driver, DriverError, ancestors
from onitu.sync.plug.known import Known
from onitu.sync.plug.outbox import Outbox
from onitu.sync.plug.scanner import Scanner

REPORT_SIZE = 1000  # entries per report tuple
WINDOW = 32  # parts of a listing that may wait in the space for the referee before the listing pauses


@dataclass(eq=False)
class OrderRun:
    """An order being carried out: its actions' results as they come, and the paths they left changed."""

    tup: tuple
    folder: str
    actions: list[Action]
    results: list[dict[str, Any] | None] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    left: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.actions)
        self.left = len(self.actions)


class Reporter:
    """What the plug last reported per folder and path (``known``), and the reports and results that change it.

    ``lock`` guards ``known`` and the sequence numbers; ``set_status`` publishes the root's availability.
    """

    def __init__(self, service: str, plug_id: str, folders: Iterable[str], driver: Driver, scanner: Scanner,
                 outbox: Outbox, lock: threading.RLock, set_status: Callable[[Availability], None]) -> None:
        self.service, self.id, self.driver, self.scanner, self.outbox = service, plug_id, driver, scanner, outbox
        self.lock, self.set_status = lock, set_status
        self.known: dict[str, Known] = {folder: Known() for folder in folders}
        scanner.hashes.beside = self  # holds most of the hashes: the cache keeps no second copy of them
        self.listed = threading.Event()  # the first listing is sent: orders are checked against what it saw
        self._seq = 0
        self._scanning: set[tuple[str, str]] | None = None  # (folder, path) of orders carried out during a listing

    def send(self, folder: str, entries: list[tuple[str, Observed | None]],
             set_aside: list[list[str]] | None = None) -> None:
        """Queue reports in the outbox (sent by the next :meth:`Outbox.flush`); ``set_aside``: [conflict copy,
        original] pairs the driver renamed, told with the first."""
        with self.lock:
            parts = [entries[i:i + REPORT_SIZE] for i in range(0, len(entries), REPORT_SIZE)] or [[]]
            for n, part in enumerate(parts):
                self._put(folder, None, part, set_aside if n == 0 else None)

    def _put(self, folder: str, scan: str | None, entries: list[tuple[str, Observed | None]],
             set_aside: list[list[str]] | None = None) -> None:
        self._seq += 1
        body: dict[str, Any] = {"folder": folder, "scan": scan,
                                "entries": [[path, tuples.obs_to_wire(obs)] for path, obs in entries]}
        if set_aside:
            body["set_aside"] = set_aside
        self.outbox.put([("write", (tuples.REPORT, self.service, self.id, self._seq, body), None)])

    def full_scan(self) -> None:
        """List every folder and send the whole of it (entries being written keep their last known state)."""
        status = self.driver.available()
        if not status:
            self.set_status(status)
            return
        listings = {}
        with self.lock:
            self._scanning = set()
        try:
            for folder, known in self.known.items():
                listings[folder] = self._list(folder, known)
        except DriverError as exc:
            with self.lock:
                self._scanning = None
            self.set_status(self.driver.available() or Availability(False, str(exc)))
            return
        self.set_status(status)
        with self.lock:
            self._end_listings(listings, self._amend_listings(listings))
        self.outbox.flush()
        self.listed.set()
        self.save()

    def save(self) -> None:
        """Write the hash cache's snapshot (see :meth:`hashed_rows`)."""
        with self.lock:
            self.scanner.save()

    def hashed(self, path: str) -> bytes | None:
        """The hash and fingerprint last reported for a service path (:class:`onitu.sync.plug.hash_cache.Beside`):
        read without the lock, one dict lookup."""
        found = self.scanner.locate(path)
        if found is None:
            return None
        known = self.known.get(found[0])
        return None if known is None else known.hashed(found[1])

    def hashed_rows(self) -> Iterator[tuple[str, bytes]]:
        """(service path, :meth:`hashed`) of every file last reported; called with the lock held."""
        for folder, known in self.known.items():
            for path, row in known.hashed_rows():
                yield self.scanner.where(folder, path), row

    def _list(self, folder: str, known: Known) -> Known:
        """Everything in ``folder`` now, sent as it is listed (a report's worth at a time, begun by a "begin"): the
        referee decides what it shows as it arrives, and what it does not show once it ends (see
        :meth:`_end_listings`). A big first sync starts copying as the source is listed, not once all of it is."""
        seen, unsent, scan = Known(), [], "begin"
        for path, obs, settled in self.scanner.below(folder, streamed=True):
            if obs is None and (settled or path not in known):
                continue
            seen[path] = obs if obs is not None else known[path]
            unsent.append(path)
            if len(unsent) >= REPORT_SIZE:
                with self.lock:
                    self._send_part(folder, seen, unsent, scan)
                self.outbox.flush()
                self._pace()
                unsent, scan = [], "part"
        unsent += self._keep_unreadable(folder, known, seen)
        with self.lock:
            self._send_part(folder, seen, unsent, scan)
        return seen

    def _send_part(self, folder: str, seen: Known, paths: list[str], scan: str) -> None:
        """One part of a listing: what ``seen`` holds at ``paths``, except where an order carried out since the
        listing passed there left something else (what ``known`` holds now)."""
        touched = {path for f, path in self._scanning or () if f == folder}
        known, entries = self.known[folder], []
        for path in paths:
            if touched and (path in touched or any(up in touched for up in ancestors(path))):
                if path in known:
                    entries.append((path, known[path]))
            else:
                entries.append((path, seen[path]))
        self._put(folder, scan, entries)

    def _keep_unreadable(self, folder: str, known: Known, seen: Known) -> list[str]:
        """What was last reported of entries that cannot be read now stands in a listing (they are not gone): the
        paths added."""
        if not self.driver.skipped.unreadable_paths():
            return []
        kept = [path for path in known.keys() - seen.keys() if self._unreadable(folder, path)]
        for path in kept:
            seen[path] = known[path]
        return kept

    def _unreadable(self, folder: str, path: str) -> bool:
        return self.driver.skipped.unreadable(self.scanner.where(folder, path))

    def _amend_listings(self, listings: dict[str, Known]) -> None:
        """What orders carried out while the listing was made left at their paths, instead of what the listing saw
        before (it would report a file just copied here as deleted: its creation is not reported by the watcher)."""
        touched, self._scanning = self._scanning or set(), None
        for folder, path in touched:
            seen, known = listings[folder], self.known[folder]
            for gone in seen.at_and_below(path):
                del seen[gone]
            for found in known.at_and_below(path):
                seen[found] = known[found]
        return touched

    def _end_listings(self, listings: dict[str, Known], touched: set[tuple[str, str]]) -> None:
        """Make the listings what the plug knows, and end them: the paths orders touched meanwhile go once more, as
        they are now (their parts may have gone before the orders did), then the end (what it did not show is
        gone)."""
        for folder, seen in listings.items():
            for gone in self.known[folder].keys() - seen.keys():
                self.scanner.forget(folder, gone)
            self.known[folder] = seen
            again = sorted({found for f, path in touched if f == folder for found in seen.at_and_below(path)})
            self._send_part(folder, seen, again, "part")
            self._put(folder, "end", [])

    def changed(self, folder: str, paths: Iterable[str]) -> None:
        """Report the paths whose observation differs from the one last reported."""
        with self.lock:
            self.changed_locked(folder, paths)
        self.outbox.flush()

    def changed_locked(self, folder: str, paths: Iterable[str]) -> None:
        known, entries = self.known[folder], []
        looks = [(path, self.scanner.stat(folder, path)) for path in sorted(set(paths))]
        # A new directory's content is reported as it is read (a large tree moved in takes seconds to hash, and the
        # referee decides the first files meanwhile), unless something is gone among these paths: a move's two
        # sides are reported together (the referee sees it as a move, not a deletion and copies).
        stream = all(obs is not None or path not in known for path, obs in looks)
        for path, obs in looks:
            if obs is None and path in known and (self._unsettled(folder, path) or self._unreadable(folder, path)):
                continue  # being written (the watcher reports it once it settles), or unreadable, not gone
            if stream and obs is not None and obs.kind == "dir" and path not in known:
                self._stream(folder, [*entries, (path, obs)])
                entries = self.below_locked(folder, path, obs, sink=lambda part: self._stream(folder, part))
                known[path] = obs
                continue
            if obs is not None:
                entries += self.below_locked(folder, path, obs)
            if known.get(path) != obs:
                if obs is None:
                    for below in known.at_and_below(path):
                        del known[below]
                        self.scanner.forget(folder, below)
                        entries.append((below, None))
                else:
                    known[path] = obs
                    entries.append((path, obs))
        if entries:
            self.send(folder, entries)

    def _stream(self, folder: str, entries: list[tuple[str, Observed | None]]) -> None:
        """Report ``entries`` now, before the rest of what is being read (with the lock held: in their place in the
        sequence)."""
        self.send(folder, entries)
        self.outbox.flush()
        self._pace()

    def _pace(self) -> None:
        """Wait while WINDOW of this plug's reports wait for the referee (see :meth:`Outbox.hold`)."""
        self.outbox.hold((tuples.REPORT, self.service, self.id, Range(None, self._seq - WINDOW), None))

    def below_locked(self, folder: str, path: str, obs: Observed,
                     sink: Callable[[list[tuple[str, Observed | None]]], None] | None = None
                     ) -> list[tuple[str, Observed | None]]:
        """What changed below ``path``, now ``obs``, since last reported (``known`` updated): a directory's entries
        as they are (those being written keep their last known state), and what was below a directory and is gone
        (the directory was deleted or replaced and made again, or replaced by a file, between two looks). With a
        ``sink``, entries are handed to it as they are read, a report's worth at a time; the rest is returned."""
        known, entries, present = self.known[folder], [], set()
        if obs.kind == "dir":
            for below, child, _ in self.scanner.below(folder, path, streamed=sink is not None):
                present.add(below)
                if child is not None and known.get(below) != child:
                    known[below] = child
                    entries.append((below, child))
                    if sink is not None and len(entries) >= REPORT_SIZE:
                        sink(entries)
                        entries = []
        before = known.get(path)
        if before is not None and before.kind == "dir":
            for gone in [p for p in known.paths.below(path, known.__contains__)
                         if p not in present and not self._unreadable(folder, p)]:
                del known[gone]
                self.scanner.forget(folder, gone)
                entries.append((gone, None))
        return entries

    def _unsettled(self, folder: str, path: str) -> bool:
        with contextlib.suppress(DriverError):
            stat = self.driver.stat(self.scanner.where(folder, path))
            return stat is not None and not self.driver.settled(stat, time.time_ns())
        return False

    def handle(self, events: Iterable[ChangeEvent]) -> None:
        """Turn watcher events into reports: the paths they name are looked at together (one report per folder),
        rescans and outages in their place among them."""
        touched: dict[str, set[str]] = {}
        for event in events:
            if event.stat is not None:
                self.scanner.fresh[event.path] = event.stat
            if event.kind in ("rescan", "unavailable"):
                self._report_touched(touched)
                if event.kind == "rescan":
                    self.full_scan()
                else:
                    self.set_status(Availability(False, event.dest or "unavailable"))
                continue
            for path in (event.path, event.dest) if event.kind == "moved" else (event.path,):
                if path is None:
                    continue
                where = self.scanner.locate(path)
                if where is not None:
                    touched.setdefault(where[0], set()).add(where[1])
                for folder in self.scanner.tops(path):  # a folder's own directory moved or deleted
                    touched.setdefault(folder, set()).update(self.known[folder])
        self._report_touched(touched)
        self.scanner.fresh.clear()
        self._tell_set_aside()

    def _tell_set_aside(self) -> None:
        """Tell the referee which names the driver set aside as conflict copies (it lists them as conflicts)."""
        by_folder: dict[str, list[list[str]]] = {}
        for conflict, original in self.driver.skipped.take_set_aside():
            copy, of = self.scanner.locate(conflict), self.scanner.locate(original)
            if copy is not None and of is not None and copy[0] == of[0]:
                by_folder.setdefault(copy[0], []).append([copy[1], of[1]])
        for folder, pairs in by_folder.items():
            self.send(folder, [], set_aside=pairs)
        if by_folder:
            self.outbox.flush()

    def _report_touched(self, touched: dict[str, set[str]]) -> None:
        for folder, paths in touched.items():
            self.changed(folder, paths)
        touched.clear()

    # -- what orders leave ----------------------------------------------------------------------------------------

    def reported(self, folder: str, path: str) -> Observed | None:
        """What was last reported at ``path``."""
        with self.lock:
            return self.known[folder].get(path)

    def reported_tree(self, folder: str, path: str) -> dict[str, Observed]:
        """What was last reported at ``path`` and below it."""
        with self.lock:
            known = self.known[folder]
            return {p: known[p] for p in known.at_and_below(path)}

    def carried_out(self, order: OrderRun, n: int, touched: list[str], written: Observed | None,
                    result: dict[str, Any]) -> None:
        """Action ``n`` of ``order`` is done (``result``), having ``touched`` these paths (``written``: what a copy
        wrote): record what they hold now; the order's result is sent once its last action is done."""
        folder = order.folder
        with self.lock:
            known = self.known[folder]
            if self._scanning is not None and result["ok"]:
                self._scanning.update((folder, path) for path in touched)
            # After a success, what the action left is ours and complete, settled or not. After a failure nothing
            # was changed by us: someone else may be writing there (that is often why it failed), so a file is
            # reported only once settled, as for any change (reporting it half-written would ship and agree on it).
            for path in touched if result["ok"] else ():
                obs = written or self.scanner.stat(folder, path, settled=False)
                if obs is None:
                    for below in known.at_and_below(path):
                        del known[below]
                        order.touched.append(below)
                else:
                    order.touched += [p for p, _ in self.below_locked(folder, path, obs)]
                    known[path] = obs
                order.touched.append(path)
            if not result["ok"]:
                with contextlib.suppress(DriverError):  # the watcher reports it, or the root's outage, later
                    self.changed_locked(folder, touched)
            order.results[n] = result
            order.left -= 1
            if not order.left:
                self._finish(order)
        self.outbox.flush()

    def _finish(self, order: OrderRun) -> None:
        """Queue an order's result (with the lock held): taken with it, so a plug killed before this finds the
        order again; numbered like the reports, and telling what its paths hold as last reported, so the referee,
        which applies both in order, never goes back to an older state."""
        known, seen = self.known[order.folder], set()
        entries = []
        for path in order.touched:
            if path not in seen:
                seen.add(path)
                entries.append([path, tuples.obs_to_wire(known.get(path))])
        self._seq += 1
        body = {**order.tup[3], "order": order.tup[2], "results": order.results, "entries": entries}
        self.outbox.put([("discard", (*order.tup[:3], None)),  # by id: matching the whole body costs as much as it
                         ("write", (tuples.DONE, self.service, self.id, self._seq, body), None)])

