"""Benchmark the relay with many concurrent worker pairs on loopback.

The relay runs as a real ``excamera relay`` subprocess (certificates from ``genkeys``); worker
pairs run in ``--procs`` client processes, both ends of a pair in the same process so one clock
times a message end to end. Phases, separated by barriers so the relay's CPU time and memory can
be sampled between them:

1. connect: every worker does a TLS 1.3 mutual handshake and a hello (connections per second)
2. small messages: every pair ping-pongs ``--rounds`` 64-byte messages at once (latency
   under load, p50/p99), then one pair alone (latency when idle)
3. large messages: ``--big-pairs`` pairs each send ``--big-count`` messages of ``--big-mb``
   MiB (forwarding throughput) while every other connection stays open

Usage: ``python bench/relay.py [--pairs 1000] [--procs 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from _common import settings  # noqa: E402
from excamera.mu.relay import RelayClient  # noqa: E402
from excamera.mu.tls import CertificateAuthority, client_context, genkeys  # noqa: E402

JOB = "bench"


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class ChildResult:
    connect: tuple[float, float] = (0.0, 0.0)
    connect_failures: int = 0
    lat_loaded: list[float] = field(default_factory=list)
    lat_loaded_span: tuple[float, float] = (0.0, 0.0)
    lat_idle: list[float] = field(default_factory=list)
    big: tuple[float, float] = (0.0, 0.0)
    big_bytes: int = 0
    big_ok: bool = True


def child(index: int, pair_ids: list[int], port: int, keys: str, args: argparse.Namespace,
          barrier, conn) -> None:
    raise_nofile(4 * len(pair_ids) + 256)
    ca = CertificateAuthority.load(Path(keys) / "ca_cert.pem", Path(keys) / "ca_key.pem")
    # per-worker certificates and contexts are made up front: a real worker makes its own
    workers = [w for p in pair_ids for w in (2 * p, 2 * p + 1)]
    ctxs = {w: client_context(ca.issue_worker(JOB, w)) for w in workers}
    res = ChildResult()
    asyncio.run(child_async(index, pair_ids, port, ctxs, args, barrier, res))
    conn.send(asdict(res))
    conn.close()


async def child_async(index, pair_ids, port, ctxs, args, barrier, res: ChildResult) -> None:
    barrier.wait()  # B1: everyone ready
    sem = asyncio.Semaphore(args.handshake_concurrency)

    async def connect(me: int, peer: int) -> RelayClient | None:
        async with sem:
            try:
                return await RelayClient.connect("127.0.0.1", port, ctxs[me], JOB, me, peer,
                                                 timeout=120)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                print(f"connect {me} failed: {exc}", file=sys.stderr)
                return None

    t0 = time.time()
    clients = await asyncio.gather(
        *(connect(w, w ^ 1) for p in pair_ids for w in (2 * p, 2 * p + 1))
    )
    res.connect = (t0, time.time())
    res.connect_failures = sum(c is None for c in clients)
    pairs = [(clients[2 * i], clients[2 * i + 1]) for i in range(len(pair_ids))
             if clients[2 * i] and clients[2 * i + 1]]
    await asyncio.to_thread(barrier.wait)  # B2

    payload = b"x" * 64

    async def pingpong(a: RelayClient, b: RelayClient, rounds: int, out: list[float]) -> None:
        for _ in range(rounds):
            t = time.perf_counter()
            await a.send(payload)
            await b.recv()
            t1 = time.perf_counter()
            await b.send(payload)
            await a.recv()
            t2 = time.perf_counter()
            out += [t1 - t, t2 - t1]

    t0 = time.time()
    await asyncio.gather(*(pingpong(a, b, args.rounds, res.lat_loaded) for a, b in pairs))
    res.lat_loaded_span = (t0, time.time())
    await asyncio.to_thread(barrier.wait)  # B3
    if index == 0 and pairs:
        await pingpong(*pairs[0], args.idle_rounds, res.lat_idle)
    await asyncio.to_thread(barrier.wait)  # B4

    big_pairs = pairs[: max(0, args.big_pairs_per_proc)]
    body = os.urandom(args.big_mb << 20)

    async def stream(a: RelayClient, b: RelayClient) -> int:
        async def send_all():
            for _ in range(args.big_count):
                await a.send(body)

        async def recv_all() -> int:
            n = 0
            for _ in range(args.big_count):
                m = await b.recv()
                if m.body != body:
                    res.big_ok = False
                n += len(m.body)
            return n

        _, n = await asyncio.gather(send_all(), recv_all())
        return n

    t0 = time.time()
    counts = await asyncio.gather(*(stream(a, b) for a, b in big_pairs))
    res.big = (t0, time.time())
    res.big_bytes = sum(counts)
    await asyncio.to_thread(barrier.wait)  # B5
    await asyncio.gather(*(c.close() for c in clients if c))


def proc_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])
    return cpu, rss * 1024


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--rounds", type=int, default=10, help="ping-pongs per pair under load")
    ap.add_argument("--idle-rounds", type=int, default=500)
    ap.add_argument("--big-pairs", type=int, default=4, help="pairs streaming large messages")
    ap.add_argument("--big-count", type=int, default=4)
    ap.add_argument("--big-mb", type=int, default=64)
    ap.add_argument("--handshake-concurrency", type=int, default=128,
                    help="TLS handshakes in flight per client process")
    ap.add_argument("--ssl-buffer-kib", type=int, default=64,
                    help="passed to `excamera relay` (0: asyncio's 256 KiB default)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    args.big_pairs_per_proc = -(-args.big_pairs // args.procs)
    nofile = raise_nofile(4 * args.pairs + 256)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    with tempfile.TemporaryDirectory(prefix="relay-bench-") as keys:
        genkeys(keys)
        env = os.environ | {"PYTHONPATH": str(ROOT / "python")}
        relay = subprocess.Popen(
            [sys.executable, "-c", "import sys; from excamera.cli import main; sys.exit(main())",
             "relay", "-t", "0", "--host", "127.0.0.1", "-n", str(args.pairs),
             "-c", f"{keys}/ca_cert.pem", "-s", f"{keys}/server_cert.pem",
             "-k", f"{keys}/server_key.pem", "--ssl-buffer-kib", str(args.ssl_buffer_kib)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        try:
            line = relay.stdout.readline()
            m = re.search(r":(\d+)$", line.strip())
            if not m:
                print(f"relay did not start: {line!r}", file=sys.stderr)
                return 1
            port = int(m[1])
            barrier = mp.Barrier(args.procs + 1)
            ids = list(range(args.pairs))
            chunks = [ids[i:: args.procs] for i in range(args.procs)]
            pipes, procs = [], []
            for i, chunk in enumerate(chunks):
                parent_end, child_end = mp.Pipe(duplex=False)
                p = mp.Process(target=child,
                               args=(i, chunk, port, keys, args, barrier, child_end))
                p.start()
                pipes.append(parent_end)
                procs.append(p)
            samples = []
            for _ in range(5):  # B1..B5
                barrier.wait(timeout=900)
                samples.append(proc_sample(relay.pid))
            results = [ChildResult(**pipe.recv()) for pipe in pipes]
            for p in procs:
                p.join(60)
        finally:
            relay.terminate()
            relay.wait(30)

    n_conn = 2 * args.pairs
    span = lambda key: (max(getattr(r, key)[1] for r in results)  # noqa: E731
                        - min(getattr(r, key)[0] for r in results))
    connect_s = span("connect")
    loaded = [x for r in results for x in r.lat_loaded]
    idle = [x for r in results for x in r.lat_idle]
    big_bytes = sum(r.big_bytes for r in results)
    big_s = span("big")
    out = {
        "pairs": args.pairs,
        "connections": n_conn,
        "client_processes": args.procs,
        "relay_ssl_buffer_kib": args.ssl_buffer_kib or 256,
        "nofile_soft_limit": nofile,
        "nofile_hard_limit": hard,
        "connect_failures": sum(r.connect_failures for r in results),
        "connect_seconds": connect_s,
        "connections_per_second": n_conn / connect_s,
        "relay_cpu_ms_per_connection": 1000 * (samples[1][0] - samples[0][0]) / n_conn,
        "relay_rss_idle_mib": samples[0][1] / 2**20,
        "relay_rss_connected_mib": samples[1][1] / 2**20,
        "relay_rss_kib_per_connection": (samples[1][1] - samples[0][1]) / 1024 / n_conn,
        "small_msgs": len(loaded),
        "small_msgs_per_second_loaded": len(loaded) / span("lat_loaded_span"),
        "latency_loaded_p50_ms": 1000 * pct(loaded, 0.5),
        "latency_loaded_p99_ms": 1000 * pct(loaded, 0.99),
        "latency_idle_p50_ms": 1000 * pct(idle, 0.5),
        "latency_idle_p99_ms": 1000 * pct(idle, 0.99),
        "latency_idle_mean_ms": 1000 * statistics.fmean(idle) if idle else float("nan"),
        "big_message_mib": args.big_mb,
        "big_bytes": big_bytes,
        "big_intact": all(r.big_ok for r in results),
        "forward_mb_per_second": big_bytes / 1e6 / big_s,
        "relay_cpu_s_big_phase": samples[4][0] - samples[3][0],
        "relay_rss_peak_after_big_mib": samples[4][1] / 2**20,
    }
    rows = [
        ("worker connections (TLS 1.3 mutual + hello)", f"{n_conn}"),
        ("connection setup", f"{out['connections_per_second']:.0f} /s "
                             f"({connect_s:.2f} s, {out['connect_failures']} failed)"),
        ("relay CPU per connection", f"{out['relay_cpu_ms_per_connection']:.2f} ms"),
        ("relay RSS idle -> connected",
         f"{out['relay_rss_idle_mib']:.0f} -> {out['relay_rss_connected_mib']:.0f} MiB "
         f"({out['relay_rss_kib_per_connection']:.0f} KiB/conn)"),
        ("64 B latency, all pairs at once p50/p99",
         f"{out['latency_loaded_p50_ms']:.2f} / {out['latency_loaded_p99_ms']:.2f} ms "
         f"({out['small_msgs_per_second_loaded']:.0f} msg/s)"),
        ("64 B latency, one pair p50/p99",
         f"{out['latency_idle_p50_ms']:.3f} / {out['latency_idle_p99_ms']:.3f} ms"),
        (f"forwarding {args.big_mb} MiB messages",
         f"{out['forward_mb_per_second']:.0f} MB/s ({big_bytes / 2**20:.0f} MiB, "
         f"intact={out['big_intact']})"),
        ("relay RSS after big phase", f"{out['relay_rss_peak_after_big_mib']:.0f} MiB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"relay benchmark: {args.pairs} pairs, {args.procs} client processes, "
          f"RLIMIT_NOFILE soft {nofile} hard {hard}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings(args), **out}, indent=2)
                                   + "\n")
    return 0 if out["connect_failures"] == 0 and out["big_intact"] else 1


if __name__ == "__main__":
    sys.exit(main())
