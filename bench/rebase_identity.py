"""The identity rebase: xc's rebase of vpxenc's own frames onto vpxenc's own decoder state.

ExCamera's plain frames are rebased (``crates/xc/src/encoder/rebase.rs``): modes and motion
vectors kept from vpxenc's pass 0, residuals re-quantized against the real references,
probabilities and headers re-written. This asks whether the rebase itself loses efficiency,
with nothing else changed: the serial vpxenc encode at cq level L (mu's settings,
``xcenc.plan.VPXENC_SETTINGS``) is decoded frame by frame, and every inter frame (hidden
alt-refs included) is rebased alone onto the very state vpxenc's decoder has before it, at the
frame's own quantizer, with the chain's rebase options (``--activity-rd``, off with
``--no-activity-rd``; ``--choose-refs`` with ``--choose-refs``). An ideal rebase gives vpxenc's
frame back at about its size and quality. With ``--chained`` each frame is rebased instead onto
the state the rebased frames before it reach (from vpxenc's key frame): what the rebase loses
then also propagates through the references, as along ExCamera's chain.

Per frame: bytes split into the first partition (header, probability updates, modes) and
the rest (the token partition and the 3-byte frame tag), and the luma SSIM (dB) and PSNR-Y of
the reconstruction against the source, for vpxenc's frame and the rebased one (hidden
frames: bytes only; their target is vpxenc's own reconstruction). Per level: the totals
over shown inter frames, and the BD-rate of the rebased frames' curve (total bytes against
mean SSIM / PSNR-Y over the levels) against vpxenc's (``excamera.metrics.bd_rate``; the
curves need four levels or more).

    python bench/rebase_identity.py [--clips bigbuckbunny_320x180_48f.y4m,carphone_qcif_120f.y4m]
        [--levels 28,32,36,40,44] [--choose-refs] [--no-activity-rd] [--chained] [--frames]
        [--json F]

Not run by ``make bench`` (a diagnostic, recorded in ``bench/compression-ideas.md``); both clips
at five levels take about 25 s of CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import need_tool, settings, shared_dir
from excamera.metrics import bd_rate, psnr_from_mse, ssim, ssim_db
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS
from excamera.xc.codec import Decoder, decode_frame
from excamera.xc.encoder import ReencodeOptions, reencode_chunk
from excamera.xc.ivf import IvfReader
from excamera.xc.y4m import Picture, read_y4m


def quality(src: Picture, dec: Picture) -> tuple[float, float]:
    d = src.y.astype(np.float64) - dec.y.astype(np.float64)
    return ssim(src.y, dec.y), psnr_from_mse(float(np.mean(d * d)))


def split(data: bytes) -> tuple[int, int]:
    """(first partition, the rest: token partitions and the frame tag) of a frame's bytes."""
    first = (data[0] | data[1] << 8 | data[2] << 16) >> 5
    return first, len(data) - first


def vpxenc_stream(clip: Path, level: int, tmp: Path) -> list[bytes]:
    out = tmp / f"{clip.stem}-{level}.ivf"
    subprocess.run([need_tool("vpxenc"), *VPXENC_SETTINGS, f"--cq-level={level}", "-o",
                    str(out), str(clip)], check=True)
    with IvfReader(out) as r:
        return [f.data for f in r]


def frame_row(data: bytes, src: Picture | None, dec: Picture | None) -> dict:
    first, tokens = split(data)
    row = {"bytes": len(data), "first": first, "tokens": tokens}
    if src is not None and dec is not None:
        s, p = quality(src, dec)
        row |= {"ssim": s, "psnr_y": p}
    return row


def identity(pics: list[Picture], stream: list[bytes], opts: ReencodeOptions,
             chained: bool) -> list[dict]:
    """Every inter frame of ``stream`` rebased onto the state vpxenc's decoder has before it
    (``chained``: onto the state the previous rebased frames reach, from vpxenc's key frame)."""
    dec = Decoder()
    chain = None
    shown = 0
    rows = []
    for i, data in enumerate(stream):
        state = dec.state
        pic = dec.decode(data)
        if data[0] & 1 == 0:  # key frame
            shown += pic is not None
            chain = dec.state
            continue
        src = pics[shown] if pic is not None else None
        onto = chain if chained else state
        chunk = reencode_chunk(onto, [data], state, [src] if src is not None else [], opts)
        out = chunk.frames[0]
        chain, rec = decode_frame(onto, out)
        rows.append({"frame": i, "shown": pic is not None,
                     "vpxenc": frame_row(data, src, pic), "rebase": frame_row(out, src, rec)})
        shown += pic is not None
    return rows


def totals(rows: list[dict], who: str) -> dict:
    shown = [r[who] for r in rows if r["shown"]]
    n = len(shown)
    return {
        "frames": n,
        "bytes": sum(r["bytes"] for r in shown),
        "first": sum(r["first"] for r in shown),
        "tokens": sum(r["tokens"] for r in shown),
        "hidden_bytes": sum(r[who]["bytes"] for r in rows if not r["shown"]),
        "ssim_db": ssim_db(sum(r["ssim"] for r in shown) / n),
        "psnr_y": sum(r["psnr_y"] for r in shown) / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="bigbuckbunny_320x180_48f.y4m,carphone_qcif_120f.y4m")
    ap.add_argument("--levels", default="28,32,36,40,44")
    ap.add_argument("--choose-refs", action="store_true")
    ap.add_argument("--no-activity-rd", action="store_true")
    ap.add_argument("--chained", action="store_true",
                    help="rebase each frame onto the previous rebased frames' state")
    ap.add_argument("--frames", action="store_true", help="print every frame's row")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    opts = ReencodeOptions(last_refreshes_all=False, activity_rd=not args.no_activity_rd,
                           choose_refs=args.choose_refs)
    try:
        levels = [int(v) for v in args.levels.split(",")]
    except ValueError:
        raise SystemExit(f"bench: --levels {args.levels!r}: comma-separated cq levels") from None
    if not all(0 <= v <= 63 for v in levels):
        raise SystemExit(f"bench: --levels {args.levels!r}: cq levels are 0..63")
    whos = ("vpxenc", "rebase")
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.clips.split(","):
            clip = shared_dir() / "clips" / name
            _, pics = read_y4m(clip)
            per_level = {}
            for level in levels:
                stream = vpxenc_stream(clip, level, Path(tmp))
                rows = identity(pics, stream, opts, args.chained)
                t = {who: totals(rows, who) for who in whos}
                per_level[level] = {"totals": t, "frames": rows}
                print(f"{name} L{level}, {t['vpxenc']['frames']} frames:", flush=True)
                for who in whos:
                    v = t[who]
                    print(f"  {who:7s} {v['bytes']:6d} B ({v['first']} + {v['tokens']}) "
                          f"{v['ssim_db']:.3f} dB {v['psnr_y']:.3f}, hidden {v['hidden_bytes']} B",
                          flush=True)
                if args.frames:
                    for row in rows:
                        cells = []
                        for who in whos:
                            a = row[who]
                            q = (f" {ssim_db(a['ssim']):.2f} {a['psnr_y']:.2f}"
                                 if row["shown"] else "")
                            cells.append(f"{a['first']:5d}+{a['tokens']:6d}{q}")
                        print(f"  {row['frame']:3d} " + " | ".join(cells))
            bd: dict[str, dict] = {}
            if len(levels) >= 4:
                for who, ref in [("rebase", "vpxenc")]:
                    tv = [per_level[lv]["totals"][ref] for lv in levels]
                    tr = [per_level[lv]["totals"][who] for lv in levels]
                    bd[f"{who} vs {ref}"] = {
                        m: bd_rate([t["bytes"] for t in tv], [t[m] for t in tv],
                                   [t["bytes"] for t in tr], [t[m] for t in tr])
                        for m in ("ssim_db", "psnr_y")}
                    b = bd[f"{who} vs {ref}"]
                    print(f"{name}: {who} vs {ref} BD-rate SSIM {b['ssim_db']:+.2f}% "
                          f"PSNR-Y {b['psnr_y']:+.2f}%", flush=True)
            result[name] = {"levels": per_level, "bd_rate": bd}
    if args.json:
        args.json.write_text(json.dumps({"settings": settings(args), "clips": result},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
