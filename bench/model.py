"""Predict ExCamera[6,16]'s makespan for a film Sintel's size on Lambda, past this machine.

The film: Sintel as the ExCamera paper encoded it, 4K (the 4096x1744 master), 21,312 frames,
so 3,552 chunks of 6 frames in 222 batches of 16. The prediction is a discrete-event simulation
(``model_sim``) of batch mode's task graph, one worker per chunk as ``pipelines.xcenc`` runs it:
each worker's retrieve, pass 0 (vpxenc), xc-dump, its rebases (pass 1, the re-decide pass and
the serial pass 3, as ``excamera encode`` plans them), every state hand-off (pack, the relay's
forwarding, unpack, network latency) and its upload, in the order ``xcenc_machine`` runs them;
the workers launched under Lambda's scaling rules.

Inputs, and where each comes from:

- **Per-task CPU costs, measured here in this run** (``--runs`` times each, medians of CPU
  time, with the load average recorded): on 3 chunks of 6 frames of each of four clips, 176x144
  (carphone), 320x180 (Big Buck Bunny), 640x272 and 1280x720 (the first 18 frames of
  ``streams.py``'s ``bbb272`` and ``mosaic720`` recipes): vpxenc pass 0 with mu's settings
  (``xcenc.plan.VPXENC_SETTINGS``, the child's CPU time), xc-dump (decode, serialise the
  state), the rebases with the flags ``excamera encode``'s plan gives them: chunk 1's final
  pass 1 (onto chunk 0's state, every frame decided anew), chunk 2's pass 1 (onto chunk 1's
  pass-0 state, at Realtime), its re-decide pass (every frame decided anew on chunk 1's
  pass-1 state, which for the second chunk of a batch is its final one) and its pass 3 (that
  rebased onto chunk 1's final state, the first frame decided again around it: the hop), and
  the hand-off as a Lambda worker makes it (``xcenc/handoff.py`` with the
  pipeline's default codec, uncompressed: the sender hashes the state into its envelope,
  the receiver checks length and hash and loads it with ``State.from_bytes``; a Lambda
  worker has no machine to share, so the state itself goes through the relay), plus the
  sizes of the raw chunk, the output and the hand-off message.
- **Scaling by resolution:** each cost and size is fitted as ``a + b * pixels`` (least
  squares over the four clips) and read at the film's pixel count. The check: the same fit
  made without the largest clip predicts it, and the error is reported.
- **Lambda's speed:** every CPU cost is divided by ``--lambda-speed`` (a Lambda vCPU's speed
  relative to one core of this machine; default 1.0). A worker is single-threaded throughout
  (vpxenc ``--threads=1``, the rebase), so one vCPU (1,769 MB, AWS's memory table) is what it
  uses. One scenario calibrates the speed to the paper's own Lambda figure instead: vpxenc
  took 10.1 s per 6-frame 4K chunk there, so speed = this model's 4K pass-0 cost / 10.1.
- **Hand-offs:** the relay forwards ``bench/relay-results.json``'s measured throughput per relay
  (``--relays`` of them, first come first served; further scenarios run 16 and as many as
  there are chunks); its idle latency and a network latency of ``--net-latency-ms`` each way
  (assumed) sit on either side of it.
- **Launch:** Lambda's concurrency scaling rate, 1,000 new execution environments per 10 s per
  function, refilled continuously, not banked (docs.aws.amazon.com/lambda/latest/dg/
  scaling-behavior.html), over ``--functions`` functions; the account concurrency is the
  worker count; a finished worker's environment is reused warm; the coordinator's invoke rate
  is one per its measured CPU time per worker in ``bench/launch-results.json`` (emulated);
  a cold start (invoke to hello) of ``--cold-start`` s, by default the paper's median "worker
  connects 2.1 s after start".
- **Storage:** ``--storage-mbps`` and ``--storage-latency-ms`` (assumed) for the chunk's
  retrieve and the output's upload.

The result: per worker count, the makespan, the critical path by cause (which names the term
that dominates), and the paper's 2.6 minutes (3,552 workers) beside it. With more workers than
chunks (10,000 > 3,552) the surplus has nothing to do: ExCamera[6,16] has 3,552 tasks.

    python bench/model.py [--runs 3] [--workers 1000,3552,10000] [--json bench/model-results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import REPO, need_tool, run, settings, shared_dir
from clips import SOURCES, clip
from excamera.pipelines.encode.run import Chunks
from excamera.pipelines.encode.run import plan as encode_plan
from excamera.pipelines.encode.settings import EncodeSettings
from excamera.pipelines.xcenc import handoff
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS, XcencParams
from excamera.xc.codec import Decoder, State
from excamera.xc.enc import build_parser, reencode_options
from excamera.xc.encoder import reencode_chunk
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import read_y4m, write_y4m
from model_sim import ChunkCosts, LaunchModel, Simulation, excamera_graph

FILM = {"name": "Sintel, 4K master", "width": 4096, "height": 1744, "frames": 21312}
CHUNK, BATCH = 6, 16
# The paper's recorded results (seed/original-system.md): 4K Sintel, 3,552 workers.
PAPER = {"workers": 3552, "makespan_min": 2.6, "pass0_s": 10.1, "xcdump_s": 3.0,
         "rebase_s": 3.5, "connect_s": 2.1}
# Lambda's documented concurrency scaling rate: 1,000 new environments per 10 s per function.
BURST, REFILL_PER_S = 1000, 100.0
CLIPS = [("carphone 176x144", "carphone_qcif_120f.y4m"),
         ("bbb 320x180", "bigbuckbunny_320x180_48f.y4m"),
         ("bbb272 640x272", "bbb272"),
         ("mosaic720 1280x720", "mosaic720")]
# The rebases with the flags `excamera encode`'s plan gives them (as bench/rebase.py takes
# them): chunk 1's final pass 1, and chunk 2's pass 1, re-decide pass and serial pass 3 (the
# third chunk of a batch runs four passes). (plan() reads only the chunks' name and count.)
_PLAN = encode_plan(EncodeSettings(source=Path("model.y4m"), output=Path("model.ivf")),
                    Chunks(vid="model", count=3, storage_url="", info=None))
assert [_PLAN.worker_plan(k).passes for k in range(3)] == [2, 2, 4]


def _options(n: int, k: int):
    return reencode_options(build_parser().parse_args(["-r", *_PLAN.pass_flags(n, k), "C.y4m"]))


PASS1_FINAL, PASS1, REDECIDE, PASS3 = _options(1, 1), _options(1, 2), _options(2, 2), _options(3, 2)
CPU_TASKS = ["pass0", "xcdump", "pass1_final", "pass1", "redecide", "pass3", "pack", "unpack"]
SIZES = ["chunk_bytes", "output_bytes", "state_bytes", "packed_state_bytes"]


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def clip_y4m(source: str, frames: int, tmp: Path) -> Path:
    """The first ``frames`` frames of a shared clip, or of one of clips.py's recipes (cached)."""
    if source in SOURCES:
        return clip(source, frames)
    out = tmp / f"{source}.y4m"
    path = shared_dir() / "clips" / source
    if not path.exists():
        raise SystemExit(f"bench: {path} is missing (set EXCAMERA_SHARED)")
    write_y4m(out, read_y4m(path)[1][:frames])
    return out


def cpu_of(fn: Callable[[], object]) -> float:
    """CPU seconds of ``fn`` in this process (its threads included) and its children."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.process_time()
    fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.process_time() - t0 + after.ru_utime - kids.ru_utime
            + after.ru_stime - kids.ru_stime)


def median_cpu(runs: int, fn: Callable[[], object]) -> float:
    return statistics.median(cpu_of(fn) for _ in range(runs))


def xc_dump(frames: list[bytes]) -> State:
    """xc-dump's work: decode a chunk's stream, serialise the final state (it writes it)."""
    dec = Decoder()
    for f in frames:
        dec.decode(f)
    dec.state.to_bytes()
    return dec.state


def measure_clip(source: str, runs: int, tmp: Path, cq: int) -> dict:
    """Per-task CPU seconds and sizes for one chunk, on chunks 0..2 of ``source``."""
    y4m = clip_y4m(source, 3 * CHUNK, tmp)
    pics = read_y4m(y4m)[1]
    if len(pics) < 3 * CHUNK:
        raise SystemExit(f"bench: {source} has {len(pics)} frames, {3 * CHUNK} needed")
    chunks = [pics[i * CHUNK:(i + 1) * CHUNK] for i in range(3)]
    streams, p0_states, pass0 = [], [], []
    for k, c in enumerate(chunks):
        write_y4m(tmp / f"c{k}.y4m", c)
        cmd = [need_tool("vpxenc"), *VPXENC_SETTINGS, f"--cq-level={cq}", "-o",
               str(tmp / f"c{k}.ivf"), str(tmp / f"c{k}.y4m")]
        pass0 += [cpu_of(lambda cmd=cmd: run(cmd, stdin=subprocess.DEVNULL))
                  for _ in range(runs)]
        streams.append([f.data for f in read_ivf(tmp / f"c{k}.ivf")[1]])

        p0_states.append(xc_dump(streams[-1]))
    final1 = reencode_chunk(p0_states[0], streams[1], None, chunks[1], PASS1_FINAL).state
    p1 = reencode_chunk(p0_states[1], streams[2], None, chunks[2], PASS1)
    # Chunk 1's pass-1 state is its final one (the second chunk of a batch).
    rd = reencode_chunk(final1, p1.frames, p0_states[1], chunks[2], REDECIDE)
    p3 = reencode_chunk(final1, rd.frames, final1, chunks[2], PASS3)
    raw = p3.state.to_bytes()
    codec = XcencParams("model", 2).handoff_codec  # the pipeline's default
    packed = handoff.pack(raw, 2, codec)  # as pipelines.xcenc.ops packs a hand-off
    w, h = pics[0].width, pics[0].height
    bound = handoff.max_state_bytes(w, h)
    return {
        "clip": source, "width": w, "height": h, "pixels": w * h,
        "pass0": statistics.median(pass0),
        "xcdump": median_cpu(runs, lambda: xc_dump(streams[2])),
        "pass1_final": median_cpu(runs, lambda: reencode_chunk(
            p0_states[0], streams[1], None, chunks[1], PASS1_FINAL)),
        "pass1": median_cpu(runs, lambda: reencode_chunk(p0_states[1], streams[2], None,
                                                         chunks[2], PASS1)),
        "redecide": median_cpu(runs, lambda: reencode_chunk(final1, p1.frames, p0_states[1],
                                                            chunks[2], REDECIDE)),
        "pass3": median_cpu(runs, lambda: reencode_chunk(final1, rd.frames, final1, chunks[2],
                                                         PASS3)),
        "pack": median_cpu(runs, lambda: handoff.pack(raw, 2, codec)),
        "unpack": median_cpu(runs, lambda: State.from_bytes(
            bytes(handoff.unpack(packed, bound)[1]))),
        "handoff_codec": codec,
        "chunk_bytes": sum(len(p.to_bytes()) for p in chunks[2]),
        "output_bytes": sum(len(f) for f in p3.frames),
        "state_bytes": len(raw), "packed_state_bytes": len(packed),
    }


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``."""
    n, mx, my = len(xs), statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if n > 1 else 0.0
    return my - b * mx, b


def scale(rows: list[dict], pixels: int) -> dict:
    """Each cost and size at ``pixels``, from the affine fit over every clip; and the check:
    the fit without the largest clip, read at its size, against its measurement."""
    out: dict = {"at_pixels": pixels, "per_task": {}}
    big = max(rows, key=lambda r: r["pixels"])
    rest = [r for r in rows if r is not big]
    for key in CPU_TASKS + SIZES:
        a, b = fit([r["pixels"] for r in rows], [r[key] for r in rows])
        ra, rb = fit([r["pixels"] for r in rest], [r[key] for r in rest])
        predicted = ra + rb * big["pixels"]
        out["per_task"][key] = {
            "fixed": a, "per_megapixel": b * 1e6, "at_film": max(0.0, a + b * pixels),
            "per_megapixel_by_clip": {r["clip"]: r[key] / r["pixels"] * 1e6 for r in rows},
            "check": {"clip": big["clip"], "measured": big[key],
                      "predicted_from_the_others": predicted,
                      "error_percent": 100 * (predicted / big[key] - 1)},
        }
    return out


def bench_json(name: str) -> dict:
    path = REPO / "bench" / name
    if not path.exists():
        raise SystemExit(f"bench: {path} is missing (make bench writes it)")
    return json.loads(path.read_text())


# The critical path's causes, grouped into the terms the makespan is made of.
TERMS = {"serial hand-off chain": ["pass3", "pass1_final", "pack", "relay", "unpack",
                                   "latency"],
         "relay queue": ["queue:relay"],
         "launch": ["launch: burst scaling", "launch: invoke rate",
                    "launch: waiting for a free worker", "cold start", "warm start"],
         "per-chunk work": ["retrieve", "pass0", "xcdump", "pass1", "redecide", "upload"]}


def simulate(chunks: int, workers: int, costs: ChunkCosts, launch: dict, relays: int) -> dict:
    sim = Simulation(LaunchModel(concurrency=workers, **launch))
    excamera_graph(sim, chunks, BATCH, costs, relays=relays)
    t0 = time.perf_counter()
    makespan = sim.run()
    path = dict(sorted(sim.critical_path().items(), key=lambda kv: -kv[1]))
    terms = {name: sum(path.get(k, 0.0) for k in keys) for name, keys in TERMS.items()}
    other = set(path) - {k for keys in TERMS.values() for k in keys}
    if other:
        raise SystemExit(f"bench: critical path causes without a term: {sorted(other)}")
    return {"workers": workers, "workers_used": min(workers, chunks),
            "makespan_s": makespan, "makespan_min": makespan / 60,
            "critical_path_s": path, "terms_s": terms,
            "dominant_term": max(terms, key=terms.get), "largest_cause": next(iter(path)),
            "last_launch_s": max(w.invoked_at for w in sim.workers),
            "state_messages": sum(t.kind == "relay" for t in sim.tasks),
            "cold_starts": sum(not w.warm for w in sim.workers),
            "simulated_in_s": round(time.perf_counter() - t0, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timings per task (median)")
    ap.add_argument("--workers", default="1000,3552,10000")
    ap.add_argument("--cq-level", type=int, default=30, help="pass 0's --cq-level")
    ap.add_argument("--lambda-speed", type=float, default=1.0,
                    help="a Lambda vCPU's speed relative to one core of this machine")
    ap.add_argument("--functions", type=int, default=1, help="functions the workers span")
    ap.add_argument("--relays", type=int, default=1)
    ap.add_argument("--cold-start", type=float, default=PAPER["connect_s"],
                    help="invoke to hello, new environment (s)")
    ap.add_argument("--warm-start", type=float, default=0.1,
                    help="invoke to hello, reused environment (s)")
    ap.add_argument("--net-latency-ms", type=float, default=0.5, help="one way, worker-relay")
    ap.add_argument("--storage-mbps", type=float, default=50.0, help="MB/s per worker")
    ap.add_argument("--storage-latency-ms", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.runs < 1 or args.lambda_speed <= 0 or args.functions < 1 or args.relays < 1:
        raise SystemExit("bench: --runs, --functions and --relays need >= 1, "
                         "--lambda-speed > 0")
    try:
        counts = [int(x) for x in args.workers.split(",")]
    except ValueError:
        raise SystemExit(f"bench: --workers {args.workers!r}: expected integers") from None
    if min(counts) < 1:
        raise SystemExit("bench: --workers: every count must be >= 1")

    relay = bench_json("relay-results.json")
    launch_res = bench_json("launch-results.json")
    load_before = load_avg()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, source in CLIPS:
            t0 = time.perf_counter()
            rows.append({"name": name, **measure_clip(source, args.runs, Path(d), args.cq_level)})
            print(f"measured {name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    load_after = load_avg()

    px = FILM["width"] * FILM["height"]
    scaled = scale(rows, px)
    at = {k: v["at_film"] for k, v in scaled["per_task"].items()}
    relay_bps = relay["forward_mb_per_second"] * 1e6
    inv_row = max(launch_res["rows"], key=lambda r: r["workers"])
    invoke_rate = inv_row["workers"] / inv_row["coordinator_cpu_s"]
    storage = args.storage_mbps * 1e6
    st_lat = args.storage_latency_ms / 1e3

    def costs(speed: float) -> ChunkCosts:
        return ChunkCosts(
            retrieve=st_lat + at["chunk_bytes"] / storage, pass0=at["pass0"] / speed,
            xcdump=at["xcdump"] / speed, pass1_final=at["pass1_final"] / speed,
            pass1=at["pass1"] / speed, redecide=at["redecide"] / speed,
            pass3=at["pass3"] / speed,
            pack=at["pack"] / speed, unpack=at["unpack"] / speed,
            relay=at["packed_state_bytes"] / relay_bps,
            upload=st_lat + at["output_bytes"] / storage,
            net_latency=args.net_latency_ms / 1e3 + relay["latency_idle_p50_ms"] / 2e3)

    launch = {"cold_start": args.cold_start, "warm_start": args.warm_start,
              "functions": args.functions, "burst": BURST, "refill_per_s": REFILL_PER_S,
              "invoke_rate": invoke_rate}
    chunks = FILM["frames"] // CHUNK
    calibrated = at["pass0"] / PAPER["pass0_s"]
    # The relay is the one shared resource: forwarding ~3 states per chunk, at the measured
    # throughput, one relay queues for most of the run. The other scenarios lift that limit
    # step by step to show what dominates next.
    unbounded = chunks
    scenarios = [
        ("1 relay (as measured)", args.lambda_speed, launch, args.relays),
        ("16 relays", args.lambda_speed, launch, 16),
        ("relay unbounded", args.lambda_speed, launch, unbounded),
        ("relay unbounded, 4 functions", args.lambda_speed, {**launch, "functions": 4},
         unbounded),
        ("relay unbounded, paper-calibrated speed", calibrated, launch, unbounded),
    ]
    results = []
    for label, speed, lm, relays in scenarios:
        c = costs(speed)
        for n in counts:
            r = simulate(chunks, n, c, lm, relays)
            results.append({"scenario": label, "lambda_speed": speed, "functions":
                            lm["functions"], "relays": "unbounded" if relays == unbounded
                            else relays, **r})
    c1 = costs(1.0)
    messages = results[0]["state_messages"]
    out = {
        "settings": settings(args),
        "film": {**FILM, "chunk": CHUNK, "batch": BATCH, "chunks": chunks,
                 "batches": -(-chunks // BATCH), "pixels": px},
        "paper": PAPER,
        "load_avg_before": load_before, "load_avg_after": load_after,
        "measured": rows,
        "scaling": {"rule": "cost = fixed + per_megapixel * megapixels, least squares over "
                    "the clips; CPU seconds on this machine", **scaled},
        "inputs": {
            "task_seconds_at_speed_1": {k: getattr(c1, k) for k in
                                        ChunkCosts.__dataclass_fields__},
            "relay_forward_mb_per_s": relay["forward_mb_per_second"],
            "relay_idle_latency_ms": relay["latency_idle_p50_ms"],
            "coordinator_invokes_per_s": invoke_rate, "invoke_rate_emulated": True,
            "burst_per_function": BURST, "refill_per_s": REFILL_PER_S,
            "paper_calibrated_lambda_speed": calibrated,
            # One hop of the serial chain at speed 1: pack, forward, unpack, rebase.
            "hop_s": c1.pack + c1.relay + 2 * c1.net_latency + c1.unpack + c1.pass3,
            "state_messages": messages,
            "relay_gb_total": messages * at["packed_state_bytes"] / 1e9,
        },
        "predictions": results,
    }
    print(f"load average {load_before} before, {load_after} after measuring")
    print(f"{'clip':20} {'pixels':>8} " + " ".join(f"{k:>8}" for k in CPU_TASKS)
          + "   (CPU s per 6-frame chunk)")
    for r in rows:
        print(f"{r['name']:20} {r['pixels']:>8} " + " ".join(f"{r[k]:8.3f}" for k in CPU_TASKS))
    print(f"{'-> ' + FILM['name']:20} {px:>8} " + " ".join(f"{at[k]:8.2f}" for k in CPU_TASKS))
    for k in CPU_TASKS:
        chk = scaled["per_task"][k]["check"]
        print(f"  scaling check {k:7}: {chk['clip']} predicted from the others "
              f"{chk['predicted_from_the_others']:.3f} s, measured {chk['measured']:.3f} s "
              f"({chk['error_percent']:+.0f}%)")
    print(f"packed state at 4K {at['packed_state_bytes'] / 1e6:.1f} MB, {messages} hand-offs, "
          f"{out['inputs']['relay_gb_total']:.0f} GB through the relays at "
          f"{relay['forward_mb_per_second']:.1f} MB/s each; one hop "
          f"{out['inputs']['hop_s']:.2f} s at speed 1; paper-calibrated Lambda speed "
          f"{calibrated:.2f}x this machine")
    print(f"\n{'scenario':40} {'workers':>7} {'makespan':>9}  " + " ".join(
        f"{t:>21}" for t in TERMS) + "  (critical path, s)")
    for r in results:
        print(f"{r['scenario']:40} {r['workers']:>7} {r['makespan_min']:5.2f} min  " + " ".join(
            f"{r['terms_s'][t]:21.1f}" for t in TERMS) + f"  -> {r['dominant_term']}")
    print(f"paper: {PAPER['makespan_min']} min with {PAPER['workers']} workers; workers beyond "
          f"{chunks} (one per chunk) have nothing to do")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
