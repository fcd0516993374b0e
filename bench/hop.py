"""Hop overhead of the serial chain at 1280x720: what a hand-off costs beyond the rebase itself.

A hop is one link of batch mode's pass-2 chain: worker k-1's rebase ends with its final state
in ``final.state``; the state is packed, sent through the relay, unpacked by worker k, and k
rebases its chunk onto it. The issue's figure: hop = the time from one chain rebase's end to
the next's, overhead = hop minus the receiving rebase's own CPU time.

The chain here is real and isolated: a coordinator with its embedded relay and ``--hops``+1
local workers (TLS, the relay, the worker's operations, as a job runs them), in
``--worker-processes`` worker hosts as ``excamera encode`` runs them on this machine (0: a
process per worker), each worker running exactly the job's hand-off code
(``xcenc.machine.send_state`` and the receive of ``xcenc_machine``) and its pass-2 rebase
(``xc-enc -r -I in_2.state -p prev.ivf -S in_1.state`` with the excamera chain's flags, in the
worker's interpreter). Every worker rebases the same 720p chunk (mosaic720's chunk 2: its
pass-1 output onto the state it receives), so the hops are alike. Nothing else runs in the
job: setup (retrieving inputs, connecting to the relay, an xc-dump that loads the codec as a
job's earlier passes have) finishes for every worker before worker 0 hands its state on, and
no worker leaves before the chain's end.

The hand-offs compared (``--handoffs``): ``file``, the default on one machine (the state
through the local backend's shared directory, the envelope through the relay); ``relay``, the
state itself through the relay; ``zlib``, compressed through the relay.

The parts, from the coordinator's timestamps of the workers' states: ``pack`` (the sender's
pack operation), ``transfer`` (send to the receiver's reply that the blob arrived), ``unpack``
(the receiver's unpack operation) and ``dispatch`` (the rebase operation's wall time minus its
CPU time: the coordinator's round trip and the operation's thread hand-off); the rebase's own
wall time beyond its CPU is split into its thread's wait for a core (the kernel's run-queue
time: other load) and the rest (blocked). Beside them, the
same parts as CPU time in one process (``--runs`` times each, medians): state serialisation and
loading, the hand-off format's pack and unpack, and what the old format (zlib) cost.

    python bench/hop.py [--hops 6] [--runs 3] [--handoffs file,relay,zlib] [--clip mosaic720]
                        [--worker-processes K] [--json bench/hop-results.json]
                        [--markdown bench/hop.md]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from _common import need_tool, run, settings
from excamera.mu.backends.local import LocalBackend, default_worker_processes
from excamera.mu.coordinator import Coordinator
from excamera.mu.machines import JobContext, WorkerHandle
from excamera.pipelines.xcenc import handoff
from excamera.pipelines.xcenc.machine import receive_state, send_state
from excamera.pipelines.xcenc.ops import OPERATION_MODULE
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS, Need, XcencParams, reencode_argv
from excamera.xc.codec import Decoder, State
from excamera.xc.encoder import ReencodeOptions, reencode_chunk
from excamera.xc.ivf import IvfWriter, read_ivf
from excamera.xc.y4m import read_y4m, write_y4m
from model import clip_y4m

CHUNK, CQ = 6, 30
# The material's own rebases (chunk 1's final state, chunk 2's pass 1): the three-pass chain's
# options (-w 0.75, best effort), as this bench has always built it; the hop it times runs the
# plan's pass-2 flags.
CHAIN = ReencodeOptions(kf_q_weight=0.75, speed="best", last_refreshes_all=False,
                        choose_refs=True)
# name: (codec, through the shared directory on one machine)
HANDOFFS = {"file": ("none", True), "relay": ("none", False), "zlib": ("zlib", False)}
PARAMS = {name: XcencParams(vid_name="hop", n_parts=2, kf_dist=16, handoff_codec=codec,
                            handoff_local=local)
          for name, (codec, local) in HANDOFFS.items()}
NEED = Need(inp=2, prev=1)  # pass 2: onto the predecessor's final state, -S its pass-0 state


def make_material(tmp: Path, source: str) -> dict[str, Path]:
    """Chunks 0..2 of ``source`` (a clips.py recipe or a shared clip): chunk 1's final state
    (what the chain hands on), its pass-0 state (the receiver's -S), chunk 2's pass-1 output
    (prev.ivf) and its pictures."""
    pics = read_y4m(clip_y4m(source, 3 * CHUNK, tmp))[1]
    if len(pics) < 3 * CHUNK:
        raise SystemExit(f"bench: {source} has {len(pics)} frames, {3 * CHUNK} needed")
    chunks = [pics[i * CHUNK:(i + 1) * CHUNK] for i in range(3)]
    streams, p0 = [], []
    for k, c in enumerate(chunks):
        write_y4m(tmp / f"c{k}.y4m", c)
        run([need_tool("vpxenc"), *VPXENC_SETTINGS, f"--cq-level={CQ}", "-o",
             str(tmp / f"c{k}.ivf"), str(tmp / f"c{k}.y4m")], stdin=subprocess.DEVNULL)
        streams.append([f.data for f in read_ivf(tmp / f"c{k}.ivf")[1]])
        dec = Decoder()
        for f in streams[-1]:
            dec.decode(f)
        p0.append(dec.state)
    opts = CHAIN
    final1 = reencode_chunk(p0[0], streams[1], None, chunks[1], opts).state
    p1 = reencode_chunk(p0[1], streams[2], None, chunks[2], opts)
    header = read_ivf(tmp / "c2.ivf")[0]
    with IvfWriter(tmp / "prev.ivf", header.width, header.height, header.rate,
                   header.scale) as out:
        for f in p1.frames:
            out.write(f)
    (tmp / "final.state").write_bytes(final1.to_bytes())
    (tmp / "in_1.state").write_bytes(p0[1].to_bytes())
    return {"input.y4m": tmp / "c2.y4m", "prev.ivf": tmp / "prev.ivf",
            "final.state": tmp / "final.state", "in_1.state": tmp / "in_1.state"}


class Chain:
    """The coordinator's side of the chain: everyone ready, then worker 0 starts; what each
    hop's operations reported."""

    def __init__(self, n: int, params: XcencParams) -> None:
        self.n = n
        self.params = params
        self.ready = 0
        self.go: asyncio.Event | None = None
        self.finished = 0
        self.end: asyncio.Event | None = None
        self.rebases: dict[int, dict] = {}
        self.sends: dict[int, dict] = {}
        self.receives: dict[int, dict] = {}
        # this process's CPU clock (the coordinator and its embedded relay) when worker k's
        # send began and when its successor's receive returned
        self.cpu_send: dict[int, float] = {}
        self.cpu_received: dict[int, float] = {}

    def event(self) -> asyncio.Event:
        if self.go is None:
            self.go = asyncio.Event()
        return self.go

    def ended(self) -> asyncio.Event:
        if self.end is None:
            self.end = asyncio.Event()
        return self.end


async def hop_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    chain: Chain = ctx.params["chain"]
    k = w.id
    w.state = "setup"
    files = ["input.y4m", *(["prev.ivf", "in_1.state"] if k else ["final.state"])]
    await w.retrieve_many([f"hop/{f}" for f in files], files)
    bound = await w.run_op("xcenc_message_bound", picture="input.y4m")
    await w.connect(k + 1, max_blob=int(bound["bytes"]))
    # In a job this worker has run pass 0, xc-dump and pass 1 (a rebase like this one) before
    # the hop: the codec is loaded, its memory in use, and the operations' thread exists. The
    # same rebase onto in_1.state, to files nobody reads, stands for that.
    if k:
        swap = {"in_2.state": "in_1.state", "final.state": "warm.state",
                "output.ivf": "warm.ivf"}
        argv = reencode_argv(["xc-enc"], NEED, chain.params.pass_flags(2))
        await w.run_op("xcenc_tool", argv=[swap.get(a, a) for a in argv])
    chain.ready += 1
    if chain.ready == chain.n:
        chain.event().set()
    await chain.event().wait()
    if k:
        # The receive waits during the predecessor's rebase only, as in a job: in a worker
        # host, the receiver's process CPU (below) is then this hand-off's, not also that of
        # the host's earlier workers' rebases.
        if k > 1:
            await ctx.progress.wait_for(k - 1, "reencode_p2")
        w.state = "wait_state_p2"
        have: dict[int, str] = {}
        got = await receive_state(w, ctx, chain.params, have, NEED.inp)
        chain.cpu_received[k] = time.process_time()
        assert got is not None
        chain.receives[k] = got
        w.state = "reencode_p2"
        argv = reencode_argv(["xc-enc"], NEED, chain.params.pass_flags(2))
        chain.rebases[k] = await w.run_op("xcenc_tool", argv=argv)
    w.state = "rebased"
    if k + 1 < chain.n:
        chain.cpu_send[k] = time.process_time()
        chain.sends[k] = await send_state(w, chain.params, NEED.inp)
    w.state = "done"
    # Nobody leaves before the chain's end: a worker's exit is no part of anyone's hop.
    chain.finished += 1
    if chain.finished == chain.n:
        chain.ended().set()
    await chain.ended().wait()
    await w.close_connect()
    return {}


def chain_run(store: Path, hops: int, variant: str, hosts: int) -> list[dict]:
    """One chain of ``hops`` hops, states handed off as ``variant`` (``HANDOFFS``) by
    workers in ``hosts`` worker hosts (0: a process each); per hop its wall time, the
    rebase's CPU and the parts."""
    n = hops + 1
    chain = Chain(n, PARAMS[variant])
    coord = Coordinator("hop", n, LocalBackend(worker_processes=hosts), str(store), hop_machine,
                        params={"chain": chain}, operation_modules=[OPERATION_MODULE],
                        embedded_relay=True)
    result = asyncio.run(coord.run())
    t0 = coord.log.t0  # the workers' times are the same monotonic clock (one machine)
    at: dict[tuple[int, str], float] = {}
    for tr in result.transitions:
        at.setdefault((tr.worker, tr.state), tr.t)
    out = []
    for k in range(1, n):
        rb, sent, got = chain.rebases[k], chain.sends[k - 1], chain.receives[k]
        hop = at[k, "rebased"] - at[k - 1, "rebased"]
        parts = {
            # the sender's rebase reply to its send operation starting
            "to_send": sent["t_start"] - t0 - at[k - 1, "rebased"],
            "pack": sent["t_packed"] - sent["t_start"],
            "transfer": got["t_arrived"] - sent["t_packed"],
            "store": got["t_stored"] - got["t_arrived"],
            # the receiver's reply to its rebase starting (the coordinator's round trip)
            "to_rebase": at[k, "reencode_p2"] - (got["t_stored"] - t0),
            "rebase_wall": rb["seconds"],
            "pack_cpu": sent["pack_cpu_seconds"],
            "store_cpu": got["store_cpu_seconds"],
            # The hand-off's CPU in all three processes: the sender's send operation, the
            # coordinator with its relay from that send to the receive's reply, and the
            # receiver's receive operation. On an idle machine the hand-off takes about this
            # long (less where the processes overlap, more for the scheduler's wake-ups).
            "sender_cpu": sent["process_cpu_seconds"],
            "relay_cpu": chain.cpu_received[k] - chain.cpu_send[k - 1],
            "receiver_cpu": got["process_cpu_seconds"],
        }
        parts["handoff_cpu"] = parts["sender_cpu"] + parts["relay_cpu"] + parts["receiver_cpu"]
        parts["dispatch"] = at[k, "rebased"] - at[k, "reencode_p2"] - rb["seconds"]
        if rb.get("wait_cpu_s") is not None:
            parts["rebase_wait_cpu"] = rb["wait_cpu_s"]
            parts["rebase_blocked"] = rb["seconds"] - rb["cpu_s"] - rb["wait_cpu_s"]
            # what other load took from the rebase alone (the hand-off's own waits remain)
            parts["overhead_less_rebase_wait"] = hop - rb["cpu_s"] - rb["wait_cpu_s"]
        if sent["via"] != ("file" if variant == "file" else "relay"):
            raise SystemExit(f"bench: hand-off {variant} went by {sent['via']}")
        out.append({"hop_s": hop, "rebase_cpu_s": rb["cpu_s"],
                     "overhead_s": hop - rb["cpu_s"],
                     "handoff_s": hop - rb["seconds"],
                     **{f"{key}_s": v for key, v in parts.items()}})
    return out


def cpu_median(runs: int, fn) -> float:
    xs = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        xs.append(time.process_time() - t0)
    return statistics.median(xs)


async def _relay_transfers(sizes: list[int], runs: int) -> dict[int, float]:
    """CPU seconds of one message of each size through a relay, sender, relay and receiver in
    this one process (TLS both ways, as a hop's), medians of ``runs``."""
    from excamera.mu.relay import Relay, RelayClient
    from excamera.mu.tls import CertificateAuthority

    ca = CertificateAuthority.create("hop bench")
    relay = Relay(ca.issue_server())
    port = await relay.start()
    a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("hop", 0), "hop", 0, 1)
    b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("hop", 1), "hop", 1, 0)
    out = {}
    try:
        for size in sizes:
            body = os.urandom(size)
            xs = []
            for _ in range(runs):
                t0 = time.process_time()
                await a.send(body)
                got = await b.recv()
                xs.append(time.process_time() - t0)
                assert len(got.body) == size
            out[size] = statistics.median(xs)
    finally:
        await a.close()
        await b.close()
        await relay.close()
    return out


def parts_in_process(material: dict[str, Path], runs: int, tmp: Path) -> dict:
    """CPU time of each step a state goes through, in this process."""
    raw = material["final.state"].read_bytes()
    state = State.from_bytes(raw)
    have = material["in_1.state"].read_bytes()
    old = zlib.compress(raw)
    out = {
        "state_bytes": len(raw), "size": f"{state.width}x{state.height}",
        "serialize_s": cpu_median(runs, state.to_bytes),
        "deserialize_s": cpu_median(runs, lambda: State.from_bytes(raw)),
        "sha256_s": cpu_median(runs, lambda: hashlib.sha256(raw).digest()),
        "zlib_pack_s": cpu_median(runs, lambda: zlib.compress(raw)),
        "zlib_unpack_s": cpu_median(runs, lambda: zlib.decompress(old)),
        "zlib_bytes": len(old),
        "formats": {},
    }
    # What shrinking the message would save: the relay path's CPU per byte, against what
    # zlib costs; and a delta against the state the receiver already holds (its -S state,
    # the predecessor's pass-0 state: the same pictures, encoded differently).
    import numpy as np

    delta = (np.frombuffer(raw, np.uint8) ^ np.frombuffer(have, np.uint8)).tobytes() \
        if len(have) == len(raw) else None
    relay = asyncio.run(_relay_transfers([len(raw), len(raw) // 4], runs))
    out["relay_transfer_cpu_s"] = {str(k): v for k, v in relay.items()}
    if delta is not None:
        out["xor_delta_zlib1_bytes"] = len(zlib.compress(delta, 1))
        out["xor_delta_zlib1_s"] = cpu_median(runs, lambda: zlib.compress(delta, 1))
    for codec in handoff.CODECS:
        msg = handoff.pack(raw, 2, codec)
        out["formats"][codec] = {
            "bytes": len(msg),
            "pack_s": cpu_median(runs, lambda c=codec: handoff.pack(raw, 2, c)),
            "unpack_s": cpu_median(runs, lambda m=msg: handoff.unpack(m, len(raw))),
        }
    # One machine's shared file: write it (whole, renamed into place) and read it back (bounded,
    # then removed), the hashes apart.
    shared = tmp / "shared"
    shared.mkdir()
    digest = hashlib.sha256(raw).digest()
    out["shared_write_s"] = cpu_median(
        runs, lambda: handoff.write_shared(shared, 1, 2, raw, digest))
    out["shared_read_s"] = cpu_median(runs, lambda: (
        handoff.write_shared(shared, 1, 2, raw, digest),
        handoff.read_shared(shared, 1, 2, len(raw), digest))) - out["shared_write_s"]
    return out


ROWS = [
    ("hop_s", "hop: one chain rebase's end to the next's (coordinator clock)"),
    ("rebase_cpu_s", "the receiving rebase's CPU (xc-enc's thread, loading and saving states)"),
    ("overhead_s", "**overhead** = hop - rebase CPU (the issue's measure)"),
    ("overhead_less_rebase_wait_s", "overhead less the rebase's wait for a core (below)"),
    ("rebase_wall_s", "the rebase's wall time inside its operation"),
    ("rebase_wait_cpu_s", "of which its thread waited for a core (run queue: other load)"),
    ("rebase_blocked_s", "and was off the CPU otherwise (wall - CPU - run queue)"),
    ("handoff_s", "hop - rebase wall: the hand-off and the coordinator's round trips"),
    ("to_send_s", "sender: rebase reply to the send operation starting"),
    ("pack_s", "sender: read, hash, envelope (and the shared file) (wall)"),
    ("pack_cpu_s", "sender: the same, CPU"),
    ("transfer_s", "packed to arrived: TLS to the relay, the relay, TLS to the receiver"),
    ("store_s", "receiver: (read the shared file,) check size and hash, write in_2.state "
     "(wall)"),
    ("store_cpu_s", "receiver: the same, CPU"),
    ("to_rebase_s", "receiver: receive reply to the rebase starting"),
    ("dispatch_s", "rebase operation's wall seen by the coordinator minus inside it"),
    ("sender_cpu_s", "CPU of the sender's process during its send operation"),
    ("relay_cpu_s", "CPU of the coordinator's process (its embedded relay) from send to receive"),
    ("receiver_cpu_s", "CPU of the receiver's process during its receive operation"),
    ("handoff_cpu_s", "**hand-off CPU**: the three above"),
]


KEPT = "<!-- kept when regenerated -->"


def markdown(res: dict) -> str:
    s = res["summary"]
    codecs = list(s)
    p = res["in_process"]
    hosts = res["settings"].get("worker_processes")
    where = (f"in {hosts} worker hosts (as `excamera encode` runs them here)" if hosts
             else "in a process each")
    lines = [
        f"# Hop overhead at {p['size']} (`bench/hop.py`)", "",
        f"Generated by `{res['settings']['command']}`; load average before "
        f"{res['load_before']}, after {res['load_after']} on the 2 cores (other sessions' "
        "work; wall times are inflated accordingly, CPU times much less).", "",
        "A hop: one pass-2 rebase's end to the next's, through the real coordinator, embedded "
        f"relay and workers {where} (TLS), each worker running the job's own hand-off code "
        "(`xcenc.machine.send_state`, `receive_state`) and a real rebase. Hand-offs: `file`, "
        "the state through the local backend's shared directory and its envelope through the "
        "relay (the default on one machine); `relay`, the state through the relay; `zlib`, "
        f"compressed through the relay. {s[codecs[0]]['hops']} hops over "
        f"{res['settings']['runs']} chains per hand-off, the hand-offs alternating; medians "
        "in ms.", "",
        "| part | " + " | ".join(f"`{c}`" for c in codecs) + " |",
        "| --- |" + " ---: |" * len(codecs),
    ]
    lines += [f"| {text} | " + " | ".join(f"{1e3 * s[c][key]:.1f}" if key in s[c] else "-"
                                         for c in codecs) + " |"
              for key, text in ROWS if any(key in s[c] for c in codecs)]
    lines += ["", f"The same steps in one process (CPU ms, medians; a {p['state_bytes']:,}-byte "
              "state):", "",
              "| step | CPU ms | bytes |", "| --- | ---: | ---: |",
              f"| serialise (State.to_bytes) | {1e3 * p['serialize_s']:.1f} | |",
              f"| load (State.from_bytes, CRC) | {1e3 * p['deserialize_s']:.1f} | |",
              f"| sha256 | {1e3 * p['sha256_s']:.1f} | |",
              f"| before: zlib level 6 pack | {1e3 * p['zlib_pack_s']:.1f} | "
              f"{p['zlib_bytes']:,} |",
              f"| before: zlib unpack | {1e3 * p['zlib_unpack_s']:.1f} | |"]
    for codec, f in p["formats"].items():
        lines.append(f"| hand-off `{codec}`: pack / unpack (hash checked) | "
                     f"{1e3 * f['pack_s']:.1f} / {1e3 * f['unpack_s']:.1f} | {f['bytes']:,} |")
    if "xor_delta_zlib1_bytes" in p:
        lines.append(f"| XOR delta against the receiver's -S state, zlib level 1 | "
                     f"{1e3 * p['xor_delta_zlib1_s']:.1f} | {p['xor_delta_zlib1_bytes']:,} |")
    lines.append(f"| one machine: write the shared file / read and remove it | "
                 f"{1e3 * p['shared_write_s']:.1f} / {1e3 * p['shared_read_s']:.1f} | "
                 f"{p['state_bytes']:,} |")
    for size, cpu in p["relay_transfer_cpu_s"].items():
        lines.append(f"| relay transfer, sender + relay + receiver (TLS) | {1e3 * cpu:.1f} | "
                     f"{int(size):,} |")
    # What a codec must beat: the relay path's CPU per byte, against the codec's own.
    full = int(max(p["relay_transfer_cpu_s"], key=int))
    per_mb = p["relay_transfer_cpu_s"][str(full)] / (full / 1e6)
    z = p["formats"]["zlib"]
    saved = (p["formats"]["none"]["bytes"] - z["bytes"]) / 1e6
    cost = z["pack_s"] + z["unpack_s"] - p["formats"]["none"]["pack_s"] \
        - p["formats"]["none"]["unpack_s"]
    lines += ["", f"Reading: through the relay a megabyte costs {1e3 * per_mb:.1f} ms of CPU "
              f"here; zlib saves {saved:.2f} MB for {1e3 * cost:.1f} ms more CPU, which pays "
              f"only on a link slower than {saved / cost:.0f} MB/s (and a delta against the "
              "receiver's own state with zlib, above, costs as much again for little more). "
              "Hence no codec by default; `zlib` stays for slow links (`XcencParams."
              "handoff_codec`)."]
    if "file" in s and "relay" in s:
        f, r = s["file"], s["relay"]
        lines += ["", f"On one machine the shared file takes the state's bytes off the relay: "
                  f"the hop's overhead is {1e3 * f['overhead_s']:.1f} ms against "
                  f"{1e3 * r['overhead_s']:.1f} through the relay, the hand-off's CPU in the "
                  f"three processes {1e3 * f['handoff_cpu_s']:.1f} ms against "
                  f"{1e3 * r['handoff_cpu_s']:.1f}, and hop minus the rebase's wall "
                  f"{1e3 * f['handoff_s']:.1f} ms against {1e3 * r['handoff_s']:.1f}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hops", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--handoffs", default=",".join(HANDOFFS),
                    help=f"hand-offs to run, alternating ({', '.join(HANDOFFS)})")
    ap.add_argument("--worker-processes", type=int, default=default_worker_processes(),
                    help="worker hosts, as excamera encode starts them (default: one per core, "
                    f"{default_worker_processes()} here); 0: a process per worker")
    ap.add_argument("--clip", default="mosaic720",
                    help="a clips.py recipe (1280x720: mosaic720) or a clip in the shared clips")
    args = ap.parse_args()
    if args.hops < 1 or args.runs < 1:
        raise SystemExit("bench: --hops and --runs need >= 1")
    variants = [c.strip() for c in args.handoffs.split(",")]
    if not variants or any(c not in HANDOFFS for c in variants):
        raise SystemExit(f"bench: --handoffs takes some of {', '.join(HANDOFFS)}")
    if not 0 <= args.worker_processes <= 64:
        raise SystemExit("bench: --worker-processes is 0..64")
    with tempfile.TemporaryDirectory(prefix="hop-bench-") as d:
        tmp = Path(d)
        store = tmp / "store"
        (store / "hop").mkdir(parents=True)
        material = make_material(tmp, args.clip)
        for name, path in material.items():
            os.link(path, store / "hop" / name)
        load_before = [round(x, 2) for x in os.getloadavg()]
        runs: dict[str, list] = {c: [] for c in variants}
        for _ in range(args.runs):  # the hand-offs alternate, chain by chain
            for variant in variants:
                runs[variant].append(chain_run(store, args.hops, variant,
                                               args.worker_processes))
        parts = parts_in_process(material, max(3, args.runs), tmp)
        load_after = [round(x, 2) for x in os.getloadavg()]
    summary = {}
    for variant, chains in runs.items():
        hops = [h for r in chains for h in r]
        summary[variant] = {"hops": len(hops)}
        for key in hops[0]:
            summary[variant][key] = statistics.median(h[key] for h in hops)
    res = {"settings": settings(args), "load_before": load_before, "load_after": load_after,
           "summary": summary, "in_process": parts, "runs": runs}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if args.markdown:
        # what follows KEPT in an earlier file (hand-written comparisons) stays
        old = args.markdown.read_text() if args.markdown.exists() else ""
        kept = old[old.index(KEPT):] if KEPT in old else ""
        args.markdown.write_text(markdown(res) + ("\n" + kept if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
