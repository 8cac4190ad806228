"""Where Onitu keeps its data by default."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def data_dir() -> Path:
    """``$ONITU_DATA`` or the user's data directory (``~/.local/share/onitu`` on Linux)."""
    env = os.environ.get("ONITU_DATA")
    if env:
        return Path(env)
    if sys.platform.startswith("linux"):  # XDG, as platformdirs has it: its import (and tempfile's) costs every run
        xdg = os.environ.get("XDG_DATA_HOME", "").strip()
        return Path(xdg or os.path.expanduser("~/.local/share")) / "onitu"
    import platformdirs

    return Path(platformdirs.user_data_dir("onitu"))


def default_space_endpoint(data: Path) -> str:
    return f"ipc://{data / 'space.sock'}"


def runtime_dir() -> Path:
    """``$ONITU_RUNTIME`` or the user's runtime directory: where running launchers record their config."""
    env = os.environ.get("ONITU_RUNTIME")
    if env:
        return Path(env)
    import warnings

    import platformdirs  # (not at the top: see data_dir)

    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (root shells, containers): its /tmp fallback is fine here
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("onitu"))
