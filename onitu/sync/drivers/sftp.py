"""The SFTP driver: a directory on an SSH server, through asyncssh.

Options (:class:`~onitu.sync.drivers.options.SFTPOptions`): ``host``, ``port`` (22), ``username``, ``password`` or
``key_file``, ``known_hosts`` (default ``~/.ssh/known_hosts``: a host whose key is not there, or differs, is refused
with the command that would add it), ``root`` (the remote directory, relative to the login directory unless
absolute), ``poll`` and ``settle``.

Writes are staged and renamed into place (``posix-rename``, atomic, replacing), resumable at any byte. Reads are
ranged (a read at an offset, not the whole file as sshfs's ranged read does). A file's fingerprint is its size and
mtime (seconds, as SFTP v3 gives them). Symbolic links are neither listed nor followed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

with warnings.catch_warnings():  # its DSA support warns at import; no DSA key is used here
    warnings.simplefilter("ignore")
    import asyncssh

from onitu.sync.drivers import aio
from onitu.sync.drivers.contract import (
    MARKER,
    DriverError,
    Features,
    Stat,
)
from onitu.sync.drivers.options import SFTPOptions, reveal
from onitu.sync.drivers.staging import RenameStaged

T = TypeVar("T")
_DIR, _FILE = asyncssh.FILEXFER_TYPE_DIRECTORY, asyncssh.FILEXFER_TYPE_REGULAR


def _translate(exc: BaseException) -> BaseException:
    """asyncssh's errors as the OSErrors the remote base understands."""
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return FileNotFoundError(str(exc.reason if isinstance(exc, asyncssh.SFTPError) else exc))
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermissionError(exc.reason)
    if isinstance(exc, asyncssh.ConnectionLost | asyncssh.ChannelOpenError | BrokenPipeError):
        return ConnectionError(str(exc))
    if isinstance(exc, asyncssh.SFTPNoConnection | asyncssh.SFTPConnectionLost):  # a client whose connection died:
        return ConnectionError(exc.reason)  # transient, so the connection is made again (else it fails for good)
    return exc


def _stat(path: str, attrs: asyncssh.SFTPAttrs) -> Stat | None:
    if attrs.type == _DIR:
        return Stat(path, True, 0, 0, "d")
    if attrs.type != _FILE:
        return None  # links, devices...: neither listed nor followed
    mtime_ns = (attrs.mtime or 0) * 1_000_000_000 + (attrs.mtime_ns or 0) % 1_000_000_000
    return Stat(path, False, attrs.size or 0, mtime_ns, f"{attrs.size}-{mtime_ns}")


class SFTPDriver(RenameStaged):
    """A directory tree on an SFTP server."""

    name = "sftp"
    Options = SFTPOptions
    features: ClassVar[Features] = Features(watch="poll", mtime_precision=1.0, mtime_settable=False)

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        assert isinstance(options, SFTPOptions)
        super().__init__(service, options, state)
        self.options: SFTPOptions = options
        self._base = options.root.rstrip("/") or "."
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._connecting = threading.Lock()

    @property
    def root(self) -> str:
        """``sftp://user@host:port/root``."""
        o = self.options
        return f"sftp://{o.host}:{o.port}/{o.root}"

    def full(self, path: str) -> str:
        """The server's name of a relative path."""
        return f"{self._base}/{path}" if path else self._base

    # -- connection -----------------------------------------------------------------------------------------------

    def _client(self) -> asyncssh.SFTPClient:
        with self._connecting:
            if self._sftp is None:
                self._sftp = aio.run(self._connect())
            return self._sftp

    async def _connect(self) -> asyncssh.SFTPClient:
        o = self.options
        known_hosts = os.path.expanduser(str(o.known_hosts))
        if not os.path.isfile(known_hosts):
            raise DriverError(self.service, self.root, "", f"known_hosts file {known_hosts} does not exist: check "
                              f"the server's key, then add it with `ssh-keyscan -p {o.port} {o.host} >> "
                              f"{known_hosts}` (or set the known_hosts option)")
        kwargs: dict[str, Any] = {"port": o.port, "known_hosts": known_hosts, "connect_timeout": 15,
                                  "username": reveal(o.username, "username") or None,
                                  "password": reveal(o.password, "password"), "agent_path": None}
        if o.key_file is not None:
            kwargs["client_keys"] = [os.path.expanduser(str(o.key_file))]
        elif o.password is not None:
            kwargs["client_keys"] = None
        try:
            self._conn = await asyncssh.connect(o.host, **kwargs)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise DriverError(self.service, self.root, "", f"the host key of {o.host}:{o.port} is not trusted by "
                              f"{known_hosts} (unknown, or changed since it was added: {exc.reason}); refusing "
                              f"to connect. Check the key, then add it with `ssh-keyscan -p {o.port} {o.host} "
                              f">> {known_hosts}`") from None
        except asyncssh.PermissionDenied as exc:
            raise PermissionError(f"authentication failed for user {kwargs['username']}: {exc.reason}") from None
        return await self._conn.start_sftp_client()

    def _reset(self) -> None:
        with self._connecting:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()

    def sftp(self, method: str, *args: Any) -> Any:
        """``SFTPClient.method(*args)`` on the server, asyncssh's errors translated, retried when transient."""
        return self.arun(lambda: getattr(self._client(), method)(*args))

    def arun(self, coroutine: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine ``coroutine()`` makes, asyncssh's errors translated, again after a transient one."""
        return self.call(lambda: self._translated(coroutine()))

    @staticmethod
    def _translated(awaitable: Awaitable[T]) -> T:
        try:
            return aio.run(awaitable)
        except asyncssh.Error as exc:
            raise _translate(exc) from exc

    # -- availability ---------------------------------------------------------------------------------------------

    def _probe(self) -> str | None:
        try:
            attrs = self.sftp("stat", self._base)
        except FileNotFoundError:
            return f"directory {self._base} does not exist on the server"
        if attrs.type != _DIR:
            return f"{self._base} is not a directory"
        if self.unmarked_ok:
            return None
        try:
            self.sftp("stat", self.full(MARKER))
        except FileNotFoundError:
            return f"no {MARKER} marker (replaced, emptied or not this replica; a new replica must be initialised)"
        return None

    def _mark(self) -> None:
        self.sftp("makedirs", self._base, asyncssh.SFTPAttrs(), True)
        self.raw_upload(MARKER, [f"This directory is the root of the Onitu service {self.service}.\n".encode()], 0)

    # -- reading --------------------------------------------------------------------------------------------------

    def raw_stat(self, path: str) -> Stat | None:
        """One lstat (links are not followed)."""
        try:
            return _stat(path, self._translated(self._client().lstat(self.full(path))))
        except FileNotFoundError:
            return None

    def raw_children(self, directory: str) -> Iterable[tuple[str, Any]]:
        """One directory read (paged by the server)."""
        return [(e.filename, e.attrs) for e in self._translated(self._client().readdir(self.full(directory)))
                if e.filename not in (".", "..")]

    def entry(self, path: str, info: Any) -> Stat | None:
        """From the attributes the directory read gave."""
        return _stat(path, info)

    def raw_read(self, path: str, offset: int, length: int) -> bytes:
        """Read through one open handle (ranged: the server sends only those bytes)."""
        async def read() -> bytes:
            async with self._client().open(self.full(path), "rb") as file:
                if (await file.stat()).type == _DIR:
                    raise IsADirectoryError(path)
                return await file.read(length, offset)
        return self._translated(read())

    # -- staging primitives ---------------------------------------------------------------------------------------

    def raw_size(self, path: str) -> int | None:
        """The size of a file, None if absent."""
        try:
            return self._translated(self._client().lstat(self.full(path))).size
        except FileNotFoundError:
            return None

    def raw_upload(self, path: str, chunks: Iterable[bytes], offset: int) -> None:
        """Write ``chunks`` at ``offset`` (truncating what was after it), through one handle."""
        file = self.sftp("open", self.full(path), "wb" if not offset else "r+b")
        try:
            if offset:
                aio.run(file.truncate(offset))
            for data in chunks:
                aio.run(file.write(data, offset))
                offset += len(data)
        except asyncssh.Error as exc:
            raise _translate(exc) from exc
        finally:
            with contextlib.suppress(asyncssh.Error, OSError):  # the connection is gone: what was written stays
                aio.run(file.close())

    def raw_replace(self, src: str, dst: str) -> None:
        """Rename over ``dst`` (OpenSSH's posix-rename: atomic)."""
        self._translated(self._client().posix_rename(self.full(src), self.full(dst)))

    def raw_remove(self, path: str) -> None:
        """Remove one file."""
        self._translated(self._client().remove(self.full(path)))

    def raw_rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        self._translated(self._client().rmdir(self.full(path)))

    def raw_empty(self, path: str) -> bool:
        """Nothing in the directory but . and .."""
        return not set(self._translated(self._client().listdir(self.full(path)))) - {".", ".."}

    def raw_rename(self, src: str, dst: str) -> None:
        """SFTP's rename (it never replaces)."""
        self._translated(self._client().rename(self.full(src), self.full(dst)))

    # -- namespace ------------------------------------------------------------------------------------------------

    def mkdir(self, path: str) -> Stat:
        """Create a directory and its parents."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            current = self.stat(path)
            if current is not None and not current.is_dir:
                raise self.error(DriverError, path, "a file is in the way")
            if current is None:
                self._makedirs(path)
        self.known_dir(path)
        return Stat(path, True, 0, 0, "d")

    def _makedirs(self, path: str) -> None:
        try:
            self.sftp("makedirs", self.full(path), asyncssh.SFTPAttrs(), True)
        except asyncssh.SFTPFailure as exc:
            raise self.error(DriverError, path, f"cannot create the directory (a file in the way?): {exc}") from None
