"""``excamera demo [DIR]`` (and ``make demo``): run the main job on the bundled sample.

The main job is ``excamera encode``: the bundled clip (30 frames of carphone, shipped inside the
package as ``excamera/samples/``, so an installed wheel runs the demo as a checkout does) is
split into chunks of 6 frames, five worker processes (TLS to the coordinator, states handed on
through the relay) encode them in parallel with pass 0 by vpxenc, then rebase each chunk onto its
predecessor's final state with xc-enc, and the chunks are stitched into one WebM file. Without
libvpx's vpxenc on the PATH, pass 0 is xc's own encoder. The per-worker timeline plot needs the
``plot`` extra; without it the demo says so and still succeeds, since the encode is the demo.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import sys
from importlib import resources
from pathlib import Path

from excamera import needs

SAMPLE = "carphone_qcif_30f.y4m.xz"


def sample_y4m() -> bytes:
    """The bundled sample clip, decompressed (a Y4M file's bytes)."""
    return lzma.decompress(resources.files("excamera").joinpath("samples", SAMPLE).read_bytes())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="encode the bundled 30-frame sample with five local workers",
        description="Encode the sample shipped with excamera (30 frames of carphone, 176x144) "
        "with excamera encode on five local workers, and plot their timeline.",
    )
    p.add_argument("out_dir", nargs="?", type=Path, default=Path("demo-out"), metavar="DIR",
                   help="where the clip, the video and the plot go (demo-out)")
    p.set_defaults(func=lambda args: run(args.out_dir.resolve()))


def run(out_dir: Path) -> int:
    from excamera.cli import main as cli_main

    out_dir.mkdir(parents=True, exist_ok=True)
    y4m = out_dir / "carphone.y4m"
    y4m.write_bytes(sample_y4m())
    output = out_dir / "carphone.webm"
    times = out_dir / "encode-times.jsonl"
    pass0 = "vpxenc" if shutil.which("vpxenc") else "xc"
    if pass0 == "xc":
        print(f"demo: vpxenc not found; pass 0 uses xc's own encoder (apt-get install "
              f"{needs.VPX_DEBIAN_PACKAGE} for libvpx's)")
    print(f"demo: encoding {y4m} (30 frames) with ExCamera[6,16] on local workers")
    rc = cli_main(["encode", str(y4m), "-o", str(output), "--pass0", pass0, "-t", "0",
                   "-O", str(times)])
    if rc != 0:
        print("demo: excamera encode failed", file=sys.stderr)
        return rc
    print(f"demo: done. The encoded video is {output}")
    try:
        needs.module("matplotlib", "plot", "the timeline plot")
    except needs.MissingDependency as exc:
        print(f"demo: no per-worker timeline: {exc}")
        return 0
    plot = out_dir / "encode-timeline.png"
    rc = cli_main(["timeline", str(times), "-o", str(plot)])
    if rc == 0:
        print(f"demo: per-worker timeline: {plot}")
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").resolve()))
