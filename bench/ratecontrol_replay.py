"""``--target-bitrate``'s search replayed on measured sizes, without encoding: how many trial
encodes ``ratecontrol`` needs per target, and how close it lands.

The sizes are each shared clip's ExCamera[6,16] output with every chunk at one level, levels
0..63 (``excamera encode``'s settings; per-chunk bytes, and the workers' SSIM sums for other
uses): ``--measure`` encodes them (64 encodes per clip, a few minutes for the four) and writes
``--curves``; otherwise ``--curves`` is read (the committed
``bench/compression-ideas/s8rc-size-curves.json``). A replayed trial's chunk takes its size
from the uniform encode at its own level, so the chain's effect of a neighbour's level on a
chunk is left out; on the bench's 16 targets the replay needs 49 trials with the linear-in-level
model and 36 with the quantizer model, where ``bench/ratecontrol.py`` ran 49 and 35.

Targets: ``bench/ratecontrol.py``'s four per clip, and with ``--dense N`` N more per clip, spaced
evenly in log rate from 1.5 times below its lowest to 1.5 times above its highest.

    python bench/ratecontrol_replay.py [--measure] [--curves F] [--dense N] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# _common first: it puts the real `excamera` package ahead of this folder on the import path
from _common import REPO, settings, shared_dir
from excamera.metrics import ssim_db
from excamera.pipelines.encode import ratecontrol as rc
from excamera.pipelines.encode import run
from excamera.pipelines.encode.settings import EncodeSettings
from excamera.pipelines.media import read_pictures
from ratecontrol import TARGETS

CURVES = REPO / "bench" / "compression-ideas" / "s8rc-size-curves.json"


def measure_curves(workers: int) -> dict:
    """Every clip encoded at every uniform level (the trial loop's own stages)."""
    clips = {}
    for name in TARGETS:
        clip = shared_dir() / "clips" / name
        with tempfile.TemporaryDirectory() as tmp:
            s = EncodeSettings(source=clip, output=Path(tmp) / "unused.ivf", target_bitrate=1.0,
                               workers=workers)
            info = run.read_input(clip)
            rows = []
            with run._workspace(None) as (bucket, work):
                chunks = run.split(clip, info, s.chunk, bucket, work)
                for level in range(rc.MAX_CQ_LEVEL + 1):
                    params = run.plan(s, chunks, (level,) * chunks.count)
                    job = run.run_encode_job(params, run.build_backend(s), chunks, s)
                    stitched = run.fetch_and_stitch(params, chunks, work)
                    meter = run.workers_quality(job, stitched)
                    quality = [job.workers[k].output["quality"] for k in sorted(job.workers)]
                    sizes = run.chunk_bytes(work, chunks.count)
                    rows.append({"level": level, "chunk_bytes": sizes, "bytes": sum(sizes),
                                 "chunk_ssim_sum": [round(float(q["ssim_sum"]), 6)
                                                    for q in quality],
                                 "ssim_db": round(ssim_db(meter.ssim), 5),
                                 "psnr_y": round(meter.psnr_y, 5)})
                    print(f"{name} level {level}: {sum(sizes)} bytes", flush=True)
        clips[name] = rows
    return clips


def replay(rows: list[dict], target_bytes: float, first: int) -> list[rc.Trial]:
    """The trials ``run.encode_to_target`` would run if sizes were ``rows``'."""
    sizes = {r["level"]: r["chunk_bytes"] for r in rows}
    levels: tuple[int, ...] | None = (first,) * len(rows[0]["chunk_bytes"])
    trials: list[rc.Trial] = []
    while levels is not None:
        trials.append(rc.Trial(levels, tuple(sizes[v][k] for k, v in enumerate(levels))))
        levels = rc.next_levels(trials, target_bytes)
    return trials


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="encode the curves first")
    ap.add_argument("--curves", type=Path, default=CURVES)
    ap.add_argument("--dense", type=int, default=0, help="more targets per clip")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.dense < 0:
        raise SystemExit("bench: --dense must be 0 or more")
    if args.measure:
        curves = {"settings": settings(args), "clips": measure_curves(args.workers)}
        args.curves.write_text(json.dumps(curves, indent=1) + "\n")
    curves = json.loads(args.curves.read_text())
    out: dict = {"settings": settings(args), "clips": {}}
    total = {"bench": 0, "all": 0, "missed": 0}
    for name, bench_targets in TARGETS.items():
        rows = sorted(curves["clips"][name], key=lambda r: r["level"])
        if sorted(r["level"] for r in rows) != list(range(rc.MAX_CQ_LEVEL + 1)):
            raise SystemExit(f"bench: {args.curves}: {name} does not have every level 0..63")
        clip = shared_dir() / "clips" / name
        info = run.read_input(clip)
        seconds = sum(1 for _ in read_pictures(clip)) * info.fps[1] / info.fps[0]
        lo, hi = bench_targets[0] / 1.5, bench_targets[-1] * 1.5
        extra = [lo * (hi / lo) ** (i / max(1, args.dense - 1)) for i in range(args.dense)]
        results = []
        for kbps in [*bench_targets, *extra]:
            target_bytes = kbps * 1000 / 8 * seconds
            first = rc.first_level(kbps, info.width, info.height, info.fps)
            trials = replay(rows, target_bytes, first)
            best = min(abs(t.error(target_bytes)) for t in trials)
            reachable = rows[-1]["bytes"] <= target_bytes <= rows[0]["bytes"]
            results.append({"target_kbps": round(kbps, 1), "trials": len(trials),
                            "errors": [round(t.error(target_bytes), 4) for t in trials],
                            "within_accept": best <= rc.ACCEPT, "reachable": reachable})
            total["bench"] += len(trials) if kbps in bench_targets else 0
            total["all"] += len(trials)
            total["missed"] += best > rc.ACCEPT
        out["clips"][name] = results
        print(f"{name}: trials at the bench's targets "
              f"{[r['trials'] for r in results[:len(bench_targets)]]}, all {len(results)} "
              f"targets {sum(r['trials'] for r in results)}, beyond {rc.ACCEPT:.0%}: "
              f"{[r['target_kbps'] for r in results if not r['within_accept']]}")
    out["totals"] = total
    print(f"trials: {total['bench']} for the bench's targets, {total['all']} for all; "
          f"{total['missed']} targets out of reach")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
