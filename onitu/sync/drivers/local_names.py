"""Names in a local directory that the hub cannot take as they are: what a listing skips, and collisions.

The hub names every path NFC-normalised, so ``café.txt`` composed and ``café.txt`` decomposed, two files on a
Linux disk, are one path to it: the second was silently shadowed by the first (its content reached no other
replica). Such a second name is *set aside*: renamed on disk to a conflict copy (``café.conflict-<date>-<service>.txt``)
and noted in the driver's skipped map, whence the plug tells the referee, which lists it with ``onitu conflicts``.
The entry whose name is already NFC keeps the name.
"""

from __future__ import annotations

import logging
import os
import stat as st_mode
import unicodedata
from datetime import UTC, datetime
from typing import NamedTuple

from onitu.sync.drivers.contract import is_internal, safe_path
from onitu.sync.drivers.naming import conflict_name, shown
from onitu.sync.drivers.skipped import Skipped

log = logging.getLogger(__name__)


class Found(NamedTuple):
    """One entry of a directory: its name on disk, its full path, its lstat."""

    name: str
    full: str
    info: os.stat_result


def kind_of(mode: int) -> str | None:
    """Why an entry of this mode is not synced (None for regular files and directories)."""
    if st_mode.S_ISREG(mode) or st_mode.S_ISDIR(mode):
        return None
    if st_mode.S_ISLNK(mode):
        return "a symbolic link (never followed or synced)"
    kind = "FIFO" if st_mode.S_ISFIFO(mode) else "socket" if st_mode.S_ISSOCK(mode) else "device"
    return f"a {kind}, not a regular file (it is never opened or synced)"


def unreadable(full: str, info: os.stat_result) -> str | None:
    """Why this process may not read the entry (None if it may): a directory must be listable and searchable."""
    is_dir = st_mode.S_ISDIR(info.st_mode)
    owner = st_mode.S_IRUSR | (st_mode.S_IXUSR if is_dir else 0)
    if info.st_uid == os.geteuid() and info.st_mode & owner == owner:
        return None  # its owner may read it: the common case, known without a system call
    if os.access(full, os.R_OK | os.X_OK if is_dir else os.R_OK, follow_symlinks=False):
        return None
    return "cannot be read (permission denied); kept as last synced until it can be"


def scan_directory(directory: str) -> list[Found]:
    """The entries of ``directory`` but Onitu's own, sorted by name (OSError as os.scandir raises it)."""
    with os.scandir(directory) as entries:
        found = [Found(e.name, e.path, e.stat(follow_symlinks=False)) for e in entries if not is_internal(e.name)]
    return sorted(found)


def untangle(service: str, directory: str, rel: str, found: list[Found], skipped: Skipped) -> list[Found]:
    """``found`` (the entries of ``directory``, the service path ``rel``) after renaming every entry whose name
    collides with another's once NFC-normalised to a conflict copy (see the module's docstring)."""
    groups: dict[str, list[Found]] = {}
    for entry in found:
        if not entry.name.isascii():  # an ASCII name has one normal form only
            groups.setdefault(unicodedata.normalize("NFC", entry.name), []).append(entry)
        else:
            groups.setdefault(entry.name, []).append(entry)
    if all(len(g) == 1 for g in groups.values()):
        return found
    taken = set(groups)
    renamed: dict[str, Found] = {}
    for nfc, group in groups.items():
        if len(group) == 1:
            continue
        keep = next((e for e in group if e.name == nfc), group[0])
        for entry in (e for e in group if e is not keep):
            moved = _set_aside(service, directory, rel, nfc, entry, taken, skipped)
            if moved is not None:
                renamed[entry.name] = moved
    return sorted(renamed.get(e.name, e) for e in found)


def _set_aside(service: str, directory: str, rel: str, nfc: str, entry: Found, taken: set[str],
               skipped: Skipped) -> Found | None:
    try:
        original = safe_path(f"{rel}/{nfc}" if rel else nfc)
    except ValueError:
        return None  # skipped by the listing anyway
    conflict = conflict_name(original, datetime.now(UTC), service, {f"{rel}/{t}" if rel else t for t in taken})
    base = conflict.rpartition("/")[2]
    target = os.path.join(directory, base)
    try:
        if os.path.lexists(target):
            return None
        os.rename(entry.full, target)
        info = os.lstat(target)
    except OSError as exc:
        skipped.add(shown(f"{rel}/{entry.name}" if rel else entry.name),
                    f"same name as {original} once Unicode-normalised, and could not be set aside: {exc.strerror}")
        return None
    taken.add(base)
    log.warning("%s: %s and another name are the same path once Unicode-normalised: kept the second as %s",
                service, original, conflict)
    skipped.set_aside(conflict, original)
    return Found(base, target, info)


def untangle_parent(service: str, root: str, rel_raw: str, skipped: Skipped) -> None:
    """After a change at the on-disk relative name ``rel_raw`` (not ASCII): set aside what collides in its
    directory (a listing of that one directory)."""
    parent_raw = os.path.dirname(rel_raw)
    directory = os.path.join(root, parent_raw)
    try:
        rel = safe_path(unicodedata.normalize("NFC", parent_raw), root_ok=True)
        untangle(service, directory, rel, scan_directory(directory), skipped)
    except (OSError, ValueError):
        return  # gone meanwhile, or a directory the listing skips

