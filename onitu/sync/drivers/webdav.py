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
from webdav4.client import Client, ClientError, HTTPError, ResourceAlreadyExists, ResourceNotFound

from onitu.sync.drivers.contract import MARKER, DriverError, Features, Stat
from onitu.sync.drivers.options import WebDAVOptions, reveal
from onitu.sync.drivers.staging import RenameStaged

TIMEOUT = 20.0  # seconds without an answer before a request is given up (a frozen server)


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
        return self.call(self._dav, operation, *args, **kwargs)

    def _dav(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(*args, **kwargs)
        except (ClientError, httpx.HTTPError) as exc:
            raise _translate(exc) from exc

    def _reset(self) -> None:
        # The next request makes a new client. The old one is not closed: other threads' requests may be under way
        # on it, and closing it under them failed them all at once ("Bad file descriptor"), a MOVE included, whose
        # retry then found its source gone. Its connections close when it is collected.
        self._client = None

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

    def raw_stat(self, path: str) -> Stat | None:
        """One PROPFIND of depth 0."""
        found = self._props(path)
        props = found.get(path) if found else None
        return _stat(path, props) if props is not None else None

    def raw_children(self, directory: str) -> Iterable[tuple[str, Any]]:
        """One PROPFIND of depth 1."""
        entries = self._props(directory, "1")
        if entries is None:
            raise FileNotFoundError(directory)
        return [(name.rpartition("/")[2], props) for name, props in entries.items()
                if name != directory and name.rpartition("/")[0] == directory]

    def entry(self, path: str, info: Any) -> Stat | None:
        """From the PROPFIND's properties."""
        return _stat(path, info)

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
        self._dav("remove", path)

    def raw_rmdir(self, path: str) -> None:
        """DELETE a collection (checked empty: DELETE would take its content along)."""
        self._dav("remove", path)

    def raw_empty(self, path: str) -> bool:
        """A PROPFIND of depth 1 finds the collection alone."""
        return len(self._props(path, "1") or {}) <= 1

    def raw_rename(self, src: str, dst: str) -> None:
        """MOVE without overwriting."""
        self._dav("move", src, dst, overwrite=False)

    # -- namespace ------------------------------------------------------------------------------------------------

    def mkdir(self, path: str) -> Stat:
        """Create a collection and its parents (one made meanwhile by another writer is fine)."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                current = "/".join(parts[:depth])
                if current not in self._dirs:
                    self._collection(current)
                    self.known_dir(current)
        return Stat(path, True, 0, 0, "d")

    def _collection(self, path: str) -> None:
        """Make sure the collection ``path`` exists (its parent does)."""
        for attempt in (1, 2):
            found = self._props(path)
            props = found.get(path) if found else None
            if props is not None:
                if props.resource_type != "directory":
                    raise self.error(DriverError, path, "a file is in the way")
                return
            try:
                self.dav("mkdir", path)
                return
            except ResourceAlreadyExists:  # another transfer made it between our look and our MKCOL: look again
                if attempt == 2:
                    raise
