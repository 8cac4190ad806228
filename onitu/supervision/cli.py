"""``onitu start``, ``onitu stop``, and the processes part of ``onitu status``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from onitu.config import Config
from onitu.console import ConfigOpt, console, err, error, load_config


def start(config: Path = ConfigOpt) -> None:
    """Start the space primary and secondary and every configured agent; run until Ctrl-C or `onitu stop`."""
    run(load_config(config))


def run(cfg: Config, announce: Callable[[], None] = lambda: None) -> None:
    """Run Onitu with ``cfg`` in the foreground (``announce`` prints more once it holds the data directory)."""
    from onitu.supervision.launcher import AlreadyRunning, Launcher

    launcher = Launcher(cfg)
    try:
        launcher.lock()
    except AlreadyRunning as exc:
        error(str(exc))
        raise typer.Exit(1) from None
    err.print(f"onitu: data {cfg.data}; `onitu status` to watch, Ctrl-C or `onitu stop` to stop", highlight=False,
              soft_wrap=True)
    announce()
    raise typer.Exit(launcher.serve())


def stop(config: Path = ConfigOpt) -> None:
    """Stop a running Onitu (everything it started, in order)."""
    from onitu.supervision.launcher import stop as stop_onitu

    if not stop_onitu(load_config(config)):
        err.print("onitu is not running")
        raise typer.Exit(1)
    err.print("onitu stopped")


def print_processes(data: dict[str, Any]) -> None:
    """The processes table of ``onitu status``."""
    title = (f"onitu: epoch {data.get('epoch')}, primary {data.get('primary')} ({data.get('mode')}), "
             f"launcher pid {data['launcher']}")
    table = Table("name", "role", "pid", "epoch", "state", "uptime", "restarts", "last heartbeat", "note",
                  title=title)
    for p in data.get("processes", []):
        beat = "" if p.get("last_heartbeat") is None else f"{p['last_heartbeat']:.1f} s ago"
        uptime = "" if p.get("uptime") is None else f"{p['uptime']:.0f} s"
        table.add_row(p["name"], str(p.get("role") or ""), str(p.get("pid") or ""), str(p.get("epoch") or ""),
                      p["state"], uptime, str(p["restarts"]), beat, p.get("reason") or "")
    console.print(table)
