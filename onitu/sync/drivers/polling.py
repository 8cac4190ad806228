"""The generic polling watcher, for backends that cannot push changes (object stores, SFTP, FTP, WebDAV).

Every ``interval`` seconds it lists the replica and compares each entry's cheap fingerprint (S3 ETag, SFTP size and
mtime, FTP MLSD ``modify``/``unique``, WebDAV etag) with the previous listing, and reports only what changed. An entry
still changing (not :meth:`~onitu.sync.drivers.contract.Driver.settled`) is reported at a later poll, once it
settled. A listing that fails because the root is unreachable or lost its marker is reported as ``unavailable``,
never as deletions, and so is an outage the driver finds in any other operation (:meth:`PollWatcher.lost`: an order
failing while the server is gone must not wait for the next listing to show it); the first good listing after that
is a ``rescan``. A move shows up as a deletion and a creation.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from onitu.sync.drivers.contract import Callback, ChangeEvent, DriverError, RootUnavailable, Stat, deliver

if TYPE_CHECKING:
    from onitu.sync.drivers.contract import Driver

log = logging.getLogger(__name__)


class PollWatcher:
    """A thread listing one driver's root every ``interval`` seconds and reporting the differences."""

    def __init__(self, driver: Driver, callback: Callback, interval: float, scan_interval: float) -> None:
        self.driver, self.callback = driver, callback
        self.interval, self.scan_interval = interval, scan_interval
        self._stop = threading.Event()
        self._guard = threading.Lock()  # over _lost: the root is known lost (``unavailable`` told, ``rescan`` due)
        self._lost = False
        self._last: dict[str, Stat] | None = None  # what was last reported (None: nothing yet, or the root was lost)
        self._previous: dict[str, Stat] = {}  # the previous listing, as it was
        self._thread = threading.Thread(target=self._run, name=f"onitu-poll-{driver.service}", daemon=True)

    def start(self) -> None:
        """Begin polling (the first event delivered is ``rescan``, or ``unavailable``)."""
        self._thread.start()

    def close(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _emit(self, event: ChangeEvent) -> None:
        deliver(self.callback, event, self.driver.service)

    def lost(self, reason: str) -> None:
        """The root was found unavailable (by any thread): report it once; the next good listing is a rescan."""
        with self._guard:
            if self._lost:
                return
            self._lost = True
        self._emit(ChangeEvent("unavailable", dest=reason))

    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            try:
                listing = {stat.path: stat for stat in self.driver.list()}
            except RootUnavailable as exc:
                self.lost(exc.problem)
                self._stop.wait(self.interval)
                continue
            except DriverError as exc:  # a path refused or a transient failure: try again next time
                log.warning("%s: polling failed: %s", self.driver.service, exc)
                self._stop.wait(self.interval)
                continue
            with self._guard:
                back, self._lost = self._lost, False
            if back or self._last is None or time.monotonic() >= next_scan:
                self._previous = listing  # what is old enough by its mtime is taken as it is: the consumer lists
                self._last = self._settled_part(listing, {})
                self._emit(ChangeEvent("rescan"))
                next_scan = time.monotonic() + self.scan_interval
            else:
                self._compare(listing)
            self._stop.wait(self.interval)

    def _settled_part(self, listing: dict[str, Stat], last: dict[str, Stat]) -> dict[str, Stat]:
        """The listing as it may be remembered: an entry still being written keeps its last remembered state (or is
        left out), so a later poll sees it change again and reports it once settled.

        Settled means old enough by its mtime and, where files are not written atomically (``settle`` > 0), with
        the fingerprint the previous poll saw: mtimes of a second's precision make a file just written look old.
        """
        now, previous = time.time_ns(), self._previous
        kept = {}
        for path, stat in listing.items():
            stable = not self.driver.settle or stat.is_dir or (
                path in previous and previous[path].fingerprint == stat.fingerprint)
            if stable and self.driver.settled(stat, now):
                kept[path] = stat
            elif path in last:
                kept[path] = last[path]
        self._previous = listing
        return kept

    def _compare(self, listing: dict[str, Stat]) -> None:
        last = self._last or {}
        now = self._settled_part(listing, last)
        for path in sorted(last.keys() - listing.keys()):
            self._emit(ChangeEvent("deleted", path, is_dir=last[path].is_dir))
        for path, stat in sorted(now.items()):
            before = last.get(path)
            if before is not None and (before.fingerprint, before.is_dir) == (stat.fingerprint, stat.is_dir):
                continue
            if not self.driver.wrote(path, stat.fingerprint):  # not our own write, which its caller knows
                self._emit(ChangeEvent("modified" if before else "created", path, is_dir=stat.is_dir, stat=stat))
        self._last = now

