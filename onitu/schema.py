"""What every section of ``onitu.yaml`` is built from: strict models, names, and errors located below a model.

Each part of Onitu declares its own sections with these (the sync hub's are :mod:`onitu.sync.settings`);
:mod:`onitu.config` puts them together and turns validation errors into ``FILE:LINE: KEY: problem``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class Located(ValueError):
    """A failure about a key below the object being validated; pydantic hands it back to the loader in the
    error's ctx, which then names that key (``loc``, relative to the object) and its line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Model(BaseModel):
    """A section of the config: unknown settings are errors."""

    # YAML reads `PORT: 8080` or `args: [-j, 4]` as numbers; users mean the text.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def positive(default: float) -> Any:
    """A field holding a finite number above zero."""
    return Field(default, gt=0, allow_inf_nan=False)


def plain_name(name: str) -> str:
    """``name`` if it is a plain name (letters, digits, ``_.-``); ValueError saying so otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError("must be non-empty and use only letters, digits, '_', '.' and '-'")
    return name


Name = Annotated[str, AfterValidator(plain_name)]
