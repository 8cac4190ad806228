"""Recursive make against GNU make: ``$(MAKE) -C dir`` gets MAKEFLAGS and the command line's variables, runs under
-n, says ``make[1]: Entering directory``, and its tasks join the same build and the same -j budget."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.make.harness import make
from tests.make.test_jobs import LOGGED, most_at_once

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

TOP = """\
SUBDIRS = lib app
all: $(SUBDIRS) top.txt
\t@echo "top: [$(MAKEFLAGS)] level $(MAKELEVEL)"
$(SUBDIRS):
\t$(MAKE) -C $@ V=$(V)
app: lib
top.txt:
\techo top > $@
.PHONY: all $(SUBDIRS)
"""
LIB = """\
all: a.txt b.txt
\t@echo "lib: [$(MAKEFLAGS)] level $(MAKELEVEL) V=$(V) W=$(W)"
%.txt:
\techo $* > $@
"""
APP = """\
all: c.txt
\t@echo "app: [$(MAKEFLAGS)] level $(MAKELEVEL)"
\t+$(MAKE) -s inner
inner:
\t@echo inner at level $(MAKELEVEL)
c.txt: ../lib/a.txt
\tcat $< > $@
"""


def tree(root, broken: bool = False) -> None:
    (root / "lib").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "Makefile").write_text(TOP)
    (root / "lib" / "Makefile").write_text(LIB + ("b.txt:\n\tfalse\n" if broken else ""))
    (root / "app" / "Makefile").write_text(APP)


def normal(text: str, root) -> list[str]:
    """Lines with GNU's program name and jobserver detail, and the directory, made comparable."""
    text = text.replace("onitu make", "make").replace(str(root), "<dir>")
    return [re.sub(r" --jobserver-auth=\S+", "", line) for line in text.splitlines()]


def both(tmp_path, *args: str, broken: bool = False) -> tuple[subprocess.CompletedProcess, object]:
    for who in ("gnu", "ours"):
        tree(tmp_path / who, broken)
    gnu = subprocess.run(["make", *args], cwd=tmp_path / "gnu", capture_output=True, text=True, timeout=60)
    ours = make(tmp_path / "ours", *args, data=tmp_path / "data")
    return gnu, ours


def files(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.txt"))}


@pytest.mark.parametrize("args", [[], ["V=1", "-k"], ["-s"], ["-n"], ["-n", "W=2"]],
                         ids=["plain", "vars-k", "silent", "dry", "dry-vars"])
def test_sub_makes_print_and_build_what_gnu_sub_makes_do(tmp_path, args):
    gnu, ours = both(tmp_path, *args)
    assert ours.returncode == gnu.returncode  # under -n app's sub-make stops: ../lib/a.txt was never made
    assert gnu.returncode == (2 if "-n" in args else 0)
    assert normal(ours.stdout, tmp_path / "ours") == normal(gnu.stdout, tmp_path / "gnu")
    assert normal(ours.stderr, tmp_path / "ours") == normal(gnu.stderr, tmp_path / "gnu")
    assert files(tmp_path / "ours") == files(tmp_path / "gnu")


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "k"])
def test_a_failing_sub_make_fails_the_build_as_in_gnu(tmp_path, keep_going):
    gnu, ours = both(tmp_path, *(["-k"] if keep_going else []), broken=True)
    assert ours.returncode == gnu.returncode == 2
    assert normal(ours.stdout, tmp_path / "ours") == normal(gnu.stdout, tmp_path / "gnu")
    assert normal(ours.stderr, tmp_path / "ours") == normal(gnu.stderr, tmp_path / "gnu")
    assert files(tmp_path / "ours") == files(tmp_path / "gnu")


def test_makeflags_in_parallel_builds_say_what_gnu_says(tmp_path):
    gnu, ours = both(tmp_path, "-j3", "V=x")
    assert ours.returncode == gnu.returncode == 0, ours.stderr
    flags = [line for line in normal(ours.stdout, tmp_path / "ours") if "[" in line]
    assert sorted(flags) == sorted(line for line in normal(gnu.stdout, tmp_path / "gnu") if "[" in line)
    assert files(tmp_path / "ours") == files(tmp_path / "gnu")


def budget_tree(root, subdirs: int, tasks: int) -> None:
    """A top makefile whose work is all in sub-makes, each with ``tasks`` logged recipes of 0.25 s."""
    names = [f"d{i}" for i in range(subdirs)]
    (root / "Makefile").write_text(f"all: {' '.join(names)}\n{' '.join(names)}:\n\t$(MAKE) -s -C $@\n"
                                   f".PHONY: all {' '.join(names)}\n")
    for name in names:
        (root / name).mkdir()
        targets = " ".join(f"{name}t{i}" for i in range(tasks))
        (root / name / "Makefile").write_text(f"all: {targets}\n{targets}:\n"
                                              + LOGGED.format(secs=0.25).replace(">> log", ">> ../log"))


@pytest.mark.parametrize(("subdirs", "jobs"), [(1, 2), (2, 2), (3, 3)])
def test_sub_makes_share_one_j_budget(tmp_path, subdirs, jobs):
    """GNU's jobserver: a lone sub-make gets the whole -j (LuaJIT's top level), several share it."""
    budget_tree(tmp_path, subdirs, tasks=6)
    out = make(tmp_path, f"-j{jobs}", data=tmp_path / "data")
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "log").read_text().splitlines()) == 2 * 6 * subdirs
    assert most_at_once(tmp_path) == jobs


@pytest.mark.parametrize("jobs", ["-j1", "-j2"])
def test_long_recipes_of_a_recursive_build_run_once(tmp_path, jobs):
    """Recipes longer than a lost-task check (Lua's compiles under load) run once, in the top make and in the
    sub-make: the workers of a served space claim what they take, so no coordinator thinks them lost."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "Makefile").write_text("all: top\n\t$(MAKE) -C sub\ntop:\n\techo run >> top.log; sleep 2; touch top\n")
    (tmp_path / "sub" / "Makefile").write_text("all:\n\techo run >> sub.log; sleep 2\n")
    out = make(tmp_path, jobs, data=tmp_path / "data")
    assert out.returncode == 0, out.stderr
    assert "died" not in out.stderr
    assert (tmp_path / "top.log").read_text() == "run\n"
    assert (tmp_path / "sub" / "sub.log").read_text() == "run\n"
