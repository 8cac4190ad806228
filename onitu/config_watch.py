"""Noticing that ``onitu.yaml`` changed: the watchdog applies it to its agents, the referee to its rules."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from onitu.config import Config, ConfigError, load

log = logging.getLogger("onitu.config")

EVERY = 0.5  # seconds between two looks at the file
NOT_LIVE = ("data", "heartbeat", "restart", "space")  # sections that only a restart of Onitu applies


class ConfigWatch:
    """Notices when the config file changes; :meth:`poll` gives the new config once (None meanwhile). A version
    with an error changes nothing; ``report`` (the watchdog's, one reporter per Onitu) logs it and the sections
    that only a restart applies."""

    def __init__(self, config: Config, *, report: bool = True) -> None:
        self.path: Path | None = config.source
        self.config = config
        self.report = report
        # No stamp yet: the file may have changed between the load that made ``config`` and now (a service added
        # while this process started); the first look reads it and compares.
        self._stamp: tuple[int, int, int] | None = None
        self._next = 0.0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except OSError:
            return None
        return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)

    def poll(self) -> Config | None:
        """The new config, once, when the file changed and loads; else None."""
        now = time.monotonic()
        if self.path is None or now < self._next:
            return None
        self._next = now + EVERY
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = load(self.path)
        except ConfigError as exc:
            if self.report:
                log.error("the changed config cannot be used (nothing applied): %s", exc)
            return None
        if new == self.config:  # rewritten as it was, or the first look at a file unchanged since it was loaded
            return None
        for section in NOT_LIVE if self.report else ():
            if getattr(new, section) != getattr(self.config, section):
                log.warning("%s: the %s section changed: restart Onitu to apply it", self.path, section)
        self.config = new
        return new
