"""Plugs in-process, on an in-process space and local roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from onitu.config import Config
from onitu.space import TupleSpace
from onitu.sync.plug.plug import Plug


@pytest.fixture
def pair(tmp_path: Path):
    """Plugs ``a`` and ``b`` of one folder, in-process on one space (b serves what a copies)."""
    services = {name: {"driver": "local", "options": {"root": str(tmp_path / name), "settle": 0},
                       "folders": {"docs": ""}} for name in ("a", "b")}
    config = Config.model_validate({"data": str(tmp_path / "data"), "folders": {"docs": {}}, "services": services})
    space = TupleSpace()
    plugs = {name: Plug(config, name, space) for name in services}
    for runner in plugs.values():
        runner.prepare()
        runner._set_status(runner.driver.available())
        runner.reporter.full_scan()
    yield plugs
    for runner in plugs.values():
        runner.close()
    space.close()
