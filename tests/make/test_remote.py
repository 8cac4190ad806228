"""A worker on "another host": its own network namespace (reaching the space over a veth pair, tcp + CURVE) and
its own mount namespace in which the build directory and the coordinator's data are hidden, so every input must travel
through the coordinator's file server, and every output back."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from onitu.space import auth
from tests.helpers import ServerProcess
from tests.make.harness import ONITU, env_for, make, stop, wait_for
from tests.make.test_faults import space_workers


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns and mount namespaces"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "needs iproute2 (ip) and util-linux (unshare)"
    probe = f"onitu-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


WHY = _can_make_namespaces()


@pytest.fixture
def netns():
    """A namespace joined to this host by a veth pair: host side 10.231.x.1, namespace side 10.231.x.2."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"onitu-{tag}", f"oh{tag}", f"on{tag}"
    net = f"10.231.{int(tag[:2], 16)}"
    steps = [["ip", "netns", "add", ns], ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
             ["ip", "link", "set", ns_if, "netns", ns], ["ip", "addr", "add", f"{net}.1/30", "dev", host_if],
             ["ip", "link", "set", host_if, "up"],
             ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", ns_if],
             ["ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"],
             ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield ns, f"{net}.1"
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


MAKEFILE = """\
all: report.txt copy.bin

words.txt: text.txt tool.sh
\t./tool.sh text.txt > $@

report.txt: words.txt text.txt
\tsort words.txt | uniq -c > $@
\twc -c < text.txt >> $@

copy.bin: big.bin
\tcat big.bin > $@
"""


@pytest.mark.skipif(WHY is not None, reason=WHY or "")
def test_worker_in_another_namespace_builds_inputs_it_does_not_have(tmp_path, netns):
    ns, host_ip = netns
    hidden = tmp_path / "hidden"  # build dir and coordinator data: invisible to the worker
    build, data, wdata = hidden / "build", hidden / "data", tmp_path / "worker"
    for d in (build, data, wdata):
        d.mkdir(parents=True)
    (build / "Makefile").write_text(MAKEFILE)
    (build / "text.txt").write_text("the quick brown fox jumps over the lazy dog the end\n" * 50)
    (build / "tool.sh").write_text("#!/bin/sh\ntr ' ' '\\n' < \"$1\"\n")
    (build / "tool.sh").chmod(0o755)
    (build / "big.bin").write_bytes(os.urandom(3 << 20))
    server = ServerProcess(data, tcp=f"tcp://{host_ip}:*", insecure=False).start()
    auth.create_pair(wdata, "client")  # the worker's own key pair, authorized on the space as "worker"
    shutil.copy(wdata / "keys" / "client.key", tmp_path / "worker.key")
    auth.allow(data, tmp_path / "worker.key")
    shutil.copy(data / "keys" / "server.key", wdata / "keys" / "server.key")  # and the space's public key
    worker_cmd = ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                  f"mount -t tmpfs none {hidden} && exec \"$@\"", "sh", *ONITU, "worker",
                  "--space", server.tcp_endpoint, "--data", str(wdata), "--cache", str(wdata / "cache")]
    worker = subprocess.Popen(worker_cmd, env=env_for(wdata), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_for(lambda: len(space_workers(server)) == 1 or worker.poll() is not None, timeout=30,
                 what="the worker to register")
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        first = make(build, "-j2", data=data, ONITU_LOG="INFO")
        assert first.returncode == 0, first.stderr
        assert "copy.bin" in first.stdout
        gnu = tmp_path / "gnu"
        gnu.mkdir()
        for name in ("Makefile", "text.txt", "big.bin", "tool.sh"):
            shutil.copy2(build / name, gnu / name)
        subprocess.run(["make", "-s"], cwd=gnu, check=True, capture_output=True)
        for name in ("words.txt", "report.txt", "copy.bin"):
            assert (build / name).read_bytes() == (tmp_path / "gnu" / name).read_bytes(), name
        blobs = list((wdata / "cache" / "blobs").rglob("*"))
        assert any(p.is_file() and p.stat().st_size == 3 << 20 for p in blobs), "big.bin was not fetched"
        # again from scratch: the worker's cache already holds every input, so none is sent twice
        again = make(build, "-B", "-j2", data=data, ONITU_LOG="INFO")
        assert again.returncode == 0, again.stderr
        assert "sent 0 input(s)" in again.stderr, again.stderr
        assert (build / "copy.bin").read_bytes() == (build / "big.bin").read_bytes()
    finally:
        stop(worker)
        server.stop()

