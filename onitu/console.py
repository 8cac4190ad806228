"""What the ``onitu`` commands share: the ``--config`` and ``--json`` options, loading the config or exiting with
its error, and the consoles they print to."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from onitu.config import Config, ConfigError, default_path, load

# Piped into another program, a table is not cut to 80 columns (`onitu status | grep secondary` finds it).
console = Console(width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 1000)

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default: ./onitu.yaml, else the running "
                                                     "Onitu's, else the data directory's, else the embedded default).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


def error(message: str) -> None:
    """Print ``message`` as an error on stderr, as text: square brackets in it (a template, a key, a list of
    choices) are not taken for rich's markup and eaten."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def load_config(path: Path | None) -> Config:
    """The config at ``path`` (or the default one); exit with status 2 and the error if it cannot be used."""
    try:
        return load(path or default_path())
    except ConfigError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
