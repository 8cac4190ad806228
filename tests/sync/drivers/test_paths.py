"""The check of relative paths (safe_path): its one-match way for plain ASCII paths agrees with the full check."""

from __future__ import annotations

import random
import re

from onitu.sync.drivers import contract

SHAPES = ["a", "t/d1/f1.txt", "a b/~$!", ".", "..", "./a", "a/.", "a/./b", "../a", "a/..", "..a", ".a", "a..",
          "/a", "a/", "a//b", "", "a\\b", "a\x01", "a\x7f", ".onitu-root", "a/.onitu-tmp-x", ".onitu", "a/.onitu",
          "x" * 255, "x" * 256, "a/" + "x" * 256, "/".join(["x" * 200] * 20), "/".join(["x" * 200] * 21)]


def test_plain_paths_are_accepted_in_one_match_only_as_the_full_check_accepts_them(monkeypatch):
    rng = random.Random(7)
    names = SHAPES + ["".join(rng.choice("ab./\\-onitu \x00\x7f") for _ in range(rng.randint(1, 14)))
                      for _ in range(50_000)]
    quick = {name: len(name) <= contract.MAX_PATH and contract._PLAIN.fullmatch(name) is not None for name in names}
    assert quick["t/d1/f1.txt"] and quick["x" * 255] and sum(quick.values()) > 1_000, "the one match is used"
    monkeypatch.setattr(contract, "_PLAIN", re.compile(r"(?!)"))  # every path through the full check
    for name in names:
        try:
            full = contract.safe_path(name) == name
        except ValueError:
            full = False
        assert quick[name] == full, name
