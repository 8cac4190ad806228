"""moto's S3 server (``moto[s3]`` + flask + flask-cors) on loopback in a process of its own; each test gets a fresh
bucket. moto keeps everything in memory: stopping the process loses every bucket (use ``freeze``/``thaw`` for an
outage that keeps the data). moto accepts any credentials unless started with ``check_credentials``: it then
checks every request's signature against the keys of its IAM users (:func:`s3_user` makes one)."""

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
        return s3_client(self.endpoint_url, self.key, self.secret)

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


def s3_client(endpoint_url: str, key: str = KEY, secret: str = SECRET, service: str = "s3") -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name=REGION)


# the requests moto serves before it starts checking credentials: those of s3_user, which makes the first user
UNCHECKED = 3
ALLOW_S3 = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


@contextmanager
def s3_process(log: Path, *, check_credentials: bool = False) -> Iterator[ServerProcess]:
    """``python -m moto.server`` on a free port (a process of its own serves twice as fast as moto's thread);
    ``check_credentials``: call :func:`s3_user` first, the only user whose requests it then accepts."""
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED)} if check_credentials else None
    proc = ServerProcess("moto S3", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                  "-p", str(port)], log, env).start()
    try:
        yield proc
    finally:
        proc.stop()


def s3_user(proc: ServerProcess) -> tuple[str, str]:
    """An IAM user allowed everything on S3, made with the :data:`UNCHECKED` requests of a server started with
    ``check_credentials``: its access key and secret."""
    iam = s3_client(f"http://127.0.0.1:{proc.port}", service="iam")
    iam.create_user(UserName="onitu")
    iam.put_user_policy(UserName="onitu", PolicyName="s3", PolicyDocument=ALLOW_S3)
    made = iam.create_access_key(UserName="onitu")["AccessKey"]
    return made["AccessKeyId"], made["SecretAccessKey"]


def s3_server_in(proc: ServerProcess, bucket: str, key: str = KEY, secret: str = SECRET) -> S3Server:
    """The test's view of ``proc``: the bucket ``bucket``, made here with ``key`` and ``secret``."""
    endpoint = f"http://127.0.0.1:{proc.port}"
    s3_client(endpoint, key, secret).create_bucket(Bucket=bucket)
    return S3Server(endpoint, key, secret, REGION, bucket, proc)


@pytest.fixture(scope="session")
def s3_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The session's moto S3 server."""
    with s3_process(tmp_path_factory.mktemp("s3") / "moto.log") as proc:
        yield proc


@pytest.fixture
def s3_server(s3_session: ServerProcess) -> S3Server:
    """The session's moto S3 server, seen through a bucket of its own for this test."""
    return s3_server_in(s3_session, fresh_name())
