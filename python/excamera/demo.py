"""`make demo`: run the main job on the bundled sample and say where the result is.

Until the ExCamera encoder lands, the main job is mu's example, png2y4m: the bundled clip is
turned into 16-bit PNG frames in a local bucket, then five real worker processes (TLS to the
coordinator) convert six frames each back into Y4M chunks.
"""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

from excamera.cli import main as cli_main

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "carphone_qcif_30f.y4m.xz"


def run(out_dir: Path) -> int:
    from excamera.pipelines.png2y4m import make_png_frames

    out_dir.mkdir(parents=True, exist_ok=True)
    bucket = out_dir / "bucket"
    y4m = out_dir / "carphone.y4m"
    y4m.write_bytes(lzma.decompress(SAMPLE.read_bytes()))
    n = len(make_png_frames(y4m, bucket / "carphone-png16", bit_depth=16))
    print(f"demo: wrote {n} PNG frames to {bucket / 'carphone-png16'}")
    workers, frames = 5, 6
    rc = cli_main(
        ["png2y4m", "-n", str(workers), "-f", str(frames), "-v", "carphone", "-b", str(bucket),
         "-t", "0", "-O", str(out_dir / "png2y4m-times.jsonl")]
    )
    if rc != 0:
        print("demo: png2y4m failed", file=sys.stderr)
        return rc
    rc = cli_main(["timeline", str(out_dir / "png2y4m-times.jsonl"), "-o",
                   str(out_dir / "png2y4m-timeline.png")])
    result = bucket / f"carphone-y4m_{frames:02d}"
    print(f"demo: done. {workers} Y4M chunks are in {result}/")
    print(f"demo: per-worker timeline: {out_dir / 'png2y4m-timeline.png'}")
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").resolve()))
