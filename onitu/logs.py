"""How every onitu process logs: one structured line per record, quiet (warnings only) unless told otherwise."""

from __future__ import annotations

import logging
import os


def configure_logging(default: str = "WARNING", verbose: bool = False) -> None:
    """Log at ``$ONITU_LOG`` (or ``default``; info with ``verbose``), one structured line per record."""
    level = "INFO" if verbose else os.environ.get("ONITU_LOG", default).upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
