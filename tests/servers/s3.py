"""moto's S3 server (``moto[s3]`` + flask + flask-cors) on loopback in a process of its own; each test gets a fresh
bucket. moto keeps everything in memory: stopping the process loses every bucket (use ``freeze``/``thaw`` for an
outage that keeps the data)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.servers.common import fresh_name
from tests.servers.process import ServerProcess

KEY, SECRET, REGION = "onitu-test-key", "onitu-test-secret", "us-east-1"


@dataclass
class S3Server:
    """What an ``s3`` service needs: ``options`` uses the driver's option names; ``client()`` is boto3's, to check
    the bucket independently of Onitu's driver."""

    driver: ClassVar[str] = "s3"
    endpoint_url: str
    key: str
    secret: str
    region: str
    bucket: str
    process: ServerProcess = field(repr=False)
    _hashed: dict[str, str] = field(default_factory=dict, repr=False)  # ETag -> sha256: tests poll big buckets

    @property
    def options(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "endpoint_url": self.endpoint_url, "region": self.region,
                "key": self.key, "secret": self.secret}

    def client(self) -> Any:
        return s3_client(self.endpoint_url)

    def files(self, prefix: str = "") -> dict[str, str]:
        """``{key relative to prefix: sha256}`` of the bucket's objects, read with boto3."""
        from botocore.exceptions import ClientError

        client, found = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["ETag"] not in self._hashed:
                    try:
                        body = client.get_object(Bucket=self.bucket, Key=obj["Key"], IfMatch=obj["ETag"])["Body"]
                    except ClientError:  # replaced or deleted since the listing: the next look will see it
                        continue
                    self._hashed[obj["ETag"]] = hashlib.sha256(body.read()).hexdigest()
                found[obj["Key"][len(prefix):]] = self._hashed[obj["ETag"]]
        return found


def s3_client(endpoint_url: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                        region_name=REGION)


@contextmanager
def s3_process(log: Path) -> Iterator[ServerProcess]:
    """``python -m moto.server`` on a free port (a process of its own serves twice as fast as moto's thread)."""
    proc = ServerProcess("moto S3", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                  "-p", str(port)], log).start()
    try:
        yield proc
    finally:
        proc.stop()


def s3_server_in(proc: ServerProcess, bucket: str) -> S3Server:
    """The test's view of ``proc``: the bucket ``bucket``, made here."""
    endpoint = f"http://127.0.0.1:{proc.port}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return S3Server(endpoint, KEY, SECRET, REGION, bucket, proc)


@pytest.fixture(scope="session")
def s3_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The session's moto S3 server."""
    with s3_process(tmp_path_factory.mktemp("s3") / "moto.log") as proc:
        yield proc


@pytest.fixture
def s3_server(s3_session: ServerProcess) -> S3Server:
    """The session's moto S3 server, seen through a bucket of its own for this test."""
    return s3_server_in(s3_session, fresh_name())
