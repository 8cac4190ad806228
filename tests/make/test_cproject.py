"""A small C project built by GNU make and by onitu make with GNU's built-in rules: a library, a program, tests
from an $(eval) template, dependency files written by the compiler (-MMD) and by a rule (remade, then read again),
and a code generator built by a sub-make. Both must leave the same files, print the same things (-n included),
and rebuild the same targets after a header is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.make.harness import make

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("cc") is None,
                                reason="GNU make and a C compiler are needed")

PROJECT = Path(__file__).parent / "cproject"


class Pair:
    """The same project in two directories, one built by GNU make, the other by onitu make."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.gnu, self.ours = tmp_path / "gnu", tmp_path / "ours"
        for root in (self.gnu, self.ours):
            shutil.copytree(PROJECT, root)

    def run(self, *args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        gnu = subprocess.run(["make", *args], cwd=self.gnu, capture_output=True, text=True, timeout=120)
        ours = make(self.ours, *args, data=self.tmp / "data")
        return gnu, ours

    def same(self, *args: str) -> tuple[list[str], list[str]]:
        """Run both; assert they print the same and end the same; return GNU's (stdout, stderr) lines."""
        gnu, ours = self.run(*args)
        assert ours.returncode == gnu.returncode, ours.stderr
        gnu_out, gnu_err = _lines(gnu.stdout, self.gnu), _lines(gnu.stderr, self.gnu)
        assert _lines(ours.stdout, self.ours) == gnu_out
        assert _lines(ours.stderr, self.ours) == gnu_err
        return gnu_out, gnu_err

    def touch(self, name: str) -> None:
        time.sleep(0.01)  # newer than anything either build wrote
        for root in (self.gnu, self.ours):
            os.utime(root / name)

    def files(self) -> None:
        assert _tree(self.ours) == _tree(self.gnu)


def _lines(text: str, root: Path) -> list[str]:
    return text.replace("onitu make", "make").replace(str(root), "<dir>").splitlines()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_fresh_build_then_nothing_to_do(tmp_path):
    pair = Pair(tmp_path)
    dry, _ = pair.same("-n")
    assert "make -C tools" in dry and "cc -O0 -Wall -Iinclude -MMD -MP  -c -o lib/add.o lib/add.c" in dry
    out, _ = pair.same("-j1")
    assert out[-1] == "all tests passed"
    pair.files()
    again, _ = pair.same("-j1")
    assert "cc" not in " ".join(again)  # only the sub-make's visit and the tests run again


def test_touching_a_header_rebuilds_what_includes_it(tmp_path):
    pair = Pair(tmp_path)
    pair.same("-j1")
    pair.touch("include/calc.h")
    dry, _ = pair.same("-n")
    assert "cc -O0 -Wall -Iinclude -MMD -MP  -c -o lib/mul.o lib/mul.c" in dry
    out, _ = pair.same("-j1")
    assert sum(line.startswith("cc -O0") for line in out) == 5  # main, add, mul and both tests include calc.h
    pair.files()


def test_touching_the_generator_s_header_goes_through_the_sub_make(tmp_path):
    pair = Pair(tmp_path)
    pair.same("-j1")
    pair.touch("tools/banner_text.h")
    out, _ = pair.same("-j1")
    assert "cc    -c -o banner.o banner.c" in out and "tools/banner > include/version.h" in out
    assert "cc -O0 -Wall -Iinclude -MMD -MP  -c -o src/main.o src/main.c" in out
    pair.files()


def test_a_parallel_build_leaves_the_same_files(tmp_path):
    pair = Pair(tmp_path)
    gnu, ours = pair.run("-j2")
    assert ours.returncode == gnu.returncode == 0, ours.stderr
    assert sorted(_lines(ours.stdout, pair.ours)) == sorted(_lines(gnu.stdout, pair.gnu))
    pair.files()
    pair.touch("lib/add.c")
    gnu, ours = pair.run("-j2", "calc")
    assert ours.returncode == gnu.returncode == 0, ours.stderr
    assert sorted(_lines(ours.stdout, pair.ours)) == sorted(_lines(gnu.stdout, pair.gnu))
    pair.files()


def test_clean_then_rebuild_with_r_fails_as_gnu_fails(tmp_path):
    """Without the built-in rules (-r) the project cannot be built: both say so the same way."""
    pair = Pair(tmp_path)
    pair.same("-r", "-R", "-j1")
    pair.files()
