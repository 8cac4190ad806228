"""A target's recipe, expanded just before it runs: automatic variables, ``@ - +`` prefixes, .ONESHELL."""

from __future__ import annotations

from collections.abc import Sequence

from onitu.make.database import Database, RecipeLine
from onitu.make.functions import shell_of
from onitu.make.implicit import archive_parts
from onitu.make.record import FrozenRecord
from onitu.make.text import matching_close
from onitu.make.variables import Scope, Var

DEFAULT_SHELL = ("/bin/sh", "-c")


class Command(FrozenRecord):
    """One shell command of a recipe, as GNU make would run it with ``/bin/sh -c``."""

    FIELDS = ("text", "echo", "silent", "ignore", "force", "file", "line", "recursive", "shell")
    COMPARED = ("text", "echo", "silent", "ignore", "force")

    def __init__(self, text: str, echo: str, silent: bool, ignore: bool, force: bool, file: str | None = None,
                 line: int | None = None, recursive: bool = False, shell: tuple[str, ...] = DEFAULT_SHELL) -> None:
        self.text = text  # fully expanded, prefixes (@ - +) removed
        self.echo = echo  # what is echoed before running it
        self.silent = silent  # '@' or .SILENT
        self.ignore = ignore  # '-' or .IGNORE
        self.force = force  # '+' or a $(MAKE) reference: runs even under -n
        self.file, self.line = file, line  # where the recipe line is, for error messages
        self.recursive = recursive  # names $(MAKE): a sub-make joins this build
        self.shell = shell  # $(SHELL) $(.SHELLFLAGS): runs it

    def ignoring(self) -> Command:
        """This command with its errors ignored."""
        return Command(self.text, self.echo, self.silent, True, self.force, self.file, self.line, self.recursive,
                       self.shell)


class Autos:
    """What a recipe's automatic variables are made of."""

    def __init__(self, target: str, prereqs: Sequence[str], newer: Sequence[str], order_only: Sequence[str],
                 stem: str) -> None:
        self.target = target
        self.prereqs = prereqs  # with duplicates, as $+ (vpath names where found)
        self.newer, self.order_only, self.stem = newer, order_only, stem


class AutoScope(Scope):
    """The automatic variables of one recipe run (``$@ $% $< $^ $+ $? $* $|`` and their D/F forms), over the
    target's scope; each is computed only if the recipe refers to it."""

    NAMES = frozenset("@%<^+?*|") | {k + s for k in "@%<^+?*" for s in "DF"}
    computed = True

    def __init__(self, parent: Scope, autos: Autos) -> None:
        super().__init__(parent)
        self.autos = autos

    def find(self, name: str) -> tuple[Var, Scope] | None:
        if name in self.NAMES and name not in self.vars:
            self.vars[name] = Var(self._value(name), False, "automatic")
        return super().find(name)

    def _value(self, name: str) -> str:
        key, form = name[0], name[1:]
        if form:
            words = self._value(key).split()
            if form == "D":
                return " ".join(_dir_of(w) for w in words)
            return " ".join(w[w.rfind("/") + 1 :] for w in words)
        autos = self.autos
        parts = archive_parts(autos.target)
        if key in "@%":
            return (parts[0] if key == "@" else parts[1]) if parts is not None else (autos.target if key == "@" else "")
        if key == "*":
            return autos.stem
        if key == "|":
            return " ".join(dict.fromkeys(autos.order_only))
        if key == "?":
            return " ".join(_member_or_name(p) for p in autos.newer)
        names = [_member_or_name(p) for p in autos.prereqs]
        if key == "<":
            return names[0] if names else ""
        return " ".join(dict.fromkeys(names) if key == "^" else names)


def automatic_scope(parent: Scope, autos: Autos) -> Scope:
    """A scope holding ``$@ $% $< $^ $+ $? $* $|`` and their D/F forms, over ``parent``."""
    return AutoScope(parent, autos)


def expand(db: Database, recipe: list[RecipeLine], scope: Scope, target: str) -> list[Command]:
    """The commands of ``recipe`` expanded in ``scope`` (which holds the automatic variables)."""
    ex = db.expander
    silent, ignore = db.is_silent(target), db.is_ignored(target)
    out: list[Command] = []
    try:
        shell = shell_of(ex, scope)
        for line in recipe:
            ex.where = (line.file, line.line)
            flags = _prefix_flags(line.text)[0]
            recursive = "$(MAKE)" in line.text or "${MAKE}" in line.text
            for piece in _split_commands(ex.expand(_join_in_refs(line.text), scope)):
                more, text = _prefix_flags(piece)
                if text.strip():
                    both = flags | more
                    out.append(Command(text, text, silent or "@" in both, ignore or "-" in both,
                                       recursive or "+" in both, line.file, line.line, recursive, shell))
    finally:
        ex.where = None
    if db.oneshell and len(out) > 1:
        return [_one_shell(out)]
    return out


def _one_shell(commands: list[Command]) -> Command:
    """.ONESHELL: the whole recipe is one script; the first line's prefixes count, the others' are dropped."""
    first = commands[0]
    text = "\n".join(c.text for c in commands)
    recursive = any(c.recursive for c in commands)
    return Command(text, text, first.silent, first.ignore, first.force or recursive, first.file, first.line,
                   recursive, first.shell)


def location(command: Command | None, target: str) -> str:
    """GNU's "Makefile:12: target" for the recipe line of ``command`` ("<builtin>: target" for a built-in rule)."""
    if command is None or not command.file:
        return target
    return f"{command.file}:{command.line}: {target}" if command.line else f"{command.file}: {target}"


def stem_from_suffix(name: str, suffixes: Sequence[str]) -> str:
    """``$*`` of an explicit rule: the target without the first .SUFFIXES suffix it ends with (else empty)."""
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return ""


def _member_or_name(word: str) -> str:
    """In ``$^`` and friends an archive member ``lib.a(x.o)`` is named by its member, as in GNU make."""
    parts = archive_parts(word)
    return parts[1] if parts is not None else word


def _dir_of(word: str) -> str:
    """``$(@D)``: the directory part without its trailing slash, ``.`` when there is none."""
    if "/" not in word:
        return "."
    return word[: word.rfind("/")] or "/"


def _prefix_flags(text: str) -> tuple[set[str], str]:
    """The ``@ - +`` prefixes (blanks may come before and between them) and the text after them."""
    i = 0
    while i < len(text) and text[i] in "@-+ \t":
        i += 1
    return set(text[:i]) - {" ", "\t"}, text[i:]


def _join_in_refs(text: str) -> str:
    """Inside ``$(...)`` of a recipe line, a backslash-newline and the blanks around it become one space."""
    if "\\\n" not in text or "$" not in text:
        return text
    out, i = [], 0
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        if j + 1 < len(text) and text[j + 1] in "({":
            end = matching_close(text, j + 2, text[j + 1], ")" if text[j + 1] == "(" else "}")
            end = len(text) - 1 if end < 0 else end
            ref = text[j : end + 1]
            while "\\\n" in ref:
                k = ref.index("\\\n")
                ref = ref[:k].rstrip(" \t") + " " + ref[k + 2 :].lstrip(" \t")
            out.append(ref)
            i = end + 1
        else:
            out.append(text[j : j + 2])
            i = j + 2
    out.append(text[i:])
    return "".join(out)


def _split_commands(text: str) -> list[str]:
    """Split an expanded recipe line at newlines that are not backslash-escaped (each runs as its own shell)."""
    if "\n" not in text:
        return [text]
    pieces, start = [], 0
    for i, c in enumerate(text):
        if c == "\n" and (len(text[:i]) - len(text[:i].rstrip("\\"))) % 2 == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces
