"""The conformance suite on the S3 driver against moto's server, plus what only S3 has: metadata hashes, missing
buckets, credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import Changed
from tests.conformance.served import FAST, s3_harness
from tests.conformance.suite import DriverConformance, Harness, listing, put, sha
from tests.servers import S3Server
from tests.servers.s3 import s3_process, s3_server_in, s3_user


@pytest.fixture
def harness(s3_server: S3Server) -> Iterator[Harness]:
    yield from s3_harness(s3_server.options, s3_server.client())


class TestS3Conformance(DriverConformance):
    """Every conformance test, on a key prefix of a moto bucket."""


def test_sha256_is_kept_in_metadata_and_not_downloaded(harness: Harness, s3_server: S3Server) -> None:
    stat = put(harness.driver, "f.txt", b"hello")
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key="root/f.txt")
    assert head["Metadata"]["onitu-sha256"] == stat.sha256 == harness.driver.checksum("f.txt")


def test_missing_bucket_and_wrong_secret_are_unavailable_with_the_reason(s3_server: S3Server, tmp_path: Path
                                                                          ) -> None:
    gone = open_driver("s3", "s3", {**s3_server.options, "bucket": "no-such-bucket", **FAST})
    assert "does not exist" in gone.available().reason
    with s3_process(tmp_path / "moto.log", check_credentials=True) as proc:  # the session's accepts any secret
        checked = s3_server_in(proc, "checked", *s3_user(proc))
        right = open_driver("s3", "s3", {**checked.options, **FAST}).available()  # let in: no marker there yet
        assert not right and "marker" in right.reason and "denied" not in right.reason, right
        wrong = open_driver("s3", "s3", {**checked.options, "secret": "not-the-secret", **FAST}).available()
        assert not wrong and "access denied (wrong key or secret?)" in wrong.reason, wrong


def test_preconditions_see_objects_and_directories_made_by_others(harness: Harness, s3_server: S3Server) -> None:
    """A write that must not replace anything is refused where another tool put an object, or keys that make a
    directory, even behind keys sharing the name's beginning (``n.bak`` sorts before ``n/``)."""
    client = s3_server.client()
    for key in ("m", "n.bak", "n-1", "n/inside"):
        client.put_object(Bucket=s3_server.bucket, Key=f"root/{key}", Body=b"theirs")
    driver = harness.driver
    for path in ("m", "n"):
        with pytest.raises(Changed):
            driver.write(path, [b"mine"], expected_sha256=sha(b"mine"), replaces=None)
    stat = driver.write("m", [b"mine"], expected_sha256=sha(b"mine"), replaces=driver.stat("m").fingerprint)
    assert stat == driver.stat("m") and driver.checksum("m") == sha(b"mine")
    assert driver.write("o", [b"new"], expected_sha256=sha(b"new"), replaces=None) == driver.stat("o")


def test_directories_are_kept_without_placeholder_objects(s3_server: S3Server, tmp_path) -> None:
    """No object is made for a directory, yet one emptied behind the driver's back (or between two runs) is still
    listed: an object store that cannot hold empty directories must not make them read as deleted."""
    options = {**s3_server.options, "root": "kept", **FAST}
    driver = open_driver("bucket", "s3", options, tmp_path)
    driver.initialise()
    driver.mkdir("empty/inside")
    put(driver, "docs/a.txt", b"a")
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]}
    assert keys == {"kept/.onitu-root", "kept/docs/a.txt"}
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key="kept/docs/a.txt")
    again = open_driver("bucket", "s3", options, tmp_path)  # a restarted plug
    assert listing(again) == {"docs": None, "empty": None, "empty/inside": None}
    again.delete("empty/inside")
    again.delete("empty")
    assert listing(open_driver("bucket", "s3", options, tmp_path)) == {"docs": None}


def test_hostile_keys_are_refused_and_reported(harness: Harness, s3_server: S3Server,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Keys another tool wrote that would name something outside the root, or nothing at all, are never synced."""
    for key in ("../escape.txt", "a/../../x", "/abs", "a//b", "x" * 300, "d/./e"):
        s3_server.client().put_object(Bucket=s3_server.bucket, Key=f"root/{key}", Body=b"evil")
    put(harness.driver, "fine.txt", b"ok")
    assert listing(harness.driver) == {"fine.txt": 2}
    assert "refusing a name from the server" in caplog.text and "../escape.txt" in caplog.text
