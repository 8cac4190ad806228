"""Folder options, as in the original Onitu: which services hold which files of a folder.

Options (on a folder, and again per service and folder, where each option given replaces the folder's):

- ``mode``: ``r`` (the service's changes are read), ``w`` (the hub writes to it), ``rw`` (both; the default).
- ``file_size: {min, max}``: bytes, or with a unit: ``15 Mb``/``15 MB`` (10^6), ``2 GiB`` (2^30); bounds included.
- ``mimetypes``: globs on the type guessed from the file name (``image/*``, ``application/pdf``; ``image``
  alone means ``image/*``); a file whose type cannot be guessed is ``application/octet-stream``.
- ``blacklist`` / ``whitelist``: path globs relative to the folder. A pattern without ``/`` is matched against each
  component (``*.raw``, ``node_modules``); one with ``/`` against the path from the folder's top and its parents
  (``build/out``, ``photos/**/*.jpg``); ``*`` and ``?`` stay within a component, ``**`` crosses them. A file is
  refused if blacklisted, and when a whitelist is given, unless whitelisted.

Size, type and whitelist do not apply to directories (a directory is kept wherever a file below it goes).
"""

from __future__ import annotations

import fnmatch
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(?:([kmgtpe])(i?))?\s*[bo]?\s*", re.IGNORECASE)
_POWERS = "kmgtpe"


def parse_size(value: object) -> int:
    """Bytes from ``1024``, ``"15 Mb"``, ``"2 GiB"``, ``"1.5k"``; ValueError saying what is expected otherwise."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 1024, '15 MB' or '2 GiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError("must be a size such as 1024, '15 MB' or '2 GiB'")
    number, prefix, binary = match.groups()
    power = _POWERS.index(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


Size = Annotated[int, BeforeValidator(parse_size)]


class FileSize(BaseModel):
    """Bounds on the size of the files a service holds (both optional, both included)."""

    model_config = ConfigDict(extra="forbid")

    min: Size | None = None
    max: Size | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FileSize:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min} bytes) is above max ({self.max} bytes)")
        return self


class FolderOptions(BaseModel):
    """The options of a folder, or of one service for one folder (only the ones given override)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["r", "w", "rw"] = "rw"
    file_size: FileSize = FileSize()
    mimetypes: list[str] = []
    blacklist: list[str] = []
    whitelist: list[str] = []

    def over(self, base: FolderOptions) -> FolderOptions:
        """These options where given, ``base`` for the others."""
        given = self.model_fields_set & FolderOptions.model_fields.keys()
        values = {name: getattr(self if name in given else base, name) for name in FolderOptions.model_fields}
        return FolderOptions(**values)


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        char, end = pattern[i], pattern.find("]", i + 2)
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")  # zero or more directories
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "[" and end > 0:
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            out.append("[" + "^" * negate + re.sub(r"([\\^\]])", r"\\\1", body[negate:]) + "]")
            i = end + 1
            continue
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(out))


def matches(pattern: str, path: str) -> bool:
    """Whether a blacklist/whitelist pattern matches ``path`` (relative to its folder); see the module doc."""
    if "/" not in pattern.rstrip("/"):
        regex = _glob(pattern.rstrip("/"))
        return any(regex.fullmatch(part) for part in path.split("/"))
    regex = _glob(pattern.lstrip("/").rstrip("/"))
    parts = path.split("/")
    return any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1))


def mimetype(path: str) -> str:
    """The MIME type guessed from the name (``application/octet-stream`` if unknown)."""
    return mimetypes.guess_type(path.rpartition("/")[2], strict=False)[0] or "application/octet-stream"


@dataclass(frozen=True)
class _Effective:
    options: FolderOptions

    def accepts(self, path: str, size: int, is_dir: bool) -> bool:
        opts = self.options
        if any(matches(p, path) for p in opts.blacklist):
            return False
        if is_dir:
            return True
        if opts.file_size.min is not None and size < opts.file_size.min:
            return False
        if opts.file_size.max is not None and size > opts.file_size.max:
            return False
        if opts.mimetypes:
            kind = mimetype(path)
            wanted = (p if "/" in p else f"{p}/*" for p in opts.mimetypes)
            if not any(fnmatch.fnmatchcase(kind, p.lower()) for p in wanted):
                return False
        return not opts.whitelist or any(matches(p, path) for p in opts.whitelist)


class Rules:
    """Every folder's options and every service's overrides; answers which service holds or is read for a file."""

    def __init__(self, folders: Mapping[str, FolderOptions],
                 services: Mapping[str, Mapping[str, FolderOptions | None]]) -> None:
        """``services`` maps each service to its folders, with its own options for each (None: the folder's)."""
        self._effective: dict[tuple[str, str], _Effective] = {}
        for service, mapped in services.items():
            for folder, own in mapped.items():
                if folder not in folders:
                    raise ValueError(f"service {service!r} maps unknown folder {folder!r}")
                base = folders[folder]
                self._effective[service, folder] = _Effective(own.over(base) if own is not None else base)

    def services(self, folder: str) -> list[str]:
        """The services that map ``folder``, sorted."""
        return sorted(service for service, name in self._effective if name == folder)

    def options(self, service: str, folder: str) -> FolderOptions:
        """The effective options of ``service`` for ``folder``; KeyError if it does not map the folder."""
        return self._effective[service, folder].options

    def selects(self, service: str, folder: str, path: str, size: int, *, is_dir: bool = False) -> bool:
        """Whether ``service`` must hold ``path`` (relative to the folder): it maps the folder, is written to
        (mode ``w`` or ``rw``) and its options accept the file."""
        rule = self._effective.get((service, folder))
        return rule is not None and "w" in rule.options.mode and rule.accepts(path, size, is_dir)

    def reads(self, service: str, folder: str, path: str, size: int, *, is_dir: bool = False) -> bool:
        """Whether changes to ``path`` on ``service`` are taken into account (mode ``r`` or ``rw``, accepted)."""
        rule = self._effective.get((service, folder))
        return rule is not None and "r" in rule.options.mode and rule.accepts(path, size, is_dir)

    def routing(self, folder: str) -> FolderRouting:
        """The routing of one folder, as :func:`onitu.sync.decide.reconcile.reconcile` takes it."""
        return FolderRouting(self, folder)


@dataclass(frozen=True)
class FolderRouting:
    """:class:`Rules` bound to one folder."""

    rules: Rules
    folder: str

    def selects(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        """See :meth:`Rules.selects`."""
        return self.rules.selects(service, self.folder, path, size, is_dir=is_dir)

    def reads(self, service: str, path: str, size: int, is_dir: bool) -> bool:
        """See :meth:`Rules.reads`."""
        return self.rules.reads(service, self.folder, path, size, is_dir=is_dir)
