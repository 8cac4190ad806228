"""The space on disk: SQLite in WAL mode, one transaction per group of requests.

A tuple is a row (entry id, msgpack body, lease deadline, owning session). Alongside: sessions with their TTL,
the replies to mutating requests that a client has not yet acknowledged (so a retried take returns the same
tuple after a crash), and counters. The server commits every change it made in one event-loop turn before any
reply of that turn leaves, so an acknowledged mutation is on disk; a tuple written and taken within one turn
never touches the disk at all.

``sync="normal"`` (the default) survives the death of the process (kill -9): SQLite's WAL is in the OS page
cache before the reply. ``sync="full"`` also survives power loss, at the price of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from onitu import heap
from onitu.space.errors import SpaceError
from onitu.space.protocol import packb
from onitu.space.store import Store

log = logging.getLogger("onitu.space.durable")

# The WAL's bound in bytes (see Durable._checkpoint): a few seconds of a heavy load, so that a restarted server reads
# little back and the checkpoints copy it in small steps.
WAL_LIMIT = 32 << 20
CHECKPOINT_EVERY = 0.5  # seconds between checkpoint steps (each fsyncs the WAL and the database)
CHASE_EVERY = 0.1  # the same, while the WAL is past its bound and the last step left too much to copy
RESTART_GAP = 512  # frames left to copy under which the checkpointer holds the writer to start the WAL over
COMMIT_WAIT = 60.0  # seconds a commit waits for the checkpointer's lock before the server gives up (exit 70)
RESTART_WAIT = 1.0  # seconds the checkpointer waits for a snapshot's transaction to end before trying again
# SQLite's page cache (KiB) for the server's writes: a group's rows (a few hundred KiB for a hub's batch of 500
# files) and the paths down the table's tree. Its default, 2 MiB, held 14 bytes per file of a 100,000-file hub,
# and found little again: a tuple's row is written once and deleted once, long after.
CACHE_KIB = 1024
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tuples (id INTEGER PRIMARY KEY, body BLOB NOT NULL, deadline REAL, owner BLOB);
CREATE TABLE IF NOT EXISTS sessions (sid BLOB PRIMARY KEY, ttl REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replies (sid BLOB, seq INTEGER, body BLOB NOT NULL, PRIMARY KEY (sid, seq)) WITHOUT ROWID;
"""


_SET_STREAM = "INSERT OR REPLACE INTO meta VALUES ('stream_boot', ?), ('stream_lsn', ?)"
_SET_COUNTERS = "INSERT OR REPLACE INTO meta VALUES ('next_id', ?), ('event_id', ?)"
_SET_REPLICA = f"{_SET_COUNTERS}, ('stream_boot', ?), ('stream_lsn', ?)"
_SET_LSN = "INSERT OR REPLACE INTO meta VALUES ('stream_lsn', ?)"


class StorageError(SpaceError):
    """The data directory cannot be used (corrupt database, newer schema, unwritable)."""

    code = "storage"


class Durable:
    """The SQLite file behind one space server."""

    def __init__(self, path: Path, sync: str = "normal", wal_limit: int = WAL_LIMIT) -> None:
        if sync not in ("normal", "full"):
            raise StorageError(f"sync must be 'normal' or 'full', not {sync!r}")
        self.path = path
        self.wal_limit = wal_limit
        self.on_disk: float | None = None  # when the write under way began (see _writing), None between writes
        try:
            # A commit may wait for the checkpointer's last step (see _checkpoint): never long, but never fail for it.
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=COMMIT_WAIT)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={sync.upper()}")
            self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            # Checkpoints (WAL -> database file) run in a thread of their own, off the commit path (see _checkpoint).
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            # A WAL that outgrew the bound once (a restart, a burst) is cut back when it starts over.
            self.db.execute(f"PRAGMA journal_size_limit={2 * wal_limit}")
            self.db.executescript(SCHEMA)
            version = self.meta("schema", SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: not a usable space database: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise StorageError(f"{path}: schema version {version} is not supported (expected {SCHEMA_VERSION})")
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        # (primary boot, generations of its counters) as a replica last committed them: see commit
        self._replica_head: tuple[str, int, int] | None = None
        self._stop = threading.Event()
        self.commits = 0  # for the checkpointer to see a burst end (see _checkpoint)
        # Held by each commit and by the checkpointer's last step: that step then comes between two commits at once,
        # where SQLite's busy handler, polling, could miss every gap between a busy server's commits.
        self._turns = threading.Lock()
        self._checkpointer = threading.Thread(target=self._checkpoint, name="onitu-space-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database in small steps, and have the WAL start over once it passes the bound.

        A passive checkpoint never blocks the writer, but under a sustained load it never catches up either (the
        server commits while it copies), and SQLite starts the WAL over only after a checkpoint that copied every
        frame: at 300,000 files the WAL reached 300 MB (each restart of the server read it all back), and a 60 s
        load in bench/space_disk_stall.py grows it to 1.7 GB. So passive steps copy the bulk, fsyncs included,
        while the server goes on (every half second, back to back while the WAL is past ``wal_limit``); once it is
        past the bound and only the frames of the last step's few commits remain, a RESTART checkpoint holds the
        writer for those alone, and the server's next commit writes the WAL from its start again.

        A step with no commit since the last one, after a step that saw some, is the end of a burst: the C heap
        gives back what the burst freed (:func:`onitu.heap.give_back`, off the event loop's thread).
        """
        db = sqlite3.connect(self.path, isolation_level=None, timeout=RESTART_WAIT)
        try:
            limit = self.wal_limit // db.execute("PRAGMA page_size").fetchone()[0]  # in frames
            every = CHECKPOINT_EVERY
            seen, given = self.commits, True
            while not self._stop.wait(every):
                if self.commits != seen:
                    seen, given = self.commits, False
                elif not given:
                    given = True
                    heap.give_back()
                _, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                every = CHECKPOINT_EVERY
                # Past 4 x the bound, the writer waits for a longer step rather than let the WAL grow on and on.
                if frames > limit and (frames - copied <= RESTART_GAP or frames > 4 * limit):
                    with self._turns:
                        db.execute("PRAGMA wal_checkpoint(RESTART)")
                elif frames > limit:
                    every = CHASE_EVERY
        except sqlite3.Error as exc:  # the writer keeps working; the WAL just grows until the next start
            log.warning("checkpoint of %s failed: %s", self.path, exc)
        finally:
            db.close()

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def load(self, store: Store) -> dict[tuple[bytes, int], bytes]:
        """Fill an empty store from disk; returns the cached replies by (session, seq)."""
        try:
            # Tuples of sessions that ended while we were down died with them.
            pruned = self.db.execute(
                "DELETE FROM tuples WHERE owner IS NOT NULL AND owner NOT IN (SELECT sid FROM sessions)").rowcount
            if pruned > 0:  # no longer the state of the stream position it is labelled with
                self.forget_stream()
            for sid, ttl in self.db.execute("SELECT sid, ttl FROM sessions"):
                store.restore_session(sid, ttl)
            rows = self.db.execute("SELECT id, body, deadline, owner FROM tuples ORDER BY id")
            for eid, body, deadline, owner in rows:
                store.restore(eid, body, deadline, owner)
            replies = {(sid, seq): body for sid, seq, body in self.db.execute("SELECT sid, seq, body FROM replies")}
        except (sqlite3.DatabaseError, SpaceError) as exc:
            raise StorageError(f"{self.path}: cannot load the space: {exc}") from exc
        self.new_generation(store)
        return replies

    def new_generation(self, store: Store) -> None:
        """Number on past every id this space (or the primary it copies) ever gave, when it starts serving."""
        # Ids are (generation << 32) + n: a new generation per start means counters never need a write per
        # commit, yet an id is never reused (an old Entry handle cannot cancel a newer tuple).
        generation = max(self.meta("generation", 0), self.meta("next_id", 0) >> 32, self.meta("event_id", 0) >> 32) + 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))
        store.next_id = max(store.next_id, generation << 32)
        store.event_id = max(store.event_id, generation << 32)

    @staticmethod
    def encode(changes: Iterable[tuple]) -> list[list]:
        """Turn the store's change records into rows: ``[puts, dels, leases, sessions]``.

        Each tuple is encoded once (a packed store's records carry its bytes already); a primary ships these same
        rows to its secondary. A tuple written and removed within the group never becomes a row.
        """
        puts: dict[int, list] = {}
        dels: list[int] = []
        leases: list[list] = []
        sessions: dict[bytes, float | None] = {}
        for change in changes:
            kind = change[0]
            if kind == "put":
                _, eid, body, deadline, owner = change
                puts[eid] = [eid, body if type(body) is bytes else packb(body), deadline, owner]
            elif kind == "del":
                if puts.pop(change[1], None) is None:
                    dels.append(change[1])
            elif kind == "lease":
                _, eid, deadline, owner = change
                if eid in puts:
                    puts[eid][2:] = [deadline, owner]
                else:
                    leases.append([deadline, owner, eid])
            elif kind == "session":
                sessions[change[1]] = change[2]
            elif kind == "end":
                sessions[change[1]] = None
        return [list(puts.values()), dels, leases, [[sid, ttl] for sid, ttl in sessions.items()]]

    def commit(self, rows: list[list], replies: Iterable[tuple[bytes, int, bytes]], acks: dict[bytes, int],
               counters: tuple[int, int] | None = None, stream: tuple[str, int] | None = None) -> None:
        """Write one group of rows (see :meth:`encode`), cached replies and acknowledgements in one transaction.

        ``acks`` (forgettable replies) may lag: a reply kept too long costs a row, never correctness. A replica
        passes ``counters`` (the primary's next ids) and ``stream``, where this batch leaves it in its primary's stream
        (see :meth:`stream`), written in one statement.
        """
        with self._writing(), self._turns:
            self._commit(rows, replies, acks, counters, stream)
        self.commits += 1

    def _commit(self, rows: list[list], replies: Iterable[tuple[bytes, int, bytes]], acks: dict[bytes, int],
                counters: tuple[int, int] | None, stream: tuple[str, int] | None) -> None:
        puts, dels, leases, sessions = rows
        db = self.db
        db.execute("BEGIN")
        try:
            if puts:
                db.executemany("INSERT INTO tuples VALUES (?, ?, ?, ?)", puts)
            if dels:
                db.executemany("DELETE FROM tuples WHERE id = ?", [(eid,) for eid in dels])
            if leases:
                db.executemany("UPDATE tuples SET deadline = ?, owner = ? WHERE id = ?", leases)
            for sid, ttl in sessions:
                if ttl is None:
                    db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))
                    db.execute("DELETE FROM replies WHERE sid = ?", (sid,))
                else:
                    db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?)", (sid, ttl))
            if replies:
                db.executemany("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", replies)
            if acks:
                db.executemany("DELETE FROM replies WHERE sid = ? AND seq < ?", acks.items())
            head = None
            if stream is not None:  # a replica: the primary's counters (to number on after a promotion) and stream
                # A promotion needs only the generation of each counter (see new_generation), and the boot changes
                # with the primary: most batches write the lsn alone, a meta row instead of four.
                head = (stream[0], counters[0] >> 32, counters[1] >> 32)
                if head == self._replica_head:
                    db.execute(_SET_LSN, (stream[1],))
                else:
                    db.execute(_SET_REPLICA, (*counters, *stream))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if head is not None:
            self._replica_head = head

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def stream(self) -> tuple[str, int] | None:
        """(primary boot, last lsn) of the primary's stream this disk holds, committed with each batch (a paired
        primary labels its own commits so too): a replica that comes back can ask for the batches after it instead
        of a whole snapshot, and a pair restarted with the same label on both disks needs none."""
        boot, lsn = self.meta("stream_boot"), self.meta("stream_lsn")
        return (boot, lsn) if type(boot) is str and type(lsn) is int else None

    def forget_stream(self) -> None:
        """This disk goes on from commits no stream position labels (a primary without a secondary)."""
        self._replica_head = None
        self.db.execute("DELETE FROM meta WHERE key IN ('stream_boot', 'stream_lsn')")

    def rebase(self, stream: tuple[str, int]) -> None:
        """Label this disk, unchanged, with another stream's position (a primary's stream that starts from it)."""
        self._replica_head = None  # the next batch writes its primary's counters too
        self.db.execute(_SET_STREAM, stream)

    # ---- a replica's snapshot: one transaction from begin to end, so a crash midway keeps the old state ----

    def begin_snapshot(self, sessions: list, replies: list, next_id: int, event_id: int,
                       stream: tuple[str, int]) -> None:
        with self._writing():
            self._begin_snapshot(sessions, replies, next_id, event_id, stream)

    def _begin_snapshot(self, sessions: list, replies: list, next_id: int, event_id: int,
                        stream: tuple[str, int]) -> None:
        db = self.db
        if db.in_transaction:
            db.execute("ROLLBACK")
        self._replica_head = None  # the next batch writes the counters again (this transaction may be abandoned)
        db.execute("BEGIN")
        for table in ("tuples", "sessions", "replies"):
            db.execute(f"DELETE FROM {table}")
        db.executemany("INSERT INTO sessions VALUES (?, ?)", sessions)
        db.executemany("INSERT INTO replies VALUES (?, ?, ?)", replies)
        db.execute(_SET_COUNTERS, (next_id, event_id))
        db.execute(_SET_STREAM, stream)

    def snapshot_rows(self, rows: list) -> None:
        """Rows as :meth:`encode` makes them: ``[id, encoded tuple, deadline, owner]``."""
        with self._writing():
            self.db.executemany("INSERT INTO tuples VALUES (?, ?, ?, ?)", rows)

    def snapshot_replies(self, replies: list) -> None:
        """Cached replies as ``[sid, seq, body]``."""
        with self._writing():
            self.db.executemany("INSERT INTO replies VALUES (?, ?, ?)", replies)

    def end_snapshot(self) -> None:
        with self._writing():
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Mark a write under way: SQLite releases the GIL while it waits for the disk (or for the checkpointer's
        last step), and the server's heartbeat answers meanwhile (see :meth:`onitu.heartbeat.Responder.attach`)
        instead of looking hung."""
        self.on_disk = time.monotonic()
        try:
            yield
        finally:
            self.on_disk = None

    def abort_snapshot(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join()
        self.abort_snapshot()  # stopped in the middle of one: what was committed before it stays
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
