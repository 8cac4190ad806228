"""The S3 driver: a bucket, or a key prefix in it, on AWS or any compatible server, through s3fs.

Options (:class:`~onitu.sync.drivers.options.S3Options`): ``bucket``, ``endpoint_url``, ``region``, ``key`` and
``secret`` (else the standard AWS credential chain), ``root`` (a key prefix), ``poll`` and ``settle``.

- Every object Onitu writes carries its sha256 in its user metadata (``x-amz-meta-onitu-sha256``), so a file is never
  downloaded to be hashed; objects written by other tools are, once per ETag (the plug caches hashes).
- A file up to one part (:data:`PART`) is one PUT, after its hash was checked. A bigger one is a multipart upload to
  a staging key, resumable at part boundaries, completed only once the hash of everything sent is the expected one,
  then copied into place server-side (:mod:`.s3_upload`).
- S3 has no directories, and no rename: a directory is implied by the keys below it, and a move is a copy and a
  delete, file by file for a directory (``features``). No placeholder objects are created. So that a directory does
  not vanish when its last file goes (which would read as a deletion, never made by anyone), the directories this
  driver has seen or made are kept in ``<state>/<service>.dirs`` until deleted through it.
- The fingerprint of a file is its ETag. Listing costs one request per 1,000 keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import botocore.exceptions
import s3fs
from pydantic import BaseModel

from onitu.sync.drivers import s3_upload
from onitu.sync.drivers.contract import (
    ANY,
    MARKER,
    DriverError,
    Features,
    Precondition,
    Stat,
    ancestors,
    is_under,
)
from onitu.sync.drivers.options import S3Options, reveal
from onitu.sync.drivers.remote import RemoteDriver

SHA_KEY = "onitu-sha256"  # user metadata of the objects Onitu writes
PART = s3_upload.PART


def _ns(when: datetime | None) -> int:
    return int(when.timestamp() * 1e9) if when is not None else 0


def _file(path: str, size: int, etag: str, modified: datetime | None, sha256: str | None = None) -> Stat:
    return Stat(path, False, size, _ns(modified), etag.strip('"'), sha256)


def _dir(path: str) -> Stat:
    return Stat(path, True, 0, 0, "d")


class S3Driver(RemoteDriver):
    """Objects under a key prefix of a bucket."""

    name = "s3"
    Options = S3Options
    features: ClassVar[Features] = Features(
        atomic_rename=False, resumable=PART, real_dirs=False, dir_move=False, native_hash=True, mtime_precision=1.0,
        mtime_settable=False, watch="poll")
    TRANSIENT = ()  # s3fs retries them itself

    def __init__(self, service: str, options: BaseModel, state: Path | None = None) -> None:
        assert isinstance(options, S3Options)
        super().__init__(service, options, state)
        self.options: S3Options = options
        self.settle = 0.0  # objects appear whole
        self.bucket, self._prefix = options.bucket, f"{options.root}/" if options.root else ""
        self._fs: s3fs.S3FileSystem | None = None
        self._dirs_file = state / f"{service}.dirs" if state is not None else None
        self._seen_dirs: set[str] = self._load_dirs()

    @property
    def root(self) -> str:
        """``s3://bucket/prefix`` (at the endpoint, if not AWS)."""
        at = f" at {self.options.endpoint_url}" if self.options.endpoint_url else ""
        return f"s3://{self.bucket}/{self.options.root}{at}"

    @property
    def fs(self) -> s3fs.S3FileSystem:
        """The s3fs filesystem (created on first use: reading the secrets may fail)."""
        if self._fs is None:
            o = self.options
            self._fs = s3fs.S3FileSystem(
                key=reveal(o.key, "key"), secret=reveal(o.secret, "secret"), endpoint_url=o.endpoint_url,
                client_kwargs={"region_name": o.region} if o.region else {}, skip_instance_cache=True,
                use_listings_cache=False, config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 5,
                                                         "read_timeout": 20})
            self._fs.retries = 3  # s3fs retries with backoff: botocore's own retries would multiply them
        return self._fs

    def key(self, path: str) -> str:
        """The object key of a relative path."""
        return self._prefix + path

    def s3(self, method: str, **kwargs: Any) -> Any:
        """One S3 API call (s3fs translates errors to OSErrors and retries the transient ones)."""
        return self.call(self.fs.call_s3, method, Bucket=self.bucket, **kwargs)

    def _reset(self) -> None:
        pass  # s3fs reconnects by itself

    # -- directories kept -----------------------------------------------------------------------------------------

    def _load_dirs(self) -> set[str]:
        if self._dirs_file is None or not self._dirs_file.exists():
            return set()
        try:
            return set(json.loads(self._dirs_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return set()

    def _keep_dirs(self, paths: Iterable[str], *, drop: str | None = None) -> None:
        before = set(self._seen_dirs)
        if drop is not None:
            self._seen_dirs = {d for d in self._seen_dirs if not is_under(d, drop)}
        for path in paths:
            self._seen_dirs.add(path)
            self._seen_dirs.update(ancestors(path))
        if self._seen_dirs != before and self._dirs_file is not None:
            temp = self._dirs_file.with_name(self._dirs_file.name + ".tmp")
            with contextlib.suppress(OSError):
                temp.write_text(json.dumps(sorted(self._seen_dirs)), encoding="utf-8")
                os.replace(temp, self._dirs_file)

    # -- availability ---------------------------------------------------------------------------------------------

    def _probe(self) -> str | None:
        try:
            self.s3("head_object", Key=self.key(MARKER))
            return None
        except FileNotFoundError:
            pass
        try:
            self.s3("head_bucket")
        except FileNotFoundError:
            return f"bucket {self.bucket} does not exist"
        return None if self.unmarked_ok else (f"no {MARKER} marker under the prefix (not this replica, or emptied; "
                                              f"a new replica must be initialised)")

    def _mark(self) -> None:
        body = f"This prefix is the root of the Onitu service {self.service}.\n".encode()
        self.s3("put_object", Key=self.key(MARKER), Body=body)

    def describe(self, exc: BaseException) -> str:
        """Credentials, a missing bucket and connection failures in words."""
        if isinstance(exc, PermissionError):
            return f"access denied (wrong key or secret?): {exc}"
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return f"cannot reach the server: {exc}"
        return super().describe(exc)

    # -- reading --------------------------------------------------------------------------------------------------

    def head(self, path: str) -> Stat | None:
        """The file at ``path`` (one HEAD), None if there is none."""
        try:
            found = self.s3("head_object", Key=self.key(path))
        except FileNotFoundError:
            return None
        return _file(path, found["ContentLength"], found["ETag"], found.get("LastModified"),
                     found.get("Metadata", {}).get(SHA_KEY))

    def raw_stat(self, path: str) -> Stat | None:
        """A file (one HEAD), else a directory kept or implied by the keys below it."""
        found = self.head(path)
        if found is not None:
            return found
        if path in self._seen_dirs:
            return _dir(path)
        if self.s3("list_objects_v2", Prefix=self.key(path) + "/", MaxKeys=1).get("KeyCount"):
            self._keep_dirs([path])
            return _dir(path)
        return None

    def check_precondition(self, path: str, replaces: Precondition) -> Stat | None:
        """The entry at ``path`` as a precondition needs it (its fingerprint): one listing of the keys starting with
        its key, which shows the object and the keys below it as a directory, where a stat costs a HEAD then a
        listing for a path with nothing there (every new file)."""
        if replaces is ANY:
            return None
        current = self._peek(path)
        self.precondition(current, path, replaces)
        return current

    def _peek(self, path: str) -> Stat | None:
        key = self.key(path)
        page = self.s3("list_objects_v2", Prefix=key, MaxKeys=100)
        below = path in self._seen_dirs
        for obj in page.get("Contents", ()):
            if obj["Key"] == key:  # (it sorts first among the keys it prefixes)
                return _file(path, obj["Size"], obj["ETag"], obj.get("LastModified"))
            below = below or obj["Key"].startswith(key + "/")
        if below:
            return _dir(path)
        return self.raw_stat(path) if page.get("IsTruncated") else None  # siblings such as `name.bak` filled it

    def list(self, prefix: str = "") -> Iterable[Stat]:
        """Every object below ``prefix`` (a request per 1,000 keys), with the directories they imply or that were
        kept."""
        prefix = self.check(prefix, root_ok=True)
        self.ensure()
        start = self.key(f"{prefix}/" if prefix else "")
        files: dict[str, Stat] = {}
        dirs: set[str] = set()
        token: str | None = None
        with self.failing(prefix):
            while True:
                page = self.s3("list_objects_v2", Prefix=start, **({"ContinuationToken": token} if token else {}))
                for obj in page.get("Contents", ()):
                    self._listed(obj, files, dirs)
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
        self.ensure()  # a listing of a prefix whose marker vanished half-way must not look like deletions
        self._keep_dirs(dirs)
        dirs = {d for d in self._seen_dirs if is_under(d, prefix) and d != prefix}
        entries = [_dir(d) for d in dirs] + [s for p, s in files.items() if p not in dirs]
        return sorted(entries, key=lambda s: s.path)

    def _listed(self, obj: dict[str, Any], files: dict[str, Stat], dirs: set[str]) -> None:
        rel = obj["Key"][len(self._prefix):]
        if rel.endswith("/"):  # a directory placeholder made by another tool
            if (path := self.accept(rel.rstrip("/"))) is not None:
                dirs.add(path)
            return
        path = self.accept(rel)
        if path is not None:
            files[path] = _file(path, obj["Size"], obj["ETag"], obj.get("LastModified"))
            dirs.update(ancestors(path))

    def raw_read(self, path: str, offset: int, length: int) -> bytes:
        """One ranged GET (nothing from past the end)."""
        try:
            end = None if length < 0 else offset + length
            return self.fs.cat_file(f"{self.bucket}/{self.key(path)}", start=offset, end=end)
        except OSError as exc:
            if exc.errno == errno.EINVAL and "range" in str(exc).lower():
                return b""
            raise

    def checksum(self, path: str) -> str:
        """The sha256 kept in the object's metadata (one HEAD); read and hashed only for objects written by others."""
        path = self.check(path)
        with self.failing(path):
            found = self.head(path)
        if found is not None and found.sha256:
            return found.sha256
        return super().checksum(path)

    # -- writing --------------------------------------------------------------------------------------------------

    def write(
        self, path: str, chunks: Iterable[bytes], *, expected_sha256: str, resume_from: int = 0,
        replaces: Precondition = ANY,
    ) -> Stat:
        """One PUT up to a part, else a resumable multipart upload (see :mod:`.s3_upload`)."""
        self.ensure()
        path = self.check(path)
        if path in self._seen_dirs:
            raise self.error(DriverError, path, "a directory is in the way")
        stat = s3_upload.write(self, path, chunks, expected_sha256, resume_from, replaces)
        self._keep_dirs(ancestors(path))
        return self.wrote_stat(stat)

    def partial(self, path: str) -> int:
        """Bytes sent in whole parts by an interrupted multipart upload to ``path``."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            return s3_upload.staged(self, path)[1]

    def discard(self, path: str) -> None:
        """Abort the interrupted uploads to ``path``."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            s3_upload.discard(self, path)

    # -- namespace ------------------------------------------------------------------------------------------------

    def remove_entry(self, current: Stat) -> None:
        """Delete an object; or forget a directory found empty (and delete its placeholder, if another tool made
        one)."""
        path = current.path
        if not current.is_dir:
            self.s3("delete_object", Key=self.key(path))
            return
        below = self.s3("list_objects_v2", Prefix=self.key(path) + "/", MaxKeys=2).get("Contents", ())
        if any(obj["Key"] != self.key(path) + "/" for obj in below) or any(
                is_under(d, path) and d != path for d in self._seen_dirs):
            raise self.error(DriverError, path, "directory not empty")
        self.s3("delete_object", Key=self.key(path) + "/")
        self._keep_dirs((), drop=path)

    def move_entry(self, current: Stat, dst: str) -> Stat:
        """Copy then delete: one object, or each object below a directory (S3 has no rename)."""
        src = current.path
        if not current.is_dir:
            self._copy_delete(src, dst)
            self._keep_dirs(ancestors(dst))
            return self.stat(dst) or current
        moved = list(self.list(src))
        for stat in moved:
            if not stat.is_dir:
                self._copy_delete(stat.path, dst + stat.path[len(src):])
        self._keep_dirs([dst, *(dst + s.path[len(src):] for s in moved if s.is_dir)], drop=src)
        self.s3("delete_object", Key=self.key(src) + "/")
        return _dir(dst)

    def _copy_delete(self, src: str, dst: str) -> None:
        self.call(self.fs.copy, f"{self.bucket}/{self.key(src)}", f"{self.bucket}/{self.key(dst)}")
        self.s3("delete_object", Key=self.key(src))

    def mkdir(self, path: str) -> Stat:
        """Keep a directory (nothing is written to the bucket): refused where a file is."""
        path = self.check(path)
        self.ensure()
        with self.failing(path):
            if self.head(path) is not None:
                raise self.error(DriverError, path, "a file is in the way")
        self._keep_dirs([path])
        return _dir(path)
