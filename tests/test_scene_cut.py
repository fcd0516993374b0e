"""A hard cut inside a chunk costs no more than a key frame would.

The clip is built here from two shared clips: 9 frames of carphone (176x144), then 9 frames of
bus (352x288) halved to 176x144, so the cut is frame 9, inside ExCamera[6,16]'s second chunk
(frames 6..11). The frame at the cut, in the default encode's output, is held to the size of a
key frame of the same picture that vpxenc makes at the same luma SSIM, and the output must
decode in vpxdec. Frame headers are read by tests/vp8_headers.py, SSIM checked by
tests/test_metrics.py against an independent implementation.

vpxenc's pass 0 does not put a key frame at this cut (nor does one serial vpxenc run of the
clip, which spends 9738 bytes on it). In the default encode the cut is an inter frame of 4632
bytes at SSIM 0.9259, where vpxenc's key frame costs 4649 (measured). Before batch-start key
frames were made milder it was 4676 bytes at 0.9261 against vpxenc's 4657, and the rebase's
``--key-at-cuts`` made it a key frame of 4662 bytes at 0.9276; that case is the second test.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

import excamera
from _shared_paths import shared_dir
from excamera.metrics import ssim, ssim_db
from excamera.xc.codec import Decoder
from excamera.xc.ivf import IvfReader
from excamera.xc.y4m import Picture, read_y4m
from vp8_headers import parse_frame

CUT = 9
HEADER = b"YUV4MPEG2 W176 H144 F30000:1001 Ip A1:1 C420jpeg\n"


def halved(p: Picture) -> Picture:
    def half(a: np.ndarray) -> np.ndarray:
        s = (a[0::2, 0::2].astype(np.uint16) + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])
        return ((s + 2) // 4).astype(np.uint8)

    return Picture(half(p.y), half(p.u), half(p.v))


def write_y4m(path: Path, pictures: list[Picture]) -> None:
    with path.open("wb") as f:
        f.write(HEADER)
        for p in pictures:
            f.write(b"FRAME\n" + p.to_bytes())


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> tuple[Path, list[Picture]]:
    _, car = read_y4m(shared_dir() / "clips" / "carphone_qcif_120f.y4m")
    _, bus = read_y4m(shared_dir() / "clips" / "bus_cif_17f.y4m")
    pictures = car[:CUT] + [halved(p) for p in bus[:CUT]]
    path = tmp_path_factory.mktemp("cut") / "cut.y4m"
    write_y4m(path, pictures)
    return path, pictures


def vpxenc_key_frame_bytes(picture: Picture, quality: float, tmp: Path) -> float:
    """What vpxenc spends on a key frame of ``picture`` at luma SSIM ``quality``: its key
    frames at every level, interpolated (log bytes, linear in SSIM dB) between the coarsest
    level at or above ``quality`` and the next."""
    src, out = tmp / "one.y4m", tmp / "key.ivf"
    write_y4m(src, [picture])
    points = []
    for level in range(64):
        subprocess.run(["vpxenc", "--codec=vp8", "--ivf", "-q", "--disable-warning-prompt",
                        "--good", "--cpu-used=0", "--end-usage=q", f"--cq-level={level}",
                        f"--min-q={level}", f"--max-q={level}", "-o", str(out), str(src)],
                       check=True, capture_output=True, timeout=60)
        with IvfReader(out) as r:
            (data,) = [f.data for f in r]
        assert parse_frame(data).key_frame
        points.append((ssim_db(ssim(Decoder().decode(data).y, picture.y)), len(data)))
    at = max(i for i, (q, _) in enumerate(points) if q >= ssim_db(quality))
    (q0, b0), (q1, b1) = points[at], points[min(at + 1, 63)]
    t = 0.0 if q0 == q1 else (q0 - ssim_db(quality)) / (q0 - q1)
    return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))


def test_a_cut_inside_a_chunk_costs_no_more_than_a_key_frame(cut_clip, tmp_path: Path) -> None:
    path, pictures = cut_clip
    out = tmp_path / "out.ivf"
    excamera.encode(path, out, quality=30, workers=2)  # ExCamera[6,16], pass 0 by vpxenc
    with IvfReader(out) as r:
        frames = [f.data for f in r]
    dec = Decoder()
    shown = [(f, pic) for f in frames if (pic := dec.decode(f)) is not None]
    assert len(shown) == len(pictures)
    data, recon = shown[CUT]
    quality = ssim(recon.y, pictures[CUT].y)
    key = vpxenc_key_frame_bytes(pictures[CUT], quality, tmp_path)
    assert len(data) <= key, (len(data), key, quality)
    done = subprocess.run(["vpxdec", "--i420", "-o", str(tmp_path / "d.yuv"), str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d.yuv").stat().st_size == len(pictures) * 176 * 144 * 3 // 2


def test_key_at_cuts_turns_a_costlier_inter_frame_into_a_key_frame(cut_clip,
                                                                    tmp_path: Path) -> None:
    """xc-enc's ``--key-at-cuts`` on the rebase where it mattered before batch-start key frames
    were made milder: chunk 1 (the cut at its frame 3) rebased onto chunk 0's pass-0 state
    (vpxenc's key frame at quantizer 0), with the pipeline's excamera flags. Without it the
    cut stays an inter frame (4,676 bytes at SSIM 0.926 when measured); with it a key frame
    of at least that SSIM and fewer bytes, and the joined stream decodes in vpxdec."""
    from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS
    from excamera.xc.encoder import ReencodeOptions, reencode_chunk
    from excamera.xc.ivf import IvfWriter

    _, pictures = cut_clip
    streams = []
    for k in (0, 1):
        src, out = tmp_path / f"c{k}.y4m", tmp_path / f"c{k}.ivf"
        write_y4m(src, pictures[6 * k:6 * k + 6])
        subprocess.run(["vpxenc", *VPXENC_SETTINGS, "--cq-level=30", "-o", str(out), str(src)],
                       check=True, capture_output=True, timeout=60)
        with IvfReader(out) as r:
            streams.append([f.data for f in r])
    dec = Decoder()
    for f in streams[0]:
        dec.decode(f)
    state0 = dec.state
    chunk1 = pictures[6:12]
    flags = {"kf_q_weight": 0.75, "speed": "best", "last_refreshes_all": False,
             "choose_refs": True}
    plain = reencode_chunk(state0, streams[1], None, chunk1, ReencodeOptions(**flags))
    keyed = reencode_chunk(state0, streams[1], None, chunk1,
                           ReencodeOptions(**flags, key_at_cuts=True))
    cut = CUT - 6
    assert not parse_frame(plain.frames[cut]).key_frame
    assert parse_frame(keyed.frames[cut]).key_frame
    assert len(keyed.frames[cut]) < len(plain.frames[cut])
    assert keyed.frames[:cut] == plain.frames[:cut]

    def shown_ssim(frames: list[bytes]) -> list[float]:
        d = Decoder(state0)
        shown = [d.decode(f) for f in frames]
        return [ssim(pic.y, src.y) for pic, src in zip(
            [p for p in shown if p is not None], chunk1, strict=True)]

    assert shown_ssim(keyed.frames)[cut] >= shown_ssim(plain.frames)[cut]
    joined = tmp_path / "joined.ivf"
    with IvfWriter(joined, 176, 144) as w:
        for f in [*streams[0], *keyed.frames]:
            w.write(f)
    done = subprocess.run(["vpxdec", "--i420", "-o", str(tmp_path / "j.yuv"), str(joined)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "j.yuv").stat().st_size == 12 * 176 * 144 * 3 // 2
