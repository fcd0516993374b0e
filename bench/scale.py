"""Thousands of concurrent workers on one coordinator and one relay, on this machine.

Three processes kinds, so each one's memory and CPU is measured apart:

* the relay: ``excamera relay`` (certificates from ``genkeys``, capacity for every worker);
* the coordinator: this script with ``--role coordinator``, a real :class:`Coordinator` with the
  long-lived CA (its workers' certificates come from a per-job intermediate, which is what a
  separately run relay accepts) and the local backend in worker-host mode
  (``--worker-processes``): each worker is a real ``run_worker`` task, with its own certificate,
  its own TLS connection to the coordinator and to the relay;
* the worker hosts, started by that backend.

Every worker runs a short machine: connect to the relay as one of a pair (2i <-> 2i+1), wait
for everyone, make a 100 KB state (the ``blob`` operation), wait for everyone. Phases, timed by
the coordinator:

1. **connect**: from the job's start until every worker is connected to the coordinator and to
   the relay (``connect_all_s``);
2. **latency**: with all of them connected, workers 0 and 1 exchange ``--rounds`` 64-byte round
   trips through the relay (``relay_ping``/``relay_echo``, timed in worker 0);
3. **storm**: every worker sends its state to its partner and receives the partner's, all at
   once; ``storm_s`` runs until the last hand-off has arrived, and each received state is
   checked against the digest its sender reported (``handoffs_ok``).

Between phases the coordinator samples each process's CPU time, resident memory and open file
descriptors from /proc: where the time and the memory go.

Usage: ``python bench/scale.py --workers 10000 [--hosts 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from _common import settings  # noqa: E402
from excamera.mu import evloop  # noqa: E402
from excamera.mu.machines import Cmd, JobContext, WorkerHandle  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- /proc samples ------------------------------------------------------------------------
def proc_sample(pid: int) -> dict[str, float]:
    """CPU seconds, resident and peak memory (MiB) and open descriptors of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK
    minflt = int(fields[7])
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return {"cpu_s": cpu, "minflt": minflt, "rss_mb": rss, "peak_rss_mb": hwm,
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# --- the job (coordinator side) -----------------------------------------------------------
@dataclass
class Board:
    """What the machines share: counters, the phase barriers and their times."""

    n: int
    size: int
    rounds: int
    t0: float = 0.0
    joined: int = 0
    ready: int = 0
    arrived: int = 0
    ok: int = 0
    all_joined: asyncio.Event = field(default_factory=asyncio.Event)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    latency_done: asyncio.Event = field(default_factory=asyncio.Event)
    digests: dict[int, str] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    rtt_us: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    on_phase: Any = None  # called with a phase name when it ends (samples /proc)


async def scale_machine(w: WorkerHandle, ctx: JobContext) -> bool:
    b: Board = ctx.params["board"]
    partner = w.id ^ 1
    w.state = "joining"
    await w.connect(partner)
    b.joined += 1
    if b.joined == b.n:
        b.times["connect_all_s"] = time.monotonic() - b.t0
        b.on_phase("connected")
        b.all_joined.set()
    w.state = "waiting_all"
    await b.all_joined.wait()  # so the connect phase is only connecting
    w.state = "making_state"
    made = await w.run_op("blob", path="state.bin", size=b.size, seed=w.id)
    b.digests[w.id] = str(made["sha256"])
    b.ready += 1
    if b.ready == b.n:
        b.on_phase("ready")
        b.all_ready.set()
    w.state = "waiting_ready"
    await b.all_ready.wait()
    if w.id == 0:
        w.state = "pinging"
        reply = await w.call(Cmd("relay_ping", {"count": b.rounds, "size": 64, "from": 1}))
        b.rtt_us = list(reply["rtt_us"])
    elif w.id == 1:
        w.state = "echoing"
        await w.call(Cmd("relay_echo", {"count": b.rounds, "from": 0}))
        await b.latency_done.wait()
    if w.id == 0:
        b.on_phase("latency")
        b.times["storm_t0"] = time.monotonic()
        b.latency_done.set()
    w.state = "waiting_storm"
    await b.latency_done.wait()
    w.state = "storm"
    await w.pipeline([Cmd.send_blob("state.bin"), Cmd.recv_blob(partner, "got.bin")])
    b.arrived += 1
    if b.arrived == b.n:
        b.times["storm_s"] = time.monotonic() - b.times["storm_t0"]
        b.on_phase("storm")
    w.state = "checking"
    got = await w.run_op("digest", path="got.bin")
    good = got["sha256"] == b.digests.get(partner) and got["bytes"] == b.size
    if good:
        b.ok += 1
    else:
        b.failures.append(f"worker {w.id}: the state from {partner} differs")
    return good


def run_coordinator(args: argparse.Namespace) -> dict[str, Any]:
    """The coordinator process: run the job, print what it measured as one JSON line."""
    from excamera.mu.backends import LocalBackend
    from excamera.mu.coordinator import Coordinator

    evloop.set_tls_buffer(args.tls_buffer_kib)
    evloop.tune_for_many_connections()
    keys = Path(args.keys)
    board = Board(args.workers, args.state_kib * 1024, args.rounds)
    samples: dict[str, dict[str, dict[str, float]]] = {}
    backend = LocalBackend(worker_processes=args.hosts,
                           host_args=["--dial-slots", str(args.dial_slots),
                                      "--loop", args.loop,
                                      "--tls-buffer-kib", str(args.tls_buffer_kib),
                                      *(["-P", f"{args.profile}.host"] if args.profile
                                        else [])])

    def sample(phase: str) -> None:
        pids = {"coordinator": os.getpid(), "relay": args.relay_pid}
        pids.update({f"host{h.index}": h.proc.pid for h in backend.hosts})
        samples[phase] = {}
        for name, pid in pids.items():
            try:
                samples[phase][name] = proc_sample(pid)
            except FileNotFoundError:  # a host that has exited (at the end)
                pass

    board.on_phase = sample
    coord = Coordinator(
        "scale", args.workers, backend, "", scale_machine,
        params={"board": board}, relay=("127.0.0.1", args.relay_port),
        ca_cert=keys / "ca_cert.pem", ca_key=keys / "ca_key.pem",
        connect_timeout=600.0,
        max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.max_handshakes_per_address,
    )

    async def main() -> Any:
        sample("start")
        if args.profile:
            import cProfile

            prof = cProfile.Profile(time.process_time)
            prof.enable()
            board.on_phase = lambda phase: (sample(phase), phase == "connected"
                                            and prof.dump_stats(args.profile))
        board.t0 = time.monotonic()
        return await coord.run()

    result = evloop.run(main(), args.loop)
    sample("end")
    return {
        "times": board.times, "rtt_us": board.rtt_us, "connected": board.joined,
        "handoffs_ok": board.ok, "failures": board.failures[:10],
        "outputs_ok": sum(1 for v in result.outputs.values() if v), "samples": samples,
        "job_s": result.elapsed, "loop": evloop.loop_name(args.loop),
    }


# --- the parent -------------------------------------------------------------------------------
def start_relay(keys: str, args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    env = os.environ | {"PYTHONPATH": str(ROOT / "python")}
    relay = subprocess.Popen(
        [sys.executable, "-c", "import sys; from excamera.cli import main; sys.exit(main())",
         "relay", "-t", "0", "--host", "127.0.0.1", "-n", str(args.workers),
         "-c", f"{keys}/ca_cert.pem", "-s", f"{keys}/server_cert.pem",
         "-k", f"{keys}/server_key.pem", "--ssl-buffer-kib", str(args.tls_buffer_kib),
         "--max-handshakes", str(args.max_handshakes),
         "--max-handshakes-per-address", str(args.max_handshakes_per_address),
         "--loop", args.loop, *(["-P", f"{args.profile}.relay"] if args.profile else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert relay.stdout is not None
    line = relay.stdout.readline()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        relay.kill()
        raise SystemExit(f"bench: the relay did not start: {line!r} "
                         f"{relay.stderr.read() if relay.stderr else ''}")
    return relay, int(m[1])


def summarize(args: argparse.Namespace, child: dict[str, Any]) -> dict[str, Any]:
    s = child["samples"]
    t = child["times"]
    n = args.workers
    rtt_ms = [x / 1000 for x in child["rtt_us"]]

    def delta(a: str, b: str, who: str) -> float:
        return round(s[b][who]["cpu_s"] - s[a][who]["cpu_s"], 2)

    def fdelta(a: str, b: str, who: str) -> int:
        return s[b][who]["minflt"] - s[a][who]["minflt"]

    hosts = sorted({k for sample in s.values() for k in sample if k.startswith("host")})
    phases = [("connect", "start", "connected"), ("make_state", "connected", "ready"),
              ("latency", "ready", "latency"), ("storm", "latency", "storm")]
    cpu = {name: {"coordinator": delta(a, b, "coordinator"), "relay": delta(a, b, "relay"),
                  "worker_hosts": round(sum(s[b].get(h, {}).get("cpu_s", 0)
                                            - s[a].get(h, {}).get("cpu_s", 0)
                                            for h in hosts), 2)}
           for name, a, b in phases if a in s and b in s}
    faults = {name: {"coordinator": fdelta(a, b, "coordinator"), "relay": fdelta(a, b, "relay"),
                     "worker_hosts": sum(s[b].get(h, {}).get("minflt", 0)
                                         - s[a].get(h, {}).get("minflt", 0) for h in hosts)}
              for name, a, b in phases if a in s and b in s}
    conn = s.get("connected", s["end"])
    base = s["start"]
    per_conn = {
        who: round((conn[who]["rss_mb"] - base[who]["rss_mb"]) * 1024 / n, 1)
        for who in ("coordinator", "relay")
    }
    return {
        "workers": n,
        "connected": child["connected"],
        "handoffs_ok": child["handoffs_ok"],
        "connect_all_s": round(t.get("connect_all_s", float("nan")), 2),
        "pair_rtt_p50_ms": round(pct(rtt_ms, 0.5), 3),
        "pair_rtt_p99_ms": round(pct(rtt_ms, 0.99), 3),
        "storm_s": round(t.get("storm_s", float("nan")), 2),
        "coordinator_rss_mb": round(s["end"]["coordinator"]["peak_rss_mb"], 1),
        "relay_rss_mb": round(s["end"]["relay"]["peak_rss_mb"], 1),
        "fds": conn["coordinator"]["fds"] + conn["relay"]["fds"],
        "detail": {
            "fds_connected": {k: v["fds"] for k, v in conn.items()},
            "rss_connected_mb": {k: round(v["rss_mb"], 1) for k, v in conn.items()},
            "rss_kib_per_worker_connected": per_conn,
            "worker_hosts_peak_rss_mb": round(sum(s["storm"][h]["peak_rss_mb"]
                                                  for h in hosts if h in s.get("storm", {})), 1),
            "cpu_s_by_phase": cpu,
            "minor_faults_by_phase": faults,
            "cpu_ms_per_worker_connect": {k: round(1000 * v / n, 2)
                                          for k, v in cpu.get("connect", {}).items()},
            "pair_rtt_max_ms": round(max(rtt_ms), 3) if rtt_ms else None,
            "pair_rtt_mean_ms": round(statistics.fmean(rtt_ms), 3) if rtt_ms else None,
            "job_s": round(child["job_s"], 2),
            "loop": child["loop"],
            "failures": child["failures"],
            "load_average_at_start": os.getloadavg()[0],
        },
    }


def run_parent(args: argparse.Namespace, n: int) -> dict[str, Any]:
    from excamera.mu.evloop import raise_fd_limit
    from excamera.mu.tls import genkeys

    raise_fd_limit(1 << 20)
    load = os.getloadavg()[0]
    one = argparse.Namespace(**{**vars(args), "workers": n})
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as keys:
        genkeys(keys)
        relay, port = start_relay(keys, one)
        try:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "coordinator",
                   "--keys", keys, "--relay-port", str(port), "--relay-pid", str(relay.pid),
                   "--workers", str(n), "--hosts", str(args.hosts),
                   "--rounds", str(args.rounds), "--state-kib", str(args.state_kib),
                   "--dial-slots", str(args.dial_slots),
                   "--max-handshakes", str(args.max_handshakes),
                   "--max-handshakes-per-address", str(args.max_handshakes_per_address),
                   "--tls-buffer-kib", str(args.tls_buffer_kib), "--loop", args.loop,
                   *(["--profile", args.profile] if args.profile else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            if proc.returncode != 0:
                raise SystemExit(f"bench: the coordinator failed (exit {proc.returncode}):\n"
                                 f"{proc.stderr[-4000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            relay.terminate()
            try:
                relay.wait(30)
            except subprocess.TimeoutExpired:
                relay.kill()
    out = summarize(one, child)
    # other users of the machine show here: 1-minute load averages around the run
    out["detail"]["load_average_at_start"] = load
    out["detail"]["load_average_at_end"] = os.getloadavg()[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1000",
                    help="workers, or a comma-separated list of runs (1000)")
    ap.add_argument("--hosts", type=int, default=2,
                    help="worker-host processes (the local backend's --worker-processes)")
    ap.add_argument("--rounds", type=int, default=1000, help="round trips of the latency pair")
    ap.add_argument("--state-kib", type=int, default=100, help="size of each worker's state")
    ap.add_argument("--dial-slots", type=int, default=64,
                    help="connections each worker host opens at once")
    ap.add_argument("--max-handshakes", type=int, default=128,
                    help="coordinator's and relay's handshakes in flight (128, the default)")
    ap.add_argument("--max-handshakes-per-address", type=int, default=128,
                    help="from one address: every worker here is 127.0.0.1 (128)")
    ap.add_argument("--tls-buffer-kib", type=int, default=64,
                    help="asyncio's per-connection TLS read buffer in every process (64)")
    ap.add_argument("--loop", choices=evloop.LOOPS, default="auto",
                    help="event loop of every process (auto: uvloop when installed)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--profile", help="cProfile the coordinator's connect phase into this file")
    ap.add_argument("--role", choices=("parent", "coordinator"), default="parent",
                    help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    ap.add_argument("--relay-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--relay-pid", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in str(args.workers).split(",")]
    except ValueError:
        ap.error("--workers takes numbers, e.g. 1000 or 1000,5000,10000")
    if any(n < 2 or n % 2 for n in sizes):
        ap.error("--workers must be even numbers, at least 2 (workers pair up)")
    if args.role == "coordinator":
        args.workers = sizes[0]
        print(json.dumps(run_coordinator(args)))
        return 0
    conf = settings(args)
    for hidden in ("role", "keys", "relay_port", "relay_pid"):
        conf.pop(hidden, None)
    rows = []
    for n in sizes:
        rows.append(run_parent(args, n))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {"settings": conf, **rows[0]} if len(sizes) == 1 else {"settings": conf, "rows": rows}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
