"""Where Onitu keeps its data by default."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$ONITU_DATA`` or the user's data directory (``~/.local/share/onitu`` on Linux)."""
    env = os.environ.get("ONITU_DATA")
    if env:
        return Path(env)
    import platformdirs  # only when no ONITU_DATA: programs that start often (onitu make) skip its import

    return Path(platformdirs.user_data_dir("onitu"))


def default_space_endpoint(data: Path) -> str:
    return f"ipc://{data / 'space.sock'}"
