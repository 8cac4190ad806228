"""What a run of writes and takes must look like afterwards, whatever was killed during it."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path


def read_log(path: Path) -> list[list]:
    # The last line may be cut short if the client was mid-write when stopped; it was never acknowledged then.
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def tally(logs: list[Path]) -> tuple[Counter, Counter]:
    """(acknowledged writes, acknowledged takes) from the clients' logs."""
    written, taken = Counter(), Counter()
    for log in logs:
        for kind, *tup in read_log(log):
            (written if kind == "w" else taken)[tuple(tup)] += 1
    return written, taken


def check_nothing_lost(written: Counter, taken: Counter, final: Counter) -> None:
    """Every acknowledged write is present exactly once or was taken exactly once; no take came back."""
    assert sum(written.values()) > 100, "the clients did too little work to prove anything"
    assert all(n == 1 for n in taken.values()), f"taken twice: {[t for t, n in taken.items() if n > 1]}"
    assert all(n == 1 for n in final.values()), f"stored twice: {[t for t, n in final.items() if n > 1]}"
    assert not set(final) & set(taken), "an acknowledged take came back"
    lost = set(written) - set(final) - set(taken)
    assert not lost, f"acknowledged writes lost: {sorted(lost)[:10]}"
    assert set(final) | set(taken) == set(written), "tuples nobody wrote"
