"""Where Onitu keeps its data by default."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """``$ONITU_DATA`` or the user's data directory (``~/.local/share/onitu`` on Linux)."""
    env = os.environ.get("ONITU_DATA")
    return Path(env) if env else Path(platformdirs.user_data_dir("onitu"))


def default_space_endpoint(data: Path) -> str:
    return f"ipc://{data / 'space.sock'}"


def runtime_dir() -> Path:
    """``$ONITU_RUNTIME`` or the user's runtime directory: where running launchers record their config."""
    env = os.environ.get("ONITU_RUNTIME")
    return Path(env) if env else Path(platformdirs.user_runtime_dir("onitu"))
