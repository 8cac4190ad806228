"""Where content goes when a case-insensitive replica cannot take it under its own name.

On a replica that ignores case, ``a.txt`` cannot be written beside ``A.txt``, and ``docs/y.txt`` cannot be written
when ``Docs/`` is there: the disk would put it in ``Docs/``, where the hub expects nothing of the kind. The driver
refuses with :class:`~onitu.sync.drivers.contract.CaseCollision`, naming the entry that clashes: the file itself,
or the directory above it. The content then lands beside that entry under a conflict name (``a.conflict-…-b.txt``;
``docs.conflict-…-b/y.txt`` for everything below a clashing directory), reaches every replica from there, and
``onitu conflicts`` lists it.

A conflict name is chosen once per clash and reused: remembered while the plug runs, and found again among the
entries the replica holds after a restart. The hub retries a refused copy now and then; each retry must land in
the same place, not make another conflict copy.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from onitu.sync.drivers.contract import parent_of
from onitu.sync.drivers.naming import conflict_name
from onitu.sync.plug.reports import Reporter


class SetApart:
    """The conflict names one plug gave to what its replica could not take under its own name."""

    def __init__(self, service: str, reporter: Reporter) -> None:
        self.service, self.reporter = service, reporter
        # (folder, clashing path, sha256 of a file; "" for a directory) -> the name it was given
        self._names: dict[tuple[str, str, str], str] = {}

    def target(self, folder: str, path: str, clash: str, sha256: str | None) -> str:
        """Where the entry ``path`` of ``folder`` goes (a file of content ``sha256``, or a directory: None), the
        entry whose name clashes being ``clash``: ``path`` itself, or a directory above it."""
        own = clash == path
        key = (folder, clash, (sha256 or "") if own else "")
        name = self._names.get(key)
        if name is None:
            name = self._found(folder, clash, sha256 if own else None) or conflict_name(
                clash, datetime.now(UTC), self.service)
            self._names[key] = name
        return name + path[len(clash):]

    def _found(self, folder: str, clash: str, sha256: str | None) -> str | None:
        """A conflict name this plug gave ``clash`` before it restarted: a sibling named like one, holding the same
        content (a file) or being a directory."""
        directory = parent_of(clash)
        base = clash[len(directory) + 1:] if directory else clash
        dot = base.rfind(".")  # split as conflict_name splits it, directories' names too
        stem, ext = (base[:dot], base[dot:]) if dot > 0 else (base, "")
        named = re.compile(rf"{re.escape(stem)}\.conflict-\d{{8}}-\d{{6}}-{re.escape(self.service)}(-\d+)?"
                           rf"{re.escape(ext)}")
        for path, seen in sorted(self.reporter.reported_tree(folder, directory).items()):
            if parent_of(path) != directory or not named.fullmatch(path[len(directory) + 1:] if directory else path):
                continue
            if (seen.kind == "dir") if sha256 is None else (seen.kind == "file" and seen.sha256 == sha256):
                return path
        return None
