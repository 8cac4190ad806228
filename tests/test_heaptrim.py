"""The heap given back to the system once a burst of work is over."""

from __future__ import annotations

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


@pytest.mark.skipif(heaptrim._malloc_trim() is None, reason="no malloc_trim here (not glibc)")
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
