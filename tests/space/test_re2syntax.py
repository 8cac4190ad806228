"""The RE2 rewrite of a template regex finds a match exactly where Python's ``re`` does (or is not made)."""

from __future__ import annotations

import re

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from onitu.space.re2syntax import to_re2

OPTIONS = re2.Options()
OPTIONS.log_errors = False
ALPHABET = "aAbBiIz09_ -\n\t\v\u00a0\u3000\u0130\u0131\u00e9\u00c9\u0663.\\]["

atoms = st.sampled_from([
    "a", "b", "i", "I", "\u0130", "\u0131", "\u00e9", ".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", "[a-z]",
    "[^a-z]", r"[\d\s]", r"[^\w]", "[iI]", r"[\u00e0-\u00ff]", r"\.", r"\\", "^", "$", r"\A", r"\Z", r"\b",
])
patterns = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map("".join),
        st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "*?", "+?"])).map(
            lambda p: f"(?:{p[0]}){p[1]}"),
        inner.map(lambda p: f"({p})"),
    ),
    max_leaves=6,
)
flags = st.sampled_from([0, re.IGNORECASE, re.MULTILINE, re.DOTALL, re.ASCII, re.IGNORECASE | re.ASCII,
                         re.IGNORECASE | re.MULTILINE | re.DOTALL])


@settings(max_examples=400, deadline=None)
@given(patterns, flags, st.lists(st.text(ALPHABET, max_size=8), min_size=1, max_size=20))
def test_the_rewrite_searches_like_python(source, flag, strings):
    python = re.compile(source, flag)
    rewritten = to_re2(source, flag)
    if rewritten is None:
        return  # left to Python's re, under the server's bound
    engine = re2.compile(rewritten, OPTIONS)
    for text in strings:
        assert (python.search(text) is not None) == (engine.search(text) is not None), (source, flag, rewritten, text)


def test_what_is_left_to_python():
    for source in [r"(a)\1", r"(?=a)b", r"(?<!a)b", r"a$b", r"\bword", r"x{1001}", r"(?>a+)", r"a++", r"[\Wa]"]:
        assert to_re2(source, 0) is None, source
    for source in [r"(a+)+$", r"^task-\d+$", r"(?i)istanbul", r"(?a)\bw\b", r"[^\s]+\Z"]:
        assert to_re2(source, 0) is not None, source
