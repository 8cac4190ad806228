"""What a plug is carrying out: the copies under way (by path), and each order's progress to its result."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from onitu.sync.decide.plan import Action
from onitu.sync.drivers.contract import ancestors, is_under


class Running:
    """The copies under way, by path: finding those an order must wait for takes time in the depth of its path,
    not in the number of copies (thousands are queued at once when a large tree arrives)."""

    def __init__(self) -> None:
        self.futures: dict[str, Future] = {}
        self.below: dict[str, int] = {}  # directory -> copies under way below it
        self.finished: deque[tuple[str, Future]] = deque()  # appended by the pool's threads

    def add(self, path: str, future: Future) -> None:
        self._drop(path)
        self.futures[path] = future
        for parent in ancestors(path):
            self.below[parent] = self.below.get(parent, 0) + 1
        future.add_done_callback(lambda f, path=path: self.finished.append((path, f)))

    def prune(self) -> None:
        """Forget the copies that are done."""
        while self.finished:
            path, future = self.finished.popleft()
            if self.futures.get(path) is future:
                self._drop(path)

    def _drop(self, path: str) -> None:
        if self.futures.pop(path, None) is None:
            return
        for parent in ancestors(path):
            self.below[parent] -= 1
            if not self.below[parent]:
                del self.below[parent]

    def overlapping(self, key: str) -> list[Future]:
        """The copies at ``key``, above it or below it."""
        if not key or key in self.below:
            return [f for p, f in self.futures.items() if is_under(p, key) or is_under(key, p)]
        return [f for p in (key, *ancestors(key)) if (f := self.futures.get(p)) is not None]


@dataclass(eq=False)
class OrderRun:
    """An order being carried out: its actions' results as they come, and the paths they left changed."""

    tup: tuple
    folder: str
    actions: list[Action]
    results: list[dict[str, Any] | None] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    left: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.actions)
        self.left = len(self.actions)
