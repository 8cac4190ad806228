"""The debug CLI against a real server, key management, and clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from onitu.space import connect


def onitu(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "onitu.cli", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_write_ls_take_stats(server):
    space = ["--space", server.ipc]
    entry = onitu("space", "write", '["hello", 1, {"$sym": "s"}]', *space).stdout.strip()
    assert entry.isdigit()
    onitu("space", "write", '{"kind": "dict", "n": 2}', *space)
    listed = onitu("space", "ls", '["hello", {"$type": "Integer"}, null]', *space).stdout.splitlines()
    assert [json.loads(line) for line in listed] == [["hello", 1, {"$sym": "s"}]]
    assert json.loads(onitu("space", "ls", '{"kind": null, "n": {"$range": [1, 3]}}', *space).stdout) == {
        "$hash": {"kind": "dict", "n": 2}}
    assert json.loads(onitu("space", "take", '["hello", null, null]', *space).stdout) == ["hello", 1, {"$sym": "s"}]
    missing = onitu("space", "take", '["hello", null, null]', *space, check=False)
    assert missing.returncode == 2 and "no tuple matches" in missing.stderr
    stats = json.loads(onitu("space", "stats", "--json", *space).stdout)
    assert stats["tuples"] == 1 and stats["requests"] > 0


def test_bytes_are_shown_and_given_as_hex(server):
    """A sync record keeps its hash as raw bytes: ls shows them (it used to stop with "cannot encode"), and a
    template or tuple can hold them; digits that are not hex are a clear error."""
    space = ["--space", server.ipc]
    with connect(server.ipc) as client:
        client.write(("sync.meta", "docs/a.txt", [["file", 1, bytes(range(32))], ["a"], {}]))
    listed = json.loads(onitu("space", "ls", '["sync.meta", null, null]', *space).stdout)
    assert listed[2][0][2] == {"$bytes": bytes(range(32)).hex()}
    onitu("space", "write", '["raw", {"$bytes": "00ff"}]', *space)
    assert json.loads(onitu("space", "take", '["raw", {"$bytes": "00ff"}]', *space).stdout) == ["raw", {
        "$bytes": "00ff"}]
    bad = onitu("space", "ls", '["raw", {"$bytes": "zz"}]', *space, check=False)
    assert bad.returncode == 1 and "$bytes needs hex digits" in bad.stderr


def test_bad_json_is_a_clear_error(server):
    out = onitu("space", "write", "[1, 2", "--space", server.ipc, check=False)
    assert out.returncode == 1 and "tuple is not JSON" in out.stderr
    out = onitu("space", "ls", '{"$nope": 1}', "--space", server.ipc, check=False)
    assert out.returncode == 1 and "$nope" in out.stderr


def test_keys_new_list_revoke(tmp_path):
    data = str(tmp_path)
    onitu("keys", "new", "worker1", "--data", data)
    dup = onitu("keys", "new", "worker1", "--data", data, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    keys = json.loads(onitu("keys", "list", "--json", "--data", data).stdout)
    assert [(k["name"], k["has_secret"], k["authorized"]) for k in keys] == [("worker1", True, True)]
    assert len(keys[0]["public"]) == 40
    onitu("keys", "revoke", "worker1", "--data", data)
    assert json.loads(onitu("keys", "list", "--json", "--data", data).stdout)[0]["authorized"] is False


def test_corrupt_database_is_named_and_left_alone(tmp_path):
    (tmp_path / "space.db").write_bytes(b"this is not sqlite" * 100)
    out = onitu("space", "serve", "--data", str(tmp_path), "--no-discovery", check=False)
    assert out.returncode == 1 and "space.db" in out.stderr
    assert (tmp_path / "space.db").read_bytes() == b"this is not sqlite" * 100


def test_square_brackets_in_tuples_and_errors_come_out_as_they_are(server):
    """A CURVE key or a name holds `[x]`: `ls` and `take` print it whole (rich took it for markup and ate it, so a
    hub's plug tuples came out as broken JSON), and so does an error quoting it."""
    space = ["--space", server.ipc]
    tup = ["key", "tleq/cP-[b]m?mc[/b]x", "[red]not red[/red]"]
    onitu("space", "write", json.dumps(tup), *space)
    assert json.loads(onitu("space", "ls", '["key", null, null]', *space).stdout) == tup
    assert json.loads(onitu("space", "take", '["key", null, null]', *space).stdout) == tup
    out = onitu("space", "write", '["a[b]c", 1', *space, check=False)
    assert out.returncode == 1 and "tuple is not JSON" in out.stderr


def test_a_config_error_quoting_brackets_keeps_them(tmp_path):
    (tmp_path / "bad.yaml").write_text("folders:\n  docs: {}\nservices:\n  x: {driver: local, options: "
                                       "{root: /tmp/r, '[b]odd': 1}, folders: {docs: {}}}\n")
    out = onitu("space", "ls", "-c", str(tmp_path / "bad.yaml"), check=False)
    assert out.returncode == 2 and "[b]odd" in out.stderr and "bad.yaml:4" in out.stderr, out.stderr
