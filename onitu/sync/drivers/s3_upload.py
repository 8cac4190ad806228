"""Verified, resumable uploads to S3: one PUT for a small file, a multipart upload for a big one.

A file that fits in one part is buffered, hashed and sent in one PUT carrying its sha256 in its metadata: nothing
is visible unless the hash matched. A bigger one goes, part by part, to a multipart upload at a staging key
(``….onitu-tmp-<name hash>-<sha256 prefix>``, skipped by listings), which S3 keeps if the transfer is interrupted:
:func:`staged` finds it again, and a resumed write sends the parts from the first missing one. The upload is
completed only if the hash of what was sent is the expected one (after a resume, the staged object is read back and
hashed whole: S3 cannot hash the parts sent by an earlier attempt), then copied server-side to its key and the
staging object deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from onitu.sync.drivers.contract import CHUNK, DriverError, HashMismatch, Precondition, Stat
from onitu.sync.drivers.staging import staging_path

if TYPE_CHECKING:
    from onitu.sync.drivers.s3 import S3Driver

PART = 8 * CHUNK  # bytes per part (S3's minimum is 5 MiB; at most 10,000 parts: 78 GiB a file)
SHA_KEY = "onitu-sha256"


def _call(driver: S3Driver, path: str, method: str, **kwargs: Any) -> Any:
    with driver.failing(path):
        return driver.s3(method, **kwargs)


def _staging_key(driver: S3Driver, path: str) -> str:
    return driver.key(staging_path(path))


def write(driver: S3Driver, path: str, chunks: Iterable[bytes], expected: str, resume_from: int,
          replaces: Precondition) -> Stat:
    """Write ``path`` from ``chunks`` (its bytes from ``resume_from`` on) and return its new :class:`Stat`."""
    if resume_from:
        return _resume(driver, path, iter(chunks), expected, resume_from, replaces)
    digest, buffer = hashlib.sha256(), bytearray()
    source = iter(chunks)
    for data in source:
        digest.update(data)
        buffer += data
        if len(buffer) >= PART:
            return _multipart(driver, path, _chain(bytes(buffer), source), expected, replaces)
    if digest.hexdigest() != expected:
        raise driver.error(HashMismatch, path, f"sha256 {digest.hexdigest()} written, {expected} expected")
    with driver.failing(path):
        driver.check_precondition(path, replaces)
    sent = _call(driver, path, "put_object", Key=driver.key(path), Body=bytes(buffer), Metadata={SHA_KEY: expected})
    return _put(path, len(buffer), sent, expected)


def _put(path: str, size: int, answer: dict[str, Any], sha256: str) -> Stat:
    """The object a PUT just wrote, from its answer (no HEAD): its ETag, and its time as the server gives it
    (Last-Modified where the server sends it, else the answer's Date, which S3 lists at the same precision)."""
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    when = headers.get("last-modified") or headers.get("date")
    mtime_ns = int(parsedate_to_datetime(when).timestamp()) * 1_000_000_000 if when else time.time_ns()
    return Stat(path, False, size, mtime_ns, answer["ETag"].strip('"'), sha256)


def _written(driver: S3Driver, path: str) -> Stat:
    """The object just written, as a listing will show it (its mtime is the server's)."""
    with driver.failing(path):
        stat = driver.head(path)
    if stat is None:
        raise driver.error(DriverError, path, "vanished right after it was written")
    return stat


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _parts(source: Iterable[bytes]) -> Iterator[bytes]:
    """``source`` re-cut in parts of exactly :data:`PART` bytes (the last one shorter)."""
    buffer = bytearray()
    for data in source:
        buffer += data
        while len(buffer) >= PART:
            yield bytes(buffer[:PART])
            del buffer[:PART]
    if buffer:
        yield bytes(buffer)


def _send(driver: S3Driver, path: str, key: str, upload: str, source: Iterable[bytes], first: int,
          done: list[dict[str, Any]]) -> None:
    for number, part in enumerate(_parts(source), start=first):
        sent = _call(driver, path, "upload_part", Key=key, UploadId=upload, PartNumber=number, Body=part)
        done.append({"PartNumber": number, "ETag": sent["ETag"]})


def _multipart(driver: S3Driver, path: str, source: Iterator[bytes], expected: str, replaces: Precondition) -> Stat:
    digest = hashlib.sha256()
    key = f"{_staging_key(driver, path)}-{expected[:16]}"
    upload = _call(driver, path, "create_multipart_upload", Key=key, Metadata={SHA_KEY: expected})["UploadId"]
    done: list[dict[str, Any]] = []

    def hashed() -> Iterator[bytes]:
        for data in source:
            digest.update(data)
            yield data

    _send(driver, path, key, upload, hashed(), 1, done)  # a failure of the source leaves the upload to resume
    if digest.hexdigest() != expected:
        _call(driver, path, "abort_multipart_upload", Key=key, UploadId=upload)
        raise driver.error(HashMismatch, path, f"sha256 {digest.hexdigest()} written, {expected} expected")
    _call(driver, path, "complete_multipart_upload", Key=key, UploadId=upload, MultipartUpload={"Parts": done})
    return _publish(driver, path, key, replaces)


def _resume(driver: S3Driver, path: str, source: Iterator[bytes], expected: str, resume_from: int,
            replaces: Precondition) -> Stat:
    key, size, upload, parts = staged(driver, path)
    if upload is None or not key.endswith(f"-{expected[:16]}"):
        raise driver.error(HashMismatch, path, f"what is staged is not of the sha256 {expected} being sent")
    if resume_from % PART or resume_from > size:
        raise driver.error(DriverError, path, f"cannot resume from {resume_from}: an upload resumes at a part "
                                              f"boundary ({PART} bytes) up to the {size} bytes staged")
    done = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts[:resume_from // PART]]
    _send(driver, path, key, upload, source, len(done) + 1, done)
    _call(driver, path, "complete_multipart_upload", Key=key, UploadId=upload, MultipartUpload={"Parts": done})
    digest = hashlib.sha256()
    for data in _read_all(driver, path, key):  # earlier parts came from another attempt: check the whole
        digest.update(data)
    if digest.hexdigest() != expected:
        _call(driver, path, "delete_object", Key=key)
        raise driver.error(HashMismatch, path, f"sha256 {digest.hexdigest()} written, {expected} expected")
    return _publish(driver, path, key, replaces)


def _read_all(driver: S3Driver, path: str, key: str) -> Iterator[bytes]:
    size = _call(driver, path, "head_object", Key=key)["ContentLength"]
    for offset in range(0, size, PART):
        with driver.failing(path):
            yield driver.call(driver.fs.cat_file, f"{driver.bucket}/{key}", start=offset, end=min(offset + PART, size))


def _publish(driver: S3Driver, path: str, key: str, replaces: Precondition) -> Stat:
    """Copy the completed staging object to its key (server-side, metadata kept) and delete it."""
    try:
        with driver.failing(path):
            driver.check_precondition(path, replaces)
    except DriverError:
        _call(driver, path, "delete_object", Key=key)
        raise
    with driver.failing(path):
        driver.call(driver.fs.copy, f"{driver.bucket}/{key}", f"{driver.bucket}/{driver.key(path)}")
        driver.s3("delete_object", Key=key)
    return _written(driver, path)


def staged(driver: S3Driver, path: str) -> tuple[str, int, str | None, list[dict[str, Any]]]:
    """(staging key, bytes in whole consecutive parts, upload id, parts) of the newest interrupted upload to
    ``path`` (an upload id None and 0 bytes if there is none)."""
    prefix = _staging_key(driver, path) + "-"
    uploads = driver.s3("list_multipart_uploads", Prefix=prefix).get("Uploads", ())
    if not uploads:
        return prefix, 0, None, []
    newest = max(uploads, key=lambda u: u["Initiated"])
    parts = sorted(driver.s3("list_parts", Key=newest["Key"], UploadId=newest["UploadId"]).get("Parts", ()),
                   key=lambda p: p["PartNumber"])
    whole = []
    for number, part in enumerate(parts, start=1):
        if part["PartNumber"] != number or part["Size"] != PART:
            break
        whole.append(part)
    return newest["Key"], len(whole) * PART, newest["UploadId"], whole


def discard(driver: S3Driver, path: str) -> None:
    """Abort every interrupted upload to ``path``, and delete a completed staging object left behind."""
    prefix = _staging_key(driver, path) + "-"
    for upload in driver.s3("list_multipart_uploads", Prefix=prefix).get("Uploads", ()):
        driver.s3("abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in driver.s3("list_objects_v2", Prefix=prefix).get("Contents", ()):
        driver.s3("delete_object", Key=obj["Key"])
