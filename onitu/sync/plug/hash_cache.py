"""A plug's sha256 of each file, keyed by the driver's fingerprint, kept on disk so a restarted plug does not read
every file of its replica again.

Two files: the snapshot (``NAME``), one msgpack map ``{path: [fingerprint, sha256]}`` written whole by
:meth:`HashCache.save` (through a temporary name), and the journal (``NAME.new``), the changes since, appended a
thousand at a time as msgpack arrays ``[path, fingerprint, sha256]`` (``[path, None, None]``: forgotten). A plug
killed while it hashes a million files for its first listing (forty minutes here) used to lose every hash since its
last snapshot, written only once a listing was complete: it started again from the first file, and a plug killed
again before the end never got anywhere. Now it loses at most the last thousand. Neither file is flushed to the
disk: it is a cache, and a torn end of the journal (a crash mid-append) is where reading it stops.

In memory an entry is one bytes object, the raw hash then the fingerprint (about 100 bytes): as a tuple of two
strings, the hash in hex, it took about 260. And most entries are not held here at all: what the plug last reported
(:class:`Beside`, its :class:`~onitu.sync.plug.known.Known` tables) holds the same hash and fingerprint for nearly
every file, so an entry that says the same is let go (:meth:`HashCache.flush`, :meth:`HashCache.save`) and read
there. Held twice, they were 130 bytes per file and plug, 7% of a whole hub's memory. Both files are read and
written an entry at a time: msgpack's C code holds the GIL for a whole call, and a million
entries in one call keep the plug's heartbeat thread from answering for longer than the watchdog waits on a busy
machine.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import msgpack

from onitu import gcpolicy
from onitu.sync.state.observations import pack_hashed, unpack_hashed

log = logging.getLogger(__name__)

Entry = tuple[str, str]  # (fingerprint, sha256)
Row = bytes | Entry  # as held: packed (see _pack), or as given when the hash is not 64 hex digits
JOURNAL_EVERY = 1000  # changes gathered before they are appended to the journal
_WRITE_EVERY = 1 << 20  # bytes packed before they are written


class Beside(Protocol):
    """Where most of the hashes are already held: what the plug last reported, by service path."""

    def hashed(self, path: str) -> bytes | None:
        """The hash and fingerprint held for ``path``, as
        :func:`~onitu.sync.state.observations.pack_hashed` gives them."""

    def hashed_rows(self) -> Iterator[tuple[str, bytes]]:
        """(path, :meth:`hashed`) of every file held; nothing changes them meanwhile."""


class HashCache:
    """``path -> (fingerprint, sha256)``, on disk as a snapshot and a journal (see the module's docstring).
    ``file=None``: in memory only; ``writes=False``: read, never written (a preview beside a running plug)."""

    def __init__(self, file: Path | None, label: str, writes: bool = True) -> None:
        self.file, self.label, self.writes = file, label, writes and file is not None
        self.journal = None if file is None else file.with_name(file.name + ".new")
        self.entries: dict[str, Row] = {}
        self._pending: list[tuple[str, str | None, str | None]] = []
        self._lock = threading.Lock()  # the journal file: copying threads remember hashes too
        self._dirty = False  # changed since the snapshot
        self.beside: Beside | None = None  # set by the plug: see the module's docstring
        self._settling: list[str] = []  # paths put before the last flush: let go at the next if beside says the same
        if file is not None and self.journal is not None:
            self._load(file, self.journal)

    def get(self, path: str) -> Entry | None:
        row = self.entries.get(path)
        if row is None and self.beside is not None:
            row = self.beside.hashed(path)
        return None if row is None else _unpack(row)

    def put(self, path: str, fingerprint: str, sha256: str) -> None:
        """Record a file's hash (journaled if it is new)."""
        row = _pack(fingerprint, sha256)
        held = self.entries.get(path)
        if held == row or (held is None and self.beside is not None and self.beside.hashed(path) == row):
            return
        self.entries[path] = row
        self._changed(path, fingerprint, sha256)

    def as_dict(self) -> dict[str, Entry]:
        """Every entry, ``{path: (fingerprint, sha256)}``, with those read beside."""
        rows = dict(self.beside.hashed_rows()) if self.beside is not None else {}
        rows.update(self.entries)
        return {path: _unpack(row) for path, row in rows.items()}

    def drop(self, path: str) -> None:
        """Forget a path that is gone."""
        held = self.entries.pop(path, None)
        if held is not None or (self.beside is not None and self.beside.hashed(path) is not None):
            self._changed(path, None, None)

    def _changed(self, path: str, fingerprint: str | None, sha256: str | None) -> None:
        self._dirty = True
        self._pending.append((path, fingerprint, sha256))
        if len(self._pending) >= JOURNAL_EVERY:
            self.flush()

    def flush(self) -> None:
        """Append the changes gathered so far to the journal, and let go of the entries put before the last flush
        that the plug now holds beside (a file hashed or written is reported soon after: by now it has been)."""
        with self._lock:
            pending, self._pending = self._pending, []
            if self._settling:
                self._let_go(self._settling)
            self._settling = [path for path, fingerprint, _ in pending if fingerprint is not None]
            journal = self.journal
            if not pending or not self.writes or journal is None:
                return
            packer = msgpack.Packer()
            with contextlib.suppress(OSError), journal.open("ab") as file:
                file.write(b"".join(packer.pack(change) for change in pending))

    def _let_go(self, paths: list[str]) -> int:
        """Drop the entries at ``paths`` that beside holds the same; how many. Another thread's put of a newer hash
        for one of them, between the look and the drop, loses that hash from memory only: beside's is still a true
        hash of the file's older fingerprint, so the worst is one more read of the file."""
        beside, entries, dropped = self.beside, self.entries, 0
        if beside is None:
            return 0
        for path in paths:
            row = entries.get(path)
            if row is not None and beside.hashed(path) == row:
                del entries[path]
                dropped += 1
        return dropped

    def save(self) -> None:
        """Let go of every entry beside holds the same, then write the snapshot (through a temporary name) and
        empty the journal, if anything changed. The caller keeps beside from changing meanwhile."""
        with self._lock:
            if self._let_go(list(self.entries)):
                self.entries = dict(self.entries)  # a dict does not shrink as entries go: a copy is its size
        if not self._dirty:
            self.flush()
            return
        file, journal = self.file, self.journal
        if not self.writes or file is None or journal is None:
            return
        temp = file.with_name(file.name + ".tmp")
        with self._lock, contextlib.suppress(OSError):
            self._pending.clear()  # in the snapshot
            entries = dict(self.entries)  # a copy: copying threads add to it meanwhile
            rows = self.beside.hashed_rows if self.beside is not None else lambda: iter(())
            count = len(entries) + sum(1 for path, _ in rows() if path not in entries)
            with temp.open("wb") as out:
                _write_entries(out, count, itertools.chain(
                    entries.items(), ((path, row) for path, row in rows() if path not in entries)))
            os.replace(temp, file)
            # a crash before this truncation reads the journal again over the snapshot: the same changes, in order
            journal.open("wb").close()
            self._dirty = False

    def _load(self, file: Path, journal: Path) -> None:
        with gcpolicy.loading():  # a million entries (see onitu.gcpolicy.loading)
            self._read(file, journal)

    def _read(self, file: Path, journal: Path) -> None:
        if file.exists():
            try:
                with file.open("rb") as snapshot:
                    self.entries = {path: _pack(*entry) for path, entry in _read_entries(snapshot)}
            except (ValueError, TypeError, OSError, msgpack.UnpackException) as exc:
                log.warning("%s: ignoring the hash cache %s: %s", self.label, file, exc)
                self.entries = {}
        if journal.exists():
            replayed = self._replay(journal)
            self._dirty = replayed > 0  # the next save folds them into the snapshot

    def _replay(self, journal: Path) -> int:
        """Apply the journal's changes, up to its end or its first torn or foreign entry; how many."""
        count = 0
        try:
            with journal.open("rb") as file:
                for change in msgpack.Unpacker(file, raw=False):
                    if not (isinstance(change, list) and len(change) == 3 and isinstance(change[0], str)):
                        raise ValueError(f"entry {count + 1} is not [path, fingerprint, sha256]")
                    path, fingerprint, sha256 = change
                    if fingerprint is None:
                        self.entries.pop(path, None)
                    else:
                        self.entries[path] = _pack(fingerprint, sha256)
                    count += 1
        except (ValueError, TypeError, OSError, msgpack.UnpackException) as exc:
            log.warning("%s: the hash cache's journal %s is read up to entry %d only: %s", self.label, journal, count,
                        exc)
        return count


def _pack(fingerprint: str, sha256: str) -> Row:
    """An entry as held (see :func:`onitu.sync.state.observations.pack_hashed`), or as given if that cannot hold it."""
    hashed = pack_hashed(sha256, fingerprint)
    return (fingerprint, sha256) if hashed is None else hashed


def _unpack(row: Row) -> Entry:
    if type(row) is bytes:
        sha256, fingerprint = unpack_hashed(row)
        return fingerprint, sha256
    return row  # type: ignore[return-value]


def _read_entries(file: BinaryIO) -> Iterator[tuple[str, Entry]]:
    """The snapshot's (path, (fingerprint, sha256)) entries, one by one (raises on a file that is not such a map)."""
    unpacker = msgpack.Unpacker(file, raw=False)
    for _ in range(unpacker.read_map_header()):
        path, (fingerprint, sha) = unpacker.unpack(), unpacker.unpack()
        if isinstance(path, str):
            yield path, (fingerprint, sha)


def _write_entries(file: BinaryIO, count: int, entries: Iterable[tuple[str, Row]]) -> None:
    packer = msgpack.Packer(autoreset=False)
    packer.pack_map_header(count)
    for path, row in entries:
        packer.pack(path)
        packer.pack(_unpack(row))
        if packer.getbuffer().nbytes >= _WRITE_EVERY:
            file.write(packer.bytes())
            packer.reset()
    file.write(packer.bytes())
