"""GNU make's built-in functions (``$(subst ...)``, ``$(foreach ...)``, ``$(shell ...)``, ...)."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from onitu.make.execute import DIRECT_SHELLS, direct_argv
from onitu.make.record import FrozenRecord
from onitu.make.text import patsubst_words, pattern_match, split_pattern
from onitu.make.variables import Scope, Var

if TYPE_CHECKING:
    from onitu.make.expand import Expander

Impl = Callable[["Expander", list[str], Scope], str]

# GNU functions this reader refuses rather than half-implements ($(let) and $(intcmp) are GNU make 4.4's).
UNSUPPORTED = {"guile", "let", "intcmp"}


class Function(FrozenRecord):
    """A built-in: argument counts (max 0 = unlimited; the last argument keeps extra commas) and laziness."""

    FIELDS = ("impl", "min_args", "max_args", "lazy")

    def __init__(self, impl: Impl, min_args: int, max_args: int, lazy: bool = False) -> None:
        self.impl, self.min_args, self.max_args = impl, min_args, max_args
        self.lazy = lazy  # arguments passed unexpanded (if, or, and, foreach)


def _words_map(fn: Callable[[str], str], keep_empty: bool = True) -> Impl:
    """Apply ``fn`` to each word; GNU keeps the separator of an empty result except for $(suffix)."""
    return lambda ex, a, s: " ".join(r for r in (fn(w) for w in a[0].split()) if keep_empty or r)


def _dir(w: str) -> str:
    return w[: w.rfind("/") + 1] if "/" in w else "./"


def _suffix_at(w: str) -> int:
    """Index of the suffix's dot in ``w`` (after the last slash), or -1."""
    dot = w.rfind(".")
    return dot if dot > w.rfind("/") else -1


def _suffix(w: str) -> str:
    i = _suffix_at(w)
    return w[i:] if i >= 0 else ""


def _basename(w: str) -> str:
    i = _suffix_at(w)
    return w[:i] if i >= 0 else w


def _number(ex: Expander, arg: str, which: str, fname: str) -> int:
    text = arg.strip()
    if not text.isdigit() or not text.isascii():
        raise ex.error(f"non-numeric {which} argument to '{fname}' function: '{arg}'")
    return int(text)


def _word(ex: Expander, a: list[str], s: Scope) -> str:
    n = _number(ex, a[0], "first", "word")
    if n == 0:
        raise ex.error("first argument to 'word' function must be greater than 0")
    words = a[1].split()
    return words[n - 1] if n <= len(words) else ""


def _wordlist(ex: Expander, a: list[str], s: Scope) -> str:
    first = _number(ex, a[0], "first", "wordlist")
    last = _number(ex, a[1], "second", "wordlist")
    if first == 0:
        raise ex.error(f"invalid first argument to 'wordlist' function: '{a[0].strip()}'")
    spans = [m.span() for m in re.finditer(r"\S+", a[2])][first - 1 : last]
    return a[2][spans[0][0] : spans[-1][1]] if spans else ""  # GNU copies the span, inner spacing and all


def _filter(keep: bool) -> Impl:
    def impl(ex: Expander, a: list[str], s: Scope) -> str:
        pats = [(p, split_pattern(p)) for p in a[0].split()]

        def hit(w: str) -> bool:
            return any(w == p if parts is None else pattern_match(parts, w) is not None for p, parts in pats)

        return " ".join(w for w in a[1].split() if hit(w) == keep)

    return impl


def _join(ex: Expander, a: list[str], s: Scope) -> str:
    left, right = a[0].split(), a[1].split()
    n = max(len(left), len(right))
    return " ".join((left[i] if i < len(left) else "") + (right[i] if i < len(right) else "") for i in range(n))


def _wildcard(ex: Expander, a: list[str], s: Scope) -> str:
    out: list[str] = []
    for pattern in a[0].split():
        if any(c in pattern for c in "*?["):
            # GNU sorts each pattern's matches (glibc glob), patterns keep their order.
            out.extend(sorted(glob.glob(pattern, root_dir=ex.cwd)))
        elif os.path.lexists(os.path.join(ex.cwd, pattern)):
            out.append(pattern)
    return " ".join(out)


def _abspath(ex: Expander, w: str) -> str:
    path = os.path.normpath(os.path.join(ex.cwd, w))
    return path[1:] if path.startswith("//") else path  # POSIX normpath keeps a leading //, GNU does not


def _realpath(ex: Expander, a: list[str], s: Scope) -> str:
    out = []
    for w in a[0].split():
        path = os.path.join(ex.cwd, w)
        if os.path.exists(path):
            out.append(os.path.realpath(path))
    return " ".join(out)


def _if(ex: Expander, a: list[str], s: Scope) -> str:
    if ex.expand(a[0], s).strip():
        return ex.expand(a[1], s)
    return ex.expand(a[2], s) if len(a) > 2 else ""


def _or(ex: Expander, a: list[str], s: Scope) -> str:
    for arg in a:
        value = ex.expand(arg, s).strip()
        if value:
            return value
    return ""


def _and(ex: Expander, a: list[str], s: Scope) -> str:
    value = ""
    for arg in a:
        value = ex.expand(arg, s).strip()
        if not value:
            return ""
    return value


def _foreach(ex: Expander, a: list[str], s: Scope) -> str:
    name = ex.expand(a[0], s).strip()
    inner = Scope(s)
    out = []
    for word in ex.expand(a[1], s).split():
        inner.vars[name] = Var(word, False, "automatic")
        out.append(ex.expand(a[2], inner))
    return " ".join(out)


def _call(ex: Expander, a: list[str], s: Scope) -> str:
    name = a[0].strip()
    found = s.find(name)
    if not name or found is None or not found[0].value:
        return ""
    inner = Scope(s)
    inner.vars["0"] = Var(name, False, "automatic")
    # Hide the arguments of an enclosing $(call) that this one does not set.
    for i in range(1, max(len(a), ex.call_args + 1)):
        inner.vars[str(i)] = Var(a[i] if i < len(a) else "", False, "automatic")
    outer, ex.call_args = ex.call_args, len(a) - 1
    try:
        return ex.value_of(name, inner)
    finally:
        ex.call_args = outer


def _value(ex: Expander, a: list[str], s: Scope) -> str:
    found = s.find(a[0].strip())
    return found[0].value if found else ""


def _origin(ex: Expander, a: list[str], s: Scope) -> str:
    found = s.find(a[0].strip())
    return found[0].origin if found else "undefined"


def _flavor(ex: Expander, a: list[str], s: Scope) -> str:
    found = s.find(a[0].strip())
    if found is None:
        return "undefined"
    return "recursive" if found[0].recursive else "simple"


def _error(ex: Expander, a: list[str], s: Scope) -> str:
    raise ex.error(a[0])


def _warning(ex: Expander, a: list[str], s: Scope) -> str:
    ex.warn(a[0])
    return ""


def _info(ex: Expander, a: list[str], s: Scope) -> str:
    ex.emit("out", a[0])
    return ""


def _eval(ex: Expander, a: list[str], s: Scope) -> str:
    if ex.evaluate is None:  # pragma: no cover - the reader always installs it
        raise ex.error("$(eval) outside a makefile")
    ex.evaluate(a[0])
    return ""


def _file(ex: Expander, a: list[str], s: Scope) -> str:
    """``$(file >name,text)``, ``$(file >>name,text)`` (a newline added if the text lacks one), ``$(file <name)``."""
    spec = a[0].strip()
    op = ">>" if spec.startswith(">>") else spec[:1]
    name = spec[len(op):].strip()
    if op not in (">", ">>", "<"):
        raise ex.error(f"file: invalid file operation: {spec}")
    if not name:
        raise ex.error("file: missing filename")
    path = ex.cwd / name
    if op == "<":
        if len(a) > 1:
            raise ex.error("file: too many arguments")
        try:
            text = path.read_text(errors="surrogateescape")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise ex.error(f"open: {name}: {exc.strerror}") from exc
        return text[:-1] if text.endswith("\n") else text
    try:
        with open(path, "a" if op == ">>" else "w", errors="surrogateescape") as out:
            if len(a) > 1:
                out.write(a[1] if a[1].endswith("\n") and a[1] else a[1] + "\n")
    except OSError as exc:
        raise ex.error(f"open: {name}: {exc.strerror}") from exc
    return ""


def shell_of(ex: Expander, scope: Scope) -> tuple[str, ...]:
    """What runs a command: ``$(SHELL)`` and the words of ``$(.SHELLFLAGS)``, as seen from ``scope``."""
    return ex.value_of("SHELL", scope).strip() or "/bin/sh", *ex.value_of(".SHELLFLAGS", scope).split()


def run_shell(ex: Expander, command: str, scope: Scope) -> str:
    """``$(shell)`` and ``!=``: in the make directory, by ``$(SHELL) $(.SHELLFLAGS)``, or directly when the shell
    is GNU's default and would only split the command into words (as GNU does: a missing program is then make's
    own error line); trailing newlines dropped, the others become spaces."""
    shell = shell_of(ex, scope)
    argv = direct_argv(command) if shell in DIRECT_SHELLS else None
    run = argv or [*shell, command]
    import subprocess  # here: a build whose makefiles run no shell never loads it

    try:
        proc = subprocess.run(run, cwd=ex.cwd, env=dict(ex.environ), stdout=subprocess.PIPE, check=False)
    except OSError as exc:
        ex.emit("err", f"{ex.program}: {run[0]}: {exc.strerror}")
        ex.define(".SHELLSTATUS", "127", recursive=False, origin="override")
        return ""
    ex.define(".SHELLSTATUS", str(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode),
              recursive=False, origin="override")
    text = proc.stdout.decode(errors="surrogateescape").rstrip("\n")
    return text.replace("\r\n", " ").replace("\n", " ")


def _shell(ex: Expander, a: list[str], s: Scope) -> str:
    return run_shell(ex, a[0], s)


def _subst(ex: Expander, a: list[str], s: Scope) -> str:
    # GNU appends the replacement when the searched text is empty, where str.replace would interleave it.
    return a[2] + a[1] if not a[0] else a[2].replace(a[0], a[1])


FUNCTIONS: dict[str, Function] = {
    "subst": Function(_subst, 3, 3),
    "patsubst": Function(lambda ex, a, s: patsubst_words(a[2], a[0], a[1]), 3, 3),
    "strip": Function(lambda ex, a, s: " ".join(a[0].split()), 1, 1),
    "findstring": Function(lambda ex, a, s: a[0] if a[0] in a[1] else "", 2, 2),
    "filter": Function(_filter(True), 2, 2),
    "filter-out": Function(_filter(False), 2, 2),
    "sort": Function(lambda ex, a, s: " ".join(sorted(set(a[0].split()))), 1, 1),
    "word": Function(_word, 2, 2),
    "wordlist": Function(_wordlist, 3, 3),
    "words": Function(lambda ex, a, s: str(len(a[0].split())), 1, 1),
    "firstword": Function(lambda ex, a, s: (a[0].split() or [""])[0], 1, 1),
    "lastword": Function(lambda ex, a, s: (a[0].split() or [""])[-1], 1, 1),
    "dir": Function(_words_map(_dir), 1, 1),
    "notdir": Function(_words_map(lambda w: w[w.rfind("/") + 1 :]), 1, 1),
    "suffix": Function(_words_map(_suffix, keep_empty=False), 1, 1),
    "basename": Function(_words_map(_basename), 1, 1),
    "addsuffix": Function(lambda ex, a, s: " ".join(w + a[0] for w in a[1].split()), 2, 2),
    "addprefix": Function(lambda ex, a, s: " ".join(a[0] + w for w in a[1].split()), 2, 2),
    "join": Function(_join, 2, 2),
    "wildcard": Function(_wildcard, 1, 1),
    "realpath": Function(_realpath, 1, 1),
    "abspath": Function(lambda ex, a, s: " ".join(_abspath(ex, w) for w in a[0].split()), 1, 1),
    "if": Function(_if, 2, 3, lazy=True),
    "or": Function(_or, 1, 0, lazy=True),
    "and": Function(_and, 1, 0, lazy=True),
    "foreach": Function(_foreach, 3, 3, lazy=True),
    "call": Function(_call, 1, 0),
    "value": Function(_value, 1, 1),
    "origin": Function(_origin, 1, 1),
    "flavor": Function(_flavor, 1, 1),
    "error": Function(_error, 1, 1),
    "warning": Function(_warning, 1, 1),
    "info": Function(_info, 1, 1),
    "shell": Function(_shell, 1, 1),
    "eval": Function(_eval, 1, 1),
    "file": Function(_file, 1, 2),
}
