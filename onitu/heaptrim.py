"""Freed memory given back to the system once a burst of work is over (glibc's ``malloc_trim``), and fewer heaps
to leave it in (``M_ARENA_MAX``).

glibc keeps what a process frees in its heap for reuse and returns only the free space at the heap's top: memory
freed below something still in use stays in the process's resident size for good. A hub's processes work in bursts
(a first sync, a listing, a batch of reports) and are idle in between, each burst leaving such holes behind.
Measured on a 100,000-file hub idle after its first sync: the secondary space server held 535 bytes per file
resident, 390 after one ``malloc_trim(0)``; a replica's plug 656, then 594.

:func:`after_bursts` starts a thread that looks at the process's CPU time every :data:`PERIOD` seconds and trims
once after a busy period (at least :data:`BUSY` CPU seconds) is followed by a quiet one (under :data:`QUIET`): a
trim walks the heap (milliseconds for a few hundred MB, without the GIL), so it is not done while work goes on, nor
again and again while nothing happens. Where there is no ``malloc_trim`` (not glibc), nothing is done.

glibc also gives each thread that allocates while another holds the lock a heap of its own ("arena"), up to eight
per core, and each keeps its own holes and free space. A plug (a thread per transfer, zlib and SQLite in others) and
a space server (its executor) end up with several. :func:`after_bursts` caps them at :data:`ARENAS` first, before
the process starts its threads; measured in the same 100,000-file sync, idle after: the space primary at 406
bytes per file instead of 457, the replica's plug at 274 instead of 315, the whole hub at 1,545 instead of 1,638.
A user's ``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

PERIOD = 2.0  # seconds between two looks at the CPU time
BUSY = 0.2  # CPU seconds in a period that make it busy
QUIET = 0.05  # CPU seconds in a period under which the process is idle (an idle space primary uses 0.02)
ARENAS = 2  # glibc heaps at most (its default: 8 per core); two, so that threads rarely wait on one lock
_M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)
_started = False


def after_bursts() -> None:
    """Trim the heap whenever this process goes quiet after work (once per process; see the module's docstring)."""
    global _started
    libc = _glibc()
    if libc is None or _started:
        return
    _started = True
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(_M_ARENA_MAX, ARENAS)
    threading.Thread(target=_watch, args=(libc.malloc_trim,), name="onitu-heap-trim", daemon=True).start()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        trim, mallopt = libc.malloc_trim, libc.mallopt  # (not glibc: neither is there)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


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
