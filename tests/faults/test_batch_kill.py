"""kill -9 in the middle of a batch of small files written together (LocalDriver.write_many): nothing half-written
or unverified ever has a name, and no staging file is left in sight."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from onitu.sync.drivers.contract import MARKER

FILES = 40

CHILD = """
import hashlib, os, signal, sys
from onitu.sync.drivers import local_stage, open_driver
from onitu.sync.drivers.contract import WholeFile

root, where, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
driver = open_driver("disk", "local", {"root": root, "settle": 0})
driver.initialise()
seen = 0

def killed(step):
    def wrapped(*args, **kwargs):
        global seen
        seen += 1
        if seen > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*args, **kwargs)
    return wrapped

if where == "publish":  # some files have their names, the others are staged, durable, unnamed
    local_stage.publish = killed(local_stage.publish)
elif where == "durable":  # all are durable, none is named yet
    durable = local_stage.durable
    local_stage.durable = lambda staged: (durable(staged), os.kill(os.getpid(), signal.SIGKILL))
else:  # flushed one by one (no syncfs): some are flushed, none is named yet
    local_stage._syncfs = None
    os.fsync = killed(os.fsync)
data = [(f"d{i % 4}/f{i:02}.bin", f"file {i} ".encode() * (50 + i)) for i in range(%(files)d)]
driver.write_many([WholeFile(p, b, hashlib.sha256(b).hexdigest()) for p, b in data])
print("not killed")
""".replace("%(files)d", str(FILES))


@pytest.mark.parametrize(("where", "after"), [("publish", 0), ("publish", 17), ("durable", 0), ("fsync", 5)])
def test_a_kill_in_the_middle_of_a_batch_shows_nothing_half_written(tmp_path: Path, where: str, after: int) -> None:
    root = tmp_path / "root"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), where, str(after)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    expected = {f"d{i % 4}/f{i:02}.bin": f"file {i} ".encode() * (50 + i) for i in range(FILES)}
    named = {}
    for top, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(top, name), root)
            if rel != MARKER:
                named[rel] = Path(top, name).read_bytes()
    assert not [n for n in named if ".onitu-" in n], "a staging file is in sight"
    assert all(data == expected[n] for n, data in named.items()), "a file was named before it was whole"
    assert len(named) == (after if where == "publish" else 0)
