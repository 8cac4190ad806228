"""Where a build's files are and how old they are: vpath and VPATH search, archive members (``lib.a(x.o)``),
``-lname`` libraries, modification times in nanoseconds (GNU make compares them at that precision)."""

from __future__ import annotations

import os
from pathlib import Path

from onitu.make.database import Database
from onitu.make.implicit import archive_parts
from onitu.make.text import pattern_match, split_pattern

LIB_DIRS = ("/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu")  # GNU make 4.3 as Debian builds it
_AR_MAGIC = b"!<arch>\n"


class Locator:
    """vpath search and modification times for the files of one build directory."""

    def __init__(self, db: Database) -> None:
        self.cwd = db.cwd
        self._prefix = f"{str(db.cwd).rstrip('/')}/"  # for stat: joining a Path cost more than the stat itself
        self.vpaths: list[tuple[tuple[str, str] | str, list[str]]] = []
        for pattern, dirs in db.vpaths:
            self.vpaths.append((split_pattern(pattern) or pattern, dirs))
        general = [d for w in db.expander.value_of("VPATH").split() for d in w.split(":") if d]
        if general:
            self.vpaths.append((("", ""), general))
        self.lib_patterns = db.expander.value_of(".LIBPATTERNS").split()
        self._dirs: dict[str, set[str]] = {}  # directory -> its entries, read once (see exists)

    def exists(self, name: str) -> bool:
        """Does ``name`` exist here or on the vpath (an archive member: in its archive)? Answered from directory
        listings read once, as GNU's directory cache does: implicit rule search asks this for many names."""
        if archive_parts(name) is not None:
            return self.mtime(name) is not None
        return self._listed(name) or self.search(name, listed=True) is not None

    def _listed(self, name: str) -> bool:
        directory, base = os.path.split(name)
        names = self._dirs.get(directory)
        if names is None:
            try:
                names = self._dirs[directory] = set(os.listdir(self.cwd / directory))
            except OSError:
                names = self._dirs[directory] = set()
        return base in names or (not base and os.path.lexists(self.cwd / name))

    def search(self, name: str, listed: bool = False) -> str | None:
        """The vpath name of a file that does not exist under ``name`` (``-lname``: the library found), or None.
        ``listed``: from the directory listings read before the build (else the file system now)."""
        if name.startswith("-l") and len(name) > 2:
            return self.library(name[2:])
        if not self.vpaths or name.startswith("/") or archive_parts(name) is not None:
            return None
        for pattern, dirs in self.vpaths:
            if isinstance(pattern, str) and pattern != name:
                continue
            if isinstance(pattern, tuple) and pattern_match(pattern, name) is None:
                continue
            for directory in dirs:
                candidate = f"{directory.rstrip('/')}/{name}" if directory not in (".", "./") else name
                if self._listed(candidate) if listed else os.path.lexists(self.cwd / candidate):
                    return candidate
        return None

    def library(self, lib: str) -> str | None:
        """GNU's library_search: each .LIBPATTERNS pattern, in the directory, on the vpath, then the system's."""
        for pattern in self.lib_patterns:
            parts = split_pattern(pattern)
            if parts is None:
                continue
            file = parts[0] + lib + parts[1]
            if os.path.lexists(self.cwd / file):
                return file
            found = self.search(file)
            if found is not None:
                return found
            for directory in LIB_DIRS:
                if os.path.exists(f"{directory}/{file}"):
                    return f"{directory}/{file}"
        return None

    def mtime(self, name: str) -> int | None:
        """Modification time in nanoseconds of ``name`` as named (no vpath), None if missing."""
        member = archive_parts(name)
        if member is not None:
            return member_mtime(self.cwd / member[0], member[1])
        try:
            return os.stat(name if name.startswith("/") else self._prefix + name).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return None


def member_mtime(archive: Path, member: str) -> int | None:
    """The date an ``ar`` archive records for ``member`` (ns), None if the archive or the member is missing."""
    try:
        data = archive.read_bytes()
    except OSError:
        return None
    if not data.startswith(_AR_MAGIC):
        return None
    names = b""
    pos = len(_AR_MAGIC)
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        raw, size_text = header[:16].rstrip(b" "), header[48:58].strip()
        size = int(size_text) if size_text.isdigit() else 0
        body = pos + 60
        if raw == b"//":
            names = data[body : body + size]
        elif raw != b"/" and raw != b"/SYM64/":
            name = _member_name(raw, names, data, body)
            if name == member or (len(member) > 15 and name == member[:15]):
                date = header[16:28].strip()
                return int(date) * 1_000_000_000 if date.isdigit() else 0
        pos = body + size + (size & 1)
    return None


def _member_name(raw: bytes, names: bytes, data: bytes, body: int) -> str:
    if raw.startswith(b"#1/"):  # BSD: the name follows the header
        length = int(raw[3:]) if raw[3:].isdigit() else 0
        return data[body : body + length].rstrip(b"\0").decode(errors="surrogateescape")
    if raw.startswith(b"/") and raw[1:].isdigit():  # GNU: an offset into the long-names table
        start = int(raw[1:])
        end = names.find(b"/\n", start)
        return names[start : end if end >= 0 else None].decode(errors="surrogateescape")
    return raw.rstrip(b"/").decode(errors="surrogateescape")
