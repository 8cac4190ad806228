"""Run Rinda differential scenarios (``../shared/rinda/FORMAT.md``) against a fresh in-process space each.

Values use the corpus's JSON encoding (``$sym``, ``$hash``, ``$type``, ``$range``, ``$regex``); results are
printed in the same encoding so ``ruby oracle.rb --compare`` can check them against Ruby's own Rinda.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Iterable, Iterator
from typing import Any

from onitu.space.errors import InvalidTuple, RequestExpired
from onitu.space.local import TupleSpace
from onitu.space.template import Pattern, Range, Symbol

RUBY_TYPES: dict[str, Any] = {
    "Integer": int, "Float": float, "Numeric": numbers.Number, "String": str,
    "Symbol": Symbol, "Array": list, "Hash": dict,
}
RUBY_TYPE_NAMES = {t: n for n, t in RUBY_TYPES.items()}
RUBY_FLAGS = {"i": re.IGNORECASE, "m": re.DOTALL, "x": re.VERBOSE}
OP_KEYS = {"write": {"op", "tuple", "sec"}, "take": {"op", "template", "sec"},
           "read": {"op", "template", "sec"}, "read_all": {"op", "template"}}


class Malformed(ValueError):
    """The scenario itself is not valid FORMAT.md input."""


class RubyRegex:
    """Compiles Ruby (Onigmo) regexes to Python ones and remembers their Ruby spelling for the output."""

    def __init__(self) -> None:
        self.sources: dict[Pattern, tuple[str, str]] = {}

    def compile(self, source: str, flags: str) -> Pattern:
        bits = re.MULTILINE | re.ASCII  # Ruby: ^ and $ are always line anchors; \d \w \s are ASCII-only
        for flag in flags:
            bits |= RUBY_FLAGS[flag]
        try:
            pattern = re.compile(_translate(source), bits)
        except re.error as exc:
            raise Malformed(f"bad $regex {source!r}: {exc}") from exc
        self.sources[pattern] = (source, "".join(f for f in "imx" if f in flags))
        return pattern


def _python_regex(source: str, flags: str) -> Pattern:
    bits = 0
    for flag in flags:
        bits |= RUBY_FLAGS[flag]
    try:
        return re.compile(source, bits)
    except re.error as exc:
        raise Malformed(f"bad $regex {source!r}: {exc}") from exc


def _flag_letters(bits: int) -> str:
    return "".join(letter for letter, bit in RUBY_FLAGS.items() if bits & bit)


def _translate(source: str) -> str:
    """Rewrite the Ruby-only escapes: ``\\z`` (end of string), ``\\Z`` (before a final newline), ``\\h``."""
    out, i, in_class = [], 0, False
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            nxt = source[i + 1]
            out.append({"z": r"\Z", "Z": r"(?=\n?\Z)", "h": "0-9a-fA-F" if in_class else "[0-9a-fA-F]"}.get(
                nxt, ch + nxt))
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


class Codec:
    """FORMAT.md values <-> Python values."""

    def __init__(self, ruby_regex: bool = True) -> None:
        self.regex = RubyRegex()
        self.ruby_regex = ruby_regex

    def decode(self, v: Any) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, list):
            return [self.decode(e) for e in v]
        if isinstance(v, dict):
            return self._special(v)
        raise Malformed(f"unsupported JSON value {v!r}")

    def _special(self, obj: dict) -> Any:
        if "$regex" in obj:
            if set(obj) - {"$regex", "$flags"} or not isinstance(obj["$regex"], str):
                raise Malformed(f"bad $regex form {obj!r}")
            flags = obj.get("$flags", "")
            if not isinstance(flags, str) or set(flags) - set("imx") or len(set(flags)) != len(flags):
                raise Malformed(f"$flags must be distinct letters from 'imx', not {flags!r}")
            if not self.ruby_regex:
                return _python_regex(obj["$regex"], flags)
            return self.regex.compile(obj["$regex"], flags)
        if len(obj) != 1:
            raise Malformed(f"object must have exactly one reserved key: {obj!r}")
        (key, arg), = obj.items()
        if key == "$sym" and isinstance(arg, str):
            return Symbol(arg)
        if key == "$hash":
            return self._hash(arg)
        if key == "$type" and arg in RUBY_TYPES:
            return RUBY_TYPES[arg]
        if key == "$range":
            return self._range(arg)
        if key == "$bytes" and isinstance(arg, str):
            try:
                return bytes.fromhex(arg)
            except ValueError:
                raise Malformed(f"$bytes needs hex digits, not {arg!r:.60}") from None
        raise Malformed(f"unknown or malformed special {obj!r}")

    def _hash(self, arg: Any) -> dict:
        if isinstance(arg, dict):
            return {k: self.decode(v) for k, v in arg.items()}
        if not isinstance(arg, list) or not all(isinstance(p, list) and len(p) == 2 for p in arg):
            raise Malformed("$hash needs an object or a list of [key, value] pairs")
        out: dict = {}
        for k, v in arg:
            key = self.decode(k)
            try:
                # Ruby keys are compared with eql?: 1 and 1.0 are different keys, Python cannot hold both.
                if any(type(o) is type(key) and o == key for o in out):
                    raise Malformed(f"duplicate $hash key {k!r}")
                out[key] = self.decode(v)
            except TypeError as exc:
                raise Malformed(f"$hash key {k!r} cannot be a Python dict key") from exc
        return out

    @staticmethod
    def _range(arg: Any) -> Range:
        if not isinstance(arg, list) or len(arg) not in (2, 3) or (len(arg) == 3 and not isinstance(arg[2], bool)):
            raise Malformed("$range needs [lo, hi] or [lo, hi, exclusive]")
        try:
            return Range(arg[0], arg[1], len(arg) == 3 and arg[2])
        except InvalidTuple as exc:
            raise Malformed(str(exc)) from exc

    def top(self, v: Any, what: str) -> Any:
        value = self.decode(v)
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, dict):
            return value
        raise Malformed(f"{what} must be an array or a $hash")

    def encode(self, v: Any) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise Malformed("non-finite float")
            return v
        if isinstance(v, Symbol):
            return {"$sym": v.name}
        if isinstance(v, bytes):  # a hash kept raw (a sync record's), say: as hex, which reads as hashes are shown
            return {"$bytes": v.hex()}
        if isinstance(v, list | tuple):
            return [self.encode(e) for e in v]
        if isinstance(v, dict):
            if all(type(k) is str for k in v):
                return {"$hash": {k: self.encode(x) for k, x in v.items()}}
            return {"$hash": [[self.encode(k), self.encode(x)] for k, x in v.items()]}
        if isinstance(v, type) and v in RUBY_TYPE_NAMES:
            return {"$type": RUBY_TYPE_NAMES[v]}
        if isinstance(v, Range):
            ends = [self.encode(v.lo), self.encode(v.hi)]
            return {"$range": [*ends, True] if v.exclusive else ends}
        if isinstance(v, Pattern):
            source, flags = self.regex.sources.get(v) or (v.pattern, _flag_letters(v.flags))
            return {"$regex": source, "$flags": flags} if flags else {"$regex": source}
        raise Malformed(f"cannot encode {v!r}")


def run_op(space: TupleSpace, codec: Codec, op: Any) -> Any:
    if not isinstance(op, dict) or op.get("op") not in OP_KEYS:
        raise Malformed(f"unknown op {op!r}")
    if set(op) - OP_KEYS[op["op"]]:
        raise Malformed(f"unexpected keys {sorted(set(op) - OP_KEYS[op['op']])} in {op['op']}")
    kind = op["op"]
    sec = op.get("sec")
    if "sec" in op and not (sec is None and kind == "write") and not (isinstance(sec, int | float) and sec == 0):
        raise Malformed(f"{kind}: sec must be {'absent, null or ' if kind == 'write' else ''}0")
    try:
        if kind == "write":
            space.write(codec.top(_need(op, "tuple"), "tuple"), 0 if sec == 0 and "sec" in op else None)
            return "ok"
        template = codec.top(_need(op, "template"), "template")
        if kind == "read_all":
            return codec.encode(space.read_all(template))
        found = space.take(template, timeout=0) if kind == "take" else space.read(template, timeout=0)
        return codec.encode(found)
    except RequestExpired:
        return {"error": "expired"}
    except InvalidTuple:
        return {"error": "invalid"}


def _need(op: dict, key: str) -> Any:
    if key not in op:
        raise Malformed(f"{op['op']} needs '{key}'")
    return op[key]


def run_scenario(scenario: Any) -> dict[str, Any]:
    if not isinstance(scenario, dict) or set(scenario) != {"name", "ops"}:
        raise Malformed('scenario must be {"name": ..., "ops": [...]}')
    if not isinstance(scenario["name"], str) or not isinstance(scenario["ops"], list):
        raise Malformed("name must be a string and ops a list")
    codec = Codec()
    with TupleSpace(rinda_order=True) as space:
        return {"name": scenario["name"], "results": [run_op(space, codec, op) for op in scenario["ops"]]}


def run_lines(lines: Iterable[str]) -> Iterator[str]:
    """One JSON result line per scenario line; Malformed names the line that is wrong."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            result = run_scenario(json.loads(line))
        except (json.JSONDecodeError, Malformed) as exc:
            raise Malformed(f"line {lineno}: {exc}") from exc
        yield json.dumps(result, ensure_ascii=False, separators=(",", ":"))
