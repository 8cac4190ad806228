"""Staged writes on the servers with renames (SFTP, FTP, WebDAV): faults the conformance suite cannot cause."""

from __future__ import annotations

import hashlib

import pytest

from onitu.sync.drivers import open_driver
from onitu.sync.drivers.staging import RenameStaged


@pytest.mark.parametrize("kind", ["sftp", "ftp", "webdav"])
def test_a_rename_whose_answer_was_lost_is_done_once(kind: str, request: pytest.FixtureRequest) -> None:
    """The connection drops after the server renamed the staged file into place, before its answer: the retried
    rename finds its source gone. The write is done (the content at its name is checked), not failed."""
    remote = request.getfixturevalue(f"{kind}_server")
    driver = open_driver(kind, kind, {**remote.options, "poll": 3600, "settle": 0})
    assert isinstance(driver, RenameStaged)
    driver.initialise()
    real, lost = driver.raw_replace, []

    def answer_lost(src: str, dst: str) -> None:
        real(src, dst)
        if not lost:
            lost.append(dst)
            raise ConnectionError("connection reset before the answer")

    driver.raw_replace = answer_lost  # type: ignore[method-assign]
    try:
        data = b"renamed once"
        stat = driver.write("d/f.txt", [data], expected_sha256=hashlib.sha256(data).hexdigest(), replaces=None)
        assert lost == ["d/f.txt"] and stat == driver.stat("d/f.txt")
        assert (remote.directory / "d" / "f.txt").read_bytes() == data
        assert [p.name for p in (remote.directory / "d").iterdir()] == ["f.txt"]  # nothing staged left
    finally:
        driver.close()
