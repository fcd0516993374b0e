"""`make demo`: run the main job on the bundled sample and say where the result is.

The main job is ``excamera encode``: the bundled clip (30 frames of carphone) is split into
chunks of 6 frames, five worker processes (TLS to the coordinator, states handed on through the
relay) encode them in parallel with pass 0 by vpxenc, then rebase each chunk onto its
predecessor's final state with xc-enc, and the chunks are stitched into one WebM file. Without
libvpx's vpxenc on the PATH, pass 0 is xc's own encoder.
"""

from __future__ import annotations

import lzma
import shutil
import sys
from pathlib import Path

from excamera.cli import main as cli_main

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "carphone_qcif_30f.y4m.xz"


def run(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    y4m = out_dir / "carphone.y4m"
    y4m.write_bytes(lzma.decompress(SAMPLE.read_bytes()))
    output = out_dir / "carphone.webm"
    times = out_dir / "encode-times.jsonl"
    pass0 = "vpxenc" if shutil.which("vpxenc") else "xc"
    if pass0 == "xc":
        print("demo: vpxenc not found; pass 0 uses xc's own encoder")
    print(f"demo: encoding {y4m} (30 frames) with ExCamera[6,16] on local workers")
    rc = cli_main(["encode", str(y4m), "-o", str(output), "--pass0", pass0, "-t", "0",
                   "-O", str(times)])
    if rc != 0:
        print("demo: excamera encode failed", file=sys.stderr)
        return rc
    plot = out_dir / "encode-timeline.png"
    rc = cli_main(["timeline", str(times), "-o", str(plot)])
    print(f"demo: done. The encoded video is {output}")
    print(f"demo: per-worker timeline: {plot}")
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").resolve()))
