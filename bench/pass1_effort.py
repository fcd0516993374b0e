"""Pass 1's effort on the Pareto front: compression (SSIM BD-rate) against pipeline time.

Batch mode's ``excamera`` chain converts each chunk's key frame into an inter frame in pass 1
(``xc-enc -r -q EFFORT``, every chunk at once); pass 2 then rebases that chunk, keeping its
decisions, onto the predecessor's final state (the serial step). The effort touches only the
converted first frame, but that frame carries a quarter of the chunk's bits (``-w 0.75``) and
is a reference for the rest of the chunk and the next one. Efforts compared: ``rt``, ``good``,
``good-split`` (Good with Best's SPLITMV search) and ``best``.

This is the three-pass chain. ``excamera encode`` also runs the re-decide pass
(``XcencParams.redecide``) in chunks from the third of a batch on: there the converted first
frame that reaches the output is decided again at ``PASS1_EFFORT``, by a parallel pass against
the predecessor's pass-1 output, and pass 1 runs at ``REDECIDE_PASS1_EFFORT`` (Realtime) only
to seed that. The effort measured here is the one those decisions use; it is not re-measured
with the re-decide pass (bench/compression-ideas.md, sixth session: the re-decide pass at
good-split gained 0.8 points of SSIM BD-rate on bigbuckbunny for 2.2x its CPU).

For every clip and ``--cq`` level, the clip is cut in ``--chunk``-frame chunks and pass 0 runs
once (vpxenc with mu's settings and the plan's floored key frames,
``xcenc.plan.vpxenc_pass0_settings``; the same for every effort). Then, per effort, pass 1
(chunks 1..) and pass 2 (chunks 2..) run as the pipeline runs them (``reencode_chunk`` in
process, with the flags of the plan ``excamera encode`` makes, as bench/rebase.py takes them,
only ``-q`` changed), pass 1 of one chunk at each effort in turn (alternating, so load drifts
hit all efforts alike). The output is the stitched stream the pipeline writes (chunk 0's pass 0,
chunk 1's pass 1, chunk k's pass 2), decoded and measured against the source (bytes; luma SSIM
of :mod:`excamera.metrics`).

Pipeline time is the CPU time of the encode tasks (vpxenc's pass 0 process, and this thread
for pass 1 and pass 2) per frame of the clip; on a machine that is busy with the whole job, as
this 2-core one is, the job's wall time follows it. BD-rate (SSIM dB) is against ``best`` (the
effort the pipeline used before this table). The score is the product ``time x bitrate``
relative to ``best``: (pipeline time / best's) x (1 + BD-rate). The choice is the lowest mean
score over the clips among the efforts whose BD-rate stays within ``--max-bd-rate`` (1%, issue
12's quality bound) on every clip; the unbounded lowest is reported too. It was the pipeline's
default (``xcenc.plan.PASS1_EFFORT``) until the re-decide pass: since then the default is
``good-refs``, measured in the whole pipeline (bench/compression-ideas.md, seventh session),
which this three-pass table does not cover. ``--render JSON`` redoes only that verdict and the
tables.

    python bench/pass1_effort.py [--clips bbb272:120 bbb720:36] [--cq 14 22 30 38]
                                 [--json bench/pass1-effort-results.json]
                                 [--markdown bench/pass1-effort.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import need_tool, settings
from excamera.metrics import QualityMeter, bd_rate, ssim_db
from excamera.pipelines.xcenc.plan import vpxenc_pass0_settings
from excamera.xc.codec import Decoder
from excamera.xc.encoder import ReencodeOptions, reencode_chunk
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import read_y4m, write_y4m
from rebase import _PLAN, CHAIN, source_path, timed_call, timed_process

EFFORTS = ("rt", "good", "good-split", "best")
REFERENCE = "best"


def chain_options(effort: str) -> ReencodeOptions:
    return dataclasses.replace(CHAIN, speed=effort)


def measure(frames: list[bytes], source: list, fps: float) -> dict:
    dec = Decoder()
    meter = QualityMeter()
    shown = 0
    for f in frames:
        pic = dec.decode(f)
        if pic is not None:
            meter.add(source[shown], pic)
            shown += 1
    if shown != len(source):
        raise SystemExit(f"bench: the stitched stream shows {shown} frames, not {len(source)}")
    return {"kbps": sum(len(f) for f in frames) * 8 * fps / len(source) / 1000,
            "ssim": meter.ssim, "ssim_db": ssim_db(meter.ssim), "psnr_y": meter.psnr_y}


def bench_point(source: list, fps: tuple[int, int], chunk: int, cq: int, efforts: list[str],
                tmp: Path) -> dict:
    """One cq level: pass 0 once, then pass 1 and pass 2 at every effort."""
    chunks = [source[i:i + chunk] for i in range(0, len(source), chunk)]
    pass0_cpu, streams, states = 0.0, [], []
    for k, pics in enumerate(chunks):
        y4m, ivf = tmp / f"chunk{k}.y4m", tmp / f"chunk{k}.ivf"
        write_y4m(y4m, pics, fps=fps)
        pass0_cpu += timed_process([need_tool("vpxenc"),
                                    *vpxenc_pass0_settings(cq, _PLAN.pass0_key_floor),
                                    "-o", str(ivf), str(y4m)])[1]
        streams.append([f.data for f in read_ivf(ivf)[1]])
        dec = Decoder()
        for f in streams[-1]:
            dec.decode(f)
        states.append(dec.state)
    pass1: dict[str, list] = {e: [None] for e in efforts}  # chunk 0 keeps its pass 0
    p1_cpu = dict.fromkeys(efforts, 0.0)
    for k in range(1, len(chunks)):
        for e in efforts:
            _, cpu, out = timed_call(lambda k=k, e=e: reencode_chunk(
                states[k - 1], streams[k], None, chunks[k], chain_options(e)))
            p1_cpu[e] += cpu
            pass1[e].append(out)
    n = len(source)
    rate = fps[0] / fps[1]
    out = {"cq_level": cq, "pass0_cpu_ms_per_frame": 1000 * pass0_cpu / n, "efforts": {}}
    for e in efforts:
        finals = [states[0], pass1[e][1].state]
        frames = [*streams[0], *pass1[e][1].frames]
        p2_cpu = 0.0
        for k in range(2, len(chunks)):
            _, cpu, p2 = timed_call(lambda k=k, e=e, prev=finals[k - 1]: reencode_chunk(
                prev, pass1[e][k].frames, states[k - 1], chunks[k], chain_options(e)))
            p2_cpu += cpu
            finals.append(p2.state)
            frames += p2.frames
        out["efforts"][e] = {
            **measure(frames, source, rate),
            "pass1_cpu_ms_per_frame": 1000 * p1_cpu[e] / n,
            "pass2_cpu_ms_per_frame": 1000 * p2_cpu / n,
            "pipeline_cpu_ms_per_frame": 1000 * (pass0_cpu + p1_cpu[e] + p2_cpu) / n,
        }
    return out


def summarize(points: list[dict], efforts: list[str]) -> dict:
    """Per effort over one clip's cq levels: BD-rate against REFERENCE, times, and the score."""
    def curve(e: str) -> tuple[list[float], list[float]]:
        return ([p["efforts"][e]["kbps"] for p in points],
                [p["efforts"][e]["ssim_db"] for p in points])

    ref = curve(REFERENCE)

    def mean(e: str, key: str) -> float:
        return statistics.fmean(p["efforts"][e][key] for p in points)

    ref_time = mean(REFERENCE, "pipeline_cpu_ms_per_frame")
    out = {}
    for e in efforts:
        bd = 0.0 if e == REFERENCE else bd_rate(*ref, *curve(e))
        t = mean(e, "pipeline_cpu_ms_per_frame")
        out[e] = {"bd_rate_ssim_percent": bd,
                  "pass1_cpu_ms_per_frame": mean(e, "pass1_cpu_ms_per_frame"),
                  "pass2_cpu_ms_per_frame": mean(e, "pass2_cpu_ms_per_frame"),
                  "pipeline_cpu_ms_per_frame": t,
                  "relative_time": t / ref_time,
                  "score_time_x_bitrate": t / ref_time * (1 + bd / 100)}
    return out


def markdown(results: list[dict], efforts: list[str], verdict: dict, cmd: str) -> str:
    lines = ["# Pass 1's effort: SSIM BD-rate against pipeline time", "",
             f"Made by `{cmd}` (see the script's docstring for the method). BD-rate is "
             f"against `{REFERENCE}`; times are CPU ms per frame of the clip, means over the cq "
             "levels; score = relative pipeline time x (1 + BD-rate), lower is better.", ""]
    for r in results:
        lines += [f"## {r['clip']} ({r['width']}x{r['height']}, {r['frames']} frames, "
                  f"cq {', '.join(str(p['cq_level']) for p in r['points'])})", "",
                  "| effort | BD-rate (SSIM) | pass 1 ms/frame | pass 2 ms/frame | "
                  "pipeline ms/frame | relative time | score |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for e in efforts:
            s = r["summary"][e]
            lines.append(f"| {e} | {s['bd_rate_ssim_percent']:+.2f}% | "
                         f"{s['pass1_cpu_ms_per_frame']:.1f} | {s['pass2_cpu_ms_per_frame']:.1f}"
                         f" | {s['pipeline_cpu_ms_per_frame']:.1f} | {s['relative_time']:.3f} | "
                         f"{s['score_time_x_bitrate']:.4f} |")
        lines.append("")
    lines += ["## Over the clips", "",
              "| effort | worst BD-rate (SSIM) | mean score |", "| --- | --- | --- |"]
    for e in efforts:
        lines.append(f"| {e} | {verdict['worst_bd_rate'][e]:+.2f}% | "
                     f"{verdict['mean_score'][e]:.4f} |")
    lines += ["", f"Lowest mean score: **{verdict['lowest_score']}**. Lowest among the efforts "
              f"within {verdict['max_bd_rate']:+.1f}% of `{REFERENCE}` on every clip (the "
              f"quality bound of issue 12): **{verdict['choice']}** (the three-pass chain's "
              "choice; `xcenc.plan.PASS1_EFFORT` says what the pipeline runs).", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=["bbb272:120", "bbb720:36"])
    ap.add_argument("--cq", type=int, nargs="+", default=[14, 22, 30, 38],
                    help="vpxenc --cq-level of pass 0 (0..63); at least 4 for a BD-rate")
    ap.add_argument("--efforts", nargs="+", choices=EFFORTS, default=list(EFFORTS))
    ap.add_argument("--chunk", type=int, default=6)
    ap.add_argument("--max-bd-rate", type=float, default=1.0,
                    help="quality bound of the default, in percent against best (default 1.0)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only redo the verdict and tables of an earlier run's JSON")
    args = ap.parse_args()
    if args.render:
        old = json.loads(args.render.read_text())
        meta, args.efforts = old["settings"], old["settings"]["efforts"]
        print(f"default effort: {write_results(args, meta, old['results'])}")
        return 0
    if len(args.cq) < 4 or any(not 0 <= q <= 63 for q in args.cq):
        raise SystemExit("bench: --cq needs at least 4 levels in 0..63")
    if REFERENCE not in args.efforts:
        raise SystemExit(f"bench: --efforts must include {REFERENCE} (the BD-rate reference)")
    if args.chunk < 1:
        raise SystemExit("bench: --chunk must be at least 1")
    results, meta = [], settings(args)
    for spec in args.clips:
        header, source = read_y4m(source_path(spec))
        if len(source) < 3 * args.chunk:
            raise SystemExit(f"bench: clip {spec}: fewer than 3 chunks")
        load = os.getloadavg()[0]
        points = []
        for cq in args.cq:
            with tempfile.TemporaryDirectory() as tmp:
                points.append(bench_point(source, header.fps or (30, 1), args.chunk, cq,
                                          args.efforts, Path(tmp)))
            print(f"{spec} cq {cq}: " + ", ".join(
                f"{e} {v['kbps']:.0f} kbit/s {v['ssim_db']:.3f} dB "
                f"{v['pipeline_cpu_ms_per_frame']:.1f} ms" for e, v in
                points[-1]["efforts"].items()), flush=True)
        summary = summarize(points, args.efforts)
        results.append({"clip": spec, "width": source[0].width, "height": source[0].height,
                        "frames": len(source), "chunk": args.chunk,
                        "load_average_before": load, "load_average_after": os.getloadavg()[0],
                        "points": points, "summary": summary})
        for e, s in summary.items():
            print(f"  {e:10} BD-rate {s['bd_rate_ssim_percent']:+6.2f}%  pass 1 "
                  f"{s['pass1_cpu_ms_per_frame']:7.1f} ms/frame  pipeline "
                  f"{s['pipeline_cpu_ms_per_frame']:7.1f} ms/frame  score "
                  f"{s['score_time_x_bitrate']:.4f}")
        # Written after every clip, so a long run leaves what it measured so far.
        choice = write_results(args, meta, results)
    print(f"default effort: {choice}")
    return 0


def choose(results: list[dict], efforts: list[str], max_bd_rate: float) -> dict:
    """The lowest mean score, and the lowest among efforts whose BD-rate stays within
    ``max_bd_rate`` percent of REFERENCE on every clip (the default the pipeline takes)."""
    mean_score = {e: statistics.fmean(r["summary"][e]["score_time_x_bitrate"] for r in results)
                  for e in efforts}
    worst = {e: max(r["summary"][e]["bd_rate_ssim_percent"] for r in results) for e in efforts}
    within = [e for e in efforts if worst[e] <= max_bd_rate]
    return {"mean_score": mean_score, "worst_bd_rate": worst, "max_bd_rate": max_bd_rate,
            "lowest_score": min(mean_score, key=mean_score.__getitem__),
            "choice": min(within, key=mean_score.__getitem__)}


def write_results(args: argparse.Namespace, meta: dict, results: list[dict]) -> str:
    verdict = choose(results, args.efforts, args.max_bd_rate)
    if args.json:
        args.json.write_text(json.dumps({"settings": meta, "verdict": verdict,
                                         "results": results}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(results, args.efforts, verdict, meta["command"]))
    return verdict["choice"]


if __name__ == "__main__":
    sys.exit(main())
