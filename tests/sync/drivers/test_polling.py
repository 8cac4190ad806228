"""The polling watcher of the remote drivers, on a real FTP server of the test's own."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest

from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import ChangeEvent, RootUnavailable
from tests.servers.private import private_server


def test_an_outage_an_operation_finds_is_reported_at_once_and_once(tmp_path: Path) -> None:
    """An order failing because the server is gone must not wait for the next listing (10 s by default) to show the
    service unavailable: the operation that finds the outage tells the watcher, which reports it once."""
    with private_server("ftp", tmp_path / "server") as remote:
        driver = open_driver("ftp", "ftp", {**remote.options, "poll": 3600, "settle": 0})
        driver.initialise()
        events: queue.SimpleQueue[ChangeEvent] = queue.SimpleQueue()
        driver.watch(events.put)
        try:
            assert events.get(timeout=30).kind == "rescan"
            remote.process.stop()
            with pytest.raises(RootUnavailable):
                driver.stat("some/file.txt")
            told = events.get_nowait()  # delivered before the operation raised: no listing in between
            assert told.kind == "unavailable" and "cannot reach the server" in (told.dest or ""), told
            with pytest.raises(RootUnavailable):
                driver.read("some/file.txt")
            assert events.empty()
        finally:
            driver.close()
