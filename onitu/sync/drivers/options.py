"""The option schemas of the remote drivers, importable without their client libraries.

A config is validated (and the API builds its forms) from these alone, so checking an ``onitu.yaml`` with no S3
service never imports s3fs. Secrets (``key``, ``secret``, ``password``, ``username``) may be written ``${ENV_VAR}``:
they are kept as :class:`pydantic.SecretStr` (never shown in a repr or a log) and read from the environment only
when the driver connects (:func:`reveal`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def reveal(value: SecretStr | None, option: str) -> str | None:
    """The value of a secret option, ``${VAR}`` replaced by the environment's; ValueError names a missing one."""
    if value is None:
        return None

    def variable(match: re.Match[str]) -> str:
        found = os.environ.get(match[1])
        if found is None:
            raise ValueError(f"option {option}: environment variable {match[1]} is not set")
        return found

    return _ENV.sub(variable, value.get_secret_value())


class RemoteOptions(BaseModel):
    """What every remote driver accepts besides its own options."""

    model_config = ConfigDict(extra="forbid")

    poll: float = Field(10.0, gt=0, le=86400, allow_inf_nan=False)  # seconds between two listings of the replica
    settle: float = Field(2.0, ge=0, le=3600, allow_inf_nan=False)  # seconds a file must stay unchanged


class S3Options(RemoteOptions):
    """An S3 bucket (or a key prefix in it): AWS or any compatible server."""

    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = None
    region: str | None = None
    key: SecretStr | None = None  # else the standard AWS credential chain
    secret: SecretStr | None = None
    root: str = ""  # a key prefix in the bucket

    @field_validator("root")
    @classmethod
    def _bare(cls, root: str) -> str:
        return root.strip("/")


class SFTPOptions(RemoteOptions):
    """A directory on an SSH server."""

    host: str
    port: int = Field(22, ge=1, le=65535)
    username: SecretStr | None = None  # else the local user's name
    password: SecretStr | None = None
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    root: str = ""  # the remote directory; relative to the login directory unless it starts with /


class FTPOptions(RemoteOptions):
    """A directory on an FTP server."""

    host: str
    port: int = Field(21, ge=1, le=65535)
    username: SecretStr = SecretStr("anonymous")
    password: SecretStr = SecretStr("")
    tls: bool = False  # explicit FTPS (AUTH TLS), data connections protected too
    root: str = ""  # default: the login directory


class WebDAVOptions(RemoteOptions):
    """A WebDAV collection."""

    url: str = Field(pattern=r"^https?://")  # the collection the service lives in
    username: SecretStr | None = None
    password: SecretStr | None = None
