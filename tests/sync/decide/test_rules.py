"""onitu.sync.decide.rules: sizes with units, path globs, MIME types, modes, and per-service overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onitu.sync.decide.rules import FolderOptions, Rules, matches, mimetype, parse_size


@pytest.mark.parametrize(("text", "size"), [
    (0, 0), (1024, 1024), ("1024", 1024), ("15 Mb", 15_000_000), ("15MB", 15_000_000), ("15 mb", 15_000_000),
    ("2 GiB", 2 << 30), ("1.5k", 1500), ("3 Ki", 3072), ("10 B", 10), ("1 TiB", 1 << 40), (" 7 kB ", 7000),
])
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "-1", -1, "15 parsecs", "1 KiKB", True, None, "1e3", "M"])
def test_parse_size_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("*.raw", "shot.raw", True),
    ("*.raw", "2024/may/shot.raw", True),
    ("*.raw", "shot.raw.txt", False),
    ("node_modules", "web/node_modules/x/y.js", True),
    ("build/out", "build/out/app", True),
    ("build/out", "src/build/out", False),
    ("/top.txt", "top.txt", True),
    ("/top.txt", "sub/top.txt", False),
    ("photos/**/*.jpg", "photos/a.jpg", True),
    ("photos/**/*.jpg", "photos/2024/05/a.jpg", True),
    ("photos/*.jpg", "photos/2024/a.jpg", False),
    ("**/cache", "a/b/cache/x", True),
    ("report-??.pdf", "report-01.pdf", True),
    ("report-??.pdf", "report-1.pdf", False),
    ("[!.]*", ".hidden", False),
    ("[!.]*", "visible", True),
    ("[ab]*.txt", "b1.txt", True),
    ("a+b(1).txt", "a+b(1).txt", True),  # regex characters are literal
    ("tmp/", "tmp/x", True),
])
def test_path_globs(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_mimetype_from_the_name() -> None:
    assert mimetype("a/b/song.MP3") == "audio/mpeg" and mimetype("notes") == "application/octet-stream"


def rules(folder: dict, **services: dict | None) -> Rules:
    folders = {"f": FolderOptions(**folder)}
    return Rules(folders, {s: {"f": None if o is None else FolderOptions(**o)} for s, o in services.items()})


def test_modes() -> None:
    r = rules({}, both=None, reader={"mode": "r"}, writer={"mode": "w"})
    assert r.selects("both", "f", "x", 1) and r.reads("both", "f", "x", 1)
    assert not r.selects("reader", "f", "x", 1) and r.reads("reader", "f", "x", 1)
    assert r.selects("writer", "f", "x", 1) and not r.reads("writer", "f", "x", 1)
    assert not r.selects("stranger", "f", "x", 1) and not r.reads("both", "other", "x", 1)


def test_size_mime_and_lists() -> None:
    r = rules({"file_size": {"min": "1 kB", "max": "1 MB"}, "mimetypes": ["image", "application/pdf"],
               "blacklist": ["drafts"], "whitelist": ["*.jpg", "*.pdf", "*.png"]}, s=None)
    assert r.selects("s", "f", "a.jpg", 1000) and r.selects("s", "f", "a.jpg", 1_000_000)
    assert not r.selects("s", "f", "a.jpg", 999) and not r.selects("s", "f", "a.jpg", 1_000_001)
    assert r.selects("s", "f", "doc.pdf", 5000) and not r.selects("s", "f", "a.txt", 5000)  # mime type
    assert not r.selects("s", "f", "x.gif", 5000)  # an image, but not whitelisted
    assert not r.selects("s", "f", "drafts/a.jpg", 5000)  # blacklisted
    assert r.selects("s", "f", "albums", 0, is_dir=True) and not r.selects("s", "f", "drafts", 0, is_dir=True)


def test_service_options_override_the_folder_ones() -> None:
    r = rules({"mode": "r", "blacklist": ["*.tmp"], "file_size": {"max": 10}},
              plain=None, own={"mode": "rw", "file_size": {"max": 100}})
    assert not r.selects("plain", "f", "a", 5) and r.reads("plain", "f", "a", 5)
    assert r.selects("own", "f", "a", 50) and not r.selects("own", "f", "a.tmp", 5)  # blacklist inherited
    assert r.options("own", "f").file_size.max == 100 and r.options("plain", "f").file_size.max == 10
    routing = r.routing("f")
    assert routing.selects("own", "a", 50, False) and not routing.reads("nobody", "a", 1, False)


def test_bad_options() -> None:
    with pytest.raises(ValidationError, match="is above max"):
        FolderOptions(file_size={"min": 10, "max": 1})
    with pytest.raises(ValueError, match="unknown folder 'g'"):
        Rules({"f": FolderOptions()}, {"s": {"g": None}})
