"""What every request of the API process shares: the config (re-read when the file changes), a client of the
space for the hub client's queries, and the config file to edit."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from onitu import config as config_mod
from onitu.config import Config, ConfigError
from onitu.config_file import config_path
from onitu.space.client import SpaceClient


class Context:
    """The API's view of Onitu: :attr:`config` is the file as it is now (or as last valid), :attr:`space` a
    blocking client (thread-safe: each thread has its own socket)."""

    def __init__(self, config: Config, space: SpaceClient, token: str) -> None:
        self._config, self.space, self.token = config, space, token
        self.path: Path = config_path(config)
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @property
    def config(self) -> Config:
        """The config file as it is now; the last valid one while the file has an error."""
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp and stamp is not None:
                self._stamp = stamp
                # while the file has an error (the watchdog reports it) the API answers from the last good one
                with contextlib.suppress(ConfigError):
                    self._config = config_mod.load(self.path)
            return self._config

    def adopt(self, config: Config) -> None:
        """The config an edit just wrote."""
        with self._lock:
            self._config, self._stamp = config, self._stat()
