"""The sync hub's sections of ``onitu.yaml``: ``folders``, ``services`` and ``sync`` (:mod:`onitu.config` reads the
file; the format is the original Onitu's setup file, see the README).

A service's driver options are checked against its driver's schema when the file is loaded, so a typo is an error
naming the option and its line, not a failure when the plug starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from onitu.schema import Located, Model, Name, positive
from onitu.sync.decide.rules import FolderOptions, Rules
from onitu.sync.drivers import OptionError, options_for, parse_options
from onitu.sync.drivers.contract import safe_path

if TYPE_CHECKING:
    from onitu.config import Config

# `music:` with nothing below it is null in YAML: the folder with default options.
FolderConfig = Annotated[FolderOptions, BeforeValidator(lambda value: {} if value is None else value)]


def _relative_path(path: str) -> str:
    return safe_path(path.strip("/"), root_ok=True)


class ServiceFolderConfig(FolderOptions):
    """Where a folder lives in a service (relative to the service's root; '' is the root) and the service's own
    options for it, which override the folder's."""

    path: Annotated[str, AfterValidator(_relative_path)] = ""

    @model_validator(mode="before")
    @classmethod
    def _path_alone(cls, value: Any) -> Any:
        # `docs: Documents` is short for `docs: {path: Documents}`; `docs:` alone maps the service's root.
        return {} if value is None else {"path": value} if isinstance(value, str) else value


class ServiceConfig(Model):
    """One service: a configured driver, its options, and the folders it replicates."""

    driver: str
    options: dict[str, Any] = {}
    folders: dict[Name, ServiceFolderConfig] = {}

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        try:
            options_for(self.driver)
        except ValueError as exc:
            raise Located(("driver",), str(exc)) from None
        try:
            parse_options(self.driver, self.options)
        except OptionError as exc:
            raise Located(("options", *exc.option), exc.problem) from None
        return self


class SyncConfig(Model):
    """Settings of the sync hub."""

    deletion_threshold: float = Field(0.5, gt=0, le=1, allow_inf_nan=False)  # of a folder, by one replica, at once
    deletion_minimum: int = Field(2, ge=1)  # fewer deletions than this are never held (deleting a folder's only file)
    scan_interval: float = positive(600.0)  # seconds between full rescans of each replica


def rules(config: Config) -> Rules:
    """The folder options of every service of ``config``, as :class:`onitu.sync.decide.rules.Rules`."""
    return Rules(config.folders, {name: service.folders for name, service in config.services.items()})
