"""Folders settled under their current settings: every path was decided with these rules and replicas at least once.

A referee that starts (or a plug that comes back) must know what to decide again. Deciding every path of a folder is
correct but costs minutes at a million files, on every restart of the hub. Once a folder has been decided whole
under its settings (options, replicas and sync rules), a digest of those settings is kept in the space; while it
matches, only the paths where some replica is out of step need deciding again: those a replica's listing shows with
other content than the version the ledger records it holding, those it no longer shows, and those not held
everywhere. A changed setting removes the digest first, so a referee that stops before the folder settles again
decides the whole folder at its next start, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from onitu.space.errors import SpaceError
from onitu.sync import tuples

if TYPE_CHECKING:
    from onitu.config import Config
    from onitu.sync.state.ledger import Ledger
    from onitu.sync.state.replicas import Mirror

log = logging.getLogger(__name__)


def settings_of(config: Config, folder: str) -> tuple:
    """What a folder's decisions depend on in ``config``: its options, its replicas' settings, the sync rules."""
    return (config.folders.get(folder), config.sync,
            {name: svc.folders[folder] for name, svc in config.services.items() if folder in svc.folders})


def digest(settings: Any) -> str:
    """A stable digest of a folder's settings (plain values and pydantic models)."""
    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        raise TypeError(f"cannot digest {type(value).__name__}")

    text = json.dumps(settings, default=plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Settled:
    """Which folders are settled under their current settings, as recorded in the space."""

    def __init__(self, space: Any, ledger: Ledger, mirror: Mirror) -> None:
        self.space, self.ledger, self.mirror = space, ledger, mirror
        self.folders: set[str] = set()
        self._recorded: dict[str, Any] = {}  # folder -> digest in the space

    def load(self, current: dict[str, str]) -> None:
        """Read the recorded digests; ``current``: folder -> digest of its settings now."""
        for _, folder, recorded in self.space.read_all((tuples.SETTLED, None, None)):
            if isinstance(folder, str):
                self._recorded[folder] = recorded
                if current.get(folder) == recorded:
                    self.folders.add(folder)

    def unsettle(self, folder: str) -> None:
        """``folder``'s settings changed: it is decided whole again, at this start or the next."""
        self.folders.discard(folder)
        if self._recorded.pop(folder, None) is not None:
            with contextlib.suppress(SpaceError):  # already gone
                self.space.take((tuples.SETTLED, folder, None), 0)

    def settle(self, folder: str, settings: str) -> None:
        """Every path of ``folder`` was decided under the settings of digest ``settings``."""
        old = [("take", (tuples.SETTLED, folder, None))] if folder in self._recorded else []
        try:
            self.space.batch([*old, ("write", (tuples.SETTLED, folder, settings), None)])
        except SpaceError as exc:
            log.info("%s: could not record it settled (%s); decided whole at the next start", folder, exc)
            self._recorded.pop(folder, None)
            return
        self._recorded[folder] = settings
        self.folders.add(folder)

    def in_step(self, service: str, folder: str, path: str) -> bool:
        """Whether ``service`` is recorded holding the agreed version of ``path`` and its entry there (as last
        listed) has that content: nothing to decide for it there."""
        bit, agreed = self.ledger.bit(service), self.ledger.agreed[folder]
        return bool(agreed.holders(path) & bit and agreed.matching(path) & bit)

    def out_of_step(self, folder: str, services: list[str]) -> set[str]:
        """The paths of ``folder`` that some of ``services`` is not recorded holding in the agreed version (deleted
        ones included), and those where a replica's entry differs from the agreed version."""
        everyone = 0
        for service in services:
            everyone |= self.ledger.bit(service)
        agreed = self.ledger.agreed[folder]
        return {p for p in agreed if agreed.holders(p) & everyone != everyone}.union(self.mirror.known(folder))
