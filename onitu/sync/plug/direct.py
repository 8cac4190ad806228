"""Files of another local service of the same hub, read straight from its root instead of through its plug.

A copy between two local services went through the source plug's chunk server: read there, packed, encrypted,
sent over a socket, decrypted and unpacked here. That was most of both plugs' work for a small file, and it capped
a big file's speed. When the source service's driver is ``local`` in this plug's config, its live plug serves the
root the config names (the root in its plug tuple), and that root carries its marker here, the copying plug reads
the file itself. It uses a driver of its own for that root, so a path gets the same checks as at the source: inside
the root, no symbolic link followed, decomposed names found.

Nothing is trusted more for it. The bytes are checked against the agreed sha256 before they become visible, as for
any copy, so a root that is not the source's after all can only fail the check. Any failure to read falls back to
the chunk server: a root this process may not read, say, or a file the source reads differently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from onitu.chunks import TransferError
from onitu.config import Config
from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import CHUNK, DriverError
from onitu.sync.drivers.local import LocalDriver

log = logging.getLogger(__name__)

LOOK_EVERY = 5.0  # seconds a root found readable (or not) is taken as such before it is looked at again


class DirectReads:
    """Drivers reading the roots of the local services of ``config`` that this process can read."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._roots: dict[str, tuple[float, LocalDriver | None]] = {}  # service -> (when looked at, its driver)

    def reader(self, source: dict[str, Any], folder: str) -> LocalDriver | None:
        """A driver of the root the plug ``source`` (its plug tuple's info) serves, if it can be read here for
        ``folder`` (one it replicates: nothing else of its root is read, as its plug would serve nothing else)."""
        name = source.get("service")
        settings = self.config.services.get(name) if isinstance(name, str) else None
        if settings is None or settings.driver != "local" or source.get("remote") or folder not in source["folders"]:
            return None
        when, driver = self._roots.get(name, (0.0, None))
        if not when or time.monotonic() - when > LOOK_EVERY:
            driver = self._open(name, settings.options)
            self._roots[name] = (time.monotonic(), driver)
        return driver if driver is not None and source.get("root") == driver.root else None

    def ways(self, source: dict[str, Any], folder: str) -> list[LocalDriver | None]:
        """How to read from ``source``, in order: its root directly if possible, then its chunk server (None)."""
        reader = self.reader(source, folder)
        return [reader, None] if reader is not None else [None]

    @staticmethod
    def _open(name: str, options: dict[str, Any]) -> LocalDriver | None:
        try:
            driver = open_driver(name, "local", options)
        except (ValueError, OSError) as exc:
            log.debug("%s: its root is not read directly: %s", name, exc)
            return None
        return driver if isinstance(driver, LocalDriver) and driver.available() else None


def chunks(reader: LocalDriver, path: str, offset: int, progress: Callable[[int], None]) -> Iterator[bytes]:
    """The bytes of ``path`` from ``offset`` on, from the root ``reader`` reads. A failure to read is the source's
    (a :class:`TransferError`), not the copy's: the caller then asks the source's plug."""
    try:
        for data in reader.chunks(path, offset):
            progress(len(data))
            yield data
    except DriverError as exc:
        raise TransferError(f"{reader.service}: {path}: {exc.problem}") from None


def many(reader: LocalDriver, paths: list[str]) -> list[bytes | str]:
    """The whole of each of ``paths`` (files of one chunk at most): its bytes, or why it could not be read."""
    found: list[bytes | str] = []
    for path in paths:
        try:
            found.append(reader.read(path, 0, CHUNK))
        except DriverError as exc:
            found.append(exc.problem)
    return found
