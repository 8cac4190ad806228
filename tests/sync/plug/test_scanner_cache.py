"""The hash cache: a snapshot written and read an entry at a time (one msgpack map), and a journal of the changes
since, so a plug killed mid-listing keeps what it hashed."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack

from onitu.sync.drivers import open_driver
from onitu.sync.plug import hash_cache
from onitu.sync.plug.scanner import Scanner


def scanner(tmp_path: Path, writes: bool = True) -> Scanner:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    driver = open_driver("a", "local", {"root": str(root), "settle": 0}, tmp_path)
    driver.initialise()
    return Scanner(driver, {"docs": ""}, tmp_path / "a.hashes", writes)


def test_a_big_cache_round_trips(tmp_path: Path) -> None:
    first = scanner(tmp_path)
    table = {f"d{i // 100}/f{i}": (f"{i}:{i * 7}", f"{i:064x}") for i in range(150_000)}  # past the write chunk
    for path, (fingerprint, sha) in table.items():
        first.hashes.put(path, fingerprint, sha)
    first.save()
    assert msgpack.unpackb((tmp_path / "a.hashes").read_bytes(), raw=False) == {p: list(e) for p, e in table.items()}
    assert (tmp_path / "a.hashes.new").stat().st_size == 0  # in the snapshot now
    assert scanner(tmp_path).hashes.as_dict() == table


def test_entries_come_back_exactly_as_they_were_put(tmp_path: Path) -> None:
    """Entries are held packed (the hash as 32 bytes): one whose hash is not 64 lowercase hex digits, or whose
    fingerprint is not ASCII, comes back as it was put, from memory and from the disk."""
    first = scanner(tmp_path)
    table = {"plain": ("4-1764000000000000000-123", "ab" * 32), "upper": ("fp", "AB" * 32), "short": ("fp", "abc"),
             "unicode": ("été-ß", "cd" * 32), "empty": ("", "00" * 32)}
    for path, (fingerprint, sha) in table.items():
        first.hashes.put(path, fingerprint, sha)
    assert {path: first.hashes.get(path) for path in table} == table
    assert type(first.hashes.entries["plain"]) is bytes and len(first.hashes.entries["plain"]) == 32 + 25
    first.hashes.flush()
    assert scanner(tmp_path).hashes.as_dict() == table  # from the journal
    first.save()
    assert scanner(tmp_path).hashes.as_dict() == table  # from the snapshot


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.hashes").write_bytes(msgpack.packb({"x": ["f", "s"]})[:-3])
    assert scanner(tmp_path).hashes.as_dict() == {}
    (tmp_path / "a.hashes").write_bytes(msgpack.packb([1, 2]))
    assert scanner(tmp_path).hashes.as_dict() == {}


def test_a_plug_killed_while_it_hashes_keeps_all_but_the_last_thousand(tmp_path: Path) -> None:
    """Hashes are journaled as they are made: a scanner that never saved (its plug killed -9 in the middle of its
    first listing) leaves them for the next, which reads none of those files again."""
    first = scanner(tmp_path)
    for i in range(2500):
        (tmp_path / "root" / f"f{i:04}").write_text(str(i))
    seen = {path: obs.sha256 for path, obs, _ in first.below("docs")}
    assert len(seen) == 2500 and not (tmp_path / "a.hashes").exists()  # no snapshot: killed before the end
    again = scanner(tmp_path)
    journaled = again.hashes.as_dict()
    assert len(journaled) == 2000 and all(seen[path] == sha for path, (_, sha) in journaled.items())
    read = []
    checksum = again.driver.checksum
    again.driver.checksum = lambda path: read.append(path) or checksum(path)  # type: ignore[method-assign]
    assert {path: obs.sha256 for path, obs, _ in again.below("docs")} == seen
    assert len(read) == 500  # only what the journal had not got yet


def test_the_journal_replays_forgets_and_stops_at_a_torn_end(tmp_path: Path) -> None:
    first = scanner(tmp_path)
    for i in range(hash_cache.JOURNAL_EVERY):
        first.hashes.put(f"p{i}", f"fp{i}", f"{i:064x}")
    first.hashes.drop("p3")
    first.hashes.put("p4", "fp4-changed", "4" * 64)
    first.hashes.flush()
    journal = tmp_path / "a.hashes.new"
    with journal.open("ab") as file:
        file.write(msgpack.packb(["p5", "fp5-torn", "5" * 64])[:-7])  # a crash in the middle of an append
    entries = scanner(tmp_path).hashes.as_dict()
    assert "p3" not in entries and entries["p4"] == ("fp4-changed", "4" * 64) and entries["p5"] == ("fp5", f"{5:064x}")
    assert len(entries) == hash_cache.JOURNAL_EVERY - 1


def test_a_crash_between_the_snapshot_and_the_journal_truncation_reads_the_same(tmp_path: Path) -> None:
    first = scanner(tmp_path)
    for i in range(hash_cache.JOURNAL_EVERY):
        first.hashes.put(f"p{i}", f"fp{i}", f"{i:064x}")
    first.hashes.put("p1", "fp1-later", "1" * 64)
    first.hashes.flush()
    kept = (tmp_path / "a.hashes.new").read_bytes()
    first.save()
    (tmp_path / "a.hashes.new").write_bytes(kept)  # as if the plug died between the rename and the truncation
    assert scanner(tmp_path).hashes.as_dict() == first.hashes.as_dict()


def test_a_preview_beside_a_running_plug_writes_nothing(tmp_path: Path) -> None:
    for i in range(hash_cache.JOURNAL_EVERY + 10):
        (tmp_path / "root").mkdir(exist_ok=True)
        (tmp_path / "root" / f"f{i:04}").write_text(str(i))
    preview = scanner(tmp_path, writes=False)
    assert len(list(preview.below("docs"))) == hash_cache.JOURNAL_EVERY + 10
    preview.save()
    assert not [name for name in os.listdir(tmp_path) if name.startswith("a.hashes")]


def test_entries_the_plug_holds_beside_are_let_go_a_flush_later_and_forgets_still_reach_the_disk(tmp_path):
    """Hashes put now are compared with what the plug reported at the next flush (by then the plug has reported
    them), not at once (it has not yet); one it reported differently stays. Forgetting a path held only beside is
    journaled all the same: the next plug must not read it back."""
    from onitu.sync.decide.plan import Observed
    from onitu.sync.plug.known import Known

    known = Known()

    class Reported:
        hashed = known.hashed
        hashed_rows = known.hashed_rows

    cache = scanner(tmp_path).hashes
    cache.beside = Reported()
    batch = [(f"f{i}", f"fp{i}", f"{i:064x}") for i in range(hash_cache.JOURNAL_EVERY)]
    for path, fingerprint, sha in batch:
        cache.put(path, fingerprint, sha)  # the last one flushes: nothing reported yet, all kept
        known[path] = Observed("file", sha if path != "f7" else "ee" * 32, 1, 1, fingerprint)
    assert len(cache.entries) == len(batch)
    cache.put("late", "fp", "ff" * 32)
    cache.flush()
    assert set(cache.entries) == {"f7", "late"}
    assert cache.get("f1") == ("fp1", f"{1:064x}") and cache.get("f7") == ("fp7", f"{7:064x}")
    cache.drop("f1")
    cache.flush()
    entries = scanner(tmp_path).hashes.as_dict()
    assert "f1" not in entries and len(entries) == len(batch) and entries["f7"] == ("fp7", f"{7:064x}")
