"""The ``onitu`` executable: ``make`` and ``worker`` start without loading the rest of the CLI (startup time is
part of every build, as it is for make)."""

from __future__ import annotations

import sys

FAST = {"make": "make_main", "worker": "worker_main"}


def configure_logging(default: str = "WARNING", verbose: bool = False) -> None:
    """Log at ``$ONITU_LOG`` (or ``default``; info with ``verbose``), one structured line per record."""
    import logging
    import os

    level = "INFO" if verbose else os.environ.get("ONITU_LOG", default).upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in FAST:
        configure_logging()
        from onitu.make import cli

        sys.exit(getattr(cli, FAST[sys.argv[1]])(sys.argv[2:]))
    from onitu.cli import app

    app()


if __name__ == "__main__":
    main()
