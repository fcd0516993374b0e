"""The decode bench's long streams, made from the shared clips (there is no 720p clip to hand).

Two sources, each looped forward-then-backward (ping-pong, so a loop has no scene cut):

- ``mosaic720`` 1280x720, 528 frames: a 2x2 mosaic of four 640x360 tiles, Big Buck Bunny
  (320x180, scaled 2x), bus (CIF), carphone (QCIF) and park_joy (160x90), each scaled with
  bicubic interpolation. Four different scenes keep the detail per pixel near a real 720p
  picture's, which a single 4x upscale would not.
- ``bbb272`` 640x272, 250 frames: Big Buck Bunny scaled 2x (640x360), the middle 272 rows.

Every input is retimed to 25 fps first, so the mosaic's tiles advance together. Each source is
encoded twice with vpxenc at a middling bitrate: ``good`` (``--good --cpu-used=0``, two passes
with alt-ref frames, as a file encoder makes them) and ``rt`` (``--rt --cpu-used=8``, one pass,
CBR, as a real-time sender makes them). The streams are cached under a key made of this recipe
(``--cache``, default ``.cache/bench-streams``), so changing it makes new ones.

    python bench/streams.py [--cache DIR]      # make (or find) them, print their paths
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from _common import REPO, need_tool, run, shared_dir
from clips import FPS
from clips import filter_graph as clip_graph

MOSAIC_TILES = ["bigbuckbunny_320x180_48f.y4m", "bus_cif_17f.y4m", "carphone_qcif_120f.y4m",
                "park_joy_160x90_10f.y4m"]
SOURCES: dict[str, dict] = {
    "mosaic720": {"clips": MOSAIC_TILES, "tile": "640:360", "frames": 528,
                  "layout": "0_0|w0_0|0_h0|w0_h0", "crop": None, "kbps": 2500},
    "bbb272": {"clips": ["bigbuckbunny_320x180_48f.y4m"], "tile": "640:360", "frames": 250,
               "layout": None, "crop": "640:272", "kbps": 800},
}
MODES: dict[str, list[str]] = {
    "good": ["--good", "--cpu-used=0", "--passes=2", "--auto-alt-ref=1", "--lag-in-frames=16",
             "--end-usage=vbr"],
    "rt": ["--rt", "--cpu-used=8", "--passes=1", "--lag-in-frames=0", "--end-usage=cbr"],
}
DEFAULT_CACHE = REPO / ".cache" / "bench-streams"


def filter_graph(src: dict) -> str:
    """ffmpeg's filter graph for one source at its frame count (clips.py's recipe)."""
    return clip_graph(src, src["frames"])


def recipe_key() -> str:
    """Changes whenever anything that shapes a stream does (recipe or tool versions)."""
    ffmpeg = run([need_tool("ffmpeg"), "-version"], text=True).stdout.splitlines()[:1]
    vpxenc = [line.strip() for line in subprocess.run([need_tool("vpxenc"), "--help"],
              capture_output=True, text=True).stdout.splitlines() if "Encoder v" in line]
    versions = [ffmpeg, vpxenc]
    graphs = [filter_graph(src) for src in SOURCES.values()]
    blob = json.dumps([SOURCES, MODES, FPS, graphs, versions], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def make_source(name: str, out: Path) -> Path:
    src = SOURCES[name]
    clips = shared_dir() / "clips"
    inputs = [a for c in src["clips"] for a in ("-i", str(clips / c))]
    tmp = out.with_suffix(".tmp.y4m")
    run([need_tool("ffmpeg"), "-v", "error", "-y", *inputs, "-filter_complex", filter_graph(src),
         "-map", "[out]", "-frames:v", str(src["frames"]), "-f", "yuv4mpegpipe", str(tmp)],
        stdin=subprocess.DEVNULL)
    tmp.rename(out)
    return out


def make_stream(source: str, mode: str, y4m: Path, out: Path) -> Path:
    src = SOURCES[source]
    tmp = out.with_suffix(".tmp.ivf")
    run([need_tool("vpxenc"), "--codec=vp8", "--ivf", "-q", "--threads=1", *MODES[mode],
         f"--target-bitrate={src['kbps']}", f"--limit={src['frames']}",
         "--disable-warning-prompt", "-o", str(tmp), str(y4m)], stdin=subprocess.DEVNULL)
    tmp.rename(out)
    return out


def ensure_streams(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """``{"<source>-<mode>": path}`` for every source and mode, made when not cached."""
    folder = cache / recipe_key()
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for source in SOURCES:
        y4m = folder / f"{source}.y4m"
        for mode in MODES:
            ivf = folder / f"{source}-{mode}.ivf"
            if not ivf.exists():
                if not y4m.exists():
                    make_source(source, y4m)
                make_stream(source, mode, y4m, ivf)
            out[f"{source}-{mode}"] = ivf
        y4m.unlink(missing_ok=True)  # hundreds of MB, and only needed to make the streams
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args()
    for name, path in ensure_streams(args.cache).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
