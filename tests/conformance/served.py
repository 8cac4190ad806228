"""Harnesses for the remote drivers whose server keeps its files in a local directory (sftp, ftp, webdav), and for
S3 (moto): what the conformance suite does "behind the driver's back" goes to the server's own storage."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from onitu.sync.drivers import open_driver
from onitu.sync.drivers.contract import MARKER
from tests.conformance.suite import Harness, local_outside

FAST = {"poll": 0.3, "settle": 0.5}  # a test's watcher polls often and trusts files sooner


def served_harness(name: str, base: Path, options_for: Callable[[str], dict[str, Any]]) -> Iterator[Harness]:
    """A harness for driver ``name`` on the server directory ``base``: the replica in ``base/root``, an uninitialised
    one in ``base/fresh``; ``options_for(sub)`` gives the driver's options for the sub-directory ``sub``."""
    root, away = base / "root", base / "root.away"
    root.mkdir()
    (base / "fresh").mkdir()
    (base / "neighbour.txt").write_text("outside the root")
    driver = open_driver("remote", name, {**options_for("root"), **FAST})
    driver.initialise()

    def put_file(path: str, data: bytes) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)

    harness = Harness(
        driver=driver, uninitialised=open_driver("fresh", name, {**options_for("fresh"), **FAST}),
        outside=local_outside(str(base), str(root), str(base / "fresh")), put=put_file,
        remove=lambda path: (root / path).unlink(), rename=lambda src, dst: (root / src).rename(root / dst),
        break_root=lambda: root.rename(away), repair_root=lambda: away.rename(root))
    yield harness
    driver.close()
    harness.uninitialised.close()
    shutil.rmtree(base, ignore_errors=True)


def s3_harness(options: dict[str, Any], client: Any) -> Iterator[Harness]:
    """A harness on a bucket: the replica under the prefix ``root/``, an uninitialised one under ``fresh/``; the
    "root broken" is the marker deleted (a bucket cannot be moved away)."""
    bucket = options["bucket"]
    client.put_object(Bucket=bucket, Key="neighbour.txt", Body=b"outside the root")
    driver = open_driver("remote", "s3", {**options, "root": "root", **FAST})
    driver.initialise()

    def outside() -> set[str]:
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.update(o["Key"] for o in page.get("Contents", []) if not o["Key"].startswith(("root/", "fresh/")))
        return keys

    def rename(src: str, dst: str) -> None:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"root/{src}").get("Contents", [])
        for obj in listed:
            key = obj["Key"]
            if key == f"root/{src}" or key.startswith(f"root/{src}/"):
                client.copy_object(Bucket=bucket, Key=f"root/{dst}{key[len(f'root/{src}'):]}",
                                   CopySource={"Bucket": bucket, "Key": key})
                client.delete_object(Bucket=bucket, Key=key)

    harness = Harness(
        driver=driver, uninitialised=open_driver("fresh", "s3", {**options, "root": "fresh", **FAST}),
        outside=outside, put=lambda path, data: client.put_object(Bucket=bucket, Key=f"root/{path}", Body=data),
        remove=lambda path: client.delete_object(Bucket=bucket, Key=f"root/{path}"), rename=rename,
        break_root=lambda: client.delete_object(Bucket=bucket, Key=f"root/{MARKER}"),
        repair_root=lambda: client.put_object(Bucket=bucket, Key=f"root/{MARKER}", Body=b"back"))
    yield harness
    driver.close()
    harness.uninitialised.close()

