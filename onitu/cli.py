"""The ``onitu`` command."""

from __future__ import annotations

import typer

from onitu.entry import configure_logging
from onitu.space.cli import keys_app, space_app
from onitu.supervision import cli as supervision_cli
from onitu.sync import cli as sync_cli

app = typer.Typer(help="Onitu: a replicated tuple space and the tools built on it.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.add_typer(space_app, name="space")
app.add_typer(keys_app, name="keys")
app.command("start")(supervision_cli.start)
app.command("stop")(supervision_cli.stop)
app.command("status")(supervision_cli.status)
app.command("plan")(sync_cli.plan)
app.command("conflicts")(sync_cli.conflicts)
app.command("resolve")(sync_cli.resolve)
app.command("approve")(sync_cli.approve)


@app.command("make", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def make(ctx: typer.Context) -> None:
    """Build like GNU make (same options: -f -C -j -k -n -B -s, VAR=value, targets), recipes run by workers."""
    from onitu.make.cli import make_main

    raise typer.Exit(make_main(list(ctx.args)))


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def worker(ctx: typer.Context) -> None:
    """Run make tasks from the space, on this host or any other (--space, --slots N; --help for more)."""
    from onitu.make.cli import worker_main

    raise typer.Exit(worker_main(list(ctx.args)))


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more (info level).")) -> None:
    configure_logging(verbose=verbose)


if __name__ == "__main__":
    app()
