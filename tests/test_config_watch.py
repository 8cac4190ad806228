"""Noticing that the config file changed, including a change made while a process was starting."""

from __future__ import annotations

from onitu.config import load
from onitu.config_watch import ConfigWatch

ONE = "folders: {docs: {}}\nservices:\n  one: {driver: local, options: {root: %s}, folders: {docs: {}}}\n"
TWO = ONE + "  two: {driver: local, options: {root: %s}, folders: {docs: {}}}\n"


def test_a_change_made_between_the_load_and_the_watch_is_noticed(tmp_path):
    path = tmp_path / "onitu.yaml"
    path.write_text(ONE % (tmp_path / "one"))
    config = load(path)  # the process read its config ...
    path.write_text(TWO % (tmp_path / "one", tmp_path / "two"))  # ... a service was added meanwhile ...
    watch = ConfigWatch(config, report=False)  # ... and only then it watched the file
    new = watch.poll()
    assert new is not None and set(new.services) == {"one", "two"}
    assert watch.poll() is None


def test_an_unchanged_or_rewritten_file_is_no_change(tmp_path):
    path = tmp_path / "onitu.yaml"
    path.write_text(ONE % (tmp_path / "one"))
    watch = ConfigWatch(load(path), report=False)
    assert watch.poll() is None
    path.write_text(ONE % (tmp_path / "one") + "# a comment\n")
    watch._next = 0.0  # the next look is due now, not in EVERY seconds
    assert watch.poll() is None
    path.write_text(TWO % (tmp_path / "one", tmp_path / "two"))
    watch._next = 0.0
    assert set(watch.poll().services) == {"one", "two"}
