"""The conformance suite on the S3 driver against moto's server, plus what only S3 has: metadata hashes, missing
buckets, credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onitu.sync.drivers import open_driver
from tests.conformance.served import FAST, s3_harness
from tests.conformance.suite import DriverConformance, Harness, put
from tests.servers import S3Server


@pytest.fixture
def harness(s3_server: S3Server) -> Iterator[Harness]:
    yield from s3_harness(s3_server.options, s3_server.client())


class TestS3Conformance(DriverConformance):
    """Every conformance test, on a key prefix of a moto bucket."""


def test_sha256_is_kept_in_metadata_and_not_downloaded(harness: Harness, s3_server: S3Server) -> None:
    stat = put(harness.driver, "f.txt", b"hello")
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key="root/f.txt")
    assert head["Metadata"]["onitu-sha256"] == stat.sha256 == harness.driver.checksum("f.txt")


def test_missing_bucket_and_wrong_secret_are_unavailable_with_the_reason(s3_server: S3Server) -> None:
    gone = open_driver("s3", "s3", {**s3_server.options, "bucket": "no-such-bucket", **FAST})
    assert "does not exist" in gone.available().reason
