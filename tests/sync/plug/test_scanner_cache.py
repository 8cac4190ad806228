"""The hash cache, written and read an entry at a time, round-trips a big table and stays one msgpack map."""

from __future__ import annotations

from pathlib import Path

import msgpack

from onitu.sync.drivers import open_driver
from onitu.sync.plug.scanner import Scanner


def scanner(tmp_path: Path) -> Scanner:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    driver = open_driver("a", "local", {"root": str(root)}, tmp_path)
    return Scanner(driver, {"docs": ""}, tmp_path / "a.hashes")


def test_a_big_cache_round_trips(tmp_path: Path) -> None:
    first = scanner(tmp_path)
    table = {f"d{i // 100}/f{i}": (f"{i}:{i * 7}", f"{i:064x}") for i in range(150_000)}  # past the write chunk
    first.hashes.update(table)
    first._dirty = True
    first.save()
    assert msgpack.unpackb((tmp_path / "a.hashes").read_bytes(), raw=False) == {p: list(e) for p, e in table.items()}
    assert scanner(tmp_path).hashes == table


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.hashes").write_bytes(msgpack.packb({"x": ["f", "s"]})[:-3])
    assert scanner(tmp_path).hashes == {}
    (tmp_path / "a.hashes").write_bytes(msgpack.packb([1, 2]))
    assert scanner(tmp_path).hashes == {}
