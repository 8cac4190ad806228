"""Every Rinda scenario gives Ruby Rinda's own results: the oracle runs live, beside `onitu space conform`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import SHARED

RINDA = SHARED / "rinda"
SCENARIOS = RINDA / "scenarios.jsonl"


def ruby() -> str:
    path = shutil.which("ruby")
    if path is None:  # CI installs ruby; a missing oracle must fail loudly, not skip
        pytest.fail("ruby is not installed: `apt-get install -y ruby` (see .ci/run)")
    return path


@pytest.fixture(scope="module")
def oracle_lines() -> list[dict]:
    out = subprocess.run([ruby(), str(RINDA / "oracle.rb"), str(SCENARIOS)], capture_output=True, text=True,
                         check=True, timeout=120)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def onitu_output(tmp_path_factory) -> str:
    out = subprocess.run([sys.executable, "-m", "onitu.cli", "space", "conform", str(SCENARIOS)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_oracle_compare_accepts_onitu_output(oracle_lines, onitu_output, tmp_path):
    expected = tmp_path / "expected.jsonl"
    expected.write_text("".join(json.dumps(line) + "\n" for line in oracle_lines))
    actual = tmp_path / "actual.jsonl"
    actual.write_text(onitu_output)
    result = subprocess.run([ruby(), str(RINDA / "oracle.rb"), "--compare", str(expected), str(actual)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert "54 scenarios, 0 mismatch(es)" in result.stdout


def test_live_oracle_agrees_with_the_stored_expectations(oracle_lines):
    stored = [json.loads(line) for line in (RINDA / "expected.jsonl").read_text().splitlines() if line.strip()]
    assert oracle_lines == stored


def test_every_scenario_by_name(oracle_lines, onitu_output):
    """The same check, one failure message per scenario, naming the first differing op."""
    ours = {d["name"]: d["results"] for d in map(json.loads, onitu_output.splitlines())}
    bad = [sc["name"] for sc in oracle_lines if _typed(ours.get(sc["name"])) != _typed(sc["results"])]
    assert not bad, f"differ from Ruby Rinda: {bad}"


def _typed(v):
    """JSON equality that keeps 3 apart from 3.0 and true apart from 1, as oracle.rb --compare does."""
    if isinstance(v, list):
        return ["list", [_typed(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", sorted((k, _typed(x)) for k, x in v.items())]
    return [type(v).__name__, v]


def test_malformed_scenario_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x", "ops": [{"op": "frobnicate"}]}\n')
    out = subprocess.run([sys.executable, "-m", "onitu.cli", "space", "conform", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "line 1" in out.stderr and "frobnicate" in out.stderr
