"""The WebDAV driver: a collection on a WebDAV server, through webdav4.

Options (:class:`~onitu.sync.drivers.options.WebDAVOptions`): ``url`` (the collection the service lives in),
``username``, ``password``, ``poll`` and ``settle``.

Listings are one ``PROPFIND`` (depth 1) per collection; a file's fingerprint is its etag (with its size and
modification time). Reads are ranged GETs. Writes go to a staging name with ``client.upload_fileobj`` (webdav4's
``put_file`` lists the parent collection for every file) and are moved into place with ``MOVE`` (overwriting); a
PUT cannot be continued, so writes are not resumable (``features.resumable == 0``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel
from webdav4.client import Client, ClientError, HTTPError, ResourceNotFound

from onitu.sync.drivers.contract import ANY, MARKER, DriverError, Features, NotFound, Precondition, Stat
from onitu.sync.drivers.options import WebDAVOptions, reveal
from onitu.sync.drivers.staging import RenameStaged

TIMEOUT = 30.0


class _Stream(io.RawIOBase):
    """A readable file object over an iterator of chunks (what ``upload_fileobj`` reads from)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _translate(exc: BaseException) -> BaseException:
    """webdav4's and httpx's errors as the OSErrors the remote base understands."""
    if isinstance(exc, ResourceNotFound):
        return FileNotFoundError(str(exc))
    if isinstance(exc, HTTPError):
        if exc.status_code == HTTPStatus.NOT_FOUND:
            return FileNotFoundError(str(exc))
        if exc.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            return PermissionError(f"{exc} (wrong username or password?)")
        if exc.status_code >= 500:
            return ConnectionError(str(exc))
    if isinstance(exc, httpx.TransportError):
        return ConnectionError(str(exc) or type(exc).__name__)
    return exc


def _stat(path: str, props: Any) -> Stat:
    if props.resource_type == "directory":
        return Stat(path, True, 0, 0, "d")
    size = props.content_length or 0
    mtime = int(props.modified.timestamp() * 1e9) if props.modified else 0
    return Stat(path, False, size, mtime, f"{props.etag}-{size}-{mtime}")


class WebDAVDriver(RenameStaged):
    """A collection tree on a WebDAV server."""

    name = "webdav"
    Options = WebDAVOptions
    features: ClassVar[Features] = Features(resumable=0, watch="poll", mtime_precision=1.0, mtime_settable=False)

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        assert isinstance(options, WebDAVOptions)
        super().__init__(service, options, state)
        self.options: WebDAVOptions = options
        self._client: Client | None = None

    @property
    def root(self) -> str:
        """The collection's URL."""
        return self.options.url

    @property
    def client(self) -> Client:
        """The webdav4 client (made on first use: reading the secrets may fail)."""
        if self._client is None:
            o = self.options
            user, password = reveal(o.username, "username"), reveal(o.password, "password")
            self._client = Client(o.url.rstrip("/") + "/", auth=(user, password or "") if user else None,
                                  timeout=TIMEOUT, retry=False)
        return self._client

    def dav(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """``Client.operation(*args)``, errors translated, retried when transient."""
        def once() -> Any:
            try:
                return getattr(self.client, operation)(*args, **kwargs)
            except (ClientError, httpx.HTTPError) as exc:
                raise _translate(exc) from exc
        return self.call(once)

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.http.close()

    # -- availability ---------------------------------------------------------------------------------------------

    def _props(self, path: str, depth: str = "0") -> dict[str, Any] | None:
        """PROPFIND ``path`` (internal names allowed): {relative name: properties}, None if there is nothing."""
        try:
            found = self.dav("propfind", path, headers={"Depth": depth})
        except FileNotFoundError:
            return None
        return {response.path_relative_to(self.client.base_url).strip("/"): response.properties
                for response in found.responses.values()}

    def _probe(self) -> str | None:
        base = self._props("")
        if base is None or base.get("") is None or base[""].resource_type != "directory":
            return "the collection does not exist"
        if not self.unmarked_ok and self._props(MARKER) is None:
            return f"no {MARKER} marker (replaced, emptied or not this replica; a new replica must be initialised)"
        return None

    def _mark(self) -> None:
        self.raw_upload(MARKER, [f"This collection is the root of the Onitu service {self.service}.\n".encode()], 0)

    # -- reading --------------------------------------------------------------------------------------------------

    def stat(self, path: str) -> Stat | None:
        """The entry at ``path`` (one PROPFIND of depth 0)."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            found = self._props(path)
        props = found.get(path) if found else None
        return _stat(path, props) if props is not None else None

    def list(self, prefix: str = "") -> Iterable[Stat]:
        """Every entry below ``prefix``, one PROPFIND of depth 1 per collection."""
        prefix = self.check(prefix, root_ok=True)
        self.ensure()
        found: list[Stat] = []
        stack = [prefix]
        with self.failing(prefix):
            while stack:
                directory = stack.pop()
                entries = self._props(directory, "1")
                if entries is None:
                    if directory == prefix:
                        raise FileNotFoundError(prefix)
                    continue  # removed while we walked
                for name, props in entries.items():
                    if name == directory:
                        continue
                    child = self.accept(name)
                    if child is None or child.rpartition("/")[0] != directory:
                        continue
                    stat = _stat(child, props)
                    found.append(stat)
                    if stat.is_dir:
                        self.known_dir(child)
                        stack.append(child)
        self.ensure()
        return sorted(found, key=lambda s: s.path)

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes ``offset`` to ``offset + length`` (or the end): one ranged GET."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self.check(path)
        self.ensure()
        if length == 0:
            return b""
        with self.failing(path):
            current = None
            try:
                return self.call(self.raw_read, path, offset, -1 if length is None else length)
            except FileNotFoundError:
                current = self.stat(path)
                if current is None:
                    raise
            raise self.error(DriverError, path, "is a directory")

    def raw_read(self, path: str, offset: int, length: int) -> bytes:
        """A ranged GET (416, past the end, is no bytes)."""
        end = "" if length < 0 else str(offset + length - 1)
        try:
            answer = self.client.http.get(self.client.join_url(path), headers={"Range": f"bytes={offset}-{end}"})
        except httpx.HTTPError as exc:
            raise _translate(exc) from exc
        if answer.status_code == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
            return b""
        if answer.status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED):
            raise FileNotFoundError(path)
        if answer.status_code not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            raise _translate(HTTPError(answer))
        if answer.status_code == HTTPStatus.OK:  # the server ignored the range
            return answer.content[offset:None if length < 0 else offset + length]
        return answer.content

    # -- staging primitives ---------------------------------------------------------------------------------------

    def raw_size(self, path: str) -> int | None:
        """The size of a file, None if absent."""
        found = self._props(path)
        props = found.get(path) if found else None
        return props.content_length or 0 if props is not None else None

    def raw_upload(self, path: str, chunks: Iterable[bytes], offset: int) -> None:
        """A PUT streamed from ``chunks`` (through ``upload_fileobj``; never at an offset)."""
        assert offset == 0, "WebDAV writes are not resumable"
        self.dav("upload_fileobj", _Stream(chunks), path, overwrite=True)

    def raw_replace(self, src: str, dst: str) -> None:
        """MOVE over ``dst``."""
        self.dav("move", src, dst, overwrite=True)

    def raw_remove(self, path: str) -> None:
        """DELETE one file."""
        self.dav("remove", path)

    # -- namespace ------------------------------------------------------------------------------------------------

    def _existing(self, path: str) -> Stat:
        current = self.stat(path)
        if current is None:
            raise self.error(NotFound, path, "no such file or directory")
        return current

    def delete(self, path: str, *, replaces: Precondition = ANY) -> None:
        """Remove a file or an empty collection (DELETE would take a collection's content along: checked first)."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            current = self._existing(path)
            self.precondition(current, path, replaces)
            if current.is_dir:
                if len(self._props(path, "1") or {}) > 1:
                    raise self.error(DriverError, path, "directory not empty")
                self.forget_dirs(path)
            self.dav("remove", path)

    def move(self, src: str, dst: str, *, replaces: Precondition = ANY) -> Stat:
        """MOVE ``src`` to ``dst`` (which must not exist), creating the parents of ``dst``."""
        src, dst = self.check(src), self.check(dst)
        self.ensure()
        with self.failing(src):
            current = self._existing(src)
            self.precondition(current, src, replaces)
            if current.is_dir:
                self.refuse_into_itself(src, dst)
            if self.stat(dst) is not None:
                raise self.error(DriverError, dst, "destination exists")
            self.parent_ready(dst)
            self.dav("move", src, dst, overwrite=False)
            self.forget_dirs(src)
            moved = self.stat(dst)
        if moved is None:
            raise self.error(DriverError, dst, "vanished right after it was moved")
        return moved

    def mkdir(self, path: str) -> Stat:
        """Create a collection and its parents."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                current = "/".join(parts[:depth])
                if current in self._dirs:
                    continue
                found = self._props(current)
                props = found.get(current) if found else None
                if props is None:
                    self.dav("mkdir", current)
                elif props.resource_type != "directory":
                    raise self.error(DriverError, current, "a file is in the way")
                self.known_dir(current)
        return Stat(path, True, 0, 0, "d")
