"""The fixture of the end-to-end hub tests."""

from __future__ import annotations

import pytest

from tests.sync.hub import Hub


@pytest.fixture
def hub(tmp_path):
    """Makes :class:`Hub` s under ``tmp_path``; stopped afterwards, killed if they will not stop."""
    made: list[Hub] = []

    def make(**kwargs) -> Hub:
        h = Hub(tmp_path, **kwargs)
        made.append(h)
        return h
    yield make
    for h in made:
        try:
            h.stop()
        finally:
            h.kill_everything()
