"""The expander's parsed-text cache is bounded: a Makefile that expands ever new texts does not grow it forever."""

from __future__ import annotations

from pathlib import Path

from onitu.make import expand
from onitu.make.expand import Expander
from onitu.make.variables import Var


def test_unique_texts_do_not_grow_the_parsed_text_cache(monkeypatch) -> None:
    monkeypatch.setattr(expand, "CODE_CACHE", 100)
    ex = Expander(Path("."), {})
    ex.globals.vars["X"] = Var("x", recursive=False, origin="file")
    for i in range(1_000):
        assert ex.expand(f"{i}$(X)") == f"{i}x"
    assert 0 < len(ex._code) <= 100
