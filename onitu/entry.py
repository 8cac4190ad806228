"""The ``onitu`` executable: ``make`` and ``worker`` start without loading the rest of the CLI (startup time is
part of every build, as it is for make)."""

from __future__ import annotations

import sys

from onitu.logs import configure_logging

FAST = {"make": "make_main", "worker": "worker_main"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in FAST:
        configure_logging(when_loaded=True)
        from onitu.make import cli

        sys.exit(getattr(cli, FAST[sys.argv[1]])(sys.argv[2:]))
    from onitu.cli import app

    app()


if __name__ == "__main__":
    main()
