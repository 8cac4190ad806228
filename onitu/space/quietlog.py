"""Warnings about hostile input that cannot flood the log: one line per kind every few seconds, with a count."""

from __future__ import annotations

import logging
import time


class QuietLog:
    """``warn(kind, message)`` logs at most one line per ``kind`` every ``every`` seconds; the next line says
    how many were left out meanwhile."""

    def __init__(self, log: logging.Logger, every: float = 5.0) -> None:
        self.log, self.every = log, every
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every) < self.every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        self._last[kind] = now
        left_out = self._quiet.pop(kind, 0)
        if left_out:
            message += f" ({left_out} more like it in the last {self.every:g} s not logged)"
        self.log.warning(message, *args)
