"""Names for people and for set-aside copies: how an unsyncable name is shown, and a conflict copy's name."""

from __future__ import annotations

import re
from datetime import datetime

from onitu.sync.drivers.contract import MAX_COMPONENT

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(name: str) -> str:
    """A name for people and JSON: control characters as ``\\xNN`` and bytes that are not UTF-8 as ``\\xNN``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def conflict_name(path: str, when: datetime, service: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``dir/name.conflict-<YYYYMMDD-HHMMSS>-<service>.ext`` for ``dir/name.ext``, not in ``taken``."""
    directory, _, base = path.rpartition("/")
    dot = base.rfind(".")
    stem, ext = (base[:dot], base[dot:]) if dot > 0 else (base, "")
    stamp = when.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        tag = f".conflict-{stamp}-{service}" + (f"-{n}" if n > 1 else "")
        room = MAX_COMPONENT - len((tag + ext).encode("utf-8"))
        short = stem.encode("utf-8")[:room].decode("utf-8", "ignore")  # cut on a character boundary
        name = f"{directory}/{short}{tag}{ext}" if directory else f"{short}{tag}{ext}"
        if name not in taken:
            return name
    raise ValueError(f"no free conflict name for {path}")
