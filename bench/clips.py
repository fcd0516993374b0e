"""Larger source clips for the benches, made from the shared clips (there is no 640x272 or 720p
clip to hand), and cached.

- ``mosaic720``: 1280x720, a 2x2 mosaic of four 640x360 tiles: Big Buck Bunny (320x180,
  scaled 2x), bus (CIF), carphone (QCIF) and park_joy (160x90), each scaled with bicubic
  interpolation. Four different scenes keep the detail per pixel nearer a real 720p picture's
  than one clip scaled 4x would.
- ``bbb272``: 640x272, Big Buck Bunny scaled 2x (640x360), its middle 272 rows.
- ``bbb720``: 1280x720, Big Buck Bunny scaled 4x: smooth, so cheap for vpxenc per pixel.

Every input is retimed to 25 fps and looped forward then backward (ping-pong, so a loop has no
scene cut) up to the frame count asked for. Clips are cached under ``--cache`` (default
``.cache/bench-clips``) by a key made of the recipe (the filter graphs included) and ffmpeg's
version, so changing either makes new ones.

    python bench/clips.py [--cache DIR] NAME:FRAMES...   # make (or find) them, print their paths
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from _common import REPO, need_tool, run, shared_dir
from excamera.xc.y4m import Y4MReader

FPS = 25
SOURCES: dict[str, dict] = {
    "mosaic720": {"clips": ["bigbuckbunny_320x180_48f.y4m", "bus_cif_17f.y4m",
                            "carphone_qcif_120f.y4m", "park_joy_160x90_10f.y4m"],
                  "tile": "640:360", "layout": "0_0|w0_0|0_h0|w0_h0", "crop": None},
    "bbb272": {"clips": ["bigbuckbunny_320x180_48f.y4m"], "tile": "640:360", "layout": None,
               "crop": "640:272"},
    "bbb720": {"clips": ["bigbuckbunny_320x180_48f.y4m"], "tile": "1280:720", "layout": None,
               "crop": None},
}
DEFAULT_CACHE = REPO / ".cache" / "bench-clips"


def filter_graph(src: dict, frames: int) -> str:
    """ffmpeg's filter graph for one source: per clip scale, retime and ping-pong loop to the
    frame count (one more: the mosaic drops its inputs' last frame), then (for several clips)
    the mosaic, then the crop."""
    chains = []
    for i, _ in enumerate(src["clips"]):
        chains.append(
            f"[{i}:v]scale={src['tile']}:flags=bicubic,setsar=1,settb=1/{FPS},setpts=N,"
            f"split[f{i}][b{i}];[b{i}]reverse[r{i}];[f{i}][r{i}]concat=n=2:v=1:a=0,"
            f"loop=loop=-1:size=32767,trim=end_frame={frames + 1},settb=1/{FPS},setpts=N[t{i}]")
    if len(src["clips"]) > 1:
        ins = "".join(f"[t{i}]" for i in range(len(src["clips"])))
        chains.append(f"{ins}xstack=inputs={len(src['clips'])}:layout={src['layout']}[m]")
    else:
        chains.append("[t0]null[m]")
    crop = f"crop={src['crop']}," if src["crop"] else ""
    chains.append(f"[m]{crop}format=yuv420p,fps={FPS}[out]")
    return ";".join(chains)


def recipe_key() -> str:
    """Changes whenever anything that shapes a clip does (the recipe or ffmpeg's version)."""
    ffmpeg = run([need_tool("ffmpeg"), "-version"], text=True).stdout.splitlines()[:1]
    graphs = [filter_graph(src, 0) for src in SOURCES.values()]
    blob = json.dumps([SOURCES, FPS, graphs, ffmpeg], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def clip(name: str, frames: int, cache: Path = DEFAULT_CACHE) -> Path:
    """The Y4M of ``frames`` frames of source ``name``, made when not cached."""
    if name not in SOURCES:
        raise SystemExit(f"bench: no clip {name!r} (have {', '.join(SOURCES)})")
    if frames < 1:
        raise SystemExit(f"bench: clip {name}: {frames} frames")
    folder = cache / recipe_key()
    out = folder / f"{name}_{frames}f.y4m"
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    src = SOURCES[name]
    clips = shared_dir() / "clips"
    missing = [c for c in src["clips"] if not (clips / c).is_file()]
    if missing:
        raise SystemExit(f"bench: clip {name}: {clips} lacks {', '.join(missing)} "
                         "(set EXCAMERA_SHARED)")
    inputs = [a for c in src["clips"] for a in ("-i", str(clips / c))]
    tmp = out.with_suffix(".tmp.y4m")
    try:
        run([need_tool("ffmpeg"), "-v", "error", "-y", *inputs, "-filter_complex",
             filter_graph(src, frames), "-map", "[out]", "-frames:v", str(frames),
             "-f", "yuv4mpegpipe", str(tmp)], stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as exc:
        tmp.unlink(missing_ok=True)
        why = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"bench: making clip {name} failed: {' '.join(why)}") from None
    with Y4MReader(tmp) as reader:
        made = sum(1 for _ in reader)
    if made != frames:
        tmp.unlink()
        raise SystemExit(f"bench: clip {name}: ffmpeg made {made} frames, not {frames}")
    tmp.rename(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("clips", nargs="+", metavar="NAME:FRAMES")
    args = ap.parse_args()
    for spec in args.clips:
        name, _, n = spec.partition(":")
        if not n.isdigit():
            raise SystemExit(f"bench: {spec!r}: expected NAME:FRAMES")
        print(f"{spec}\t{clip(name, int(n), args.cache)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
