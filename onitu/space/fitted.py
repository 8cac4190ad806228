"""A dict kept for long, copied into a table sized for what it holds when it holds far more room than that.

CPython grows a dict to three times its entries when it fills up (removed entries count until then) and never
shrinks it: the store's table of live tuples, at 100,000 of them after a hub's churn (orders written and taken), was
a 524,288-slot table, 105 bytes per tuple, where a copy takes 262,144 slots (52). A copy is O(n) (5 ms at 100,000
entries), and made only past :data:`ROOMY` bytes per entry: once per growth of the table at most.
"""

from __future__ import annotations

import sys

# Bytes per entry a fitted dict may take: 20 bytes a slot, 1.5 to 3 slots per entry (30 to 60 bytes); a dict grown
# at three times its entries takes 60 to 120.
ROOMY = 64
SMALL = 1 << 16  # bytes: a smaller dict is left as it is


def fitted(table: dict) -> dict:
    """``table`` itself, or a copy of it sized for its entries if it is over :data:`ROOMY` bytes per entry."""
    size = sys.getsizeof(table)
    if size <= SMALL or size <= ROOMY * len(table):
        return table
    return dict(table)  # sized for its entries, in the same order
