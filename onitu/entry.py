"""The ``onitu`` executable: ``make`` and ``worker`` start without loading the rest of the CLI (startup time is
part of every build, as it is for make)."""

from __future__ import annotations

import sys

FAST = {"make": "make_main", "worker": "worker_main"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in FAST:
        import logging
        import os

        level = os.environ.get("ONITU_LOG", "WARNING").upper()
        logging.basicConfig(level=getattr(logging, level, logging.WARNING),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from onitu.make import cli

        sys.exit(getattr(cli, FAST[sys.argv[1]])(sys.argv[2:]))
    from onitu.cli import app

    app()


if __name__ == "__main__":
    main()
