"""A replica as the hub sees it: the driver's entries, per folder, as :class:`~onitu.sync.decide.plan.Observed`
with hashes.

A service maps each of its folders to a directory under its root (``''``: the root itself). The scanner turns
service paths into (folder, path-in-folder) and back, and hashes files once per fingerprint: the hashes are kept in
a cache beside the service's state (:mod:`onitu.sync.plug.hash_cache`), so a restarted plug does not re-read every
file to list its replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from onitu.drain import drained
from onitu.sync.decide.plan import Observed
from onitu.sync.drivers.contract import Driver, DriverError, NotFound, RootUnavailable, Stat, is_under
from onitu.sync.plug.hash_cache import HashCache

log = logging.getLogger(__name__)


class Scanner:
    """Observations of one replica, with a persistent sha256 cache keyed by the driver's fingerprints."""

    def __init__(self, driver: Driver, folders: Mapping[str, str], cache_file: Path | None = None,
                 writes: bool = True) -> None:
        """``folders`` maps each folder this service holds to its directory under the root; ``writes=False``: the
        hash cache is read, never written (a preview beside a running plug)."""
        self.driver = driver
        # deepest directories first, so a folder nested in another's directory claims its own paths
        self.folders = dict(sorted(folders.items(), key=lambda item: -len(item[1])))
        self.hashes = HashCache(cache_file, driver.service, writes)  # service path -> (fingerprint, sha256)
        self.beat: Callable[[], None] = lambda: None  # called per entry listed: long scans are not hangs
        # entries a polling watcher just listed, by service path: looked at once without asking the driver again
        self.fresh: dict[str, Stat] = {}

    def save(self) -> None:
        """Write the hash cache's snapshot, if it changed."""
        self.hashes.save()

    def locate(self, path: str) -> tuple[str, str] | None:
        """(folder, path in the folder) of a service path, or None when no folder holds it (or it is a top)."""
        for folder, top in self.folders.items():
            if is_under(path, top) and path != top:
                return folder, path[len(top) + 1:] if top else path
        return None

    def tops(self, path: str) -> list[str]:
        """The folders whose directory is ``path`` or below it (a move or deletion of ``path`` covers them)."""
        return [folder for folder, top in self.folders.items() if is_under(top, path)]

    def where(self, folder: str, path: str) -> str:
        """The service path of ``path`` in ``folder``."""
        top = self.folders[folder]
        return f"{top}/{path}" if top and path else top or path

    def observe(self, stat: Stat) -> Observed | None:
        """What ``stat`` stands for, hashing the file if its fingerprint is new (None if it changed meanwhile)."""
        if stat.is_dir:
            return Observed("dir", None, 0, stat.mtime_ns, stat.fingerprint)
        sha = stat.sha256
        cached = self.hashes.get(stat.path)
        if sha is None and cached is not None and cached[0] == stat.fingerprint:
            sha = cached[1]
        if sha is None:
            try:
                sha = self.driver.checksum(stat.path)
                again = self.driver.stat(stat.path)
            except NotFound:
                return None
            except RootUnavailable:
                raise
            except DriverError as exc:  # one file it may not read must not stop the listing of the rest
                self.driver.skipped.add(stat.path, f"cannot be read ({exc.problem}); kept as last synced until it "
                                                   f"can be", unreadable=True)
                return None
            if again is None or again.fingerprint != stat.fingerprint:
                return None  # written while we read it: the watcher reports it again once settled
        self.hashes.put(stat.path, stat.fingerprint, sha)
        return Observed("file", sha, stat.size, stat.mtime_ns, stat.fingerprint)

    def remember(self, stat: Stat, sha256: str) -> None:
        """The hash of a file just written and verified, so that it is not read again to be observed."""
        if not stat.is_dir:
            self.hashes.put(stat.path, stat.fingerprint, sha256)

    def stat(self, folder: str, path: str, *, settled: bool = True) -> Observed | None:
        """The observation of one path now (None: nothing there, or, with ``settled``, still being written)."""
        where = self.where(folder, path)
        stat = self.fresh.pop(where, None)
        try:
            stat = stat or self.driver.stat(where)
        except NotFound:
            return None
        if stat is None or (settled and not self.driver.settled(stat, time.time_ns())):
            return None
        return self.observe(stat)

    def below(self, folder: str, path: str = "", *, streamed: bool = False
              ) -> Iterator[tuple[str, Observed | None, bool]]:
        """(path in folder, observation, settled) of everything below ``path`` in ``folder``.

        By default the driver's whole listing is taken before any entry is looked at, so a root lost midway raises
        before anything is handed out. ``streamed``: each entry is looked at as the driver lists it, a million
        entries never held at once, for a caller that a root lost midway leaves right: one whose listing tells
        deletions only at its end, or one reporting what it finds (what it had not sent yet goes with the full
        listing that follows the root's return)."""
        now = time.time_ns()
        top = self.where(folder, path)
        try:
            listed = self.driver.list(top)
            stats = listed if streamed else drained(self._whole(listed))
            for stat in stats:
                self.beat()  # walking a million entries outlasts the heartbeat's patience
                where = self.locate(stat.path)
                if where is None or where[0] != folder:
                    continue  # another folder nested here
                if not self.driver.settled(stat, time.time_ns() if streamed else now):  # as of when it was listed
                    yield where[1], None, False
                    continue
                try:
                    obs = self.observe(stat)
                except NotFound:
                    continue
                yield where[1], obs, obs is not None
        except NotFound:
            return

    def _whole(self, listed: Iterable[Stat]) -> list[Stat]:
        whole = []
        for stat in listed:
            self.beat()
            whole.append(stat)
        return whole

    def forget(self, folder: str, path: str) -> None:
        """Drop the cached hash of a path that is gone."""
        self.hashes.drop(self.where(folder, path))
