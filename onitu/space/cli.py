"""``onitu space ...`` and ``onitu keys ...``: serve the space, poke at it, manage CURVE keys."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from onitu import paths
from onitu.space import auth, ring
from onitu.space.conform import Codec, Malformed, run_lines
from onitu.space.errors import RequestExpired, SpaceError

if TYPE_CHECKING:
    from onitu.space.client import SpaceClient

space_app = typer.Typer(help="The tuple space: serve it, inspect it, test it.", no_args_is_help=True)
keys_app = typer.Typer(help="CURVE key pairs for tcp:// clients and servers.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DataOpt = typer.Option(None, "--data", help="Data directory (default: $ONITU_DATA or the user data dir).")
ClientDataOpt = typer.Option(None, "--data", help="Data directory (default: the config's, see --config).")
ClientConfigOpt = typer.Option(None, "--config", "-c", help="Config whose data directory holds the space (default: "
                                                             "./onitu.yaml, else the running Onitu's, else "
                                                             "$ONITU_DATA or the user data dir).")
SpaceOpt = typer.Option(None, "--space", help="Endpoint(s) of the space (default: $ONITU_SPACE, the local "
                                              "server, or discovery).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")
InsecureOpt = typer.Option(False, "--insecure", help="Plain tcp:// to a server run with --insecure-loopback.")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def parse_json(text: str, what: str) -> Any:
    """A tuple or template from JSON: arrays, plain objects (dict tuples) and the $sym/$type/$range/$regex forms."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{what} is not JSON: {exc}") from None
    codec = Codec(ruby_regex=False)
    try:
        if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)).startswith("$")):
            return {k: codec.decode(v) for k, v in value.items()}
        return codec.top(value, what)
    except Malformed as exc:
        raise fail(f"{what}: {exc}") from None


def _space_from_environment() -> bool:
    return bool(os.environ.get("ONITU_SPACE") or os.environ.get("ONITU_DATA"))


def show(value: Any) -> str:
    return json.dumps(Codec(ruby_regex=False).encode(value), ensure_ascii=False)


@contextlib.contextmanager
def client(space: str | None, data: Path | None, insecure: bool, config: Path | None = None
           ) -> Iterator[SpaceClient]:
    """A connected client; a space error becomes a one-line message (exit 2 when nothing matched, else 1). With no
    endpoint or data directory given, the space is the one of ``config`` (found as every ``onitu`` command finds
    it: the running Onitu's config when there is one), unless ``$ONITU_SPACE`` or ``$ONITU_DATA`` says otherwise."""
    from onitu.space.connect import connect

    if space is None and data is None and (config is not None or not _space_from_environment()):
        from onitu.console import load_config

        data = load_config(config).data
    try:
        with connect(space, data_dir=data, insecure=insecure, connect_timeout=5.0) as c:
            yield c
    except RequestExpired as exc:
        raise fail(str(exc), 2) from None
    except SpaceError as exc:
        raise fail(str(exc)) from None


@space_app.command("serve")
def serve(
    data: Path = DataOpt,
    listen: list[str] = typer.Option(None, "--listen", "-l", help="ipc://PATH or tcp://HOST:PORT (repeatable)."),
    insecure_loopback: bool = typer.Option(False, help="Allow plain tcp:// on a loopback address."),
    sync: str = typer.Option("normal", help="normal: survives kill -9; full: also power loss (fsync)."),
    discovery_port: int = typer.Option(ring.DEFAULT_PORT, help="UDP port answering discovery lookups."),
    discovery: bool = typer.Option(True, help="Answer discovery lookups."),
    max_frame: int = typer.Option(16 * 1024 * 1024, help="Largest request frame accepted (bytes)."),
    role: str = typer.Option("primary", help="primary, or secondary (a replica taking batches from its peer)."),
    epoch: int = typer.Option(0, help="Epoch to start at (the watchdog's; the server keeps the highest seen)."),
    replica_listen: str = typer.Option(None, help="Endpoint where this server takes replication traffic."),
    peer: str = typer.Option(None, help="The other server's replication endpoint (a primary ships there)."),
    standby: list[str] = typer.Option(None, help="Endpoint to listen on while primary (repeatable)."),
    keys: Path = typer.Option(None, help="Directory whose keys/ holds the CURVE keys (default: --data)."),
) -> None:
    """Serve a durable tuple space."""
    from onitu.space.server import run

    data = data or paths.data_dir()
    listen = listen or [paths.default_space_endpoint(data)]
    loopback_only = all(ep.startswith("ipc://") or "127.0.0.1" in ep or "[::1]" in ep for ep in listen)
    where = ("127.0.0.1" if loopback_only else "0.0.0.0", discovery_port) if discovery else None
    err.print(f"onitu space: data {data}, listening on {', '.join(listen)}", highlight=False, markup=False)
    try:
        status = run(data, listen, insecure_loopback=insecure_loopback, sync=sync, discovery=where,
                     max_frame=max_frame, role=role, epoch=epoch, replica_listen=replica_listen, peer=peer,
                     standby=standby or [], key_home=keys)
    except SpaceError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(status)


@space_app.command("ls")
def ls(template: str = typer.Argument('[null]', help="JSON template, e.g. '[\"task\", null]'."),
       space: str = SpaceOpt, data: Path = ClientDataOpt, config: Path = ClientConfigOpt,
       insecure: bool = InsecureOpt, as_json: bool = JsonOpt,
       limit: int = typer.Option(None, help="At most this many tuples.")) -> None:
    """List the tuples matching a template (oldest first)."""
    pattern = parse_json(template, "template")
    with client(space, data, insecure, config) as c:
        found = c.read_all(pattern, limit)
    for tup in found:
        print(show(tup))  # JSON lines, as they are: never wrapped, nothing taken for markup
    if not as_json:
        err.print(f"{len(found)} tuple(s)")


@space_app.command("write")
def write(tup: str = typer.Argument(..., metavar="TUPLE", help="JSON tuple, e.g. '[\"hello\", 1]'."),
          lease: float = typer.Option(None, help="Seconds until the tuple expires (default: forever)."),
          space: str = SpaceOpt, data: Path = ClientDataOpt, config: Path = ClientConfigOpt,
          insecure: bool = InsecureOpt) -> None:
    """Write a tuple; prints its entry id."""
    value = parse_json(tup, "tuple")
    with client(space, data, insecure, config) as c:
        console.print(c.write(value, lease).id)


@space_app.command("take")
def take(template: str = typer.Argument(..., help="JSON template."),
         timeout: float = typer.Option(0, help="Seconds to wait for a match (default: don't wait)."),
         space: str = SpaceOpt, data: Path = ClientDataOpt, config: Path = ClientConfigOpt,
         insecure: bool = InsecureOpt) -> None:
    """Take (remove) the oldest tuple matching a template and print it."""
    pattern = parse_json(template, "template")
    with client(space, data, insecure, config) as c:
        print(show(c.take(pattern, timeout)))


@space_app.command("stats")
def stats(space: str = SpaceOpt, data: Path = ClientDataOpt, config: Path = ClientConfigOpt,
          insecure: bool = InsecureOpt, as_json: bool = JsonOpt) -> None:
    """Counts: tuples, sessions, blocked requests, events, requests, malformed frames."""
    with client(space, data, insecure, config) as c:
        values = c.stats()
    if as_json:
        console.print_json(json.dumps(values))
        return
    table = Table("stat", "value", title="onitu space")
    for key, value in values.items():
        table.add_row(key, str(value))
    console.print(table)


@space_app.command("conform")
def conform(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenarios (JSONL, FORMAT.md).")
            ) -> None:
    """Run Rinda differential scenarios against a fresh in-process space; print one result line each."""
    try:
        with file.open(encoding="utf-8") as lines:
            for line in run_lines(lines):
                sys.stdout.write(line + "\n")
    except Malformed as exc:
        raise fail(f"{file}: malformed scenario: {exc}", 2) from None


@keys_app.command("new")
def keys_new(name: str, data: Path = DataOpt,
             allow: bool = typer.Option(True, help="Authorize it on this host's server too.")) -> None:
    """Create a key pair NAME.key / NAME.key_secret."""
    data = data or paths.data_dir()
    try:
        secret = auth.create_pair(data, name, authorize=allow)
    except SpaceError as exc:
        raise fail(str(exc)) from None
    console.print(f"created {secret.with_suffix('.key')} and {secret}" + (" (authorized)" if allow else ""))


@keys_app.command("list")
def keys_list(data: Path = DataOpt, as_json: bool = JsonOpt) -> None:
    """Key pairs and authorized client keys."""
    try:
        infos = auth.list_keys(data or paths.data_dir())
    except SpaceError as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps([info.__dict__ for info in infos]))
        return
    table = Table("name", "public key", "fingerprint", "secret here", "authorized")
    for info in infos:
        table.add_row(info.name, info.public, info.fingerprint, "yes" if info.has_secret else "",
                      "yes" if info.authorized else "")
    console.print(table)


@keys_app.command("allow")
def keys_allow(public_key_file: Path = typer.Argument(..., exists=True, dir_okay=False), data: Path = DataOpt) -> None:
    """Let the client holding this public key connect."""
    try:
        dest = auth.allow(data or paths.data_dir(), public_key_file)
    except SpaceError as exc:
        raise fail(str(exc)) from None
    console.print(f"authorized {dest}")


@keys_app.command("revoke")
def keys_revoke(name: str, data: Path = DataOpt) -> None:
    """Stop accepting a client key."""
    if not auth.revoke(data or paths.data_dir(), name):
        raise fail(f"no authorized key named {name!r}")
    console.print(f"revoked {name}")
