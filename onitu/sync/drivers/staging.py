"""Verified writes for remote backends that can rename: stage beside the target, check, rename into place.

The data goes to a staging name in the destination directory (``.onitu-tmp-…``, which listings skip), hashed on the
way; only a file whose sha256 is the expected one, at a path still holding what the caller based its decision on,
is renamed to its name. Where the backend can write at an offset (``features.resumable``), an interrupted write
leaves its staged bytes for a later ``write(…, resume_from=partial(path))``: the staged prefix is read back to be
hashed, so what becomes visible is always verified whole.
"""

from __future__ import annotations

import contextlib
import hashlib
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from onitu.sync.drivers.contract import (
    ANY,
    CHUNK,
    DriverError,
    HashMismatch,
    Precondition,
    Stat,
    temp_name,
)
from onitu.sync.drivers.remote import RemoteDriver


def staging_path(path: str) -> str:
    """Where a write to ``path`` is staged (a fixed name, so a resumed transfer finds it)."""
    parent, _, base = path.rpartition("/")
    return f"{parent}/{temp_name(base)}" if parent else temp_name(base)


class RenameStaged(RemoteDriver):
    """A remote driver on a server with real directories and renames, writing through a staging name. Subclasses
    provide the raw operations (on relative paths, internal names allowed, no checks, no retries)."""

    @abstractmethod
    def raw_children(self, directory: str) -> Iterable[tuple[str, Any]]:
        """(name, what the server says of it) for each entry of ``directory``; FileNotFoundError if it is gone."""

    @abstractmethod
    def entry(self, path: str, info: Any) -> Stat | None:
        """The :class:`Stat` of a listed entry (None for what is neither a file nor a directory)."""

    def list(self, prefix: str = "") -> Iterable[Stat]:
        """Every entry below ``prefix``: one listing (paged by the server) per directory."""
        prefix = self.check(prefix, root_ok=True)
        self.ensure()
        found: list[Stat] = []
        stack = [prefix]
        with self.failing(prefix):
            while stack:
                directory = stack.pop()
                try:
                    children = self.call(self.raw_children, directory)
                except FileNotFoundError:
                    if directory == prefix:
                        raise
                    continue  # removed while we walked
                for name, info in children:
                    child = self.accept(f"{directory}/{name}" if directory else name)
                    stat = self.entry(child, info) if child is not None and "/" not in name else None
                    if stat is not None:
                        found.append(stat)
                        if stat.is_dir:
                            self.known_dir(child)
                            stack.append(child)
        self.ensure()  # a listing of a root that vanished half-way must not look like deletions
        return sorted(found, key=lambda s: s.path)

    @abstractmethod
    def raw_size(self, path: str) -> int | None:
        """The size of the file at ``path`` (None if there is none)."""

    @abstractmethod
    def raw_upload(self, path: str, chunks: Iterable[bytes], offset: int) -> None:
        """Write ``chunks`` into ``path`` from ``offset`` (0: a new file, replacing any)."""

    @abstractmethod
    def raw_replace(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``, replacing the file there if any."""

    @abstractmethod
    def raw_remove(self, path: str) -> None:
        """Remove the file ``path`` (FileNotFoundError if there is none)."""

    @abstractmethod
    def raw_rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``."""

    @abstractmethod
    def raw_empty(self, path: str) -> bool:
        """Whether the directory ``path`` holds nothing (our own staging files included)."""

    @abstractmethod
    def raw_rename(self, src: str, dst: str) -> None:
        """Rename ``src`` (a file or a directory) to ``dst``, which does not exist."""

    def remove_entry(self, current: Stat) -> None:
        """A file, or a directory once checked empty."""
        if not current.is_dir:
            self.call(self.raw_remove, current.path)
            return
        if not self.call(self.raw_empty, current.path):
            raise self.error(DriverError, current.path, "directory not empty")
        self.call(self.raw_rmdir, current.path)

    def move_entry(self, current: Stat, dst: str) -> Stat:
        """One rename (a directory's content along)."""
        self.parent_ready(dst)
        self.call(self.raw_rename, current.path, dst)
        moved = self.stat(dst)
        if moved is None:
            raise self.error(DriverError, dst, "vanished right after it was moved")
        return moved

    def write(
        self, path: str, chunks: Iterable[bytes], *, expected_sha256: str, resume_from: int = 0,
        replaces: Precondition = ANY,
    ) -> Stat:
        """Stage, verify, rename into place (see :meth:`Driver.write`)."""
        self.ensure()
        path = self.check(path)
        temp = staging_path(path)
        if resume_from and not self.features.resumable:
            raise self.error(DriverError, path, "this backend cannot resume a write")
        digest = hashlib.sha256()
        failed: list[BaseException] = []
        size = [resume_from]

        def source() -> Iterator[bytes]:
            try:
                for data in chunks:
                    digest.update(data)
                    size[0] += len(data)
                    yield data
            except BaseException as exc:
                failed.append(exc)
                raise

        with self.failing(path):
            if resume_from:
                self._hash_staged(path, temp, resume_from, digest)
            self.parent_ready(path)
        try:
            self.raw_upload(temp, source(), resume_from)
        except Exception as exc:
            if failed:  # the sender's failure: what arrived stays staged for a resume
                raise failed[0] from None
            raise self.failure(exc, path) from None
        with self.failing(path):
            try:
                self._verify(path, temp, digest.hexdigest(), expected_sha256, size[0] if resume_from else None)
                current = self.stat(path)
                if current is not None and current.is_dir:
                    raise self.error(DriverError, path, "a directory is in the way")
                self.precondition(current, path, replaces)
            except DriverError:
                with contextlib.suppress(Exception):
                    self.raw_remove(temp)
                raise
            self._replace(temp, path, expected_sha256)
            stat = self.stat(path)
        if stat is None:
            raise self.error(DriverError, path, "vanished right after it was written")
        return self.wrote_stat(stat)

    def _replace(self, temp: str, path: str, expected_sha256: str) -> None:
        """Rename the staged ``temp`` over ``path``. A rename retried after its answer was lost (a dropped
        connection) finds its source gone: it was done if the staged file is gone and ``path`` has the content
        (read back to be sure: this happens seldom, and a wrong hash remembered would hide a difference)."""
        try:
            self.call(self.raw_replace, temp, path)
        except FileNotFoundError:
            if self.call(self.raw_size, temp) is not None or self.checksum(path) != expected_sha256:
                raise

    def _hash_staged(self, path: str, temp: str, length: int, digest: hashlib._Hash) -> None:
        staged = self.call(self.raw_size, temp) or 0
        if staged < length:
            raise self.error(DriverError, path, f"cannot resume from {length}: {staged} bytes staged")
        for offset in range(0, length, CHUNK):
            digest.update(self.call(self.raw_read, temp, offset, min(CHUNK, length - offset)))

    def _verify(self, path: str, temp: str, digest: str, expected: str, size: int | None) -> None:
        if digest != expected:
            raise self.error(HashMismatch, path, f"sha256 {digest} written, {expected} expected")
        if size is not None and self.call(self.raw_size, temp) != size:  # a resumed write left older bytes after
            raise self.error(HashMismatch, path, f"staged size differs from the {size} bytes sent")

    def partial(self, path: str) -> int:
        """Bytes staged by an interrupted write to ``path`` (0 where writes cannot resume)."""
        path = self.check(path)
        if not self.features.resumable:
            return 0
        self.ensure()
        with self.failing(path):
            return self.call(self.raw_size, staging_path(path)) or 0

    def discard(self, path: str) -> None:
        """Remove what an interrupted write to ``path`` staged."""
        path = self.check(path)
        self.ensure()
        with self.failing(path), contextlib.suppress(FileNotFoundError):
            self.call(self.raw_remove, staging_path(path))
