"""Unit tests of the dependency graph: resolution, cycles, missing files, decide() and recipe expansion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onitu.make.graph import Graph
from onitu.make.parser import load
from onitu.make.recipe import Command
from onitu.make.update import Update


def graph(tmp_path: Path, text: str, goals: tuple[str, ...] = (), files: tuple[str, ...] = (),
          overrides: dict[str, str] | None = None) -> Graph:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "Makefile").write_text(text)
    db = load(None, cwd=tmp_path, overrides=overrides or {}, environ={}, make_command="make", builtin=False)
    return Graph.build(db, goals)


# -- resolution --------------------------------------------------------------------------------------------------


def test_order_is_gnu_post_order(tmp_path: Path) -> None:
    g = graph(tmp_path, "all: a b\na: c d\nb: d c\nc d: ;\n")
    assert g.goals == ["all"]
    assert g.order() == ["c", "d", "a", "b", "all"]


def test_sources_are_nodes(tmp_path: Path) -> None:
    g = graph(tmp_path, "x.o: x.c x.h\n\tcc\n", files=("x.c", "x.h"))
    src = g.nodes["x.c"]
    assert (src.has_recipe, src.prereqs, src.is_target, src.file) == (False, [], False, None)
    node = g.nodes["x.o"]
    assert (node.prereqs, node.has_recipe, node.file, node.line) == (["x.c", "x.h"], True, "Makefile", 1)


def test_duplicates_and_order_only(tmp_path: Path) -> None:
    g = graph(tmp_path, "t: a b a | c a\n\techo\na b c: ;\n")
    node = g.nodes["t"]
    assert (node.prereqs, node.all_prereqs, node.order_only) == (["a", "b"], ["a", "b", "a"], ["c"])


def test_pattern_rule_in_subdirectory(tmp_path: Path) -> None:
    g = graph(tmp_path, "%.o: %.c h\n\techo $* $(*D) $(*F) $<\nsrc/x.o: extra\nextra h: ;\n", ("src/x.o",),
              files=("src/x.c",))
    node = g.nodes["src/x.o"]
    assert (node.prereqs, node.stem, node.line) == (["src/x.c", "h", "extra"], "src/x", 1)
    assert [c.text for c in node.commands([])] == ["echo src/x src x src/x.c"]


def test_shortest_stem_wins(tmp_path: Path) -> None:
    g = graph(tmp_path, "%.txt: %.in ; echo long\nlib%.txt: lib%.in ; echo short\n", ("libz.txt",),
              files=("libz.in",))
    assert [c.text for c in g.nodes["libz.txt"].commands([])] == ["echo short"]


def test_phony_skips_implicit_rules(tmp_path: Path) -> None:
    g = graph(tmp_path, ".PHONY: x.o\n%.o: %.c ; echo\n", ("x.o",), files=("x.c",))
    assert not g.nodes["x.o"].has_recipe and g.nodes["x.o"].phony


def test_cycles_are_dropped_as_gnu_drops_them(tmp_path: Path) -> None:
    g = graph(tmp_path, "all: a\na: b\nb: c\nc: a\n")
    assert g.messages == ["Circular c <- a dependency dropped."]
    assert g.nodes["c"].prereqs == [] and g.order() == ["c", "b", "a", "all"]
    assert graph(tmp_path, "s: s\n").messages == ["Circular s <- s dependency dropped."]


def test_implicit_chains_make_intermediate_files(tmp_path: Path) -> None:
    g = graph(tmp_path, "%.o: %.c ; cc\n%.c: %.y ; yacc\n", ("x.o",), files=("x.y",))
    assert g.nodes["x.o"].prereqs == ["x.c"] and not g.nodes["x.o"].intermediate
    assert g.nodes["x.c"].intermediate and g.nodes["x.c"].prereqs == ["x.y"]
    mentioned = graph(tmp_path, "%.o: %.c ; cc\n%.c: %.y ; yacc\nall: x.o\nkeep: x.c\n", ("x.o",))
    assert not mentioned.nodes["x.c"].intermediate  # a file the makefile names is never intermediate


def test_a_match_anything_rule_is_not_used_for_a_specific_suffix(tmp_path: Path) -> None:
    text = "%: %.src ; cp\n%.txt:\n"
    g = graph(tmp_path, text, ("a", "b.txt"), files=("a.src", "b.txt.src"))
    assert g.nodes["a"].has_recipe and not g.nodes["b.txt"].has_recipe


# -- recipes -----------------------------------------------------------------------------------------------------


def test_commands_prefixes_and_specials(tmp_path: Path) -> None:
    text = (".SILENT: q\n.IGNORE: q\nTWO = @echo 1\\n@echo 2\ndefine newline\n\n\nendef\n"
            "NL := $(subst \\n,$(newline),$(TWO))\nt:\n\t@echo a\n\t -@ echo b\n\t+echo c\n"
            "\t$(MAKE) -C d\n\t$(NL)\n\t@\n"
            "q:\n\techo q\n")
    g = graph(tmp_path, text, ("t", "q"))
    assert g.nodes["t"].commands([]) == [
        Command("echo a", "echo a", True, False, False),
        Command("echo b", "echo b", True, True, False),
        Command("echo c", "echo c", False, False, True),
        Command("make -C d", "make -C d", False, False, True),
        Command("echo 1", "echo 1", True, False, False),
        Command("echo 2", "echo 2", True, False, False),
    ]
    assert g.nodes["q"].commands([]) == [Command("echo q", "echo q", True, True, False)]


def test_automatic_variables(tmp_path: Path) -> None:
    text = "o/t.x: d/a.c b.c d/a.c | o\n\techo $@ $< $^ $+ $? $| $(@D) $(@F) $(^D) $(<F) $(?F)\no b.c d/a.c: ;\n"
    g = graph(tmp_path, text)
    [cmd] = g.nodes["o/t.x"].commands(["b.c"])
    assert cmd.text == "echo o/t.x d/a.c d/a.c b.c d/a.c b.c d/a.c b.c o o t.x d . a.c b.c"


def test_backslash_newline_kept_in_commands(tmp_path: Path) -> None:
    g = graph(tmp_path, "t:\n\techo a \\\n\t  b $(subst \\\n\t x,y,x)\n")
    assert [c.text for c in g.nodes["t"].commands([])] == ["echo a \\\n  b y"]


def test_target_variables_are_inherited(tmp_path: Path) -> None:
    text = ("V = g\nW = w\nall: p q\np: V = p\np: W += more\np: dep\n\t@echo $(V) $(W)\nq: dep\n"
            "dep:\n\t@echo $(V) $(W)\n")
    g = graph(tmp_path, text)
    assert [c.text for c in g.nodes["p"].commands([])] == ["echo p w more"]
    assert [c.text for c in g.nodes["dep"].commands([])] == ["echo p w more"]  # its first parent was p


# -- the update algorithm ---------------------------------------------------------------------------------------

DECIDE = "t: a b | o\n\techo\na b o: ;\n.PHONY: ph\nu: ph\n\techo\nagg: a\nfinal: agg\n\techo\n"
EPOCH = 1_600_000_000


def run(tmp_path: Path, text: str, goals: tuple[str, ...], mtimes: dict[str, float], always: bool = False
        ) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """Dry-run the update algorithm: ({key: $? of each recipe run}, goal lines, reports)."""
    for name, seconds in mtimes.items():
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (EPOCH + seconds, EPOCH + seconds))
    lines: list[str] = []
    reports: list[str] = []
    g = graph(tmp_path, text, goals)
    engine = Update(g, always=always, dry_run=True, report=reports.append,
                    goal_line=lambda stream, line: lines.append(line))
    engine.start()
    ran: dict[str, list[str]] = {}
    while (job := engine.next_job()) is not None:
        ran[job.key] = list(engine.state[job.key].newer)
        engine.job_done(job, 0)
    engine.close()
    return ran, lines, reports


@pytest.mark.parametrize(("name", "mtimes", "always", "newer"), [
    ("t", {"a": 1, "b": 1, "o": 1}, False, ["a", "b"]),  # target missing: $? is everything
    ("t", {"t": 5, "a": 1, "b": 1, "o": 9}, False, None),  # up to date; order-only never forces
    ("t", {"t": 5, "a": 1, "b": 7, "o": 1}, False, ["b"]),  # a newer prerequisite
    ("t", {"t": 5, "a": 1, "o": 1}, False, ["b"]),  # a missing prerequisite
    ("t", {"t": 5, "a": 1, "b": 1, "o": 1}, True, ["a", "b"]),  # -B
    ("u", {"u": 5}, False, ["ph"]),  # a phony prerequisite always forces
    ("final", {"final": 5, "a": 1}, False, ["agg"]),  # a missing aggregate forces dependents
    ("final", {"final": 5, "agg": 3, "a": 1}, False, None),  # an existing, older aggregate does not
])
def test_decisions(tmp_path: Path, name: str, mtimes: dict[str, float], always: bool, newer: list[str] | None
                   ) -> None:
    ran, _, _ = run(tmp_path, DECIDE, (name,), mtimes, always)
    assert ran.get(name) == newer


def test_goal_lines_and_missing_rules(tmp_path: Path) -> None:
    _, lines, _ = run(tmp_path, "all: x\nx: ; @echo x\nquiet:\n.PHONY: p\np: ;\n", ("all", "x", "quiet", "p"), {})
    assert lines == ["'x' is up to date.", "Nothing to be done for 'quiet'.", "Nothing to be done for 'p'."]
    ran, _, reports = run(tmp_path, "x: y\n\techo\n", ("x",), {})
    assert ran == {} and reports == ["*** No rule to make target 'y', needed by 'x'.  Stop."]


def test_missing_intermediate_is_not_remade_when_its_dependent_is_up_to_date(tmp_path: Path) -> None:
    text = "%.b: %.a ; cp $< $@\n%.c: %.b ; cp $< $@\n"
    assert run(tmp_path, text, ("x.c",), {"x.a": 1, "x.c": 5})[0] == {}
    assert list(run(tmp_path, text, ("x.c",), {"x.a": 9, "x.c": 5})[0]) == ["x.b", "x.c"]
