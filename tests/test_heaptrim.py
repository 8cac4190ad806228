"""The heap given back to the system once a burst of work is over."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from onitu import heaptrim

BURST = textwrap.dedent("""
    import sys, time
    from onitu import heaptrim
    heaptrim.PERIOD, heaptrim.BUSY, heaptrim.QUIET = 0.3, 0.05, 0.02
    if sys.argv[1] == "trim":
        heaptrim.after_bursts()

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    # 300 MB in blocks glibc serves from its heap (past pymalloc's 512 bytes), one in 50 kept: the holes between
    # them are freed memory the heap cannot give back from its top
    blocks = [bytes(range(256)) * 8 + i.to_bytes(8, "little") for i in range(150_000)]
    kept = blocks[::50]
    del blocks
    busy = time.process_time()
    while time.process_time() - busy < 0.3:  # a burst long enough to be seen
        sum(range(1000))
    after = rss_mib()
    time.sleep(1.5)  # quiet
    print(after, rss_mib(), len(kept))
""")


_GLIBC = pytest.mark.skipif(heaptrim._glibc() is None, reason="not glibc (no malloc_trim, no arenas)")


@_GLIBC
def test_freed_memory_is_given_back_once_the_process_goes_quiet() -> None:
    def run(mode: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", BURST, mode], capture_output=True, text=True, timeout=60,
                             check=True)
        after, quiet, _ = out.stdout.split()
        return float(after), float(quiet)

    after, quiet = run("keep")
    assert after > 250 and quiet > 250, (after, quiet)  # without a trim, the holes stay resident
    after, quiet = run("trim")
    assert after > 250 and quiet < 100, (after, quiet)


THREADS = textwrap.dedent("""
    import ctypes, sys, threading
    from onitu import heaptrim
    if sys.argv[1] == "capped":
        heaptrim.after_bursts()
    go = threading.Barrier(8)

    def work():
        go.wait()  # all at once: each allocating thread gets a glibc heap of its own, up to the cap
        [bytes(4096) for _ in range(1000)]

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctypes.CDLL(None).malloc_stats()  # per heap ("Arena N:"), on stderr
""")


@_GLIBC
def test_the_threads_of_a_process_share_two_heaps_unless_the_user_says_otherwise() -> None:
    def arenas(mode: str, **env: str) -> int:
        env = {**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env}
        out = subprocess.run([sys.executable, "-c", THREADS, mode], capture_output=True, text=True, timeout=60,
                             check=True, env=env)
        return out.stderr.count("Arena ")

    assert arenas("default") > 2  # glibc's own: up to 8 per core
    assert arenas("capped") == heaptrim.ARENAS == 2
    assert arenas("capped", MALLOC_ARENA_MAX="3") == 3
