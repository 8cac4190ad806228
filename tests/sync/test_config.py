"""The sync sections of onitu.yaml: folders, services with driver options, sync; errors name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from onitu.config import load
from onitu.sync import settings
from onitu.sync.drivers import driver_for, parse_options
from onitu.sync.drivers.local import LocalOptions
from onitu.sync.settings import ServiceConfig
from tests.configs import assert_refused, write

SETUP = """\
folders:
  music:
    mimetypes: [audio]
    file_size: {max: 2 GiB}
  docs:
  photos:
    blacklist: ["*.tmp"]
services:
  laptop:
    driver: local
    options: {root: /home/me/onitu}
    folders:
      music: Music
      docs:
  archive:
    driver: local
    options:
      root: /mnt/archive
      mount: true
      settle: 2
    folders:
      music: {path: audio/all, mode: w, file_size: {min: 15 Mb}}
      photos: {path: /pictures/}
sync:
  deletion_threshold: 0.25
  scan_interval: 60
"""


def options(service: ServiceConfig) -> BaseModel:
    """A service's options as its plug's driver gets them."""
    return parse_options(driver_for(service.driver), service.options)


def test_full_setup(tmp_path: Path) -> None:
    config = load(write(tmp_path, SETUP))
    assert list(config.folders) == ["music", "docs", "photos"]
    assert config.folders["music"].file_size.max == 2 << 30 and config.folders["docs"].mode == "rw"
    laptop, archive = config.services["laptop"], config.services["archive"]
    assert laptop.driver == "local" and options(laptop) == LocalOptions(root=Path("/home/me/onitu"))
    assert options(archive) == LocalOptions(root=Path("/mnt/archive"), mount=True, settle=2)
    assert laptop.folders["music"].path == "Music" and laptop.folders["docs"].path == ""
    assert archive.folders["music"].path == "audio/all" and archive.folders["photos"].path == "pictures"
    assert (config.sync.deletion_threshold, config.sync.scan_interval) == (0.25, 60)
    rules = settings.rules(config)
    assert rules.services("music") == ["archive", "laptop"] and rules.services("photos") == ["archive"]
    archive_music = rules.options("archive", "music")  # its own mode and min, the folder's max and types
    assert archive_music.mode == "w" and archive_music.file_size.min == 15_000_000
    assert archive_music.mimetypes == ["audio"] and archive_music.file_size.max is None  # file_size replaced whole
    assert rules.selects("laptop", "music", "a/song.mp3", 10) and not rules.selects("laptop", "music", "a.txt", 10)
    assert not rules.reads("archive", "music", "big.flac", 20_000_000)
    assert rules.selects("archive", "music", "big.flac", 20_000_000)
    assert not rules.selects("archive", "photos", "x.tmp", 1)


def test_sync_sections_are_optional(tmp_path: Path) -> None:
    config = load(write(tmp_path, "folders:\nservices:\nsync:\n"))
    assert config.folders == {} and config.services == {} and config.sync.deletion_threshold == 0.5
    assert load(None).sync.scan_interval == 600


BAD = {
    "unknown driver": (
        "services:\n  a:\n    driver: dropbox\n", 3, "services.a.driver",
        "unknown driver 'dropbox' (known: ftp, local, s3, sftp, webdav)",
    ),
    "missing driver option": (
        "services:\n  a:\n    driver: local\n    options:\n      mount: true\n",
        4, "services.a.options.root", "missing required option",
    ),
    "no options at all": ("services:\n  a:\n    driver: local\n", 2, "services.a.options.root", "missing required"),
    "unknown driver option": (
        "services:\n  a:\n    driver: local\n    options:\n      root: /x\n      rot: /y\n",
        6, "services.a.options.rot", "unknown option (expected one of: root, mount, settle)",
    ),
    "relative root": (
        "services:\n  a:\n    driver: local\n    options: {root: data}\n",
        4, "services.a.options.root", "must be an absolute path",
    ),
    "bad option type": (
        "services:\n  a:\n    driver: local\n    options:\n      root: /x\n      settle: soon\n",
        6, "services.a.options.settle", "must be a valid number",
    ),
    "unknown folder in a service": (
        "folders:\n  docs:\nservices:\n  a:\n    driver: local\n    options: {root: /x}\n    folders:\n"
        "      music: Music\n",
        8, "services.a.folders.music", "unknown folder (declared: docs)",
    ),
    "a required setting mistyped": (
        "services:\n  a:\n    options: {root: /x}\n    drivr: local\n", 4, "services.a.drivr",
        "unknown setting (expected one of: driver, options, folders); a typo of driver?",
    ),
    "unknown folder option": (
        "folders:\n  docs:\n    mode: rw\n    blacklst: []\n", 4, "folders.docs.blacklst",
        "unknown setting (expected one of: mode, file_size, mimetypes, blacklist, whitelist)",
    ),
    "unknown service folder option": (
        "folders:\n  docs:\nservices:\n  a:\n    driver: local\n    options: {root: /x}\n    folders:\n"
        "      docs: {path: d, moed: r}\n",
        8, "services.a.folders.docs.moed", "expected one of: mode, file_size, mimetypes, blacklist, whitelist, path",
    ),
    "bad mode": ("folders:\n  docs:\n    mode: x\n", 3, "folders.docs.mode", "must be 'r', 'w' or 'rw'"),
    "bad size": (
        "folders:\n  docs:\n    file_size:\n      max: 15 parsecs\n", 4, "folders.docs.file_size.max",
        "must be a size such as",
    ),
    "min above max": (
        "folders:\n  docs:\n    file_size: {min: 2 GiB, max: 1 GiB}\n", 3, "folders.docs.file_size", "is above max",
    ),
    "escaping folder path": (
        "folders:\n  docs:\nservices:\n  a:\n    driver: local\n    options: {root: /x}\n    folders:\n"
        "      docs: ../elsewhere\n",
        8, "services.a.folders.docs.path", "'..'",
    ),
    "bad service name": (
        "services:\n  my laptop:\n    driver: local\n    options: {root: /x}\n", 2, "services.my laptop",
        "only letters, digits",
    ),
    "threshold above 1": ("sync:\n  deletion_threshold: 2\n", 2, "sync.deletion_threshold", "less than or equal to 1"),
    "unknown sync setting": ("sync:\n  interval: 3\n", 2, "sync.interval", "expected one of: deletion_threshold"),
}


@pytest.mark.parametrize(("text", "line", "key", "problem"), BAD.values(), ids=BAD.keys())
def test_bad_setup_names_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    assert_refused(tmp_path, text, line, key, problem)
