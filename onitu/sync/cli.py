"""``onitu plan``, ``onitu conflicts``, ``onitu resolve``, ``onitu approve`` and the sync part of ``onitu status``:
the hub client's answers (:mod:`onitu.sync.hub`), printed for people or as JSON."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from onitu.config import Config
from onitu.console import ConfigOpt, JsonOpt, console, err, error, load_config
from onitu.space.client import SpaceClient
from onitu.space.connect import read_info
from onitu.space.errors import SpaceError
from onitu.sync import hub, tuples
from onitu.sync.decide.plan import Copy, Delete, KeepConflict, Mkdir, Move, Plan


@contextlib.contextmanager
def _hub(config: Config) -> Iterator[SpaceClient]:
    """A client of the running space for the hub client's calls; their errors end the command (status 3: Onitu or
    its hub is not running; 1: the referee did not answer, or refused)."""
    try:
        space = hub.open_space(config)
        try:
            yield space
        finally:
            space.close()
    except hub.HubError as exc:
        if isinstance(exc, hub.Refused):
            error(str(exc))
        else:
            err.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(3 if isinstance(exc, hub.NotRunning) else 1) from None


def conflicts(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """List conflict copies: which file, which service's version lost, and when."""
    with _hub(load_config(config)) as space:
        rows = hub.conflicts(space)
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("no conflicts")
        return
    table = Table("folder", "path", "losing version kept as", "from", "when")
    for row in rows:
        table.add_row(row["folder"], str(row.get("path")), row["conflict"], str(row.get("service")),
                      str(row.get("when"))[:19])
    console.print(table)


def resolve(pattern: str = typer.Argument(..., help="A path or glob (`*.txt`, `docs/**`) of original or conflict "
                                                     "paths."),
            keep: str = typer.Option(..., "--keep", help="current: keep the file at its path and delete the "
                                     "conflict copy; conflict: make the conflict copy the file; both: keep both."),
            folder: str | None = typer.Option(None, "--folder", help="Only this folder."),
            config: Path = ConfigOpt) -> None:
    """Settle conflicts, for one path or many at once."""
    if keep not in tuples.KEEP:
        err.print(f"--keep must be one of: {', '.join(tuples.KEEP)}")
        raise typer.Exit(2)
    with _hub(load_config(config)) as space:
        resolved = hub.resolve(space, pattern, keep, folder)
    if not resolved:
        console.print(f"no conflict matches {pattern!r}")
        raise typer.Exit(1)
    for item in resolved:
        console.print(f"{item['folder']}: {item['path']}: kept {keep} ({item['conflict']})", highlight=False)


def approve(folder: str | None = typer.Option(None, "--folder", help="Only this folder."),
            service: str | None = typer.Option(None, "--service", help="Only the deletions made on this service."),
            reject: bool = typer.Option(False, "--reject", help="Do not delete: copy the files back instead."),
            show: bool = typer.Option(False, "--list", help="Only list the held deletions and their paths."),
            config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Release the deletions held because they exceeded the threshold (or, with --reject, undo them)."""
    with _hub(load_config(config)) as space:
        if show:
            _print_held([h for h in hub.held(space, sample=10_000) if folder in (None, h["folder"])
                         and service in (None, h["service"])], as_json)
            return
        released = (hub.reject if reject else hub.approve)(space, folder, service)
    if as_json:
        print(json.dumps(released))
        return
    if not released:
        console.print("no deletions are held")
        return
    for item in released:
        verb = "restoring" if reject else "deleting"
        console.print(f"{item['folder']}: {verb} {item['paths']} entries deleted on {item['service']}")


def _print_held(held: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(held))
        return
    if not held:
        console.print("no deletions are held")
    for item in held:
        console.print(f"[bold]{item['folder']}[/bold]: {item['deleted']} of {item['total']} entries deleted on "
                      f"{item['service']}, held since {str(item['when'])[:19]}; {item['count']} paths:",
                      highlight=False)
        for path in item["paths"]:
            console.print(f"  {path}", highlight=False)
    if held:
        console.print("`onitu approve` carries them out, `onitu approve --reject` restores the files")


def plan(config: Path = ConfigOpt, as_json: bool = JsonOpt) -> None:
    """Print what the current rules and replicas would transfer or delete; change nothing."""
    cfg = load_config(config)
    space = hub.open_space(cfg) if read_info(cfg.data) is not None else None
    try:
        plans, unavailable = hub.plan(cfg, space)
    finally:
        if space is not None:
            space.close()
    if as_json:
        print(json.dumps({folder: hub.plan_data(p) for folder, p in plans.items()} | {"unavailable": unavailable}))
        return
    for service, reason in unavailable.items():
        console.print(f"[yellow]{service} is unavailable:[/yellow] {reason}", highlight=False)
    if not plans:
        console.print("no folders configured: nothing to do")
    for folder, folder_plan in plans.items():
        _print_plan(folder, folder_plan)


def _print_skipped(skipped: dict[str, dict[str, dict[str, Any]]]) -> None:
    table = Table("folder", "service", "path", "reason", title="skipped")
    for service, folders in sorted(skipped.items()):
        for folder, paths in sorted(folders.items()):
            for path, info in sorted(paths.items()):
                table.add_row(folder, service, path, str(info.get("reason")))
    console.print(table if table.rows else "nothing is skipped")


def _print_plan(folder: str, folder_plan: Plan) -> None:
    copies = [a for a in folder_plan.actions if isinstance(a, Copy)]
    counts = Counter(type(a).__name__ for a in folder_plan.actions)
    size = sum(a.size for a in copies)
    if not folder_plan.actions and not folder_plan.held:
        console.print(f"{folder}: in sync, nothing to do")
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
                      f"exceed the threshold; `onitu approve` releases them:", highlight=False)
        for path in hub.held_paths(held)[:200]:
            console.print(f"    {path}", highlight=False)


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


def hub_status(config: Config) -> dict[str, Any] | None:
    """The sync part of ``onitu status`` (None when the config has no services or the space cannot be asked)."""
    if not (config.services or config.majordomo.listen) or read_info(config.data) is None:
        return None
    try:
        space = hub.open_space(config)
    except (SpaceError, hub.HubError):
        return None
    try:
        return hub.status(space)
    finally:
        space.close()


def print_status(status: dict[str, Any], show_skipped: bool = False) -> None:
    """The sync table of ``onitu status`` (with ``show_skipped``, every path skipped and why)."""
    table = Table("folder", "service", "state", "files pending", "bytes pending", "held deletions", "conflicts",
                  "skipped", title="sync")
    held = skipped = 0
    for folder, info in status.get("folders", {}).items():
        for service, row in info.get("services", {}).items():
            name = f"{service} (remote: {row['remote']})" if row.get("remote") else service
            table.add_row(folder, name, row["state"], str(row["files"]), _bytes(row["bytes"]), str(row["held"]),
                          str(info.get("conflicts", 0)), str(row.get("skipped", 0)))
            held += row["held"]
            skipped += row.get("skipped", 0)
    console.print(table)
    if held:
        console.print(f"{held} deletions are held: `onitu approve --list` shows them, `onitu approve` carries them "
                      f"out, `onitu approve --reject` restores the files", highlight=False)
    if show_skipped:
        _print_skipped(status.get("skipped", {}))
    elif skipped:
        console.print(f"{skipped} paths are skipped: `onitu status --skipped` lists them and why", highlight=False)
    for service, transfers in status.get("progress", {}).items():
        for path, (done, total) in transfers.items():
            share = done / total if total else 1.0
            bar = "#" * int(share * 30)
            console.print(f"  {service} <- {path}: [{bar:<30}] {share:4.0%} of {_bytes(total)}", highlight=False)
    if status.get("note"):
        console.print(status["note"], highlight=False)
