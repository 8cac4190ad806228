"""Storage drivers by name, with their option schemas: ``driver_for("s3")``, ``open_driver(service, ...)``.

The registry is lazy: a driver's module (and its client library: s3fs, asyncssh, webdav4) is imported only when a
service using it is opened. Validating a config needs the option schemas alone (:mod:`.options`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from onitu.sync.drivers.contract import Driver
from onitu.sync.drivers.local import LocalDriver, LocalOptions
from onitu.sync.drivers.options import FTPOptions, S3Options, SFTPOptions, WebDAVOptions

OPTIONS: dict[str, type[BaseModel]] = {
    "local": LocalOptions, "s3": S3Options, "sftp": SFTPOptions, "ftp": FTPOptions, "webdav": WebDAVOptions,
}
"""Every driver's option schema, by driver name (``local`` first: the one people start with)."""

_CLASSES = {"local": "onitu.sync.drivers.local:LocalDriver", "s3": "onitu.sync.drivers.s3:S3Driver",
            "sftp": "onitu.sync.drivers.sftp:SFTPDriver", "ftp": "onitu.sync.drivers.ftp:FTPDriver",
            "webdav": "onitu.sync.drivers.webdav:WebDAVDriver"}
_loaded: dict[str, type[Driver]] = {"local": LocalDriver}


class OptionError(ValueError):
    """A driver option that is unknown, missing or invalid. ``option`` is its name (a dotted path if nested)."""

    def __init__(self, option: tuple[str | int, ...], problem: str) -> None:
        self.option, self.problem = option, problem
        name = ".".join(str(part) for part in option)
        super().__init__(f"option {name}: {problem}" if name else problem)


def _known(name: str) -> None:
    if name not in OPTIONS:
        raise ValueError(f"unknown driver {name!r} (known: {', '.join(sorted(OPTIONS))})")


def options_for(name: str) -> type[BaseModel]:
    """The option schema of the driver ``name`` (its module is not imported)."""
    _known(name)
    return OPTIONS[name]


def driver_for(name: str) -> type[Driver]:
    """The driver class registered under ``name`` (importing its module); ValueError listing the known ones."""
    _known(name)
    if name not in _loaded:
        module, _, cls = _CLASSES[name].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), cls)
    return _loaded[name]


def parse_options(driver: str | type[Driver], options: Mapping[str, Any]) -> BaseModel:
    """Validate ``options`` against a driver's schema (by name or class); the first problem is an
    :class:`OptionError` naming it. An unknown option comes first: a misspelt ``buckett`` also leaves ``bucket``
    missing, and the misspelling is what people must fix."""
    schema = options_for(driver) if isinstance(driver, str) else driver.Options
    if not isinstance(options, Mapping):
        raise OptionError((), "driver options must be a mapping")
    try:
        return schema.model_validate(dict(options))
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        if err["type"] == "extra_forbidden":
            problem = f"unknown option (expected one of: {', '.join(schema.model_fields)})"
        elif err["type"] == "missing":
            problem = "missing required option"
        else:
            problem = err["msg"].removeprefix("Value error, ")
        raise OptionError(tuple(err["loc"]), problem) from None


def open_driver(service: str, name: str, options: Mapping[str, Any], state: Path | None = None) -> Driver:
    """A driver instance for ``service`` from its config (driver name and raw options); ``state``: where it may keep
    small files of its own (the hub's ``DATA/sync``)."""
    cls = driver_for(name)
    return cls(service, parse_options(cls, options), state)
