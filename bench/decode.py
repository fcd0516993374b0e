"""Decode speed of xc against libvpx (`vpxdec --threads=1`), as ratios measured in one run.

Streams: a few conformance vectors, plus streams made here with vpxenc from the shared clips,
including a 720p one (Big Buck Bunny scaled up). Each decoder's time is the best of several runs
of the whole stream; xc's includes reading the IVF and producing numpy planes of every frame.

    python bench/decode.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import best_of, need_tool, run, settings, shared_dir
from excamera.xc.codec import Decoder
from excamera.xc.ivf import IvfReader


def make_stream(src_y4m: Path, out: Path, *, size: str | None, bitrate: int, frames: int) -> Path:
    y4m = src_y4m
    if size:
        need_tool("ffmpeg")
        y4m = out.with_suffix(".y4m")
        run(["ffmpeg", "-v", "error", "-y", "-i", str(src_y4m), "-vf", f"scale={size}",
             "-pix_fmt", "yuv420p", "-frames:v", str(frames), str(y4m)])
    run([need_tool("vpxenc"), "--codec=vp8", "--good", "--cpu-used=4",
         f"--target-bitrate={bitrate}", f"--limit={frames}", "--ivf", "-q", "-o", str(out),
         str(y4m)])
    return out


def xc_decode(path: Path) -> int:
    decoder = Decoder()
    with IvfReader(path) as reader:
        return sum(1 for _ in decoder.decode_all(f.data for f in reader))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    vpxdec = need_tool("vpxdec")
    shared = shared_dir()
    vectors = shared / "vp8-test-vectors"
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        streams = {
            "vector-00-comprehensive-008 (1432x888)": vectors / "vp80-00-comprehensive-008.ivf",
            "vector-05-sharpness-1438 (175x143)": vectors / "vp80-05-sharpness-1438.ivf",
            "carphone 176x144 120f": make_stream(shared / "clips" / "carphone_qcif_120f.y4m",
                                                 tmpd / "carphone.ivf", size=None, bitrate=300,
                                                 frames=120),
            "bbb 1280x720 48f": make_stream(shared / "clips" / "bigbuckbunny_320x180_48f.y4m",
                                            tmpd / "bbb720.ivf", size="1280:720", bitrate=2500,
                                            frames=48),
        }
        rows = []
        for name, path in streams.items():
            t_vpx = best_of(args.runs, lambda p=path: run([vpxdec, "--threads=1", "--i420",
                                                            "-o", "/dev/null", str(p)]))
            t_xc = best_of(args.runs, lambda p=path: xc_decode(p))
            rows.append({"stream": name, "vpxdec_s": t_vpx, "xc_s": t_xc, "ratio": t_xc / t_vpx})
    print(f"{'stream':40} {'vpxdec s':>9} {'xc s':>9} {'xc/vpx':>7}")
    for r in rows:
        print(f"{r['stream']:40} {r['vpxdec_s']:9.3f} {r['xc_s']:9.3f} {r['ratio']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings(args), "rows": rows}, indent=2)
                             + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
