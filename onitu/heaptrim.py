"""Freed memory given back to the system once a burst of work is over (glibc's ``malloc_trim``).

glibc keeps what a process frees in its heap for reuse and returns only the free space at the heap's top: memory
freed below something still in use stays in the process's resident size for good. A hub's processes work in bursts
(a first sync, a listing, a batch of reports) and are idle in between, each burst leaving such holes behind.
Measured on a 100,000-file hub idle after its first sync: the secondary space server held 535 bytes per file
resident, 390 after one ``malloc_trim(0)``; a replica's plug 656, then 594.

:func:`after_bursts` starts a thread that looks at the process's CPU time every :data:`PERIOD` seconds and trims
once after a busy period (at least :data:`BUSY` CPU seconds) is followed by a quiet one (under :data:`QUIET`): a
trim walks the heap (milliseconds for a few hundred MB, without the GIL), so it is not done while work goes on, nor
again and again while nothing happens. Where there is no ``malloc_trim`` (not glibc), nothing is done.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

PERIOD = 2.0  # seconds between two looks at the CPU time
BUSY = 0.2  # CPU seconds in a period that make it busy
QUIET = 0.05  # CPU seconds in a period under which the process is idle (an idle space primary uses 0.02)
_started = False


def after_bursts() -> None:
    """Trim the heap whenever this process goes quiet after work (once per process; see the module's docstring)."""
    global _started
    trim = _malloc_trim()
    if trim is None or _started:
        return
    _started = True
    threading.Thread(target=_watch, args=(trim,), name="onitu-heap-trim", daemon=True).start()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def _watch(trim: Callable[[int], int]) -> None:
    last, busy = time.process_time(), False
    while True:
        time.sleep(PERIOD)
        now = time.process_time()
        used, last = now - last, now
        if used >= BUSY:
            busy = True
        elif busy and used < QUIET:
            trim(0)
            busy = False
