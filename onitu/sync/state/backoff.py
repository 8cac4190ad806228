"""When the referee decides a failed order's paths again: after a delay that doubles with each failure in a row, at
once after a success or once the path's content changed (the failure was about what it held before)."""

from __future__ import annotations

import time

FIRST, LONGEST = 0.5, 30.0  # seconds before a failed path is decided again: after its first failure, at most


class Backoff:
    """Per (folder, path) that failed: not decided again before when."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], tuple[float, float]] = {}  # (folder, path) -> (not before, last delay)

    def failed(self, folder: str, path: str) -> None:
        """One more failure in a row: wait twice as long as after the last (FIRST, at most LONGEST)."""
        _, delay = self._due.get((folder, path), (0.0, FIRST / 2))
        delay = min(delay * 2, LONGEST)
        self._due[folder, path] = (time.monotonic() + delay, delay)

    def clear(self, folder: str, path: str) -> None:
        """Succeeded, or changed since: the next failure starts again from FIRST."""
        if self._due:
            self._due.pop((folder, path), None)

    def waiting(self, folder: str, path: str, now: float) -> bool:
        """Whether ``path`` must not be decided yet."""
        return bool(self._due) and self._due.get((folder, path), (0.0, 0.0))[0] > now
