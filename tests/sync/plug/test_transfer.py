"""Small files many to a request, from a real chunk server over CURVE on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onitu.chunks import ChunkServer, TransferError
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import Driver
from onitu.sync.plug.transfer import MANY, fetch, fetch_many, serve_files


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Driver, dict[str, Any]]]:
    driver = open_driver("src", "local", {"root": str(tmp_path / "src"), "settle": 0})
    driver.initialise()
    (tmp_path / "src" / "docs").mkdir()
    server = serve_files(driver, lambda path: path.startswith("docs/"))
    yield driver, {"endpoint": server.endpoint, "key": server.key, "secret": server.secret}
    server.close()
    driver.close()


def test_many_small_files_come_in_one_request_each_with_its_own_error(served, tmp_path):
    _, source = served
    for i in range(5):
        (tmp_path / "src" / "docs" / f"f{i}").write_bytes(f"content {i}".encode() * i)
    (tmp_path / "src" / "outside").write_bytes(b"not synced")
    got = fetch_many(source, "src", ["docs/f0", "docs/f3", "docs/missing", "outside", "docs/f4"])
    assert got[:2] == [b"", b"content 3" * 3] and got[4] == b"content 4" * 4
    assert "no such file" in got[2] and "not in a synced folder" in got[3]
    assert b"".join(fetch(source, "src", "docs/f4")) == b"content 4" * 4  # the same connection, one range


def test_a_request_for_too_many_files_is_refused_whole(served):
    _, source = served
    with pytest.raises(TransferError, match="not a chunk request"):
        fetch_many(source, "src", [f"docs/f{i}" for i in range(MANY + 1)])


def test_a_server_that_serves_one_range_at_a_time_refuses_the_request_whole():
    """An older plug's chunk server: the batch is refused as a whole (the caller copies the files one by one)."""
    def one_range(peer: bytes, args: list[Any]) -> bytes:
        if len(args) != 3:
            raise TransferError("not a chunk request")
        return b"x"
    server = ChunkServer(one_range, "old-plug")
    try:
        source = {"endpoint": server.endpoint, "key": server.key, "secret": server.secret}
        with pytest.raises(TransferError, match="not a chunk request"):
            fetch_many(source, "old", ["docs/a", "docs/b"])
    finally:
        server.close()
