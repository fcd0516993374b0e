"""xc's encoder on single boosted frames, against vpxenc's encode of the same frame.

ExCamera's boosted frames (a chunk's converted first frame, encoded by xc in pass 1, and a
batch-start key frame, re-encoded by xc) carry much of a clip's bytes; this measures the
encoder alone on them, on a state vpxenc made, so an encoder change can be judged in seconds
before a full ``bench/excamera.py`` run:

- ``inter F@L``: the serial vpxenc encode at cq level L (mu's settings,
  ``xcenc.plan.VPXENC_SETTINGS``) is decoded up to frame F; xc encodes frame F as an inter frame
  refreshing last and golden on that state, at each quantizer index of ``--inter-q``
  (``encode_frame``, ``--speed``).
- ``key F@L``: frame F as a key frame at each of ``--key-q``: xc's key-frame analysis
  (``xc``), vpxenc's own key frame at level L re-quantized to those quantizers with its intra
  modes kept (``rebased``: ``reencode_chunk`` with ``s_ac_qi`` and ``activity_rd``, the
  batch-start re-key before ``--full-key``), and the same with ``key_frame_in_full`` (``full-key``:
  xc's analysis weighted by activity, the re-key now).

Each row is a curve of (bytes, luma SSIM in dB, PSNR-Y); vpxenc's own frame is one point
beside it. With ``--against FILE`` (an earlier ``--json``) each curve's BD-rate against the
same curve there is printed, SSIM and PSNR-Y (:func:`excamera.metrics.bd_rate`).

    python bench/encoder_frames.py [--clip bigbuckbunny_320x180_48f.y4m]
        [--inter 42@44,28@36] [--key 0@44,0@28] [--json F] [--against F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import need_tool, settings, shared_dir
from excamera import _xc
from excamera.metrics import bd_rate, psnr_from_mse, ssim, ssim_db
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS
from excamera.xc.codec import Decoder, State
from excamera.xc.encoder import encode_picture
from excamera.xc.ivf import IvfReader
from excamera.xc.y4m import Picture, read_y4m


def quality(src: Picture, dec: Picture) -> tuple[float, float]:
    import numpy as np

    mse = float(np.mean((src.y.astype(np.float64) - dec.y.astype(np.float64)) ** 2))
    return ssim_db(ssim(src.y, dec.y)), psnr_from_mse(mse)


def vpxenc_stream(clip: Path, level: int, tmp: Path) -> list[bytes]:
    """The serial encode of the whole clip (a shorter one would place golden frames
    elsewhere)."""
    out = tmp / f"vpx-{level}.ivf"
    if not out.exists():
        subprocess.run([need_tool("vpxenc"), *VPXENC_SETTINGS, f"--cq-level={level}", "-o",
                        str(out), str(clip)], check=True)
    with IvfReader(out) as r:
        return [f.data for f in r]


def state_before(stream: list[bytes], shown: int) -> tuple[State, int]:
    """vpxenc's decoder state before its ``shown``-th shown frame, and that frame's index in
    ``stream`` (hidden alt-ref frames included)."""
    dec = Decoder()
    seen = 0
    for i, data in enumerate(stream):
        if seen == shown:
            return dec.state, i
        if dec.decode(data) is not None:
            seen += 1
    raise SystemExit(f"bench: the stream has no shown frame {shown}")


def point(data: bytes, src: Picture, dec: Picture) -> dict:
    s, p = quality(src, dec)
    return {"bytes": len(data), "ssim_db": s, "psnr_y": p}


def inter_rows(pics: list[Picture], stream: list[bytes], f: int, qs: list[int],
               speed: str) -> dict:
    state, i = state_before(stream, f)
    pic = Decoder(state).decode(stream[i])
    vpx = point(stream[i], pics[f], pic)
    curve = []
    for q in qs:
        e = encode_picture(state, pics[f], key_frame=False, qindex=q, speed=speed)
        curve.append({"q": q, **point(e.data, pics[f], e.recon)})
    return {"vpxenc": vpx, "xc": curve}


def key_rows(pics: list[Picture], stream: list[bytes], f: int, qs: list[int],
             speed: str) -> dict:
    if f != 0:
        raise SystemExit("bench: key frames are measured at frame 0 (vpxenc's key frame)")
    vpx = point(stream[0], pics[0], Decoder().decode(stream[0]))
    full, rebased, rekey = [], [], []
    for q in qs:
        e = encode_picture(State(), pics[0], key_frame=True, qindex=q, speed=speed)
        full.append({"q": q, **point(e.data, pics[0], e.recon)})
        for curve, in_full in ((rebased, False), (rekey, True)):
            frames, _, _ = _xc.reencode_chunk(State(), [stream[0]], None,
                                              [(pics[0].y, pics[0].u, pics[0].v)], s_ac_qi=q,
                                              activity_rd=True, key_frame_in_full=in_full)
            dec = Decoder().decode(bytes(frames[0]))
            curve.append({"q": q, **point(bytes(frames[0]), pics[0], dec)})
    return {"vpxenc": vpx, "xc": full, "rebased": rebased, "full-key": rekey}


def parse_points(text: str) -> list[tuple[int, int]]:
    out = []
    for item in filter(None, text.split(",")):
        f, _, level = item.partition("@")
        out.append((int(f), int(level)))
    return out


def bd(a: list[dict], b: list[dict], metric: str) -> float | None:
    try:
        return bd_rate([p["bytes"] for p in a], [p[metric] for p in a],
                       [p["bytes"] for p in b], [p[metric] for p in b])
    except ValueError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="bigbuckbunny_320x180_48f.y4m")
    ap.add_argument("--inter", default="42@44,28@36,14@28",
                    help="boosted inter frames, F@L (frame F on vpxenc's state at cq level L)")
    ap.add_argument("--key", default="0@44,0@28", help="key frames, 0@L")
    ap.add_argument("--inter-q", default="8,12,16,20,26,32,40")
    ap.add_argument("--key-q", default="4,8,12,16,20,26")
    ap.add_argument("--speed", default="good")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--against", type=Path)
    args = ap.parse_args()
    _, pics = read_y4m(shared_dir() / "clips" / args.clip)
    inter, keys = parse_points(args.inter), parse_points(args.key)
    iq = [int(q) for q in args.inter_q.split(",")]
    kq = [int(q) for q in args.key_q.split(",")]
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f, level in inter:
            stream = vpxenc_stream(shared_dir() / "clips" / args.clip, level, Path(tmp))
            rows[f"inter {f}@{level}"] = inter_rows(pics, stream, f, iq, args.speed)
        for f, level in keys:
            stream = vpxenc_stream(shared_dir() / "clips" / args.clip, level, Path(tmp))
            rows[f"key {f}@{level}"] = key_rows(pics, stream, f, kq, args.speed)
    old = json.loads(args.against.read_text())["rows"] if args.against else {}
    for name, r in rows.items():
        v = r["vpxenc"]
        print(f"{name}: vpxenc {v['bytes']} B, {v['ssim_db']:.2f} dB SSIM, "
              f"{v['psnr_y']:.2f} dB PSNR-Y")
        for curve in ("xc", "rebased", "full-key"):
            if curve not in r:
                continue
            pts = " ".join(f"q{p['q']}:{p['bytes']}/{p['ssim_db']:.2f}/{p['psnr_y']:.2f}"
                           for p in r[curve])
            print(f"  {curve:8} {pts}")
            if name in old and curve in old[name]:
                s, p = bd(old[name][curve], r[curve], "ssim_db"), bd(old[name][curve], r[curve],
                                                                     "psnr_y")
                fmt = lambda v: "n/a" if v is None else f"{v:+.2f}%"  # noqa: E731
                print(f"  {curve:8} vs --against: SSIM {fmt(s)}, PSNR-Y {fmt(p)}")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings(args), "rows": rows}, indent=1)
                             + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
