"""Change detection for the local driver: watchdog's inotify emitter, settling, rescans and root outages.

Raw events go through a *pending* table: a path is reported once its fingerprint has stayed the same for the
driver's settle time (so a file being written is reported once, complete), and a deletion only if the root is
still available then (so a root being removed or unmounted is reported as unavailable, not as files deleted).
Moves are reported at once, as they do not change content.

watchdog recovers its own watches after the kernel's event queue overflows but only *logs* the overflow; a logging
handler on its logger turns that record into a rescan, and the periodic rescan covers anything else missed.

Events go from watchdog's emitter thread straight to the watcher's queue (no observer thread dispatching them in
between), and watchdog's reader of the kernel's queue lets them gather for a moment in a burst: each event
handed alone from thread to thread wakes the next one and costs GIL switches, which, for a plug writing a thousand
small files a second (three events each), cost more than the writes.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
import unicodedata
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import ObservedWatch
from watchdog.observers.inotify import InotifyEmitter
from watchdog.observers.inotify_buffer import InotifyBuffer
from watchdog.observers.inotify_c import InotifyEvent

from onitu.sync.drivers.contract import (
    Callback,
    ChangeEvent,
    DriverError,
    RootUnavailable,
    deliver,
    is_under,
    safe_path,
)
from onitu.sync.drivers.local_names import untangle_parent

if TYPE_CHECKING:
    from onitu.sync.drivers.local import LocalDriver

log = logging.getLogger(__name__)

# What can change an entry. Left out, so the kernel does not even queue them: opens and reads (every chunk the plug
# serves, every hash) and a directory's own "modified" (any change inside it, reported for the entry itself).
EVENTS = [FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, DirMovedEvent,
          FileDeletedEvent, DirDeletedEvent]

_UNNAMED = re.compile(rb"#\d+")
UNNAMED_KEPT = 10_000  # "#<inode>" names remembered as no file (forgotten all at once past this many)
READABLE_LOOK = 1.0  # seconds between looks at the entries skipped as unreadable
GATHER = 0.01  # seconds events are let gather in the kernel's queue after a read of a burst (one wake-up for many)
BURST, BURST_WINDOW = 8, 0.1  # events read within that many seconds that make a burst (a file saved makes ~3)

_watchers: weakref.WeakSet[LocalWatcher] = weakref.WeakSet()


def _has_twin(absolute: str) -> bool:
    """Whether the composed or decomposed form of this name is another entry beside it (two stats, no listing:
    a directory of non-ASCII names being filled is not listed at every event)."""
    directory, base = os.path.split(absolute)
    for form in ("NFC", "NFD"):
        twin = unicodedata.normalize(form, base)
        if twin != base and os.path.lexists(os.path.join(directory, twin)):
            return True
    return False


def _shadowing(absolute: str) -> bool:
    """Whether this name is not NFC and its NFC form is another entry: the hub's path for it is that entry's."""
    directory, base = os.path.split(absolute)
    nfc = unicodedata.normalize("NFC", base)
    return nfc != base and os.path.lexists(os.path.join(directory, nfc))


class _OverflowListener(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            for watcher in list(_watchers):
                watcher.overflowed.set()


_OVERFLOW_LISTENER = _OverflowListener(logging.WARNING)
logging.getLogger("watchdog.observers.inotify_c").addHandler(_OVERFLOW_LISTENER)


class _GatheringBuffer(InotifyBuffer):
    """watchdog's reader of the inotify queue, letting events gather in the kernel's queue for a moment after each
    read during a burst: one read (and one wake-up of the thread) for many, not one for each event as it comes. A
    change alone (a few events) is not held back: its last event sets when it is reported."""

    _since, _count = 0.0, 0  # when the current window of BURST_WINDOW began, and the events read in it

    def __init__(self, path: bytes, *, recursive: bool = False, event_mask: int | None = None) -> None:
        # "#<inode>" names found to be no file: only files being written with no name yet (O_TMPFILE) go by them.
        # Set before the reader thread starts (in super().__init__); only that thread uses it.
        self._unnamed: set[bytes] = set()
        super().__init__(path, recursive=recursive, event_mask=event_mask)

    def _group_events(self, event_list: list) -> list:
        now = time.monotonic()
        if now - self._since > BURST_WINDOW:
            self._since, self._count = now, 0
        self._count += len(event_list)
        if self._count >= BURST:
            time.sleep(GATHER)
        for event in event_list:
            if event.is_moved_to and event.is_directory:
                self._watch_moved_in(event.src_path)
        return super()._group_events([event for event in event_list if not self._unnamed_write(event)])

    def _watch_moved_in(self, path: bytes) -> None:
        """Watch a directory moved in from outside the tree, and every directory in it. watchdog watches one
        created in the tree, or moved within it, but not one that comes from elsewhere (it simulates the creation
        of what it holds, once): every later change inside it, at any depth, went unseen until the next full scan.
        Added here, before the emitter walks the directory for those creations: what changes after a watch is
        added is an event, what changed before is in the walk."""
        inotify = self._inotify
        try:
            with inotify._lock:
                if path not in inotify._wd_for_path:
                    inotify._add_dir_watch(path, inotify.event_mask, recursive=True)
        except OSError as exc:  # gone meanwhile (its deletion is an event of its own), or the watch limit is reached
            if os.path.isdir(path):
                log.warning("cannot watch %s, moved into the root: %s; rescanning", os.fsdecode(path), exc)
                for watcher in list(_watchers):
                    watcher.overflowed.set()

    def _unnamed_write(self, event: InotifyEvent) -> bool:
        """Whether ``event`` is a write to, or the close of, a file with no name yet (O_TMPFILE: the kernel calls it
        "#<inode>"): dropped here, two events per staged file that watchdog and the watcher need not see. A name is
        looked up once (a real file may be called so), then known as no file until its close (its last event: the
        name was held once per file staged, 140 bytes each, for good), or until a file of that name is created or
        moved in, or a directory is moved in (with files of its own and no event for them)."""
        if event.is_create or event.is_moved_to:
            if event.is_directory and event.is_moved_to:
                self._unnamed.clear()
            else:
                self._unnamed.discard(event.src_path)
            return False
        if not (event.is_modify or event.is_close_write) or not _UNNAMED.fullmatch(event.name):
            return False
        if event.src_path in self._unnamed:
            if event.is_close_write:
                self._unnamed.discard(event.src_path)
            return True
        if os.path.lexists(event.src_path):
            return False
        if not event.is_close_write:
            if len(self._unnamed) >= UNNAMED_KEPT:
                self._unnamed.clear()
            self._unnamed.add(event.src_path)
        return True


class _Emitter(InotifyEmitter):
    """watchdog's emitter, reading through a :class:`_GatheringBuffer`."""

    def on_thread_start(self) -> None:
        self._inotify = _GatheringBuffer(os.fsencode(self.watch.path), recursive=self.watch.is_recursive,
                                         event_mask=self.get_event_mask_from_filter())


@dataclass(slots=True)
class _Pending:
    created: bool  # the first event was a creation: report "created", not "modified"
    is_dir: bool
    deadline: float
    fingerprint: str | None


class LocalWatcher:
    """A thread turning inotify events on one root into settled :class:`ChangeEvent` s."""

    def __init__(self, driver: LocalDriver, callback: Callback, scan_interval: float) -> None:
        self.driver, self.callback, self.scan_interval = driver, callback, scan_interval
        self.overflowed = threading.Event()
        self._raw: queue.SimpleQueue[tuple[FileSystemEvent, ObservedWatch]] = queue.SimpleQueue()  # from the emitter
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._observer: _Emitter | None = None
        self._tick = max(0.02, min(0.2, driver.settle / 4))
        self._thread = threading.Thread(target=self._run, name=f"onitu-watch-{driver.service}", daemon=True)

    def start(self) -> None:
        """Begin watching (the first event delivered is ``rescan``, or ``unavailable``)."""
        _watchers.add(self)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and the observer."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._stop_observer()
        _watchers.discard(self)

    # -- the loop -------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        was_available, next_scan, next_look = False, 0.0, 0.0
        reported_down: str | None = None  # the reason last reported, while unavailable
        while not self._stop.is_set():
            status = self.driver.available()
            if not status:
                if reported_down != status.reason:  # told again when the reason changes (an empty root is back)
                    self._stop_observer()
                    self._pending.clear()
                    self._emit(ChangeEvent("unavailable", dest=status.reason))
                    reported_down = status.reason
                was_available = False
                self._stop.wait(self._tick)
                self._drop_raw()
                continue
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + READABLE_LOOK
                # no event says that an entry became readable (inotify cannot watch inside a directory it may not
                # read, and a change of mode is not a change): look, and list and watch again when one did
                if self.driver.readable_again():
                    self._stop_observer()
                    next_scan = 0.0
            if not was_available or self.overflowed.is_set() or time.monotonic() >= next_scan:
                self.overflowed.clear()
                if self._observer is None:
                    self._start_observer()
                self._rescan()
                was_available, reported_down = True, None
                next_scan = time.monotonic() + self.scan_interval
            self._drain()
            self._flush()

    def _start_observer(self) -> None:
        watch = ObservedWatch(self.driver.root, recursive=True, event_filter=EVENTS)
        observer = _Emitter(self._raw, watch, event_filter=EVENTS)  # type: ignore[arg-type]
        observer.start()
        self._observer = observer

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer is not threading.current_thread():
                observer.join()

    def _drop_raw(self) -> None:
        while not self._raw.empty():
            self._raw.get_nowait()

    def _emit(self, event: ChangeEvent) -> None:
        deliver(self.callback, event, self.driver.service)

    def _rescan(self) -> None:
        """Put files still being written into the pending table, then tell the consumer to list."""
        now_ns, now = time.time_ns(), time.monotonic()
        try:
            for stat in self.driver.list():
                if not self.driver.settled(stat, now_ns):
                    self._pending.setdefault(stat.path, _Pending(False, False, now + self.driver.settle,
                                                                 stat.fingerprint))
        except RootUnavailable:
            return  # the next turn reports it
        self._emit(ChangeEvent("rescan"))

    # -- raw events -----------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        try:
            event, _ = self._raw.get(timeout=self._tick)
        except queue.Empty:
            return
        while True:
            self._on_raw(event)
            try:
                event, _ = self._raw.get_nowait()
            except queue.Empty:
                return

    def _relative(self, absolute: bytes | str) -> str | None:
        """The hub's name for an absolute path, or None for the root itself, internal and unsyncable names."""
        absolute = os.fsdecode(absolute)
        root = self.driver.root
        if not absolute.startswith(root + os.sep):
            return None
        rel = absolute[len(root) + 1:].replace(os.sep, "/")
        if not rel.isascii() and _has_twin(absolute):
            untangle_parent(self.driver.service, root, rel, self.driver.skipped)
        try:
            return safe_path(unicodedata.normalize("NFC", rel))
        except ValueError:
            return None  # internal (.onitu-*) or a name the listing skips as well

    def _on_raw(self, event: FileSystemEvent) -> None:
        if event.is_synthetic:
            # what a directory moved (or moved in) holds, walked by watchdog: covered by that directory's own event,
            # whose consumer lists it (a million files moved in were stat'ed three times each and queued as a million
            # pending changes, only to find them listed already)
            return
        kind, is_dir = event.event_type, event.is_directory
        src = self._relative(event.src_path)
        if kind == "moved":
            dst = self._relative(event.dest_path)
            if src is not None and _shadowing(os.fsdecode(event.src_path)):
                # a twin set aside (or moved away) from under the name the hub knows: that name's entry stays
                self._touch(src, is_dir)
                if dst is not None:
                    self._touch(dst, is_dir, created=True)
            else:
                self._on_move(src, dst, is_dir)
        elif src is None or kind in ("opened", "closed_no_write") or (is_dir and kind in ("modified", "attrib")):
            return
        else:
            self._touch(src, is_dir, created=kind == "created", deleted=kind == "deleted")

    def _on_move(self, src: str | None, dst: str | None, is_dir: bool) -> None:
        if src is None and dst is not None:  # e.g. a staged write renamed into place
            self._touch(dst, is_dir, created=True)
        elif dst is None and src is not None:
            self._touch(src, is_dir, deleted=True)
        elif src is not None and dst is not None:
            unreported = self._pending.get(src)
            for path in [p for p in self._pending if is_under(p, src)]:
                self._pending[dst + path[len(src):]] = self._pending.pop(path)
            if unreported is not None and unreported.created:
                # dst is simply new, and is pending as such. The consumer may still know src from elsewhere (the
                # plug wrote it itself, a copy renamed into place): tell it src is gone.
                self._emit(ChangeEvent("deleted", src, is_dir=is_dir))
                return
            self._emit(ChangeEvent("moved", src, dst, is_dir))

    def _touch(self, path: str, is_dir: bool, *, created: bool = False, deleted: bool = False) -> None:
        entry = self._pending.get(path)
        if entry is None and not deleted and self.driver.own_writes.seen_here(path):
            return  # the driver's own write, seen whole: the plug that ordered it knows it already
        fingerprint = None
        if not deleted:
            try:
                stat = self.driver.stat(path)
            except DriverError:
                stat = None
            fingerprint = stat.fingerprint if stat else None
        if entry is None and fingerprint is not None and self.driver.wrote(path, fingerprint):
            return  # the driver's own write, seen whole: the plug that ordered it knows it already
        deadline = time.monotonic() + self.driver.settle
        if entry is None:
            self._pending[path] = _Pending(created, is_dir, deadline, fingerprint)
        else:
            entry.deadline, entry.fingerprint, entry.is_dir = deadline, fingerprint, is_dir

    def _flush(self) -> None:
        now = time.monotonic()
        due = [(path, entry) for path, entry in self._pending.items() if entry.deadline <= now]
        if not due:
            return
        for path, entry in due:
            try:
                stat = self.driver.stat(path)
            except RootUnavailable:
                return  # deletions of a vanishing root are never reported; the next turn reports the outage
            except DriverError as exc:
                log.warning("%s: dropping a change: %s", self.driver.service, exc)
                del self._pending[path]
                continue
            if stat is None:
                if not self.driver.available():
                    return
                self._emit(ChangeEvent("deleted", path, is_dir=entry.is_dir))
            elif stat.fingerprint == entry.fingerprint:
                self._emit(ChangeEvent("created" if entry.created else "modified", path, is_dir=stat.is_dir))
            else:  # still changing: wait another settle period
                entry.fingerprint, entry.deadline = stat.fingerprint, now + self.driver.settle
                continue
            del self._pending[path]
