"""Differential tests: onitu make against GNU make 4.3 (``make [-r -R] -n [-B] -j1``), run in this process.

Each folder of ``corpus/`` is a case: a Makefile, tiny inputs and a ``case.txt`` of ``key: value`` lines:
``args`` (goals and VAR=value, shell words), ``always`` (``no``: run without -B), ``mtime: PATH SECONDS`` (set
before running, relative to a fixed epoch), ``env: NAME=value``, ``mkdir: DIR``, ``builtin: yes`` (GNU's
built-in rules and variables in play: no -r -R). ``corpus/errors/*.mk`` are bad
makefiles whose GNU error message and failure must be reproduced. The shared cases under
/work/shared/cases/make are compared too when present.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from onitu.make.cli import make_main
from tests.helpers import SHARED as SHARED_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

CORPUS = Path(__file__).parent / "corpus"
SHARED = SHARED_ROOT / "cases" / "make"
EPOCH = 1_600_000_000
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _case(folder: Path) -> dict[str, list[str]]:
    spec: dict[str, list[str]] = {}
    path = folder / "case.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(":")
            spec.setdefault(key.strip(), []).append(value.strip())
    return spec


def _prepare(src: Path, work: Path, spec: dict[str, list[str]]) -> Path:
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("case.txt"))
    for path in work.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    for directory in spec.get("mkdir", []):
        (work / directory).mkdir(parents=True, exist_ok=True)
    for item in spec.get("mtime", []):
        name, seconds = item.rsplit(None, 1)
        (work / name).touch()
        os.utime(work / name, (EPOCH + float(seconds), EPOCH + float(seconds)))
    return work


def builtin_flags(spec: dict[str, list[str]]) -> list[str]:
    """-r -R, unless the case wants GNU's built-in rules and variables."""
    return [] if spec.get("builtin", ["no"])[0] == "yes" else ["-r", "-R"]


def _gnu(work: Path, args: list[str], env: dict[str, str], always: bool, builtin: bool = False
         ) -> subprocess.CompletedProcess[str]:
    flags = [*([] if builtin else ["-r", "-R"]), "-n", "-j1"] + (["-B"] if always else [])
    return subprocess.run(["make", *flags, *args], cwd=work, env=env, capture_output=True, text=True, timeout=20,
                          check=False)


def _normalise(lines: list[str]) -> list[str]:
    return [line for line in lines if "Entering directory" not in line and "Leaving directory" not in line]


def _ours(work: Path, args: list[str], env: dict[str, str], always: bool, builtin: bool = False
          ) -> tuple[list[str], list[str]]:
    """(stdout, stderr) lines of ``onitu make -n`` (``-r -R`` unless ``builtin``), run in this process."""
    out, err, status = run_ours(work, ["-n", "-j1", *([] if builtin else ["-r", "-R"]), *(["-B"] if always else []),
                                       *args], env)
    if status:
        raise _Failed(out, err)
    return out, err


def run_ours(work: Path, argv: list[str], env: dict[str, str]) -> tuple[list[str], list[str], int]:
    """``onitu make ARGV`` in ``work``, in this process: (stdout lines, stderr lines, exit status)."""
    text = {"out": "", "err": ""}

    def sink(stream: str, data: str) -> None:
        text[stream] += data

    status = make_main(argv, cwd=work, environ={**env, "ONITU_DATA": str(work.parent / "onitu-data")}, sink=sink)
    # $(MAKE) is "onitu make" here, "make" in GNU's runs: messages are compared under GNU's name
    out, err = ([line.replace("onitu make", "make") for line in text[s].splitlines()] for s in ("out", "err"))
    return out, err, status


class _Failed(Exception):
    def __init__(self, out: list[str], err: list[str]) -> None:
        super().__init__("\n".join(err))
        self.out, self.err = out, err


def _compare(src: Path, tmp_path: Path, spec: dict[str, list[str]]) -> None:
    args = shlex.split(" ".join(spec.get("args", [])))
    always = spec.get("always", ["yes"])[0] != "no"
    env = dict(ENV, **dict(item.split("=", 1) for item in spec.get("env", [])))
    gnu_dir = _prepare(src, tmp_path / "gnu" / "case", spec)
    ours_dir = _prepare(src, tmp_path / "ours" / "case", spec)
    builtin = not builtin_flags(spec)
    gnu = _gnu(gnu_dir, args, env, always, builtin)
    assert gnu.returncode == 0, gnu.stderr
    out, err = _ours(ours_dir, args, env, always, builtin)
    gnu_out = [line.replace(str(gnu_dir), "<dir>") for line in _normalise(gnu.stdout.splitlines())]
    assert [line.replace(str(ours_dir), "<dir>") for line in out] == gnu_out
    assert sorted(err) == sorted(_normalise(gnu.stderr.splitlines()))


CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir() and p.name != "errors")


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_corpus_case(case: Path, tmp_path: Path) -> None:
    _compare(case, tmp_path, _case(case))


ERRORS = sorted((CORPUS / "errors").glob("*.mk"))


def error_case(makefile: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A bad makefile copied to a work dir as ``Makefile``, and the arguments its first line asks for."""
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(makefile, work / "Makefile")
    first = makefile.read_text().splitlines()[0]
    return work, shlex.split(first[len("# args:"):]) if first.startswith("# args:") else []


@pytest.mark.parametrize("makefile", ERRORS, ids=[p.stem for p in ERRORS])
def test_error_case(makefile: Path, tmp_path: Path) -> None:
    work, args = error_case(makefile, tmp_path)
    gnu = _gnu(work, args, ENV, True)
    assert gnu.returncode != 0
    with pytest.raises(_Failed) as failed:
        _ours(work, args, ENV, True)
    expected = _normalise(gnu.stderr.splitlines())
    assert failed.value.err == expected


SHARED_CASES = [("hello", []), ("primes", []), ("primes", ["-f", "Makefile.tiny"]), ("matrix", []),
                ("features", ["MODE=fast"]), ("aggregate", [])]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared make cases absent")
@pytest.mark.parametrize(("name", "args"), SHARED_CASES, ids=["hello", "primes", "primes-tiny", "matrix",
                                                              "features", "aggregate"])
@pytest.mark.parametrize("always", [True, False], ids=["B", "fresh"])
def test_shared_case(name: str, args: list[str], always: bool, tmp_path: Path) -> None:
    # features runs a '+' command under -n that appends to build/...: GNU needs the directory to exist.
    spec = {"args": [shlex.join(args)], "always": ["yes" if always else "no"], "mkdir": ["build"]}
    _compare(SHARED / name / "src", tmp_path, spec)
