"""GNU make's jobserver, done with the space: one ``-j`` budget for a make and every sub-make it starts.

The rules (GNU's, with tuples instead of a pipe of bytes):

1. The top make with ``-j N`` writes N-1 tokens ``("make.token", ROOT)`` into the space; each make, the top one
   and every sub-make, may run one task with no token (its implicit one: for a sub-make, the slot of the recipe
   that started it) and takes a token for each further task it runs at the same time.
2. A make gives a token back (writes it) when a task ends and it does not reuse it at once; it gives back all it
   holds when it ends, and the top make takes every token of its ROOT away at the end.
3. A sub-make learns where the space is and the ROOT from ``ONITU_MAKE_JOBSERVER`` (set for the recipes that name
   ``$(MAKE)``); ``-j`` on a sub-make's own command line makes it a new top make, as in GNU make.
"""

from __future__ import annotations

import contextlib
from typing import Any

TOKEN = "make.token"
ENV = "ONITU_MAKE_JOBSERVER"


class Address:
    """Where a sub-make finds its top make's space and budget."""

    def __init__(self, endpoints: list[str], root: str, limited: bool, insecure: bool = False) -> None:
        self.endpoints, self.root, self.insecure = endpoints, root, insecure
        self.limited = limited  # False: the top make had no limit (-j without a number, or workers' slots)

    def encode(self) -> str:
        import json

        return json.dumps({"endpoints": self.endpoints, "root": self.root, "limited": self.limited,
                           "insecure": self.insecure}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Address | None:
        """The address in ``text``, or None when it is not one (a stale or foreign variable is ignored)."""
        if not text:
            return None
        import json

        try:
            raw = json.loads(text)
        except ValueError:
            return None
        if not (isinstance(raw, dict) and isinstance(raw.get("endpoints"), list) and raw["endpoints"]
                and all(isinstance(e, str) for e in raw["endpoints"]) and isinstance(raw.get("root"), str)
                and isinstance(raw.get("limited"), bool)):
            return None
        return cls(raw["endpoints"], raw["root"], raw["limited"], bool(raw.get("insecure")))


class Jobserver:
    """One make's share of the budget: how many tasks it may have in flight now."""

    def __init__(self, space: Any, root: str, *, limited: bool, top: bool, jobs: int = 1) -> None:
        self.space, self.root, self.limited, self.top = space, root, limited, top
        self.held = 0  # tokens taken from the space
        if top and limited and jobs > 1:
            self.space.batch([("write", (TOKEN, root)) for _ in range(jobs - 1)])

    def may_start(self, in_flight: int) -> bool:
        """May one more task start, with ``in_flight`` already running? Takes a token when one is needed."""
        if not self.limited or in_flight < 1 + self.held:
            return True
        from onitu.space import RequestExpired

        try:
            self.space.take((TOKEN, self.root), timeout=0)
        except RequestExpired:
            return False
        self.held += 1
        return True

    def release(self, in_flight: int) -> None:
        """A task ended: give back the tokens beyond what ``in_flight`` tasks need."""
        extra = self.held - max(0, in_flight - 1)
        if extra > 0 and self.limited:
            self.space.batch([("write", (TOKEN, self.root)) for _ in range(extra)])
            self.held -= extra

    def close(self) -> None:
        """Give back every token (the top make takes them all away: the budget ends with it)."""
        from onitu.space import SpaceError

        with contextlib.suppress(SpaceError):
            if self.top:
                for _ in self.space.read_all((TOKEN, self.root)):
                    self.space.take((TOKEN, self.root), timeout=0)
            elif self.held:
                self.space.batch([("write", (TOKEN, self.root)) for _ in range(self.held)])
            self.held = 0
