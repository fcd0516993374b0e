"""The rebase's speed against vpxenc's pass 0 on the same chunks, on small and large clips.

Batch mode's chain (``excamera encode``, the ``excamera`` chain) re-encodes every chunk twice
after pass 0: pass 1 (chunk k onto chunk k-1's pass-0 state, its key frame converted into an
inter frame, every chunk at once) and pass 2, the serial step (pass 1's output rebased, every
frame keeping its decisions, onto chunk k-1's final state: the hop the chain waits on, chunk
after chunk). Both run here as the pipeline runs them: ``reencode_chunk`` in process with the
flags ``-w 0.75`` and those of the plan ``excamera encode`` makes by default (``-q good-refs
--last-keeps-refs --choose-refs --key-at-cuts --activity-rd --content-weight --floored-key
--golden-to-altref``, parsed by xc-enc's own parser; the serial step with a four-pass chunk's
pass-3 flags, which keep each macroblock's reference, but with pass 1's output as its input:
the parallel re-decide pass, whose output the chain rebases, is not run here), on
``--chunk``-frame chunks whose pass 0 is vpxenc with mu's
settings and the plan's floored key frames (``xcenc.plan.vpxenc_pass0_settings``,
``--cq-level=20``).

Timing alternates, chunk by chunk: vpxenc's pass 0 of chunk k (a process: start-up and Y4M
reading included, as in the pipeline), then pass 2 of chunk k, then pass 1 of chunk k, over
chunks 2.. (chunk 1 rebases once), ``--runs`` times. Each pass is timed in wall-clock seconds
and in CPU seconds (the rebase's thread; vpxenc's process, from ``wait4``); on a loaded
machine the CPU ratio is the steadier one. A run's ratio is a pass's total over vpxenc's
total on the same chunks (the same as per frame); the median and the spread (lowest and
highest) over runs are reported, with the load average before and after.
``pass2_output_md5`` is the MD5 of pass 2's frames and final states on the timed chunks (each
chunk's frames, then its serialized state, first run), for checking that a speed change left
the output alone.

Clips: the shared carphone (QCIF, 120 frames) and bus (CIF, 17 frames), and ``bench/clips.py``'s
``bbb272`` (640x272) and ``mosaic720`` (1280x720) at the frame counts given.

    python bench/rebase.py [--clips carphone bus bbb272:120 mosaic720:72] [--runs 5]
                           [--chunk 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import need_tool, settings, shared_dir
from clips import clip as make_clip
from excamera.pipelines.encode.run import Chunks
from excamera.pipelines.encode.run import plan as encode_plan
from excamera.pipelines.encode.settings import EncodeSettings
from excamera.pipelines.xcenc.plan import vpxenc_pass0_settings
from excamera.xc.codec import Decoder
from excamera.xc.enc import build_parser, reencode_options
from excamera.xc.encoder import reencode_chunk
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import read_y4m, write_y4m

SHARED = {"carphone": "carphone_qcif_120f.y4m", "bus": "bus_cif_17f.y4m"}
CQ = 20
# The plan `excamera encode` makes with its defaults: the excamera chain's re-encode flags and
# pass 0's settings (key frames floored), taken from it so that the bench follows the chain.
# (plan() reads only the chunks' name and count.)
_PLAN = encode_plan(EncodeSettings(source=Path("bench.y4m"), output=Path("bench.ivf")),
                    Chunks(vid="bench", count=3, storage_url="", info=None))
assert _PLAN.pass0_key_floor and _PLAN.chain == "excamera"
CHAIN_FLAGS = ["-r", *_PLAN.pass_flags(2)]
# The serial step as chunks from the third of a batch on run it: pass 3 of four (chunk 2 of
# the plan), the re-decide pass's decisions rebased without switching references.
SERIAL_FLAGS = ["-r", *_PLAN.pass_flags(3, 2)]
assert _PLAN.worker_plan(2).passes == 4 and "--choose-refs" not in SERIAL_FLAGS
PASS0 = vpxenc_pass0_settings(CQ, _PLAN.pass0_key_floor)
CHAIN = reencode_options(build_parser().parse_args([*CHAIN_FLAGS, "CHUNK.y4m"]))
SERIAL = reencode_options(build_parser().parse_args([*SERIAL_FLAGS, "CHUNK.y4m"]))


def source_path(spec: str) -> Path:
    if spec in SHARED:
        return shared_dir() / "clips" / SHARED[spec]
    name, _, frames = spec.partition(":")
    if not frames.isdigit():
        raise SystemExit(f"bench: clip {spec!r}: a shared clip ({', '.join(SHARED)}) or "
                         "NAME:FRAMES of bench/clips.py")
    return make_clip(name, int(frames))


def timed_process(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, CPU seconds of the process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"bench: {cmd[0]} failed: {err.strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


def timed_call(fn) -> tuple[float, float, object]:
    """Call ``fn()``; (wall seconds, this thread's CPU seconds, its result)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - t0, time.thread_time() - c0, out


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_clip(spec: str, chunk: int, runs: int, tmp: Path) -> dict:
    header, source = read_y4m(source_path(spec))
    width, height = source[0].width, source[0].height
    chunks = [source[i:i + chunk] for i in range(0, len(source), chunk)]
    if len(chunks) < 3:
        raise SystemExit(f"bench: clip {spec}: {len(source)} frames make fewer than 3 chunks")
    vpx_cmds, streams, states = [], [], []
    for k, pics in enumerate(chunks):
        y4m, ivf = tmp / f"chunk{k}.y4m", tmp / f"chunk{k}.ivf"
        write_y4m(y4m, pics, fps=header.fps or (30, 1))
        cmd = [need_tool("vpxenc"), *PASS0, "-o", str(ivf), str(y4m)]
        timed_process(cmd)
        vpx_cmds.append(cmd)
        streams.append([f.data for f in read_ivf(ivf)[1]])
        dec = Decoder()
        for f in streams[-1]:
            dec.decode(f)
        states.append(dec.state)
    # The chain's inputs, computed once: pass 1 of every chunk, and the final states.
    pass1, finals = [streams[0]], [states[0]]
    for k in range(1, len(chunks)):
        p1 = reencode_chunk(states[k - 1], streams[k], None, chunks[k], CHAIN)
        pass1.append(p1.frames)
        finals.append(p1.state if k == 1 else
                      reencode_chunk(finals[k - 1], p1.frames, states[k - 1], chunks[k],
                                     SERIAL).state)
    timed = range(2, len(chunks))
    frames = sum(len(chunks[k]) for k in timed)
    load_before = os.getloadavg()
    per_run = []
    # What pass 2 wrote (frames and final states of the timed chunks, first run): equal
    # before and after a change that is meant to leave the output alone.
    digest = hashlib.md5()
    for run in range(runs):
        tot = {name: [0.0, 0.0] for name in ("vpxenc_pass0", "pass2", "pass1")}
        for k in timed:
            wall, cpu = timed_process(vpx_cmds[k])
            tot["vpxenc_pass0"][0] += wall
            tot["vpxenc_pass0"][1] += cpu
            for name, fn in (
                ("pass2", lambda k=k: reencode_chunk(finals[k - 1], pass1[k], states[k - 1],
                                                     chunks[k], SERIAL)),
                ("pass1", lambda k=k: reencode_chunk(states[k - 1], streams[k], None,
                                                     chunks[k], CHAIN)),
            ):
                wall, cpu, chunk_out = timed_call(fn)
                tot[name][0] += wall
                tot[name][1] += cpu
                if name == "pass2" and run == 0:
                    for f in chunk_out.frames:
                        digest.update(f)
                    digest.update(chunk_out.state.to_bytes())
        per_run.append(tot)
    load_after = os.getloadavg()
    out: dict = {"clip": spec, "width": width, "height": height, "frames": len(source),
                 "chunk": chunk, "cq_level": CQ, "timed_frames": frames, "runs": runs,
                 "load_average_before": load_before[0], "load_average_after": load_after[0],
                 "pass2_output_md5": digest.hexdigest()}
    for name in ("vpxenc_pass0", "pass2", "pass1"):
        out[f"{name}_ms_per_frame"] = {
            "wall": spread([1000 * r[name][0] / frames for r in per_run]),
            "cpu": spread([1000 * r[name][1] / frames for r in per_run])}
    for name in ("pass2", "pass1"):
        out[f"{name}_vs_vpxenc_pass0"] = {
            how: spread([r[name][i] / r["vpxenc_pass0"][i] for r in per_run])
            for i, how in enumerate(("wall", "cpu"))}
    step = out["pass2_vs_vpxenc_pass0"]
    print(f"{spec} {width}x{height}, {frames} frames timed, {runs} runs (load "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f}): serial step (pass 2) / vpxenc pass 0 "
          f"= {step['cpu']['median']:.3f} CPU [{step['cpu']['min']:.3f}, "
          f"{step['cpu']['max']:.3f}], {step['wall']['median']:.3f} wall "
          f"[{step['wall']['min']:.3f}, {step['wall']['max']:.3f}]; pass 1 / vpxenc "
          f"{out['pass1_vs_vpxenc_pass0']['cpu']['median']:.2f} CPU")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=["carphone", "bus", "bbb272:120",
                                                   "mosaic720:72"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=6)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.runs < 1 or args.chunk < 1:
        raise SystemExit("bench: --runs and --chunk must be at least 1")
    results = []
    for spec in args.clips:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(bench_clip(spec, args.chunk, args.runs, Path(tmp)))
    if args.json:
        pass0 = " ".join(["vpxenc", *PASS0, "-o", "CHUNK.ivf",
                          "CHUNK.y4m"])
        args.json.write_text(json.dumps({"settings": {**settings(args), "pass0": pass0,
                                                      "rebase": " ".join(CHAIN_FLAGS),
                                                      "serial": " ".join(SERIAL_FLAGS)},
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
