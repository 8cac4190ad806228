"""``onitu make``'s command line, read as GNU make reads its own, and the MAKEFLAGS it hands to sub-makes.

One parser serves the command line and the ``MAKEFLAGS`` words (GNU's: single-letter flags bundled in the first
word, options with arguments after, ``--`` then the command line's variables). A sub-make's ``MAKEFLAGS`` is built
as GNU builds it (letters in GNU's switch-table order), so a GNU sub-make reads it too.
"""

from __future__ import annotations

from typing import Any

# Single-letter flags: letter -> attribute, in GNU's switch-table order (MAKEFLAGS lists them in this order).
FLAGS = {"B": "always", "e": "env_overrides", "i": "ignore_errors", "k": "keep_going", "n": "dry_run",
         "r": "no_builtin_rules", "R": "no_builtin_variables", "s": "silent", "w": "print_directory"}
LONG_FLAGS = {"always-make": "B", "environment-overrides": "e", "ignore-errors": "i", "keep-going": "k",
              "just-print": "n", "dry-run": "n", "recon": "n", "no-builtin-rules": "r", "no-builtin-variables": "R",
              "silent": "s", "quiet": "s", "print-directory": "w", "no-keep-going": "S", "stop": "S"}
# Letters that take an argument: -C -f -I -o -W always, -j -l -O optionally.
WITH_ARG = {"C": "directory", "f": "file", "I": "include-dir", "o": "old-file", "W": "what-if"}
OPTIONAL_ARG = {"j": "jobs", "l": "load-average", "O": "output-sync"}
LONG_ARGS = {"directory": "C", "file": "f", "makefile": "f", "include-dir": "I", "old-file": "o", "assume-old": "o",
             "what-if": "W", "new-file": "W", "assume-new": "W", "jobs": "j", "load-average": "l", "max-load": "l",
             "output-sync": "O", "eval": "E"}
# Accepted and without effect here (load limits, output grouping: each task's output already comes whole).
IGNORED = {"l", "O", "m", "b", "warn-undefined-variables", "no-silent"}
REFUSED = {"t": "touch", "q": "question", "p": "print-data-base", "d": "debug", "o": "old-file", "W": "what-if",
           "L": "check-symlink-times", "trace": "trace", "debug": "debug", "print-data-base": "print-data-base"}
# onitu's own options (never passed to sub-makes): name -> takes a value
ONITU = {"space": True, "data": True, "files-listen": True, "insecure": False}


class UsageError(Exception):
    """A command line (or MAKEFLAGS) onitu make cannot read; the message says which option."""


class Options:
    """Everything the command line and MAKEFLAGS say; ``Options(name=value, ...)`` starts from some of it."""

    def __init__(self, **given: Any) -> None:
        self.always = self.env_overrides = self.ignore_errors = self.keep_going = self.dry_run = False
        self.no_builtin_rules = self.no_builtin_variables = self.silent = False
        self.print_directory = self.no_print_directory = self.help = self.version = False
        self.jobs: int | None = None  # None: not given; 0: -j without a number (no limit)
        self.directories: list[str] = []
        self.makefiles: list[str] = []
        self.include_dirs: list[str] = []
        self.evals: list[str] = []
        self.variables: dict[str, str] = {}
        self.goals: list[str] = []
        self.onitu: dict[str, str | bool] = {}
        for name, value in given.items():
            if name not in self.__dict__:
                raise TypeError(f"Options has no {name!r}")
            setattr(self, name, value)

    def makeflags(self) -> str:
        """The MAKEFLAGS value GNU make would give sub-makes for these options (``variables`` included)."""
        letters = "".join(k for k, attr in FLAGS.items() if getattr(self, attr))
        words = [f"-I{d}" for d in self.include_dirs]
        if self.jobs is not None:
            words.append(f"-j{self.jobs}" if self.jobs else "-j")
        if self.no_print_directory:
            words.append("--no-print-directory")
        text = letters + "".join(f" {w}" for w in words)
        if self.variables:  # GNU lists them last defined first (MAKEFLAGS' own, then the command line's)
            text += " -- " + " ".join(_quote(f"{k}={v}") for k, v in reversed(self.variables.items()))
        return text

    def mflags(self) -> str:
        """MFLAGS: the same switches with a dash, no variables."""
        letters = "".join(k for k, attr in FLAGS.items() if getattr(self, attr))
        flags = self.makeflags().split(" -- ")[0]
        return ("-" + flags if letters else flags.lstrip()) if flags.strip() else ""


def parse(argv: list[str], opts: Options | None = None, *, from_env: bool = False) -> Options:
    """Read ``argv`` into ``opts`` (a fresh Options by default). ``from_env``: the words of MAKEFLAGS, where goals
    are not allowed and onitu's own options are not expected."""
    opts = opts or Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            for rest in argv[i:]:
                _operand(opts, rest, from_env)
            break
        if arg.startswith("--"):
            i = _long(opts, arg[2:], argv, i)
        elif arg.startswith("-") and len(arg) > 1:
            i = _short(opts, arg[1:], argv, i)
        else:
            _operand(opts, arg, from_env)
    return opts


def parse_makeflags(value: str, opts: Options) -> Options:
    """Apply a MAKEFLAGS value (GNU's format) to ``opts``."""
    words = _split(value)
    if words and not words[0].startswith("-") and "=" not in words[0]:
        words[0] = "-" + words[0]  # the bundled single letters
    try:
        return parse(words, opts, from_env=True)
    except UsageError:
        return opts  # GNU ignores what it cannot read in MAKEFLAGS


def _operand(opts: Options, arg: str, from_env: bool) -> None:
    name, eq, value = arg.partition("=")
    if eq and name and not any(c in name for c in " \t"):
        key = name.rstrip(":+?!")  # 'x:=v' given on the command line is simply x
        opts.variables.pop(key, None)  # the last definition counts, and lists last (see makeflags)
        opts.variables[key] = value
    elif not from_env:
        opts.goals.append(arg)


def _short(opts: Options, letters: str, argv: list[str], i: int) -> int:
    j = 0
    while j < len(letters):
        c = letters[j]
        j += 1
        rest = letters[j:]
        if c in FLAGS:
            setattr(opts, FLAGS[c], True)
        elif c == "S":
            opts.keep_going = False
        elif c == "h":
            opts.help = True
        elif c == "v":
            opts.version = True
        elif c in WITH_ARG or c == "E":
            if rest:
                value = rest
            elif i < len(argv):
                value, i = argv[i], i + 1
            else:
                raise UsageError(f"option requires an argument -- '{c}'")
            _set(opts, c, value)
            return i
        elif c in OPTIONAL_ARG:
            if not rest and i < len(argv) and _number(argv[i]):
                rest, i = argv[i], i + 1
            _set(opts, c, rest or None)
            return i
        elif c in REFUSED:
            raise UsageError(f"option '-{c}' ({REFUSED[c]}) is not supported by onitu make")
        elif c not in IGNORED:
            raise UsageError(f"invalid option -- '{c}'")
    return i


def _long(opts: Options, text: str, argv: list[str], i: int) -> int:
    name, eq, value = text.partition("=")
    if name in LONG_FLAGS:
        _short(opts, LONG_FLAGS[name], [], 0)
    elif name == "no-print-directory":
        opts.no_print_directory = True
    elif name in ("help", "version"):
        setattr(opts, name, True)
    elif name in ONITU:
        if ONITU[name]:
            if not eq:
                if i >= len(argv):
                    raise UsageError(f"option '--{name}' requires an argument")
                value, i = argv[i], i + 1
            opts.onitu[name] = value
        else:
            opts.onitu[name] = True
    elif name in LONG_ARGS:
        letter = LONG_ARGS[name]
        if not eq and letter not in OPTIONAL_ARG:
            if i >= len(argv):
                raise UsageError(f"option '--{name}' requires an argument")
            value, i = argv[i], i + 1
        _set(opts, letter, value if (eq or letter not in OPTIONAL_ARG) else None)
    elif name in REFUSED:
        raise UsageError(f"option '--{name}' is not supported by onitu make")
    elif name in IGNORED or name in ("jobserver-auth", "jobserver-fds", "sync-mutex"):
        pass
    else:
        raise UsageError(f"unrecognized option '--{name}'")
    return i


def _set(opts: Options, letter: str, value: str | None) -> None:
    if letter == "C":
        opts.directories.append(value or "")
    elif letter == "f":
        opts.makefiles.append(value or "")
    elif letter == "I":
        opts.include_dirs.append(value or "")
    elif letter == "E":
        opts.evals.append(value or "")
    elif letter == "j":
        if value is None:
            opts.jobs = 0
        elif _number(value) and int(value) > 0:
            opts.jobs = int(value)
        else:
            raise UsageError("the '-j' option requires a positive integer argument")
    elif letter in REFUSED:
        raise UsageError(f"option '-{letter}' ({REFUSED[letter]}) is not supported by onitu make")


def _number(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _quote(word: str) -> str:
    """GNU escapes blanks and backslashes in MAKEFLAGS' variable words."""
    return word.replace("\\", "\\\\").replace(" ", "\\ ").replace("\t", "\\\t")


def _split(value: str) -> list[str]:
    """MAKEFLAGS words: blanks separate them unless backslash-escaped."""
    words: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if c in " \t":
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        words.append("".join(cur))
    return words
