"""Storage drivers by name, with their option schemas: ``driver_for("local")``, ``open_driver(service, ...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from onitu.sync.drivers.contract import Driver
from onitu.sync.drivers.local import LocalDriver

DRIVERS: dict[str, type[Driver]] = {cls.name: cls for cls in (LocalDriver,)}


class OptionError(ValueError):
    """A driver option that is unknown, missing or invalid. ``option`` is its name (a dotted path if nested)."""

    def __init__(self, option: tuple[str | int, ...], problem: str) -> None:
        self.option, self.problem = option, problem
        name = ".".join(str(part) for part in option)
        super().__init__(f"option {name}: {problem}" if name else problem)


def driver_for(name: str) -> type[Driver]:
    """The driver class registered under ``name``; ValueError listing the known ones otherwise."""
    try:
        return DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown driver {name!r} (known: {', '.join(sorted(DRIVERS))})") from None


def parse_options(driver: type[Driver], options: Mapping[str, Any]) -> BaseModel:
    """Validate ``options`` against the driver's schema; the first problem is an :class:`OptionError` naming it."""
    if not isinstance(options, Mapping):
        raise OptionError((), "driver options must be a mapping")
    try:
        return driver.Options.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors()[0]
        problem = {"missing": "missing required option", "extra_forbidden": "unknown option"}.get(err["type"])
        if err["type"] == "extra_forbidden":
            problem += f" (expected one of: {', '.join(driver.Options.model_fields)})"
        raise OptionError(tuple(err["loc"]), problem or err["msg"].removeprefix("Value error, ")) from None


def open_driver(service: str, name: str, options: Mapping[str, Any]) -> Driver:
    """A driver instance for ``service`` from its config (driver name and raw options)."""
    cls = driver_for(name)
    return cls(service, parse_options(cls, options))
