"""Garbage collection for processes that hold millions of objects (a plug's or the referee's tables, a space
server's index, at a million files).

CPython's full collection walks every object that can hold references, with the GIL held: at a million files a
plug holds several million such objects, and one full collection took longer than the watchdog waits for a
heartbeat (1.5 s), so the plug was killed as hung in the middle of its first listing, and the space's secondary
was fenced (their stacks said "Garbage-collecting"). Those tables hold no reference cycles, so walking them again
and again finds nothing to free.

:func:`for_big_tables` freezes what survived a full collection that took long (``gc.freeze``: moved out of the
collector's sight, still freed as soon as nothing refers to it): the next full collection walks only what was
created since, so no collection walks the whole of a big heap again. The price: cycles among frozen objects that
later become garbage are never freed; so only a collection slower than :data:`SLOW` freezes (a process with a
small heap never does, and leaks nothing), and young cycles, which are most of them (an exception and its
traceback, a finished request's callbacks), are collected before they are ever frozen. Collections of the young
generations are also made rarer (every 10,000 allocations, not 700): big tables grow by millions of objects, and
each collection copies the survivors along.

Loading a big table at start (the referee's million records, a plug's hash cache, a space server's rows) is done
under :func:`loading`: no collection at all while it builds millions of objects that hold no cycle, then all of it
frozen at once. Under the policy alone, each full collection of a load walked everything made since the last
(a million objects, a second and a half on a loaded machine), several times over: the referee restarting a
million-file hub missed its heartbeats in them and was killed as hung at every start.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

THRESHOLDS = (10_000, 10, 10)
SLOW = 0.05  # seconds of a full collection past which what survived it is frozen
_started = 0.0


def for_big_tables() -> None:
    """Collect this process's garbage as the module's docstring says (once per process)."""
    gc.set_threshold(*THRESHOLDS)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    global _started
    if info.get("generation") != 2:
        return
    if phase == "start":
        _started = time.perf_counter()
    elif time.perf_counter() - _started > SLOW:
        gc.freeze()


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """No garbage collection while a big table is loaded; what is alive at the end is frozen (see the module's
    docstring). Only for code that makes no reference cycles: one made meanwhile, by any thread, is never freed."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # the objects made meanwhile never went through a collection: moving them all costs nothing
        if enabled:
            gc.enable()
