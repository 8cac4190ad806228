"""``onitu make`` as users run it, against GNU make: the same dry runs, the same files, the same failures."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from tests.helpers import SHARED
from tests.make.harness import env_for, make
from tests.make.test_differential import (
    CASES,
    ENV,
    ERRORS,
    _case,
    _gnu,
    _normalise,
    _prepare,
    builtin_flags,
    error_case,
)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
MAKE_CASES = SHARED / "cases" / "make"


def _ours(work, args, *flags, tmp_path):
    return make(work, *flags, *args, data=tmp_path / "data", **{k: v for k, v in ENV.items() if k != "PATH"})


def _same(text: str, where) -> list[str]:
    """Output lines with the program name and the build directory made comparable."""
    lines = _normalise(text.replace("onitu make", "make").splitlines())
    return [line.replace("onitu make: ", "make: ").replace(str(where), "<dir>") for line in lines]


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_dry_run_prints_what_gnu_make_prints(case, tmp_path):
    spec = _case(case)
    args = shlex.split(" ".join(spec.get("args", [])))
    always = spec.get("always", ["yes"])[0] != "no"
    gnu_dir = _prepare(case, tmp_path / "gnu" / "case", spec)
    ours_dir = _prepare(case, tmp_path / "ours" / "case", spec)
    flags = builtin_flags(spec)
    gnu = _gnu(gnu_dir, args, ENV, always, builtin=not flags)
    ours = _ours(ours_dir, args, *flags, "-n", "-j1", *(["-B"] if always else []), tmp_path=tmp_path)
    assert ours.returncode == gnu.returncode == 0, ours.stderr
    assert _same(ours.stdout, ours_dir) == _same(gnu.stdout, gnu_dir)


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_build_leaves_the_files_gnu_make_leaves(case, tmp_path):
    spec = _case(case)
    args = shlex.split(" ".join(spec.get("args", [])))
    gnu_dir = _prepare(case, tmp_path / "gnu" / "case", spec)
    ours_dir = _prepare(case, tmp_path / "ours" / "case", spec)
    flags = builtin_flags(spec)
    gnu = subprocess.run(["make", *flags, "-j1", *args], cwd=gnu_dir, env=ENV, capture_output=True, text=True,
                         timeout=60)
    ours = _ours(ours_dir, args, *flags, "-j2", tmp_path=tmp_path)
    assert ours.returncode == gnu.returncode, ours.stderr
    assert _tree(ours_dir) == _tree(gnu_dir)
    if gnu.returncode == 0:  # serial output is GNU's, line for line, when one job runs at a time
        serial = _ours(_prepare(case, tmp_path / "serial" / "case", spec), args, *flags, "-j1", tmp_path=tmp_path)
        assert _same(serial.stdout, tmp_path / "serial" / "case") == _same(gnu.stdout, gnu_dir)
        assert _same(serial.stderr, tmp_path / "serial" / "case") == _same(gnu.stderr, gnu_dir)


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("makefile", ERRORS, ids=[p.stem for p in ERRORS])
def test_bad_makefiles_fail_like_gnu_make_and_run_nothing(makefile, tmp_path):
    work, args = error_case(makefile, tmp_path)
    gnu = _gnu(work, args, ENV, True)
    ours = _ours(work, args, "-r", "-R", tmp_path=tmp_path)
    assert ours.returncode == 2 and gnu.returncode == 2
    assert _same(ours.stderr, work) == _same(gnu.stderr, work)
    assert sorted(p.name for p in work.iterdir()) == ["Makefile"]  # nothing ran


def test_a_syntax_error_late_in_the_file_runs_nothing(tmp_path):
    (tmp_path / "Makefile").write_text("all:\n\ttouch ran\n\nifeq (a,a)\nx = 1\n")
    out = _ours(tmp_path, [], tmp_path=tmp_path)
    assert out.returncode == 2 and "Makefile:6: *** missing 'endif'.  Stop." in out.stderr
    assert not (tmp_path / "ran").exists()


KEEP_GOING = """\
all: good bad after
good:
\techo good > good
bad:
\t@echo failing; exit 3
after: bad
\ttouch after
"""


@pytest.mark.parametrize("text", [
    "all: a ok\nok:\n\ttouch ran\na: b\n\ttouch a\nb: a\n\ttouch b\n",  # the cycle is dropped, with GNU's warning
    "all: ok x.o\nok:\n\ttouch ran\nx.o: x.c\n\tcc -c x.c\n",  # GNU runs 'ok' before it finds x.c has no rule
    KEEP_GOING,  # a failing recipe stops the build, or not with -k
], ids=["cycle", "missing-source", "failing-recipe"])
@pytest.mark.parametrize("keep_going", [False, True])
def test_failures_and_cycles_as_gnu_make(tmp_path, text, keep_going):
    flags = ["-k"] if keep_going else []
    for who in ("gnu", "ours"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "Makefile").write_text(text)
    gnu = subprocess.run(["make", "-j1", *flags], cwd=tmp_path / "gnu", capture_output=True, text=True)
    ours = _ours(tmp_path / "ours", [], "-j1", *flags, tmp_path=tmp_path)
    assert ours.returncode == gnu.returncode
    assert _tree(tmp_path / "ours") == _tree(tmp_path / "gnu")
    assert _same(ours.stdout, tmp_path / "ours") == _same(gnu.stdout, tmp_path / "gnu")
    assert _same(ours.stderr, tmp_path / "ours") == _same(gnu.stderr, tmp_path / "gnu")


def test_directory_silent_and_up_to_date(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "Makefile").write_text("out.txt: in.txt\n\tcp in.txt out.txt\n")
    (sub / "in.txt").write_text("x\n")
    first = _ours(tmp_path, [], "-C", "sub", "-s", tmp_path=tmp_path)
    assert first.returncode == 0 and first.stdout == "" and (sub / "out.txt").read_text() == "x\n"  # -s: no -w
    again = _ours(tmp_path, [], "-C", "sub", tmp_path=tmp_path)
    gnu = subprocess.run(["make", "-C", "sub"], cwd=tmp_path, capture_output=True, text=True)
    assert again.stdout.replace("onitu make", "make") == gnu.stdout == (
        f"make: Entering directory '{sub}'\nmake: 'out.txt' is up to date.\nmake: Leaving directory '{sub}'\n")


SHARED_CASES = sorted(p.name for p in MAKE_CASES.iterdir() if (p / "check.sh").exists()) if MAKE_CASES.is_dir() else []


@pytest.mark.skipif(not MAKE_CASES.is_dir(), reason="the shared make cases are absent")
@pytest.mark.parametrize("name", SHARED_CASES)
def test_shared_case_builds_the_expected_files(name, tmp_path):
    assert shutil.which("onitu"), "the onitu command is not on PATH (pip install -e .)"
    env = {**env_for(tmp_path / "data"), "MAKE_CMD": "onitu make -j2", "TMPDIR": str(tmp_path)}
    out = subprocess.run([str(MAKE_CASES / name / "check.sh")], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == (MAKE_CASES / name / "expected.sha256").read_text()


OPTIONS_MAKEFILE = """\
X = file
include extra.mk
all: a b
\t@echo X=$(X) E=$(E) [$(MAKEFLAGS)]
a:
\tfalse
b:
\t@echo b
"""


@pytest.mark.parametrize("args", [["-I", "inc"], ["-i", "-I", "inc"], ["-e", "-I", "inc"], ["-Iinc", "--eval=E=ev"],
                                  ["-w", "-I", "inc"], ["-I", "inc", "-s", "-k"], ["-i"],
                                  ["--no-print-directory", "-C", ".", "-I", "inc", "X=cmd"]])
def test_options_as_gnu_make(tmp_path, args):
    for who in ("gnu", "ours"):
        (tmp_path / who / "inc").mkdir(parents=True)
        (tmp_path / who / "Makefile").write_text(OPTIONS_MAKEFILE)
        (tmp_path / who / "inc" / "extra.mk").write_text("E = from-include\n")
    env = {**ENV, "X": "from-env"}
    gnu = subprocess.run(["make", *args], cwd=tmp_path / "gnu", capture_output=True, text=True, env=env)
    ours = make(tmp_path / "ours", *args, data=tmp_path / "data", X="from-env")
    assert ours.returncode == gnu.returncode
    assert _same(ours.stdout, tmp_path / "ours") == _same(gnu.stdout, tmp_path / "gnu")
    assert _same(ours.stderr, tmp_path / "ours") == _same(gnu.stderr, tmp_path / "gnu")
