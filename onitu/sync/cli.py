"""``onitu plan``, ``onitu conflicts``, ``onitu resolve``, ``onitu approve`` and the sync part of ``onitu status``."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from onitu.config import Config
from onitu.space.client import SpaceClient, read_info
from onitu.space.errors import SpaceError
from onitu.supervision.cli import ConfigOpt, _config, console, err
from onitu.sync import tuples
from onitu.sync.commands import KEEP
from onitu.sync.decide.plan import Copy, Delete, KeepConflict, Mkdir, Move, Plan

REPLY_TIMEOUT = 30.0


def _space(config: Config, required: bool = True) -> SpaceClient | None:
    """A client of the config's running space (None if there is none and it is not ``required``)."""
    from onitu.space import connect

    if read_info(config.data) is None:
        if required:
            err.print(f"onitu is not running (no space under {config.data}); start it with `onitu start`")
            raise typer.Exit(3)
        return None
    return connect(None, data_dir=config.data, session_ttl=5.0)


def _request(config: Config, body: dict[str, Any]) -> dict[str, Any]:
    space = _space(config)
    assert space is not None
    try:
        if not space.read_all((tuples.PLUG, None, None)) and not space.read_all((tuples.STATUS, None)):
            err.print("the sync hub is not running (no referee has published its status)")
            raise typer.Exit(3)
        rid = secrets.token_hex(8)
        space.write((tuples.REQUEST, rid, body), REPLY_TIMEOUT)
        try:
            reply = space.take((tuples.REPLY, rid, None), timeout=REPLY_TIMEOUT)[2]
        except TimeoutError:
            err.print(f"no answer from the referee within {REPLY_TIMEOUT:.0f} s")
            raise typer.Exit(1) from None
    finally:
        space.close()
    if not reply.get("ok"):
        err.print(f"[red]error:[/red] {reply.get('error')}", highlight=False)
        raise typer.Exit(1)
    return reply


def conflicts(config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List conflict copies: which file, which service's version lost, and when."""
    space = _space(_config(config))
    assert space is not None
    try:
        rows = sorted((t[1], t[2], t[3]) for t in space.read_all((tuples.CONFLICT, None, None, None)))
    finally:
        space.close()
    if as_json:
        print(json.dumps([{"folder": f, "conflict": c, **info} for f, c, info in rows]))
        return
    if not rows:
        console.print("no conflicts")
        return
    table = Table("folder", "path", "losing version kept as", "from", "when")
    for folder, conflict, info in rows:
        table.add_row(folder, str(info.get("path")), conflict, str(info.get("service")), str(info.get("when"))[:19])
    console.print(table)


def resolve(pattern: str = typer.Argument(..., help="A path or glob (`*.txt`, `docs/**`) of original or conflict "
                                                     "paths."),
            keep: str = typer.Option(..., "--keep", help="current: keep the file at its path and delete the "
                                     "conflict copy; conflict: make the conflict copy the file; both: keep both."),
            folder: str | None = typer.Option(None, "--folder", help="Only this folder."),
            config: Path = ConfigOpt) -> None:
    """Settle conflicts, for one path or many at once."""
    if keep not in KEEP:
        err.print(f"--keep must be one of: {', '.join(KEEP)}")
        raise typer.Exit(2)
    reply = _request(_config(config), {"op": "resolve", "pattern": pattern, "keep": keep, "folder": folder})
    resolved = reply.get("resolved", [])
    if not resolved:
        console.print(f"no conflict matches {pattern!r}")
        raise typer.Exit(1)
    for f, conflict, path in resolved:
        console.print(f"{f}: {path}: kept {keep} ({conflict})", highlight=False)


def approve(folder: str | None = typer.Option(None, "--folder", help="Only this folder."),
            service: str | None = typer.Option(None, "--service", help="Only the deletions made on this service."),
            reject: bool = typer.Option(False, "--reject", help="Do not delete: copy the files back instead."),
            config: Path = ConfigOpt) -> None:
    """Release the deletions held because they exceeded the threshold (or, with --reject, undo them)."""
    reply = _request(_config(config), {"op": "reject" if reject else "approve", "folder": folder,
                                       "service": service})
    released = reply.get("released", [])
    if not released:
        console.print("no deletions are held")
        return
    for item in released:
        verb = "restoring" if reject else "deleting"
        console.print(f"{item['folder']}: {verb} {item['paths']} entries deleted on {item['service']}")


def plan(config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print what the current rules and replicas would transfer or delete; change nothing."""
    from onitu.sync.hub import preview

    cfg = _config(config)
    space = _space(cfg, required=False)
    try:
        plans, unavailable = preview(cfg, space)
    finally:
        if space is not None:
            space.close()
    if as_json:
        print(json.dumps({folder: _plan_json(p) for folder, p in plans.items()} | {"unavailable": unavailable}))
        return
    for service, reason in unavailable.items():
        console.print(f"[yellow]{service} is unavailable:[/yellow] {reason}", highlight=False)
    for folder, folder_plan in plans.items():
        _print_plan(folder, folder_plan)


def _plan_json(folder_plan: Plan) -> dict[str, Any]:
    return {"actions": [tuples.action_to_wire(a) for a in folder_plan.actions if not hasattr(a, "reason")],
            "held": [{"service": h.service, "deleted": h.deleted, "total": h.total} for h in folder_plan.held]}


def _print_plan(folder: str, folder_plan: Plan) -> None:
    copies = [a for a in folder_plan.actions if isinstance(a, Copy)]
    counts = Counter(type(a).__name__ for a in folder_plan.actions)
    size = sum(a.size for a in copies)
    if not folder_plan.actions and not folder_plan.held:
        console.print(f"{folder}: in sync")
        return
    console.print(f"[bold]{folder}[/bold]: {len(copies)} copies ({_bytes(size)}), {counts['Delete']} deletions, "
                  f"{counts['Move']} moves, {counts['KeepConflict']} conflicts, {counts['Mkdir']} new directories",
                  highlight=False)
    for action in folder_plan.actions[:200]:
        console.print("  " + _describe(action), highlight=False)
    if len(folder_plan.actions) > 200:
        console.print(f"  ... and {len(folder_plan.actions) - 200} more (--json for all)")
    for held in folder_plan.held:
        console.print(f"  [yellow]held:[/yellow] {held.deleted} of {held.total} entries deleted on {held.service} "
                      f"exceed the threshold; `onitu approve` releases them", highlight=False)


def _describe(action: Any) -> str:
    if isinstance(action, Copy):
        return f"copy    {action.path} to {action.to} from {'/'.join(action.sources)} ({_bytes(action.size)})"
    if isinstance(action, Delete):
        return f"delete  {action.path} on {action.on}"
    if isinstance(action, Move):
        return f"move    {action.src} to {action.dst} on {action.on}"
    if isinstance(action, KeepConflict):
        return f"keep    {action.path} on {action.on} as {action.conflict} (conflict)"
    if isinstance(action, Mkdir):
        return f"mkdir   {action.path} on {action.on}"
    return f"skip    {action.service}: {action.reason}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def sync_status(config: Config) -> dict[str, Any] | None:
    """The referee's published status with the plugs' transfers under way (None if the hub is not running)."""
    if not config.services or read_info(config.data) is None:
        return None
    try:
        space = _space(config, required=False)
    except SpaceError:
        return None
    if space is None:
        return None
    try:
        found = space.read_all((tuples.STATUS, None))
        progress = {t[1]: t[2] for t in space.read_all((tuples.PROGRESS, None, None))}
    finally:
        space.close()
    if not found:
        return {"folders": {}, "progress": progress, "note": "the referee has not published its status yet"}
    return {**found[0][1], "progress": progress}


def print_sync_status(status: dict[str, Any]) -> None:
    """The sync table of ``onitu status``."""
    table = Table("folder", "service", "state", "files pending", "bytes pending", "held deletions", "conflicts",
                  title="sync")
    for folder, info in status.get("folders", {}).items():
        for service, row in info.get("services", {}).items():
            table.add_row(folder, service, row["state"], str(row["files"]), _bytes(row["bytes"]), str(row["held"]),
                          str(info.get("conflicts", 0)))
    console.print(table)
    for service, transfers in status.get("progress", {}).items():
        for path, (done, total) in transfers.items():
            share = done / total if total else 1.0
            bar = "#" * int(share * 30)
            console.print(f"  {service} <- {path}: [{bar:<30}] {share:4.0%} of {_bytes(total)}", highlight=False)
    if status.get("note"):
        console.print(status["note"], highlight=False)
