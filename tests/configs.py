"""onitu.yaml files for tests, and the check that a bad one is refused with an error naming file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from onitu.config import ConfigError, load


def write(tmp_path: Path, text: str) -> Path:
    """``text`` (dedented) as ``tmp_path/onitu.yaml``."""
    path = tmp_path / "onitu.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def assert_refused(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    """Loading ``text`` fails with ``FILE:LINE: KEY: ...problem...``, and the error's fields say the same."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert problem in message, message
    assert (info.value.file, info.value.line, info.value.key) == (str(path), line, key)
