"""One machine against its ideal schedule: ``excamera encode --workers 2`` at q 30 against vpxenc.

Issue 12's bench. On each clip (``clips.py``'s recipes; by default ``bbb272:120``, 640x272 and
120 frames, and ``bbb720:132``, 1280x720 and 132 frames):

- **Wall time, alternating.** ``--runs`` rounds, each running every command once, the order
  rotated from round to round so that no command always follows the same neighbour:
  ``excamera encode CLIP -o OUT.ivf --workers 2 --quality 30`` as a user runs it (worker hosts,
  one per core), the same with ``--worker-processes 0`` (a process per worker, as before
  worker hosts were the default), and one serial vpxenc with mu's pass-0 settings
  (``xcenc.plan.VPXENC_SETTINGS``, ``--cq-level=30``) at ``--threads=1`` and ``--threads=2``.
  Medians, with each command's CPU time (its reaped children's rusage) and the load average
  before and after. Every excamera run's output must be the same bytes.
- **CPU-seconds per frame by phase**, from one more encode run in this process through the
  encode's own stages (``pipelines.encode.run``), whose workers report each step's CPU time
  (the thread that ran the tool or the measure: ``xcenc/ops.py``); pass 0 is vpxenc, a child
  of the worker, so its CPU time is measured here by running the same command on every chunk.
  "hosts, other" is the worker hosts' CPU time beyond those steps (the runtime, TLS, the
  relay link, packing and unpacking states); split and finish are the encode's serial parts
  in this process (reading and splitting the input; fetching, stitching, writing, adding up
  the workers' quality). The hand-offs are replayed here with the job's own functions on a
  real state of the clip, the way the run's workers sent them (``sent_via``: through the
  local backend's shared directory, or the relay), and taken out of the hosts' other CPU.
- **The ideal 2-core schedule of the measured tasks**: every step of that run (pass 0,
  xc-dump, the rebases, comp-states, the measure) with its measured CPU time, each worker's
  steps in their order, each rebase after the predecessor's step that produced the state it
  needs (``XcencParams.worker_plan``: which tag each pass needs and sends), list-scheduled on
  2 cores by critical path (the longest remaining path first), plus the split and finish
  before and after it. Also the lower bound max(total / 2, critical path). The figure with
  overheads adds the hosts' other CPU, spread over both cores.
- **Hop overhead**: for each chunk rebased onto its predecessor's final state (pass 2 of
  chunks 2..15 of a batch: the serial chain), the hop's wall time (from the predecessor's
  final rebase ending to this one's ending: packing, the relay, unpacking, waiting for a slot
  and the rebase) minus the rebase's CPU time.

- Bytecode: the bench removes ``PYTHONDONTWRITEBYTECODE`` from its children's environment
  and runs each command once untimed first, so that every process starts as a user's does,
  from the bytecode cache, not by compiling excamera's sources.
- **Start-up**, first: ``excamera --help``, a trivial ``excamera decode``, ``xc-enc --help``
  and the bare interpreter, alternating, ``--startup-rounds`` times (issue 12's bar: 80 ms).

The ratios are held against issue 12's bars: excamera at most 2.6x vpxenc ``--threads=1``, and
within 1.25x of the ideal schedule.

    python bench/pipeline_speed.py [--clips bbb272:120,bbb720:132] [--runs 3]
                                   [--startup-rounds 21] [--json bench/pipeline-speed-results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import need_tool, settings, shared_dir
from clips import clip as make_clip
from excamera.pipelines.encode import run as stages
from excamera.pipelines.encode.settings import EncodeSettings
from excamera.pipelines.xcenc.plan import (
    MAX_REDECIDE_LEVELS,
    REDECIDE_LEVELS,
    VPXENC_SETTINGS,
    XcencParams,
)

QUALITY = 30
WORKERS = 2
CORES = 2
# Issue 12's bars.
BAR_VPXENC = 2.6
BAR_IDEAL = 1.25


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the command and every descendant it waited for) of ``cmd``."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: "
                         f"{done.stderr.decode(errors='replace').strip()[-400:]}")
    return wall, cpu


def vpxenc_cmd(vpxenc: str, threads: int, src: Path, out: Path) -> list[str]:
    flags = [f for f in VPXENC_SETTINGS if not f.startswith("--threads=")]
    return [vpxenc, *flags, f"--threads={threads}", f"--cq-level={QUALITY}", "-o", str(out),
            str(src)]


def excamera_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "excamera", "encode", str(src), "-o", str(out),
            "--workers", str(WORKERS), "--quality", str(QUALITY), *extra]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def alternate(commands: dict[str, list[str]], runs: int, outputs: dict[str, Path]) -> dict:
    """Every command once per round, the order rotated each round; per command its walls,
    CPU times and medians, and the sha256 of each excamera output."""
    names = list(commands)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    digests: dict[str, set[str]] = {n: set() for n in names}
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            wall, cpu = timed(commands[name])
            walls[name].append(round(wall, 3))
            cpus[name].append(round(cpu, 3))
            digests[name].add(sha256(outputs[name]))
            print(f"  round {r + 1}: {name:20s} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    return {n: {"wall_s": walls[n], "cpu_s": cpus[n], "median_wall_s": statistics.median(walls[n]),
                "median_cpu_s": statistics.median(cpus[n]), "sha256": sorted(digests[n])}
            for n in names}


# --- one instrumented encode -----------------------------------------------------------------


def instrumented(src: Path, work: Path, redecide_levels: int = REDECIDE_LEVELS) -> dict:
    """One encode through the pipeline's own stages; each worker's steps with their CPU time,
    the state times, the hosts' CPU and the serial parts' wall time."""
    out = work / "instrumented.ivf"
    s = EncodeSettings(source=src, output=out, quality=QUALITY, workers=WORKERS,
                       redecide_levels=redecide_levels)
    bucket, local = work / "bucket", work / "local"
    bucket.mkdir()
    local.mkdir()
    t0 = time.perf_counter()
    backend = stages.build_backend(s)
    info = stages.read_input(src)
    chunks = stages.split(src, info, s.chunk, str(bucket), local)
    params = stages.plan(s, chunks)
    t_split = time.perf_counter()
    job = stages.run_encode_job(params, backend, chunks, s)
    t_job = time.perf_counter()
    stitched = stages.fetch_and_stitch(params, chunks, local)
    stages.write_container(stitched, info, out, webm=False)
    meter = stages.workers_quality(job, stitched)
    t_end = time.perf_counter()
    steps = {k: job.workers[k].output["runs"] for k in sorted(job.workers)}
    timings = {k: job.workers[k].timings for k in sorted(job.workers)}
    pass0 = []
    vpxenc = need_tool("vpxenc")
    for k in range(chunks.count):  # vpxenc's CPU per chunk: the worker's own command
        y4m = local / "chunks" / f"{k:08d}.y4m"
        if not y4m.exists():
            raise SystemExit(f"bench: no chunk file {y4m}")
        pass0.append(timed(vpxenc_cmd(vpxenc, 1, y4m, work / "p0.ivf"))[1])
    states_sent = sum(len(job.workers[k].output["sent"]) for k in job.workers)
    vias = {v for k in job.workers for v in job.workers[k].output["sent_via"].values()}
    if len(vias) > 1:
        raise SystemExit(f"bench: the job's hand-offs went several ways: {sorted(vias)}")
    via = vias.pop() if vias else "relay"
    return {"params": params, "steps": steps, "timings": timings, "pass0_cpu": pass0,
            "states_sent": states_sent, "handoff_via": via,
            "handoff_cpu_per_state": handoff_cpu(local, params, via),
            "hosts_cpu_s": job.cost.worker_cpu_s, "frames": meter.frames,
            "split_s": t_split - t0, "job_s": t_job - t_split, "finish_s": t_end - t_job,
            "ssim": meter.ssim, "psnr_y": meter.psnr_y, "sha256": sha256(out)}


def handoff_cpu(local: Path, params: XcencParams, via: str) -> float:
    """CPU-seconds of one hand-off as ``xcenc/ops.py`` makes it, replayed here with the job's
    own functions on the state at the end of the first chunk's output: the sender reads
    final.state, hashes it and packs it by ``params.handoff_codec`` (``via`` "file": writes it
    to a shared directory and sends only the envelope, as the local backend's workers did in
    the run), the receiver (reads and removes the shared file,) checks the hash and writes
    in_<tag>.state. The relay's share (TLS, the relay) is in the hosts' and the coordinator's
    own CPU; the rebase loads the state itself, in its own CPU time."""
    import tempfile

    from excamera.mu.operations import OpContext
    from excamera.pipelines.xcenc.handoff import max_state_bytes
    from excamera.pipelines.xcenc.ops import _packed, _store_state
    from excamera.xc.codec import Decoder
    from excamera.xc.ivf import IvfReader

    dec = Decoder()
    with IvfReader(local / "out" / f"{0:08d}.ivf") as r:
        for f in r:
            dec.decode(f.data)
    raw = dec.state.to_bytes()
    bound = max_state_bytes(dec.state.width, dec.state.height)
    runs = []
    with tempfile.TemporaryDirectory(prefix="handoff-replay-") as d:
        shared = Path(d) / "local"
        shared.mkdir()
        ctx = OpContext(Path(d), local_dir=shared if via == "file" else None)
        (ctx.workdir / "final.state").write_bytes(raw)
        for _ in range(5):
            t0 = time.process_time()
            msg = _packed(ctx, "final.state", 2, params.handoff_codec,
                          1 if via == "file" else None)[0]
            _store_state(ctx, msg, bound, ".", 1)
            runs.append(time.process_time() - t0)
    return statistics.median(runs)


def step_cost(step: dict, k: int, pass0_cpu: list[float]) -> float:
    return pass0_cpu[k] if step["step"] == "pass0" else float(step["cpu_s"])


def phase_table(run: dict) -> dict[str, float]:
    """CPU-seconds by phase over the whole clip."""
    phases: dict[str, float] = {}
    for k, steps in run["steps"].items():
        for st in steps:
            name = st["step"] if st["step"] != "rekey_p1" else "reencode_p1"
            phases[name] = phases.get(name, 0.0) + step_cost(st, k, run["pass0_cpu"])
    worker_steps = sum(phases.values())
    handoffs = run["states_sent"] * run["handoff_cpu_per_state"]
    phases[f"hand-offs via {run.get('handoff_via', 'relay')} (replayed)"] = handoffs
    phases["hosts, other"] = max(0.0, run["hosts_cpu_s"] - worker_steps - handoffs)
    phases["split (serial)"] = run["split_s"]
    phases["finish (serial)"] = run["finish_s"]
    return phases


# --- the ideal schedule ----------------------------------------------------------------------


def task_graph(run: dict) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Every measured step as a task: cost, and what it waits for (the worker's previous step;
    for a rebase, the predecessor's step that produced each state it needs)."""
    p: XcencParams = run["params"]
    cost: dict[str, float] = {}
    deps: dict[str, list[str]] = {}
    producer: dict[tuple[int, int], str] = {}  # (worker, tag) -> task
    for k, steps in run["steps"].items():
        plan = p.worker_plan(k)
        prev: str | None = None
        for i, st in enumerate(steps):
            name = f"{k}:{i}:{st['step']}"
            cost[name] = step_cost(st, k, run["pass0_cpu"])
            deps[name] = [prev] if prev else []
            n = st["pass"]
            need = plan.needs.get(n) if st["step"].startswith("reencode_p") else None
            if need is not None:
                deps[name] += [producer[(k - 1, t)] for t in (need.inp, need.prev)
                               if t is not None]
            # the state a pass hands on is ready after its last step (xc-dump for pass 0)
            if n in plan.out_tags and st["step"] not in ("pass0", "compare", "measure"):
                producer[(k, plan.out_tags[n])] = name
            prev = name
    return cost, deps


def schedule(cost: dict[str, float], deps: dict[str, list[str]], cores: int) -> dict:
    """List scheduling on ``cores``: whenever a core is free it takes the ready task with the
    longest path to the end (critical path first). The makespan, and the lower bound."""
    succ: dict[str, list[str]] = {t: [] for t in cost}
    for t, ds in deps.items():
        for d in ds:
            succ[d].append(t)
    level: dict[str, float] = {}
    for t in reversed(topo_order(cost, deps)):
        level[t] = cost[t] + max((level[s] for s in succ[t]), default=0.0)
    waiting = {t: len(ds) for t, ds in deps.items()}
    ready = [(-level[t], t) for t in cost if waiting[t] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (end, task)
    now = 0.0
    while ready or running:
        while ready and len(running) < cores:
            _, t = heapq.heappop(ready)
            heapq.heappush(running, (now + cost[t], t))
        now, t = heapq.heappop(running)
        for s in succ[t]:
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (-level[s], s))
    if any(waiting.values()):
        raise SystemExit("bench: the task graph has a cycle")
    total = sum(cost.values())
    critical = max(level.values())
    return {"makespan_s": now, "lower_bound_s": max(total / cores, critical),
            "critical_path_s": critical, "task_cpu_s": total, "tasks": len(cost)}


def topo_order(cost: dict[str, float], deps: dict[str, list[str]]) -> list[str]:
    seen: set[str] = set()
    order: list[str] = []

    def visit(t: str) -> None:
        if t in seen:
            return
        seen.add(t)
        for d in deps[t]:
            visit(d)
        order.append(t)

    for t in cost:
        visit(t)
    return order


def hops(run: dict) -> list[dict]:
    """Each serial-chain hop: a final rebase onto the predecessor's final state."""
    p: XcencParams = run["params"]
    out = []

    def final_end(k: int) -> float | None:
        last = p.worker_plan(k).passes - 1
        t = run["timings"][k]
        return t.get(f"send_p{last}", t.get("compare"))

    for k, steps in run["steps"].items():
        plan = p.worker_plan(k)
        last = plan.passes - 1
        need = plan.needs.get(last)
        if k == 0 or need is None or need.prev is None:
            continue  # not a pass 2: nothing serial before it in its batch
        rebase = next(st for st in steps if st["step"] == f"reencode_p{last}")
        start, end = final_end(k - 1), final_end(k)
        if start is None or end is None:
            continue
        out.append({"worker": k, "hop_wall_s": end - start, "rebase_cpu_s": rebase["cpu_s"],
                    "overhead_s": end - start - rebase["cpu_s"]})
    return out


# --- per clip ----------------------------------------------------------------------------------


def bench_clip(spec: str, runs: int, tmp: Path,
               redecide_levels: int = REDECIDE_LEVELS) -> dict:
    name, _, frames = spec.partition(":")
    src = make_clip(name, int(frames))
    vpxenc = need_tool("vpxenc")
    outs = {"excamera": tmp / "ex-hosts.ivf", "excamera_processes": tmp / "ex-procs.ivf",
            "vpxenc_threads1": tmp / "vpx1.ivf", "vpxenc_threads2": tmp / "vpx2.ivf"}
    extra = ["--redecide-levels", str(redecide_levels)]
    commands = {
        "excamera": excamera_cmd(src, outs["excamera"], *extra),
        "excamera_processes": excamera_cmd(src, outs["excamera_processes"], *extra,
                                           "--worker-processes", "0"),
        "vpxenc_threads1": vpxenc_cmd(vpxenc, 1, src, outs["vpxenc_threads1"]),
        "vpxenc_threads2": vpxenc_cmd(vpxenc, 2, src, outs["vpxenc_threads2"]),
    }
    print(f"{spec}: {src}", flush=True)
    timed(excamera_cmd(src, tmp / "warm-up.ivf", "--passes", "1"))  # untimed: bytecode, caches
    load_before = load_avg()
    timing = alternate(commands, runs, outs)
    load_after = load_avg()
    ex = {*timing["excamera"]["sha256"], *timing["excamera_processes"]["sha256"]}
    if len(ex) != 1:
        raise SystemExit(f"bench: {spec}: excamera's outputs differ between runs: {sorted(ex)}")
    work = tmp / f"inst-{name}"
    work.mkdir()
    run = instrumented(src, work, redecide_levels)
    if run["sha256"] not in ex:
        raise SystemExit(f"bench: {spec}: the instrumented encode's output differs")
    shutil.rmtree(work, ignore_errors=True)
    n = run["frames"]
    phases = phase_table(run)
    cost, deps = task_graph(run)
    sched = schedule(cost, deps, CORES)
    serial = run["split_s"] + run["finish_s"]
    other = phases["hosts, other"]
    ideal = serial + sched["makespan_s"]
    ideal_with_overheads = ideal + other / CORES
    hop = hops(run)
    wall = {k: v["median_wall_s"] for k, v in timing.items()}
    res = {
        "clip": spec, "path_name": src.name, "frames": n, "quality": QUALITY,
        "workers": WORKERS, "load_before": load_before, "load_after": load_after,
        "timing": timing,
        "cpu_s_per_frame_by_phase": {k: v / n for k, v in phases.items()},
        "cpu_s_by_phase": phases,
        "ideal_schedule": {**sched, "serial_s": serial, "ideal_s": ideal,
                           "hosts_other_cpu_s": other,
                           "ideal_with_overheads_s": ideal_with_overheads},
        "hops": hop,
        "hop_overhead_median_s": statistics.median(h["overhead_s"] for h in hop) if hop else None,
        "hop_wall_median_s": statistics.median(h["hop_wall_s"] for h in hop) if hop else None,
        "ratios": {
            "excamera_vs_vpxenc_threads1": wall["excamera"] / wall["vpxenc_threads1"],
            "excamera_vs_vpxenc_threads2": wall["excamera"] / wall["vpxenc_threads2"],
            "processes_vs_vpxenc_threads1": wall["excamera_processes"]
            / wall["vpxenc_threads1"],
            "excamera_vs_ideal": wall["excamera"] / ideal,
            "excamera_vs_ideal_with_overheads": wall["excamera"] / ideal_with_overheads,
            # CPU time is less disturbed by other load than wall time is
            "excamera_cpu_vs_vpxenc_threads1_cpu": timing["excamera"]["median_cpu_s"]
            / timing["vpxenc_threads1"]["median_cpu_s"],
            "ideal_vs_vpxenc_threads1": ideal / wall["vpxenc_threads1"],
        },
        "bars": {"vpxenc_threads1": BAR_VPXENC, "ideal": BAR_IDEAL},
        "quality_q30": {"ssim": run["ssim"], "psnr_y": run["psnr_y"],
                        "bytes": outs["excamera"].stat().st_size,
                        "vpxenc_threads1_bytes": outs["vpxenc_threads1"].stat().st_size},
        "output_sha256": sorted(ex)[0],
    }
    r = res["ratios"]
    print(f"{spec}: excamera {wall['excamera']:.2f} s (processes {wall['excamera_processes']:.2f}"
          f" s), vpxenc t1 {wall['vpxenc_threads1']:.2f} s, t2 {wall['vpxenc_threads2']:.2f} s;"
          f" ratio {r['excamera_vs_vpxenc_threads1']:.2f}x (bar {BAR_VPXENC}x); ideal "
          f"{ideal:.2f} s ({r['excamera_vs_ideal']:.2f}x, bar {BAR_IDEAL}x); hop overhead "
          f"median {res['hop_overhead_median_s']}", flush=True)
    for k, v in phases.items():
        print(f"    {k:20s} {v:7.2f} CPU-s  {v / n * 1000:7.1f} ms/frame")
    return res


def console_script(name: str) -> list[str]:
    """How a user runs ``name``: the console script beside this interpreter."""
    script = Path(sys.executable).with_name(name)
    if not script.exists():
        raise SystemExit(f"bench: no {script} (make setup installs it)")
    return [str(script)]


def startup(rounds: int) -> dict:
    """Start-up of the quick commands, alternating: ``excamera --help``, a trivial decode
    (a 176x144 test vector of 29 frames to /dev/null), ``xc-enc --help``, and the bare
    interpreter as the floor; wall medians, issue 12's bar 80 ms."""
    vectors = Path(os.environ.get("XC_TEST_VECTORS") or shared_dir() / "vp8-test-vectors")
    vector = vectors / "vp80-00-comprehensive-001.ivf"
    if not vector.exists():
        raise SystemExit(f"bench: {vector} is missing (set XC_TEST_VECTORS)")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "excamera --help": [*console_script("excamera"), "--help"],
        "excamera decode": [*console_script("excamera"), "decode", str(vector), "-o",
                            os.devnull],
        "xc-enc --help": [*console_script("xc-enc"), "--help"],
    }
    walls: dict[str, list[float]] = {n: [] for n in commands}
    cpus: dict[str, list[float]] = {n: [] for n in commands}
    names = list(commands)
    for cmd in commands.values():  # untimed: each writes the bytecode it imports
        timed(cmd)
    load_before = load_avg()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = timed(commands[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {"rounds": rounds, "load_before": load_before, "load_after": load_avg(),
            "median_wall_ms": {n: 1000 * statistics.median(w) for n, w in walls.items()},
            "min_wall_ms": {n: 1000 * min(w) for n, w in walls.items()},
            "median_cpu_ms": {n: 1000 * statistics.median(c) for n, c in cpus.items()},
            "bar_ms": 80}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="bbb272:120,bbb720:132",
                    help="clips.py recipes NAME:FRAMES, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="alternating rounds (3)")
    ap.add_argument("--startup-rounds", type=int, default=21,
                    help="alternating rounds of the start-up commands (21)")
    ap.add_argument("--redecide-levels", type=int, default=REDECIDE_LEVELS,
                    choices=range(1, MAX_REDECIDE_LEVELS + 1),
                    help="excamera encode --redecide-levels (%(default)s)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.runs < 1:
        raise SystemExit("bench: --runs is at least 1")
    # A user's interpreter keeps the bytecode it compiles; with this variable set (as some
    # sessions set it) every start-up and every worker would compile excamera from source.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    start = startup(args.startup_rounds)
    print("start-up, median wall (CPU) ms: " + ", ".join(
        f"{n} {v:.0f} ({start['median_cpu_ms'][n]:.0f})"
        for n, v in start["median_wall_ms"].items()), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipeline-speed-") as tmp:
        for spec in args.clips.split(","):
            d = Path(tmp) / spec.replace(":", "_")
            d.mkdir()
            rows.append(bench_clip(spec, args.runs, d, args.redecide_levels))
    result = {"settings": settings(args), "startup": start, "clips": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
