"""The space's disk under a sustained write load: the WAL starts over within its bound, and kill -9 at any moment
loses no committed turn."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

WAL_LIMIT = 512 << 10
TURNS = 800  # ~50 MB of WAL frames if the WAL never started over


def test_the_wal_stays_bounded_under_a_sustained_load_and_kill9_loses_nothing_committed(tmp_path):
    db = tmp_path / "space.db"
    wal = tmp_path / "space.db-wal"
    proc = subprocess.Popen([sys.executable, "-m", "tests.procs", "committer", str(db), str(WAL_LIMIT)],
                            stdout=subprocess.PIPE, text=True)
    biggest, committed = 0, -1
    try:
        while committed < TURNS:
            line = proc.stdout.readline()
            assert line, "the committer died"
            committed = int(line)
            biggest = max(biggest, wal.stat().st_size)
    finally:
        proc.kill()  # kill -9: no last checkpoint, the WAL is read back below
        proc.wait()
    # Without steps that let it start over, the WAL holds every turn; with them, a few times its bound at most.
    assert biggest < 16 * WAL_LIMIT, f"the WAL reached {biggest} bytes"
    with sqlite3.connect(db) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM tuples")}
        seqs = {row[0] for row in conn.execute("SELECT seq FROM replies")}
    assert set(range((committed + 1) * 60)) <= ids  # every turn printed (acknowledged) is on disk
    assert committed in seqs
