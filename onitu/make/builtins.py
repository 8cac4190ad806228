"""GNU make 4.3's built-in catalogue: default variables, suffixes, suffix rules and pattern rules.

This is what ``make -p -f /dev/null`` lists on a GNU/Linux system. ``-R`` drops the variables, ``-r`` the rules
and suffixes (:func:`install`), and a makefile's ``.SUFFIXES:`` with no prerequisites drops the suffixes. Suffix
rules, built-in and the makefile's own alike, become pattern rules only once the makefiles are read
(:func:`convert_suffix_rules`), from the final ``.SUFFIXES`` list, as GNU does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onitu.make.database import PatternRule, RecipeLine

if TYPE_CHECKING:
    from onitu.make.database import Database, Entry

BUILTIN = "<builtin>"  # the "file" of built-in recipe lines

SUFFIXES = (".out .a .ln .o .c .cc .C .cpp .p .f .F .m .r .y .l .ym .yl .s .S .mod .sym .def .h .info .dvi .tex "
            ".texinfo .texi .txinfo .w .ch .web .sh .elc .el").split()

_LINK = "$^ $(LOADLIBES) $(LDLIBS) -o $@"
_MAKEINFO = "$(MAKEINFO) $(MAKEINFO_FLAGS) $< -o $@"
_TEXI2DVI = "$(TEXI2DVI) $(TEXI2DVI_FLAGS) $<"

# Suffix rules: ".c.o" makes x.o from x.c, ".c" makes x from x.c. Recipe lines are separated by newlines.
SUFFIX_RULES = {
    ".o": f"$(LINK.o) {_LINK}", ".s": f"$(LINK.s) {_LINK}", ".S": f"$(LINK.S) {_LINK}", ".c": f"$(LINK.c) {_LINK}",
    ".cc": f"$(LINK.cc) {_LINK}", ".C": f"$(LINK.C) {_LINK}", ".cpp": f"$(LINK.cpp) {_LINK}",
    ".f": f"$(LINK.f) {_LINK}", ".m": f"$(LINK.m) {_LINK}", ".p": f"$(LINK.p) {_LINK}", ".F": f"$(LINK.F) {_LINK}",
    ".r": f"$(LINK.r) {_LINK}", ".mod": "$(COMPILE.mod) -o $@ -e $@ $^",
    ".def.sym": "$(COMPILE.def) -o $@ $<", ".sh": "cat $< >$@ \n chmod a+x $@",
    ".s.o": "$(COMPILE.s) -o $@ $<", ".S.o": "$(COMPILE.S) -o $@ $<",
    ".c.o": "$(COMPILE.c) $(OUTPUT_OPTION) $<", ".cc.o": "$(COMPILE.cc) $(OUTPUT_OPTION) $<",
    ".C.o": "$(COMPILE.C) $(OUTPUT_OPTION) $<", ".cpp.o": "$(COMPILE.cpp) $(OUTPUT_OPTION) $<",
    ".f.o": "$(COMPILE.f) $(OUTPUT_OPTION) $<", ".m.o": "$(COMPILE.m) $(OUTPUT_OPTION) $<",
    ".p.o": "$(COMPILE.p) $(OUTPUT_OPTION) $<", ".F.o": "$(COMPILE.F) $(OUTPUT_OPTION) $<",
    ".r.o": "$(COMPILE.r) $(OUTPUT_OPTION) $<", ".mod.o": "$(COMPILE.mod) -o $@ $<",
    ".c.ln": "$(LINT.c) -C$* $<", ".y.ln": "$(YACC.y) $< \n $(LINT.c) -C$* y.tab.c \n $(RM) y.tab.c",
    ".l.ln": "@$(RM) $*.c\n $(LEX.l) $< > $*.c\n$(LINT.c) -i $*.c -o $@\n $(RM) $*.c",
    ".y.c": "$(YACC.y) $< \n mv -f y.tab.c $@", ".l.c": "@$(RM) $@ \n $(LEX.l) $< > $@",
    ".ym.m": "$(YACC.m) $< \n mv -f y.tab.c $@", ".lm.m": "@$(RM) $@ \n $(LEX.m) $< > $@",
    ".F.f": "$(PREPROCESS.F) $(OUTPUT_OPTION) $<", ".r.f": "$(PREPROCESS.r) $(OUTPUT_OPTION) $<",
    ".l.r": "$(LEX.l) $< > $@ \n mv -f lex.yy.r $@", ".S.s": "$(PREPROCESS.S) $< > $@",
    ".texinfo.info": _MAKEINFO, ".texi.info": _MAKEINFO, ".txinfo.info": _MAKEINFO,
    ".tex.dvi": "$(TEX) $<", ".texinfo.dvi": _TEXI2DVI, ".texi.dvi": _TEXI2DVI, ".txinfo.dvi": _TEXI2DVI,
    ".w.c": "$(CTANGLE) $< - $@", ".web.p": "$(TANGLE) $<", ".w.tex": "$(CWEAVE) $< - $@",
    ".web.tex": "$(WEAVE) $<",
}

# Pattern rules installed after the makefiles' own (so theirs win), then the terminal ones (%:: ...).
PATTERN_RULES = [
    ("(%)", "%", "$(AR) $(ARFLAGS) $@ $<"),
    ("%.out", "%", "@rm -f $@ \n cp $< $@"),
    ("%.c", "%.w %.ch", "$(CTANGLE) $^ $@"),
    ("%.tex", "%.w %.ch", "$(CWEAVE) $^ $@"),
]
TERMINAL_RULES = [
    ("%", "%,v", "$(CHECKOUT,v)"), ("%", "RCS/%,v", "$(CHECKOUT,v)"), ("%", "RCS/%", "$(CHECKOUT,v)"),
    ("%", "s.%", "$(GET) $(GFLAGS) $(SCCS_OUTPUT_OPTION) $<"),
    ("%", "SCCS/s.%", "$(GET) $(GFLAGS) $(SCCS_OUTPUT_OPTION) $<"),
]

_COMPILE = "$(CPPFLAGS) $(TARGET_ARCH) -c"
VARIABLES = {
    ".LIBPATTERNS": "lib%.so lib%.a", "AR": "ar", "ARFLAGS": "rv", "AS": "as", "CC": "cc",
    "CHECKOUT,v": "+$(if $(wildcard $@),,$(CO) $(COFLAGS) $< $@)", "CO": "co", "COFLAGS": "",
    "COMPILE.C": "$(COMPILE.cc)", "COMPILE.F": f"$(FC) $(FFLAGS) {_COMPILE}",
    "COMPILE.S": "$(CC) $(ASFLAGS) $(CPPFLAGS) $(TARGET_MACH) -c", "COMPILE.c": f"$(CC) $(CFLAGS) {_COMPILE}",
    "COMPILE.cc": f"$(CXX) $(CXXFLAGS) {_COMPILE}", "COMPILE.cpp": "$(COMPILE.cc)",
    "COMPILE.def": "$(M2C) $(M2FLAGS) $(DEFFLAGS) $(TARGET_ARCH)", "COMPILE.f": "$(FC) $(FFLAGS) $(TARGET_ARCH) -c",
    "COMPILE.m": f"$(OBJC) $(OBJCFLAGS) {_COMPILE}", "COMPILE.mod": "$(M2C) $(M2FLAGS) $(MODFLAGS) $(TARGET_ARCH)",
    "COMPILE.p": f"$(PC) $(PFLAGS) {_COMPILE}", "COMPILE.r": "$(FC) $(FFLAGS) $(RFLAGS) $(TARGET_ARCH) -c",
    "COMPILE.s": "$(AS) $(ASFLAGS) $(TARGET_MACH)", "CPP": "$(CC) -E", "CTANGLE": "ctangle", "CWEAVE": "cweave",
    "CXX": "g++", "F77": "$(FC)", "F77FLAGS": "$(FFLAGS)", "FC": "f77", "GET": "get", "LD": "ld", "LEX": "lex",
    "LEX.l": "$(LEX) $(LFLAGS) -t", "LEX.m": "$(LEX) $(LFLAGS) -t", "LINK.C": "$(LINK.cc)",
    "LINK.F": "$(FC) $(FFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.S": "$(CC) $(ASFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_MACH)",
    "LINK.c": "$(CC) $(CFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.cc": "$(CXX) $(CXXFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_ARCH)", "LINK.cpp": "$(LINK.cc)",
    "LINK.f": "$(FC) $(FFLAGS) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.m": "$(OBJC) $(OBJCFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_ARCH)", "LINK.o": "$(CC) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.p": "$(PC) $(PFLAGS) $(CPPFLAGS) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.r": "$(FC) $(FFLAGS) $(RFLAGS) $(LDFLAGS) $(TARGET_ARCH)",
    "LINK.s": "$(CC) $(ASFLAGS) $(LDFLAGS) $(TARGET_MACH)", "LINT": "lint",
    "LINT.c": "$(LINT) $(LINTFLAGS) $(CPPFLAGS) $(TARGET_ARCH)", "M2C": "m2c", "MAKEINFO": "makeinfo", "OBJC": "cc",
    "OUTPUT_OPTION": "-o $@", "PC": "pc", "PREPROCESS.F": "$(FC) $(FFLAGS) $(CPPFLAGS) $(TARGET_ARCH) -F",
    "PREPROCESS.S": "$(CC) -E $(CPPFLAGS)", "PREPROCESS.r": "$(FC) $(FFLAGS) $(RFLAGS) $(TARGET_ARCH) -F",
    "RM": "rm -f", "TANGLE": "tangle", "TEX": "tex", "TEXI2DVI": "texi2dvi", "WEAVE": "weave", "YACC": "yacc",
    "YACC.m": "$(YACC) $(YFLAGS)", "YACC.y": "$(YACC) $(YFLAGS)",
}


def _recipe(text: str) -> list[RecipeLine]:
    return [RecipeLine(line, BUILTIN, 0) for line in text.split("\n")]


def install(db: Database, *, rules: bool, variables: bool) -> None:
    """Before the makefiles are read: the default variables, suffixes and suffix rules (as GNU's targets)."""
    ex = db.expander
    if variables:
        for name, value in VARIABLES.items():
            ex.define(name, value, recursive=True, origin="default")
    db.builtin_rules = rules
    ex.define("SUFFIXES", " ".join(SUFFIXES) if rules else "", recursive=False, origin="default")
    if rules:
        db.suffixes = list(SUFFIXES)
        for name, text in SUFFIX_RULES.items():
            entry = db.entry(name)
            entry.recipe, entry.file, entry.line = _recipe(text), BUILTIN, 0


def drop_rules(db: Database) -> None:
    """``-r`` given in the makefile's MAKEFLAGS: forget the built-in suffixes (and so the suffix rules)."""
    if db.builtin_rules:
        db.builtin_rules = False
        db.suffixes = []
        db.expander.define("SUFFIXES", "", recursive=False, origin="default")


def drop_variables(db: Database) -> None:
    """``-R`` given in the makefile's MAKEFLAGS: forget the default variables the makefile did not set."""
    for name in VARIABLES:
        var = db.globals.vars.get(name)
        if var is not None and var.origin == "default":
            del db.globals.vars[name]


def convert_suffix_rules(db: Database) -> None:
    """GNU's convert_to_pattern, then the built-in pattern rules: run once every makefile has been read.

    For each suffix S of .SUFFIXES in order: a recipe-less ``%S:`` (it keeps match-anything rules from making
    ``x.S``), ``%: %S`` from a rule ``S:``, then ``%T: %S`` for each rule ``ST:`` with a recipe and no
    prerequisites (``(%.o): %S`` too when T is ``.a``). None of these replaces a pattern rule the makefiles gave.
    """
    entries = db.entries
    for source in db.suffixes:
        _convert(db, f"%{source}", [], None)
        _convert(db, "%", [f"%{source}"], entries.get(source))
        for target in db.suffixes:
            entry = entries.get(source + target)
            if entry is None:
                continue
            if target == ".a":
                _convert(db, "(%.o)", [f"%{source}"], entry)
            _convert(db, f"%{target}", [f"%{source}"], entry)
    if db.builtin_rules:
        for terminal, table in ((False, PATTERN_RULES), (True, TERMINAL_RULES)):
            for target, prereqs, text in table:
                rule = PatternRule([target], prereqs.split(), [], _recipe(text), BUILTIN, 0, terminal, builtin=True)
                replace_pattern_rule(db, rule, override=False)


def _convert(db: Database, target: str, prereqs: list[str], entry: Entry | None) -> None:
    """One suffix rule as a pattern rule (a recipe-less one when there are no prerequisites)."""
    if prereqs and (entry is None or entry.recipe is None or entry.prereqs):
        return
    file, line = (entry.file or BUILTIN, entry.line or 0) if entry is not None else (BUILTIN, 0)
    recipe = entry.recipe if entry is not None else None
    rule = PatternRule([target], prereqs, [], recipe, file, line, builtin=file == BUILTIN)
    replace_pattern_rule(db, rule, override=False)


def replace_pattern_rule(db: Database, rule: PatternRule, *, override: bool) -> None:
    """GNU's new_pattern_rule: a rule with the same targets and prerequisites as an existing one replaces it (it
    goes last) with ``override``; else the existing one stays and the new one is dropped."""
    key = (tuple(rule.targets), tuple(rule.prereqs))
    old = db.pattern_index.get(key)
    if old is not None:
        if not override:
            return
        db.patterns.remove(old)
    db.pattern_index[key] = rule
    db.patterns.append(rule)
