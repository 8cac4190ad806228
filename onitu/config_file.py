"""Changing ``onitu.yaml`` from the CLI and the API: add, change or remove a folder or a service.

The file is edited as YAML that keeps its comments, order and layout (ruamel.yaml's round trip), validated whole
with the same checks and messages as at start (:func:`onitu.config.loads`), and replaced atomically (a temporary
file beside it, fsync'd, renamed over it), under a lock so that two edits never interleave. A running Onitu
notices the new file and applies it without a restart (:mod:`onitu.supervision.reload`).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from onitu.config import Config, ConfigError, loads

NEW_FILE = """\
# Onitu's configuration (made by `onitu start`; `onitu folder add` and `onitu service add` edit it, and so does
# the web page). A running Onitu applies changes to this file without a restart.
"""


class EditError(ValueError):
    """An edit that makes no sense (an unknown or duplicate name); the message says which."""


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 120
    return yaml


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def edit(path: Path, change: Callable[[CommentedMap], None]) -> Config:
    """Apply ``change`` to the file's top-level mapping, validate, and replace the file; the new config.
    Raises :class:`EditError` or :class:`onitu.config.ConfigError` (nothing is written then)."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE
        yaml = _yaml()
        doc = yaml.load(text)
        if doc is None:
            doc = CommentedMap()
            if text.strip():  # only comments: keep them above what is added
                doc.yaml_set_start_comment(text.rstrip("\n").replace("# ", "", 1).replace("\n# ", "\n"))
        if not isinstance(doc, CommentedMap):
            raise ConfigError(str(path), 1, "", "the top level must be a mapping of settings")
        change(doc)
        out = io.StringIO()
        yaml.dump(doc, out)
        config = loads(out.getvalue(), str(path), path)
        _replace(path, out.getvalue())
    return config


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _section(doc: CommentedMap, name: str) -> CommentedMap:
    if not isinstance(doc.get(name), dict):
        doc[name] = CommentedMap()
    return doc[name]


def _plain(value: Any) -> Any:
    """Plain data as ruamel maps and lists (so they are dumped in block style, like hand-written YAML)."""
    if isinstance(value, dict):
        return CommentedMap((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _expect(section: CommentedMap, kind: str, name: str, *, present: bool) -> None:
    """Refuse to add what exists, or to change or remove what does not."""
    if present and name not in section:
        raise EditError(f"no {kind} {name!r}")
    if not present and name in section:
        raise EditError(f"{kind} {name!r} already exists")


def set_folder(path: Path, name: str, options: dict[str, Any], *, new: bool) -> Config:
    """Add the folder ``name`` (``new``) or replace its options."""
    def change(doc: CommentedMap) -> None:
        folders = _section(doc, "folders")
        _expect(folders, "folder", name, present=not new)
        folders[name] = _plain(options) if options else None
    return edit(path, change)


def remove_folder(path: Path, name: str) -> Config:
    """Remove the folder ``name`` and every service's mapping of it (no file is deleted anywhere)."""
    def change(doc: CommentedMap) -> None:
        folders = _section(doc, "folders")
        _expect(folders, "folder", name, present=True)
        del folders[name]
        for service in (doc.get("services") or {}).values():
            if isinstance(service, dict) and isinstance(service.get("folders"), dict):
                service["folders"].pop(name, None)
    return edit(path, change)


def set_service(path: Path, name: str, driver: str, options: dict[str, Any], folders: dict[str, Any], *,
                new: bool) -> Config:
    """Add the service ``name`` (``new``) or replace its driver, options and folders."""
    def change(doc: CommentedMap) -> None:
        services = _section(doc, "services")
        _expect(services, "service", name, present=not new)
        services[name] = _plain({"driver": driver, "options": options, "folders": folders})
    return edit(path, change)


def remove_service(path: Path, name: str) -> Config:
    """Remove the service ``name``: its plug stops; its files stay where they are."""
    def change(doc: CommentedMap) -> None:
        services = _section(doc, "services")
        _expect(services, "service", name, present=True)
        del services[name]
    return edit(path, change)


def config_path(config: Config) -> Path:
    """The file a running Onitu reads (the one ``onitu start`` made in the data directory if it was given none)."""
    from onitu.config import FILE_NAME

    return config.source or config.data / FILE_NAME
