"""Tuple space throughput: onitu's server against Ruby Rinda (DRb), same pattern, same machine, same run.

    python bench/space_vs_rinda.py [--n 5000] [--batched 200000]

Pattern (as ../shared/rinda/bench/client.rb): N sequential writes of [:task, i, "payload"], N takes of
[:task, nil, nil], N reads of [:conf, nil, nil]; then 4 such clients at once; then onitu's batched writes
(1000 tuples per request). Prints ops/s and onitu/Rinda ratios, then two ceilings: a zero-work pyzmq echo (the best
any zmq client can do sequentially) and an echo behind a relay, reached over a plain socket (the shape of a paired
write: client -> primary -> secondary -> primary -> client), a bare durable pair (bench/space_pair_floor.py: the
same hops with both SQLite commits and nothing else, the most any CPython pair with that promise can do), and the
machine's load: on a shared machine the sequential rows move with it, so compare rows of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import space_pair_floor

ROOT = Path(__file__).resolve().parents[1]
RINDA_BENCH = ROOT.parent / "shared" / "rinda" / "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the onitu client side (run in its own process, like client.rb) -------------------------------------------

def sequential(ts, n: int) -> dict[str, float]:
    """client.rb's pattern on one client: n writes, n takes, n reads, one round trip each."""
    from onitu.space import Symbol

    task, conf = Symbol("task"), Symbol("conf")
    t0 = time.perf_counter()
    for i in range(n):
        ts.write((task, i, "payload"))
    t1 = time.perf_counter()
    for _ in range(n):
        ts.take((task, None, None))
    t2 = time.perf_counter()
    ts.write((conf, "x", 1))
    for _ in range(n):
        ts.read((conf, None, None))
    t3 = time.perf_counter()
    ts.take((conf, None, None))
    return {"write": n / (t1 - t0), "take": n / (t2 - t1), "read": n / (t3 - t2)}


def onitu_client(endpoint: str, n: int) -> dict[str, float]:
    from onitu.space import connect

    with connect(endpoint, insecure=True) as ts:
        return sequential(ts, n)


def onitu_batched(endpoint: str, total: int, per_batch: int = 1000) -> float:
    from onitu.space import Symbol, connect

    task = Symbol("bulk")
    with connect(endpoint, insecure=True) as ts:
        t0 = time.perf_counter()
        for start in range(0, total, per_batch):
            ts.batch([("write", (task, i, "payload")) for i in range(start, start + per_batch)])
        elapsed = time.perf_counter() - t0
        return total / elapsed


def onitu_batched_pipelined(endpoint: str, total: int, per_batch: int = 1000, in_flight: int = 4) -> float:
    """The asyncio client keeps several batches in flight, so encoding overlaps the server's work."""
    import asyncio

    from onitu.space import Symbol, aconnect

    task = Symbol("bulk2")

    async def run() -> float:
        ts = await aconnect(endpoint, insecure=True)
        gate = asyncio.Semaphore(in_flight)

        async def one(start: int) -> None:
            async with gate:
                await ts.batch([("write", (task, i, "payload")) for i in range(start, start + per_batch)])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(start) for start in range(0, total, per_batch)))
        elapsed = time.perf_counter() - t0
        await ts.close()
        return total / elapsed

    return asyncio.run(run())


def paired_pair(n: int, total: int) -> tuple[list[tuple[str, float]], str]:
    """The same sequential pattern against `onitu start`'s replicated pair (each write waits for the secondary),
    and the CPU its two servers used per sequential operation: unlike the rates, it hardly moves with the load."""
    from onitu.space import Symbol, connect

    tmp = Path(tempfile.mkdtemp(prefix="onitu-pair-"))
    (tmp / "onitu.yaml").write_text(f"data: {tmp / 'data'}\n")
    cfg = ["-c", str(tmp / "onitu.yaml")]
    launcher = subprocess.Popen([sys.executable, "-m", "onitu.cli", "start", *cfg], stderr=subprocess.DEVNULL)
    try:
        status = tmp / "data" / "run" / "status.json"
        while not (status.exists() and json.loads(status.read_text() or "{}").get("mode") == "paired"):
            time.sleep(0.1)
        task = Symbol("bulk")
        pids = {p["role"]: p["pid"] for p in json.loads(status.read_text())["processes"]
                if p["role"] in ("primary", "secondary")}
        with connect(data_dir=tmp / "data") as ts:
            before = {role: space_pair_floor.cpu_seconds(pid) for role, pid in pids.items()}
            rates = sequential(ts, n)
            cpu = ", ".join(f"{role} {(space_pair_floor.cpu_seconds(pid) - before[role]) / (3 * n) * 1e6:.0f} us"
                            for role, pid in sorted(pids.items()))
            t0 = time.perf_counter()
            for start in range(0, total, 1000):
                ts.batch([("write", (task, i, "payload")) for i in range(start, start + 1000)])
            batched = total / (time.perf_counter() - t0)
        return [(f"replicated pair: sequential {op}", rates[op]) for op in ("write", "take", "read")] + [
            ("replicated pair: batched writes, 1000/request", batched)], cpu
    finally:
        subprocess.run([sys.executable, "-m", "onitu.cli", "stop", *cfg], capture_output=True, timeout=60)
        launcher.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


ECHO = ("import sys, zmq\n"
        "s = zmq.Context().socket(zmq.ROUTER); s.bind(sys.argv[1])\n"
        "while True: s.send_multipart(s.recv_multipart())\n")
# The replicated pair's shape with zero work: take a request, send it on to the next process, wait for its answer,
# answer (a paired write: client -> primary -> secondary -> primary -> client). The second hop is a plain Unix
# socket, as the pair's replication link (onitu/space/wire.py).
RELAY = ("import socket, sys, time, zmq\n"
         "s = zmq.Context().socket(zmq.ROUTER); s.bind(sys.argv[1])\n"
         "peer = socket.socket(socket.AF_UNIX)\n"
         "while peer.connect_ex(sys.argv[2]): time.sleep(0.01)\n"
         "while True:\n"
         "    ident, body = s.recv_multipart(); peer.sendall(body); s.send_multipart([ident, peer.recv(65536)])\n")
RAW_ECHO = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); c, _ = s.accept()\n"
            "while True: c.sendall(c.recv(65536))\n")


def zmq_floor(n: int, relayed: bool = False) -> float:
    """Round trips/s of a zero-work zmq echo, or of a relay in front of a plain-socket echo: the transport's own
    ceiling here."""
    import zmq

    ctx = zmq.Context()
    tmp = Path(tempfile.mkdtemp(prefix="onitu-floor-"))
    if relayed:
        procs = [subprocess.Popen([sys.executable, "-c", RAW_ECHO, f"{tmp}/echo"]),
                 subprocess.Popen([sys.executable, "-c", RELAY, f"ipc://{tmp}/hop0", f"{tmp}/echo"])]
    else:
        procs = [subprocess.Popen([sys.executable, "-c", ECHO, f"ipc://{tmp}/hop0"])]
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"ipc://{tmp}/hop0")
    try:
        sock.send(b"warm")
        sock.recv()
        t0 = time.perf_counter()
        for _ in range(n):
            sock.send(b"x" * 40)
            sock.recv()
        return n / (time.perf_counter() - t0)
    finally:
        for proc in procs:
            proc.kill()
        sock.close(0)
        ctx.term()
        shutil.rmtree(tmp, ignore_errors=True)


# ---- running both sides --------------------------------------------------------------------------------------

def run_clients(cmd: list[str], k: int, parse) -> tuple[list[dict[str, float]], float]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"client failed: {cmd}")
    return [parse(out) for out in outs], wall


def parse_rinda(out: str) -> dict[str, float]:
    m = re.search(r"write/s (\d+) take/s (\d+) read/s (\d+)", out)
    if not m:
        raise SystemExit(f"unexpected Rinda client output: {out!r}")
    return dict(zip(("write", "take", "read"), map(float, m.groups()), strict=True))


def combined(results: list[dict[str, float]], n: int, wall: float) -> float:
    """All clients' operations over the wall time of the whole group."""
    return len(results) * 3 * n / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batched", type=int, default=200_000)
    ap.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        print(json.dumps(onitu_client(args.client[0], int(args.client[1]))))
        return
    if not shutil.which("ruby"):
        raise SystemExit("ruby is needed for the Rinda anchor: apt-get install -y ruby")
    n = args.n
    rows: list[tuple[str, float, float | None]] = []

    port = free_port()
    rinda = subprocess.Popen(["ruby", str(RINDA_BENCH / "server.rb"), str(port)], stdout=subprocess.PIPE, text=True)
    tmp = Path(tempfile.mkdtemp(prefix="onitu-bench-"))
    onitu = subprocess.Popen([sys.executable, "-m", "onitu.cli", "space", "serve", "--data", str(tmp),
                              "--listen", f"ipc://{tmp}/space.sock", "--listen", "tcp://127.0.0.1:*",
                              "--insecure-loopback", "--no-discovery"], stderr=subprocess.DEVNULL)
    try:
        assert rinda.stdout.readline().strip() == "ready"
        while not (tmp / "space.json").exists():
            time.sleep(0.05)
        endpoints = json.loads((tmp / "space.json").read_text())["endpoints"]
        tcp = next(e for e in endpoints if e.startswith("tcp://"))
        ipc = next(e for e in endpoints if e.startswith("ipc://"))
        rinda_cmd = ["ruby", str(RINDA_BENCH / "client.rb"), str(port), str(n)]

        [r1], _ = run_clients(rinda_cmd, 1, parse_rinda)
        for label, ep in (("tcp", tcp), ("ipc", ipc)):
            [o1], _ = run_clients([sys.executable, __file__, "--client", ep, str(n)], 1, json.loads)
            for op in ("write", "take", "read"):
                rows.append((f"sequential {op} ({label})", o1[op], r1[op]))
        rinda_seq = sum(r1.values()) / 3

        r4, rwall = run_clients(rinda_cmd, 4, parse_rinda)
        o4, owall = run_clients([sys.executable, __file__, "--client", tcp, str(n)], 4, json.loads)
        rows.append(("4 clients, all ops (tcp)", combined(o4, n, owall), combined(r4, n, rwall)))
        rows.append(("batched writes, 1000/request (tcp), vs Rinda sequential", onitu_batched(tcp, args.batched),
                     rinda_seq))
        rows.append(("batched writes, 4 requests in flight (asyncio, tcp)",
                     onitu_batched_pipelined(tcp, args.batched), rinda_seq))
        # Rinda again, right before the pair: the load of a shared machine moves within a run
        [r2], _ = run_clients(rinda_cmd, 1, parse_rinda)
        pair, pair_cpu = paired_pair(n, args.batched)
        rows += [(label, rate, r2[next((op for op in r2 if op in label), "write")]) for label, rate in pair]
    finally:
        rinda.terminate()
        onitu.terminate()
        onitu.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'pattern':58} {'onitu ops/s':>12} {'rinda ops/s':>12} {'ratio':>7}")
    for label, ours, theirs in rows:
        ratio = f"{ours / theirs:6.2f}x" if theirs else "-"
        print(f"{label:58} {ours:12.0f} {theirs or 0:12.0f} {ratio:>7}")
    print(f"(n={n}, {os.cpu_count()} cores; Rinda over DRb on tcp loopback; onitu durable, sync=normal; the pair's rows"
          " against a Rinda run just before them)")
    print(f"replicated pair, CPU per sequential operation (all threads): {pair_cpu}")
    floor, floor2 = zmq_floor(n), zmq_floor(n, relayed=True)
    floor3, floor3_cpu = space_pair_floor.floor(n)
    floor4, floor4_cpu = space_pair_floor.floor(n, zmq_client=False)
    print(f"transport ceiling: a zero-work pyzmq echo between two processes does {floor:.0f} round trips/s "
          f"({floor / rinda_seq:.2f}x Rinda sequential), so no zmq client can do better sequentially here")
    print(f"paired ceiling: relayed once more over a plain socket (client -> relay -> echo -> relay -> client, as a "
          f"paired write) it does {floor2:.0f} round trips/s ({floor2 / rinda_seq:.2f}x Rinda sequential)")
    print(f"durable pair ceiling: a bare primary and secondary that only commit each write to SQLite, both before "
          f"the answer, do {floor3:.0f} writes/s ({floor3 / rinda_seq:.2f}x Rinda sequential, "
          f"{floor3 / r2['write']:.2f}x the Rinda run before the pair); CPU per write: {floor3_cpu}")
    print(f"  the same with a client on a plain Unix socket instead of zmq: {floor4:.0f} writes/s "
          f"({floor4 / rinda_seq:.2f}x Rinda sequential, {floor4 / r2['write']:.2f}x the Rinda run before the pair); "
          f"CPU per write: {floor4_cpu}")
    load = os.getloadavg()
    print(f"machine load at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (1/5/15 min), {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
