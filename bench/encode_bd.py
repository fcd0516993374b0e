"""Quick, deterministic compression check of the primary encoder (for tuning it).

For each clip: our encoder at ``--speeds`` over ``--xc-points`` qindex values (first frame key,
then inter frames, constant quantizer) against ``vpxenc --good --cpu-used=0`` one pass (no
alt-ref, no lag) over ``--points`` q values: BD-rate in Y-PSNR and in SSIM dB, and encode time.
vpxenc's points are cached in ``--cache`` (they never change).

``--low-q`` also measures what the ExCamera pipeline's boosted frame is: inter frames at low
qindex (4..12) from a real state (after decoding a vpxenc stream up to the previous frame), at
every ``--low-q-every``-th frame. Their bytes and quality are written to the JSON as well; two
JSON files (e.g. before/after a change) are compared with ``--compare A.json B.json``, which
prints the BD-rate of B against A for every curve in both.

    python bench/encode_bd.py [--json out.json] [--low-q] [--clips carphone bus bbb]
    python bench/encode_bd.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import VPX_COMMON, need_tool, run, shared_dir
from excamera.metrics import QualityMeter, bd_rate, ssim_db
from excamera.xc.codec import Decoder
from excamera.xc.encoder import Encoder, encode_picture
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import Picture, read_y4m

CLIPS = {
    "carphone": "carphone_qcif_120f.y4m",
    "bus": "bus_cif_17f.y4m",
    "bbb": "bigbuckbunny_320x180_48f.y4m",
}
VPX = [*VPX_COMMON, "--good", "--cpu-used=0"]


def point(frames: list[bytes], recons: list[Picture], source: list[Picture], fps: float,
          seconds: float) -> dict:
    meter = QualityMeter()
    for src, rec in zip(source, recons, strict=True):
        meter.add(src, rec)
    return {"kbps": sum(len(f) for f in frames) * 8 * fps / len(frames) / 1000,
            "psnr_y": meter.psnr_y, "ssim_db": ssim_db(meter.ssim),
            "ms_per_frame": 1000 * seconds / len(frames)}


def vpx_stream(y4m: Path, q: int, cache: Path) -> Path:
    out = cache / f"{y4m.stem}_q{q}.ivf"
    if not out.exists():
        run([need_tool("vpxenc"), *VPX, f"--cq-level={q}", f"--min-q={q}", f"--max-q={q}",
             "-o", str(out), str(y4m)], stdin=subprocess.DEVNULL)
    return out


def vpx_point(y4m: Path, q: int, source: list[Picture], fps: float, cache: Path) -> dict:
    key = cache / f"{y4m.stem}_q{q}.json"
    if key.exists():
        return json.loads(key.read_text())
    frames = [f.data for f in read_ivf(vpx_stream(y4m, q, cache))[1]]
    dec = Decoder()
    recons = [dec.decode(f) for f in frames]
    p = point(frames, recons, source, fps, 0.0)
    key.write_text(json.dumps(p))
    return p


def xc_point(source: list[Picture], q: int, speed: str, fps: float) -> dict:
    enc = Encoder(source[0].width, source[0].height, quality=q, speed=speed)
    t0 = time.perf_counter()
    results = [enc.encode_frame(p) for p in source]
    seconds = time.perf_counter() - t0
    return point([r.data for r in results], [r.recon for r in results], source, fps, seconds)


def low_q_points(y4m: Path, source: list[Picture], speed: str, qs: list[int], every: int,
                 cache: Path) -> list[dict]:
    """Inter frames at low qindex from the state of a vpxenc q20 stream's previous frame."""
    frames = [f.data for f in read_ivf(vpx_stream(y4m, 20, cache))[1]]
    dec = Decoder()
    states = []
    for f in frames:
        states.append(dec.state)
        dec.decode(f)
    picks = list(range(every, len(source), every))
    out = []
    for q in qs:
        t0 = time.perf_counter()
        enc = [encode_picture(states[k], source[k], key_frame=False, qindex=q, speed=speed)
               for k in picks]
        seconds = time.perf_counter() - t0
        out.append(point([e.data for e in enc], [e.recon for e in enc],
                         [source[k] for k in picks], 30.0, seconds))
    return out


def curve_bd(a: list[dict], b: list[dict]) -> tuple[float, float]:
    ra, rb = [p["kbps"] for p in a], [p["kbps"] for p in b]
    return (bd_rate(ra, [p["psnr_y"] for p in a], rb, [p["psnr_y"] for p in b]),
            bd_rate(ra, [p["ssim_db"] for p in a], rb, [p["ssim_db"] for p in b]))


def compare(pa: Path, pb: Path) -> None:
    a, b = json.loads(pa.read_text()), json.loads(pb.read_text())
    print(f"BD-rate of {pb.name} against {pa.name} (negative: {pb.name} needs fewer bits)")
    sums: dict[str, list[float]] = {}
    for key in sorted(set(a["curves"]) & set(b["curves"])):
        psnr, ss = curve_bd(a["curves"][key], b["curves"][key])
        ta = sum(p["ms_per_frame"] for p in a["curves"][key])
        tb = sum(p["ms_per_frame"] for p in b["curves"][key])
        print(f"  {key:26} PSNR-Y {psnr:+6.2f}%  SSIM {ss:+6.2f}%   time x{tb / ta:.2f}")
        kind = key.split("/", 1)[1]
        sums.setdefault(kind, []).extend([psnr, ss])
    for kind, v in sums.items():
        print(f"  mean {kind:21} {sum(v) / len(v):+6.2f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    ap.add_argument("--speeds", nargs="+", default=["good", "best"])
    ap.add_argument("--points", type=int, nargs="+", default=[8, 16, 24, 32, 40, 48])
    ap.add_argument("--xc-points", type=int, nargs="+", default=[8, 16, 24, 34, 46, 60])
    ap.add_argument("--low-q", action="store_true")
    ap.add_argument("--low-q-only", action="store_true", help="only the low-qindex inter frames")
    ap.add_argument("--low-q-points", type=int, nargs="+", default=[4, 6, 8, 10, 12])
    ap.add_argument("--low-q-every", type=int, default=6)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/encode_bd_cache"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--compare", type=Path, nargs=2)
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[dict]] = {}
    summary = []
    for name in args.clips:
        y4m = shared_dir() / "clips" / CLIPS[name]
        header, source = read_y4m(y4m)
        fps = header.fps[0] / header.fps[1] if header.fps else 30.0
        vpx = [vpx_point(y4m, q, source, fps, args.cache) for q in args.points]
        for speed in args.speeds:
            if args.low_q_only:
                low = low_q_points(y4m, source, speed, args.low_q_points, args.low_q_every,
                                   args.cache)
                curves[f"{name}/{speed}-lowq"] = low
                continue
            pts = [xc_point(source, q, speed, fps) for q in args.xc_points]
            curves[f"{name}/{speed}"] = pts
            psnr, ss = curve_bd(vpx, pts)
            ms = sum(p["ms_per_frame"] for p in pts) / len(pts)
            summary.append((name, speed, psnr, ss, ms))
            print(f"{name:9} {speed:5} vs vpxenc good cpu0: PSNR-Y {psnr:+6.2f}%  "
                  f"SSIM {ss:+6.2f}%  {ms:7.2f} ms/frame", flush=True)
            if args.low_q:
                low = low_q_points(y4m, source, speed, args.low_q_points, args.low_q_every,
                                   args.cache)
                curves[f"{name}/{speed}-lowq"] = low
                print("          low-q inter: " + "  ".join(
                    f"q{q}: {p['kbps']:.0f}kb {p['psnr_y']:.2f}dB {p['ssim_db']:.2f}"
                    for q, p in zip(args.low_q_points, low, strict=True)), flush=True)
    for speed in args.speeds if summary else []:
        rows = [s for s in summary if s[1] == speed]
        print(f"mean {speed:5}: PSNR-Y {sum(r[2] for r in rows) / len(rows):+6.2f}%  "
              f"SSIM {sum(r[3] for r in rows) / len(rows):+6.2f}%")
    if args.json:
        args.json.write_text(json.dumps({"curves": curves, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
