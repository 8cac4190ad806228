"""The ``onitu`` command: every part's commands under one name."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from onitu import config_file
from onitu.config import Config
from onitu.config_cli import folder_app, service_app
from onitu.console import ConfigOpt, JsonOpt, console, err, load_config
from onitu.logs import configure_logging
from onitu.space.cli import keys_app, space_app
from onitu.supervision import cli as supervision_cli
from onitu.sync import cli as sync_cli

app = typer.Typer(help="Onitu: a replicated tuple space and the tools built on it.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.add_typer(space_app, name="space")
app.add_typer(keys_app, name="keys")
app.add_typer(folder_app, name="folder")
app.add_typer(service_app, name="service")


def start(config: Path = ConfigOpt) -> None:
    """Start the space pair, the sync hub, the API and every configured agent; run until Ctrl-C or `onitu stop`.
    Without a config file, one is made in the data directory (the page and `onitu folder add` edit it)."""
    cfg = load_config(config)
    if cfg.source is None:
        path = config_file.config_path(cfg)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config_file.NEW_FILE + f"data: {cfg.data}\n" + _first_listen(cfg))
        cfg = load_config(path)
    supervision_cli.run(cfg, lambda: _announce(cfg))


def _first_listen(cfg: Config) -> str:
    """The ``api`` section of a config made at first start: another port when the default one is taken (by
    another Onitu on this machine, most often), else none."""
    from onitu.api.settings import free_listen

    listen = free_listen(cfg.api.listen) if cfg.api.listen else ""
    if listen == cfg.api.listen:
        return ""
    err.print(f"onitu: {cfg.api.listen} is in use (another Onitu?): the page will listen on {listen}",
              highlight=False, soft_wrap=True)
    return f'api: {{listen: "{listen}"}}\n'


def _announce(cfg: Config) -> None:
    from onitu.api.settings import in_use

    if not cfg.api.listen:
        return
    if in_use(cfg.api.listen):  # before our API started: someone else's; its page would refuse our token
        err.print(f"[red]onitu: {cfg.api.listen} is already in use (another Onitu?): the page cannot start; set "
                  f"api.listen in {config_file.config_path(cfg)} to a free address[/red]", highlight=False,
                  soft_wrap=True)
        return
    err.print(f"onitu: the page is at {page_url(cfg)}", highlight=False, soft_wrap=True)


def page_url(cfg: Config) -> str:
    """The page's address with the token (made now if this data directory has none yet)."""
    from onitu.api.auth import ensure_token

    return f"{cfg.api.url}#token={ensure_token(cfg.data)}"


@app.command("open")
def open_page(browser: bool = typer.Option(False, "--browser", help="Also open it in a web browser."),
              config: Path = ConfigOpt) -> None:
    """Print the web page's address, with its token (and open it with --browser)."""
    cfg = load_config(config)
    if not cfg.api.listen:
        err.print("the API is off (api.listen is empty in the config)")
        raise typer.Exit(1)
    url = page_url(cfg)
    print(url)
    if browser:
        import webbrowser

        webbrowser.open(url)


def status(config: Path = ConfigOpt, as_json: bool = JsonOpt,
           show_skipped: bool = typer.Option(False, "--skipped", help="List every path skipped or refused, and why "
                                             "(--json always has them).")) -> None:
    """Every supervised process; per folder and service, whether files are in sync, pending or unavailable."""
    from onitu.supervision.launcher import status as processes

    cfg = load_config(config)
    data = processes(cfg)
    if data is None:
        if as_json:
            console.print_json(json.dumps({"running": False}))
        else:
            err.print("onitu is not running")
        raise typer.Exit(3)
    sync = sync_cli.hub_status(cfg)
    if as_json:
        console.print_json(json.dumps({"running": True, **data, **({"sync": sync} if sync is not None else {})}))
        return
    supervision_cli.print_processes(data)
    if sync is not None:
        sync_cli.print_status(sync, show_skipped)


app.command("start")(start)
app.command("stop")(supervision_cli.stop)
app.command("status")(status)
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


@app.command("agent", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def agent(ctx: typer.Context) -> None:
    """Sync this machine's services with a hub it dials (--hub, --hub-key, --key NAME, -c agent.yaml)."""
    from onitu.sync.majordomo.agent import main as agent_main

    raise typer.Exit(agent_main(list(ctx.args)))


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more (info level).")) -> None:
    configure_logging(verbose=verbose)


if __name__ == "__main__":
    app()
