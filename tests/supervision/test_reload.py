"""Which agents a changed config stops and starts: the referee never (it applies folder, service and rule changes
itself), a plug when its service changed, new plugs started and removed ones stopped."""

from __future__ import annotations

from pathlib import Path

from onitu.config import Config, loads
from onitu.supervision.reload import changes


def config(tmp_path: Path, services: dict[str, str], folders: str = "docs: {}", sync: str = "{}") -> Config:
    lines = [f"data: {tmp_path / 'data'}", f"folders: {{{folders}}}", f"sync: {sync}", "services:"]
    lines += [f"  {name}: {{driver: local, options: {{root: {root}}}, folders: {{docs: docs}}}}"
              for name, root in services.items()]
    return loads("\n".join(lines) + "\n", "onitu.yaml", tmp_path / "onitu.yaml")


def names(found) -> tuple[list[str], list[str]]:
    return sorted(found.stop), sorted(spec.name for spec in found.start)


def test_the_referee_keeps_running_through_folder_service_and_rule_changes(tmp_path: Path):
    old = config(tmp_path, {"a": "/r/a", "b": "/r/b"})
    new = config(tmp_path, {"a": "/r/a", "b": "/r/b2", "c": "/r/c"}, folders="docs: {blacklist: ['*.tmp']}",
                 sync="{deletion_threshold: 0.9}")
    stop, start = names(changes(old, new))
    assert "referee" not in stop and "referee" not in start
    assert "plug-c" in start and "plug-c" not in stop
    assert "plug-b" in stop and "plug-b" in start  # its root changed: a new driver


def test_a_removed_service_stops_its_plug_only(tmp_path: Path):
    old = config(tmp_path, {"a": "/r/a", "b": "/r/b"})
    new = config(tmp_path, {"a": "/r/a"})
    stop, start = names(changes(old, new))
    assert "plug-b" in stop and "plug-b" not in start
    assert not {"referee", "plug-a"} & {*stop, *start}
