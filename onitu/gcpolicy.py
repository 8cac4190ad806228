"""Garbage collection for processes that hold millions of objects (a plug's or the referee's tables at a million
files).

CPython's full collection walks every object that can hold references, with the GIL held: at a million files a
plug holds several million such objects, and one full collection took longer than the watchdog waits for a
heartbeat (1.5 s), so the plug was killed as hung in the middle of its first listing (its stacks said
"Garbage-collecting"). The tables themselves hold no reference cycles, so walking them again and again finds
nothing to free.

:func:`for_big_tables` freezes what survives each full collection (``gc.freeze``: moved out of the collector's
sight, still freed as soon as nothing refers to it): the next full collection walks only what was created since,
so no collection walks the whole heap again. The price: cycles among frozen objects that later become garbage are
never freed, and young cycles, which are most of them (an exception and its traceback), are collected before they
are ever frozen. Collections of the young generations are also made rarer (every 10,000 allocations, not 700): the
tables grow by millions of objects, and each collection copies the survivors along.
"""

from __future__ import annotations

import gc
from typing import Any

THRESHOLDS = (10_000, 10, 10)


def for_big_tables() -> None:
    """Collect this process's garbage as the module's docstring says (once per process)."""
    gc.set_threshold(*THRESHOLDS)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()
