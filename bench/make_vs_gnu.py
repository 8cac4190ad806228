"""onitu make against GNU make, same builds, same machine, same run.

    python bench/make_vs_gnu.py [--repeat 5] [--jobs 2]

Builds, each from a fresh copy, with ``make -jN`` then ``onitu make -jN`` (no space running: the build's own space
in memory and worker threads; a space served on a local socket when sub-makes join): (a) a generated DAG of 1,000
no-op tasks (10 layers of 100, each task needing two of the layer below); (b) the primes case of
../shared/cases/make (CPU-bound); (c) its matrix case; (d) a one-rule build (start-up and tear-down); (e) a
recursive build: ``$(MAKE) -C sub`` with 40 tasks of 0.1 s in the sub-make (the sub-make joins the -j budget);
(f) reading git-sized $(eval) templates (``make -n``: 13,500 template calls; "tasks" counts them).
Prints the median wall times, the ratio, and the overhead per task ((onitu - GNU) / tasks). Every onitu build's
outputs are compared with GNU make's, byte for byte. Beside (d), the bare interpreter's start-up (``python -c
pass``, timed in the same runs: site-packages' .pth files, such as an editable install's finder, are part of it)
and onitu's own part of the build (the median of onitu's time minus the interpreter's, run by run).

The onitu package is byte-compiled first (as ``pip install`` does): with PYTHONDONTWRITEBYTECODE set, as here,
every run would otherwise compile its sources again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT.parent / "shared" / "cases" / "make"


def dag_makefile(layers: int = 10, width: int = 100) -> str:
    lines = ["all: " + " ".join(f"t{layers - 1}_{i}" for i in range(width)), ""]
    for layer in range(layers):
        for i in range(width):
            deps = "" if layer == 0 else f"t{layer - 1}_{i} t{layer - 1}_{(i + 1) % width}"
            lines += [f"t{layer}_{i}: {deps}", "\t@touch $@"]
    return "\n".join(lines) + "\n"


def recursive_tree(root: Path, tasks: int = 40) -> None:
    """A top makefile whose work is all in one sub-make (LuaJIT's top level, many projects' ``all:``)."""
    (root / "sub").mkdir(parents=True)
    (root / "Makefile").write_text("all:\n\t$(MAKE) -C sub\n")
    names = " ".join(f"r{i}.txt" for i in range(tasks))
    (root / "sub" / "Makefile").write_text(f"all: {names}\n%.txt:\n\t@sleep 0.1; echo $@ > $@\n")


def eval_templates(root: Path, rules: int = 90, sources: int = 150) -> None:
    """The $(eval) case of tests/make/corpus at the size of git's coccinelle rules (90 x 150 templates read)."""
    text = (ROOT / "tests" / "make" / "corpus" / "evalmatrix" / "Makefile").read_text()
    names = ["free", "swap", *(f"r{i}" for i in range(rules - 2))]
    sources_line = "SOURCES = " + " ".join(f"src/f{i}.c" for i in range(sources))
    rules_line = "RULES = " + " ".join(f"rules/{n}.cocci" for n in names)
    text = text.replace("SOURCES = src/a.c src/b.c src/c.c", sources_line).replace(
        "RULES = rules/free.cocci rules/swap.cocci", rules_line)
    root.mkdir()
    (root / "Makefile").write_text(text)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "Makefile"}


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-2000:]}")
    return took


def compare(name: str, src: Path, args: list[str], tasks: int, jobs: int, repeat: int, scratch: Path, *,
            bare: bool = False) -> None:
    """Time GNU make then onitu make on copies of ``src``, ``repeat`` times; with ``bare``, the interpreter's own
    start-up too, in each run, and onitu's part beside it."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONITU_SPACE", "MAKEFLAGS", "MAKELEVEL")}
    env["ONITU_DATA"] = str(scratch / "data")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # $(MAKE) is "onitu make"
    times: dict[str, list[float]] = {"gnu": [], "onitu": [], "bare": []}
    results = {}
    for run in range(repeat):
        for who, cmd in (("gnu", ["make", f"-j{jobs}", *args]),
                         ("onitu", [sys.executable, "-m", "onitu.entry", "make", f"-j{jobs}", *args])):
            work = scratch / f"{name}-{who}-{run}"
            shutil.copytree(src, work, symlinks=True)
            times[who].append(timed(cmd, work, env))
            results[who] = digest(work)
            shutil.rmtree(work)
        if bare:
            times["bare"].append(timed([sys.executable, "-c", "pass"], scratch, env))
    if results["gnu"] != results["onitu"]:
        sys.exit(f"{name}: onitu make's outputs differ from GNU make's")
    gnu, onitu = statistics.median(times["gnu"]), statistics.median(times["onitu"])
    print(f"{name:<28} {tasks:>6} {gnu:>9.3f} {onitu:>9.3f} {onitu / gnu:>7.2f}x "
          f"{(onitu - gnu) / tasks * 1000:>10.2f} {os.getloadavg()[0]:>11.2f}", flush=True)
    if bare:
        own = statistics.median(o - b for o, b in zip(times["onitu"], times["bare"], strict=True))
        print(f"    bare interpreter start-up {statistics.median(times['bare']):.3f} s (python -c pass); "
              f"onitu's own part {own:.3f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each build (the median is printed)")
    ap.add_argument("--jobs", type=int, default=2)
    opts = ap.parse_args()
    if not shutil.which("make"):
        sys.exit("GNU make is not installed")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "onitu")], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"load average {os.getloadavg()[0]:.2f} at the start (each line ends with the load after it)")
    print(f"{'build':<28} {'tasks':>6} {'GNU s':>9} {'onitu s':>9} {'ratio':>8} {'ms/task over GNU':>17} "
          f"{'load (1 min)':>12}")
    with tempfile.TemporaryDirectory(prefix="onitu-bench-make-") as tmp:
        scratch = Path(tmp)
        dag = scratch / "dag-src"
        dag.mkdir()
        (dag / "Makefile").write_text(dag_makefile())
        compare("(a) 1,000 no-op tasks", dag, [], 1000, opts.jobs, opts.repeat, scratch)
        if CASES.is_dir():
            compare("(b) primes (CPU-bound)", CASES / "primes" / "src", [], 23, opts.jobs, opts.repeat, scratch)
            compare("(c) matrix", CASES / "matrix" / "src", [], 55, opts.jobs, opts.repeat, scratch)
        else:
            print(f"(b), (c): {CASES} not found; skipped")
        one = scratch / "one-src"
        one.mkdir()
        (one / "Makefile").write_text("out.txt:\n\techo built > $@\n")
        compare("(d) one-rule build", one, [], 1, opts.jobs, opts.repeat, scratch, bare=True)
        templates = scratch / "eval-src"
        eval_templates(templates)
        compare("(f) $(eval) templates, -n", templates, ["-n", "all"], 13500, opts.jobs, opts.repeat, scratch)
        rec = scratch / "rec-src"
        recursive_tree(rec)
        compare("(e) recursive, 40 x 0.1 s", rec, [], 41, opts.jobs, opts.repeat, scratch)


if __name__ == "__main__":
    main()
