"""``onitu folder add|remove`` and ``onitu service add|remove``: the config file edited from the command line, as
the web page does it (:mod:`onitu.config_file`: comments kept, validated with the messages of ``onitu start``,
replaced atomically, applied by a running Onitu without a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from onitu import config_file
from onitu.config import ConfigError
from onitu.console import ConfigOpt, console, error, load_config
from onitu.sync.drivers import OPTIONS

folder_app = typer.Typer(help="Add or remove a synced folder (edits onitu.yaml; a running Onitu applies it).",
                         no_args_is_help=True)
service_app = typer.Typer(help="Add or remove a storage service (edits onitu.yaml; a running Onitu applies it).",
                          no_args_is_help=True)

OptionOpt = typer.Option([], "--option", "-o", help="KEY=VALUE (the value is read as YAML: true, 3, \\[a, b]); "
                                                    "repeat for more.")


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            error(f"--option {pair!r}: expected KEY=VALUE")
            raise typer.Exit(2)
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text  # `*.tmp` and the like: text
        options[key.strip()] = text if value is None else value
    return options


def _apply(config: Path | None, change: Any, done: str) -> None:
    path = config_file.config_path(load_config(config))
    try:
        change(path)
    except (ConfigError, config_file.EditError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    console.print(f"{done} ({path}); a running Onitu applies it now", highlight=False, soft_wrap=True)


@folder_app.command("add")
def folder_add(name: str, option: list[str] = OptionOpt, config: Path = ConfigOpt) -> None:
    """Add a folder (options as in onitu.yaml: mode, file_size, mimetypes, blacklist, whitelist)."""
    options = _options(option)
    _apply(config, lambda path: config_file.set_folder(path, name, options, new=True), f"added folder {name}")


@folder_app.command("remove")
def folder_remove(name: str, config: Path = ConfigOpt) -> None:
    """Stop syncing a folder (no file is deleted anywhere)."""
    _apply(config, lambda path: config_file.remove_folder(path, name), f"removed folder {name}")


@service_app.command("add")
def service_add(name: str,
                driver: str = typer.Option(..., "--driver", "-d", help=f"One of {', '.join(OPTIONS)} (see README)."),
                option: list[str] = OptionOpt,
                folder: list[str] = typer.Option([], "--folder", "-f", help="FOLDER[:PATH]: a folder this "
                                                 "service holds, at PATH in it (default: its root); repeatable."),
                root: str | None = typer.Option(None, "--root", "-r", help="Where its files are: a local "
                                                "directory, a bucket's key prefix, a remote directory (the "
                                                "option root=, which every driver has)."),
                config: Path = ConfigOpt) -> None:
    """Add a storage service holding some folders."""
    options = _options(option)
    if root is not None:
        if options.get("root", root) != root:
            error(f"--root {root!r} and -o root={options['root']!r} disagree: give one")
            raise typer.Exit(2)
        options["root"] = root
    folders = {}
    for item in folder:
        name_, _, path = item.partition(":")
        folders[name_] = path
    _apply(config, lambda path: config_file.set_service(path, name, driver, options, folders, new=True),
           f"added service {name}")


@service_app.command("remove")
def service_remove(name: str, config: Path = ConfigOpt) -> None:
    """Remove a service: its plug stops; its files stay where they are."""
    _apply(config, lambda path: config_file.remove_service(path, name), f"removed service {name}")
