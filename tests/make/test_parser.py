"""Unit tests of the Makefile reader and the expander: syntax, functions, conditionals and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from onitu.make.parser import Database, MakeError, load


def read(tmp_path: Path, text: str, *, overrides: dict[str, str] | None = None,
         environ: dict[str, str] | None = None, goals: tuple[str, ...] = ()) -> tuple[Database, list[str]]:
    """Load ``text`` as the Makefile; returns the database and what $(info)/$(warning) printed."""
    (tmp_path / "Makefile").write_text(text)
    printed: list[str] = []
    db = load(None, cwd=tmp_path, overrides=overrides or {}, environ=environ or {}, goals=goals,
              emit=lambda stream, line: printed.append(f"{stream}:{line}"))
    return db, printed


def value(tmp_path: Path, text: str, expr: str) -> str:
    """Expand ``expr`` after reading ``text``."""
    db, _ = read(tmp_path, text)
    return db.expander.expand(expr)


def error(tmp_path: Path, text: str, **kwargs: object) -> MakeError:
    with pytest.raises(MakeError) as caught:
        read(tmp_path, text, **kwargs)  # type: ignore[arg-type]
    return caught.value


# -- variables ---------------------------------------------------------------------------------------------------


def test_flavours_and_append(tmp_path: Path) -> None:
    text = "A = $(B)\nB = b\nS := $(B)x\nB = c\nR = r\nR += $(B)\nT := t\nT += $(B)\nE :=\nE += e\nP ::= $(B)\n"
    assert value(tmp_path, text, "$(A)|$(S)|$(R)|$(T)|$(E)|$(P)") == "c|bx|r c|t c|e|c"
    flavours = value(tmp_path, text, "$(flavor R) $(flavor T) $(flavor P) $(flavor nope)")
    assert flavours == "recursive simple simple undefined"


def test_conditional_assignment_and_environment(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "A ?= file\nB ?= file\nC = file\n", environ={"A": "env", "C": "env"})
    assert db.expander.expand("$(A) $(B) $(C) $(origin A) $(origin C)") == "env file file environment file"


def test_command_line_beats_file_unless_override(tmp_path: Path) -> None:
    text = "A = file\nA += more\noverride B = forced\noverride C += tail\n"
    db, _ = read(tmp_path, text, overrides={"A": "cmd", "B": "cmd", "C": "cmd"})
    assert db.expander.expand("$(A)|$(B)|$(C)|$(origin A)|$(origin B)") == "cmd|forced|cmd tail|command line|override"


def test_references_and_substitution(tmp_path: Path) -> None:
    text = "X = Y\nY = Z\nZ = deep\nS = a.c b.c\nC = c\n"
    assert value(tmp_path, text, "$($(X)) $($($(X))) ${S:.c=.o} $(S:%.c=o/%.o) $C $$ $(S:x=y)") == (
        "Z deep a.o b.o o/a.o o/b.o c $ a.c b.c")


def test_define_and_trailing_spaces(tmp_path: Path) -> None:
    text = "B = b\ndefine M\none $(B)\ntwo\nendef\ndefine S :=\n$(B)\nendef\nT = x  # comment\n"
    db, _ = read(tmp_path, text)
    assert db.expander.value_of("M") == "one b\ntwo"
    assert db.expander.expand("$(value M)|$(flavor S)|[$(T)]") == "one $(B)\ntwo|simple|[x  ]"


def test_exports(tmp_path: Path) -> None:
    text = "export A = a\nB = b\nexport B\nC = c\nENVVAR = changed\nunexport GONE\n"
    db, _ = read(tmp_path, text, environ={"ENVVAR": "orig", "GONE": "x", "KEPT": "k"}, overrides={"CMD": "1"})
    env = db.exports()
    assert env["A"] == "a" and env["B"] == "b" and env["ENVVAR"] == "changed" and env["KEPT"] == "k"
    assert env["CMD"] == "1" and "C" not in env and "GONE" not in env


def test_special_variables(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "all:;\n", goals=("all", "x"))
    assert db.expander.expand("$(MAKE)|$(MAKECMDGOALS)|$(MAKEFILE_LIST)") == "onitu make|all x|Makefile"
    assert db.expander.expand("$(CURDIR)") == str(tmp_path)


# -- functions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "expected"), [
    ("$(subst a,b,banana)", "bbnbnb"),
    ("$(patsubst %.c,%.o,a.c  b.h)", "a.o b.h"),
    ("$(strip  a   b )", "a b"),
    ("$(findstring an,banana)|$(findstring x,banana)", "an|"),
    ("$(filter %.c,a.c b.h c.c)|$(filter-out %.c,a.c b.h)", "a.c c.c|b.h"),
    ("$(sort c a b a)", "a b c"),
    ("$(word 2,a b c)|$(wordlist 2,3,a b c d)|$(words a b c)", "b|b c|3"),
    ("$(firstword a b)|$(lastword a b)", "a|b"),
    ("$(dir a/b c)|$(notdir a/b c)|$(suffix a.c b)|$(basename a.c b)", "a/ ./|b c|.c|a b"),
    ("$(addsuffix .o,a b)|$(addprefix x/,a b)|$(join a b,1 2 3)", "a.o b.o|x/a x/b|a1 b2 3"),
    ("$(if x,y,z)|$(if ,y,z)|$(or ,b)|$(and a,b)|$(and ,b)", "y|z|b|b|"),
    ("$(foreach x,1 2,<$(x)>)", "<1> <2>"),
    ("$(abspath /a/../b/./c)", "/b/c"),
    ("$(shell echo hi; echo there)", "hi there"),
])
def test_functions(tmp_path: Path, expr: str, expected: str) -> None:
    assert value(tmp_path, "", expr) == expected


def test_call_value_origin(tmp_path: Path) -> None:
    text = "pair = $(1)-$(2)\nouter = $(call pair,$(1),[$(2)])\nV = $(X)\n"
    assert value(tmp_path, text, "$(call pair,a,b)|$(call outer,x)|$(value V)|$(origin V)") == "a-b|x-[]|$(X)|file"


def test_wildcard_and_shell_status(tmp_path: Path) -> None:
    (tmp_path / "b.c").touch()
    (tmp_path / "a.c").touch()
    assert value(tmp_path, "", "$(wildcard *.c none.c)") == "a.c b.c"
    assert value(tmp_path, "X := $(shell exit 4)\n", "$(.SHELLSTATUS)") == "4"


def test_info_and_warning(tmp_path: Path) -> None:
    _, printed = read(tmp_path, "\n$(info hello)\n$(warning careful)\n")
    assert printed == ["out:hello", "err:Makefile:3: careful"]


# -- conditionals ------------------------------------------------------------------------------------------------


def test_conditionals(tmp_path: Path) -> None:
    text = """M = b
ifeq ($(M),a)
R = a
else ifeq '$(M)' "b"
R = b
else
R = c
endif
ifneq (x, x)
N = wrong
endif
ifdef M
  ifndef NOPE
D = yes
  endif
endif
ifeq ( x,x)
L = leading-kept
endif
"""
    assert value(tmp_path, text, "$(R)|$(N)|$(D)|$(L)") == "b||yes|"


def test_extraneous_text_warns(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "ifeq (a,a) junk\nendif x\n")
    assert db.warnings() == ["Makefile:1: extraneous text after 'ifeq' directive",
                             "Makefile:2: extraneous text after 'endif' directive"]


# -- rules -------------------------------------------------------------------------------------------------------


def test_rules_merge_and_default_goal(tmp_path: Path) -> None:
    text = ".PHONY: all\n.hidden: ;\n%.o: %.c ;\nall: x\nall: y ; echo\nall: z | w\n"
    db, _ = read(tmp_path, text)
    assert db.default_goal == "all"
    entry = db.entries["all"]
    assert (entry.prereqs, entry.order_only, entry.line) == (["y", "x", "z"], ["w"], 5)
    assert db.phony == {"all"}


def test_default_goal_variable(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "clean: ;\n.DEFAULT_GOAL := all\nall: ;\n")
    assert db.default_goal == "all"


def test_overriding_recipe_warns(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "x:\n\techo 1\nx:\n\techo 2\n")
    assert db.warnings() == ["Makefile:4: warning: overriding recipe for target 'x'",
                             "Makefile:2: warning: ignoring old recipe for target 'x'"]
    assert [r.text for r in db.entries["x"].recipe or []] == ["echo 2"]


def test_recipe_continuations_and_comments(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "x: a \\\n   b # comment\n\techo 1 \\\n\t  2 # to the shell\n# not a line\n\n\techo 3\n")
    entry = db.entries["x"]
    assert entry.prereqs == ["a", "b"]
    assert [r.text for r in entry.recipe or []] == ["echo 1 \\\n  2 # to the shell", "echo 3"]


def test_static_pattern_rule(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "OBJS = b/x.o b/y.o\n$(OBJS): b/%.o: s/%.c h | d\n\techo $<\n")
    entry = db.entries["b/y.o"]
    assert (entry.prereqs, entry.order_only, entry.stem) == (["s/y.c", "h"], ["d"], "y")


def test_target_variables_recorded(tmp_path: Path) -> None:
    db, _ = read(tmp_path, "x y: V = 1\nx: W += 2\nx: ;\n")
    assert db.entries["x"].scope is not None and set(db.entries["x"].scope.vars) == {"V", "W"}
    assert db.default_goal == "x"


# -- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("all:\n\techo\nfoo\n", "Makefile:3: *** missing separator.  Stop."),
    ("\techo\n", "Makefile:1: *** recipe commences before first target.  Stop."),
    ("X := $(foo\n", "Makefile:1: *** unterminated variable reference.  Stop."),
    ("X := $(subst a,b\n", "Makefile:1: *** unterminated call to function 'subst': missing ')'.  Stop."),
    ("\nendif\n", "Makefile:2: *** extraneous 'endif'.  Stop."),
    ("else\n", "Makefile:1: *** extraneous 'else'.  Stop."),
    ("ifdef X\n\n", "Makefile:3: *** missing 'endif'.  Stop."),
    ("ifdef X\nelse\nelse\nendif\n", "Makefile:3: *** only one 'else' per conditional.  Stop."),
    ("define X\n", "Makefile:1: *** missing 'endef', unterminated 'define'.  Stop."),
    ("\n\n$(error bad thing)\n", "Makefile:3: *** bad thing.  Stop."),
    ("X := $(word 0,a)\n", "Makefile:1: *** first argument to 'word' function must be greater than 0.  Stop."),
    ("X := $(if a)\n", "Makefile:1: *** insufficient number of arguments (1) to function 'if'.  Stop."),
    ("A = $(A)\nX := $(A)\n", "Makefile:1: *** Recursive variable 'A' references itself (eventually).  Stop."),
    ("%.o a: b\n", "Makefile:1: *** mixed implicit and normal rules.  Stop."),
    ("a: b: c\n", "Makefile:1: *** target pattern contains no '%'.  Stop."),
])
def test_gnu_errors(tmp_path: Path, text: str, message: str) -> None:
    err = error(tmp_path, text)
    assert str(err) == message
    assert err.file == "Makefile" and err.line == int(message.split(":")[1])


@pytest.mark.parametrize(("text", "fragment"), [
    ("X := $(intcmp 1,2)\n", "Makefile:1: *** function 'intcmp' is not supported"),
    ("X := $(guile 1)\n", "Makefile:1: *** function 'guile' is not supported"),
    ("X := $(let a,b,c)\n", "Makefile:1: *** function 'let' is not supported"),
    ("X := $(frobnicate 1)\n", "Makefile:1: *** unknown function 'frobnicate'"),
    ("load foo.so\n", "Makefile:1: *** the 'load' directive is not supported"),
    ("private X = 1\n", "Makefile:1: *** the 'private' modifier is not supported"),
    ("a: private X = 1\n", "Makefile:1: *** the 'private' modifier is not supported"),
    ("\n.POSIX:\n", "Makefile:2: *** special target '.POSIX' is not supported"),
    ("\n\n$(eval $(guile 1))\n", "Makefile:3: *** function 'guile' is not supported"),
])
def test_unsupported_features_are_errors(tmp_path: Path, text: str, fragment: str) -> None:
    assert str(error(tmp_path, text)).startswith(fragment)


def test_no_makefile(tmp_path: Path) -> None:
    with pytest.raises(MakeError, match=r"^\*\*\* No targets specified and no makefile found\.  Stop\.$"):
        load(None, cwd=tmp_path, overrides={}, environ={})
    (tmp_path / "makefile").write_text("lower:;\n")
    (tmp_path / "GNUmakefile").write_text("gnu:;\n")
    assert load(None, cwd=tmp_path, overrides={}, environ={}).default_goal == "gnu"
