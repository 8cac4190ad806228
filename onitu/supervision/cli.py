"""``onitu start``, ``onitu stop``, ``onitu status``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from onitu.config import ConfigError, default_path, load

console = Console()
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default: ./onitu.yaml if present, else the "
                                                     "embedded default).")


def _config(path: Path | None):
    try:
        return load(path or default_path())
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def start(config: Path = ConfigOpt) -> None:
    """Start the space primary and secondary and every configured agent; run until Ctrl-C or `onitu stop`."""
    from onitu.supervision.launcher import AlreadyRunning, Launcher

    cfg = _config(config)
    launcher = Launcher(cfg)
    try:
        launcher.lock()
    except AlreadyRunning as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(f"onitu: data {cfg.data}; `onitu status` to watch, Ctrl-C or `onitu stop` to stop", highlight=False)
    raise typer.Exit(launcher.serve())


def stop(config: Path = ConfigOpt) -> None:
    """Stop a running Onitu (everything it started, in order)."""
    from onitu.supervision.launcher import stop as stop_onitu

    if not stop_onitu(_config(config)):
        err.print("onitu is not running")
        raise typer.Exit(1)
    err.print("onitu stopped")


def status(config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every supervised process; per folder and service, whether files are in sync, pending or unavailable."""
    from onitu.supervision.launcher import status as read_status
    from onitu.sync.cli import print_sync_status, sync_status

    cfg = _config(config)
    data = read_status(cfg)
    if data is None:
        if as_json:
            console.print_json(json.dumps({"running": False}))
        else:
            err.print("onitu is not running")
        raise typer.Exit(3)
    sync = sync_status(cfg)
    if as_json:
        console.print_json(json.dumps({"running": True, **data, **({"sync": sync} if sync is not None else {})}))
        return
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
    if sync is not None:
        print_sync_status(sync)
