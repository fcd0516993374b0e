"""Y4M reader and writer: round trips, the real clips, odd sizes, colorspaces, bad files, and
agreement with ffmpeg and vpxenc/vpxdec (the tools the rest of the pipeline meets)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from _shared_paths import shared_dir
from excamera.xc.ivf import IvfReader
from excamera.xc.y4m import (
    Picture,
    Y4MError,
    Y4MReader,
    Y4MWriter,
    count_frames,
    frame_bytes,
    read_y4m,
    write_y4m,
)

CLIPS = {
    "carphone_qcif_120f.y4m": (176, 144, 120, (30000, 1001)),
    "bus_cif_17f.y4m": (352, 288, 17, (30, 1)),
    "bigbuckbunny_320x180_48f.y4m": (320, 180, 48, (25, 1)),
    "park_joy_160x90_10f.y4m": (160, 90, 10, (50, 1)),
}


def random_pictures(n: int, w: int, h: int, seed: int = 1) -> list[Picture]:
    rng = np.random.default_rng(seed)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return [
        Picture(
            rng.integers(0, 256, (h, w), np.uint8),
            rng.integers(0, 256, (ch, cw), np.uint8),
            rng.integers(0, 256, (ch, cw), np.uint8),
        )
        for _ in range(n)
    ]


def raw_y4m(path: Path, header: str, frames: list[bytes], frame_line: bytes = b"FRAME\n") -> Path:
    path.write_bytes(header.encode() + b"\n" + b"".join(frame_line + f for f in frames))
    return path


@pytest.mark.parametrize("w,h", [(16, 16), (7, 5), (1, 1), (175, 143), (2, 3)])
def test_round_trip(tmp_path, w, h):
    pics = random_pictures(4, w, h, seed=w * 100 + h)
    path = tmp_path / "rt.y4m"
    write_y4m(path, pics, fps=(30000, 1001))
    header, back = read_y4m(path)
    assert (header.width, header.height, header.fps) == (w, h, (30000, 1001))
    assert header.colorspace == "420jpeg"
    assert back == pics
    assert back[0].u.shape == ((h + 1) // 2, (w + 1) // 2)
    # exact file layout: header line, then per frame 'FRAME\n' + w*h + 2*chroma bytes
    head = path.read_bytes().split(b"\n", 1)[0]
    assert head == f"YUV4MPEG2 W{w} H{h} F30000:1001 Ip A1:1 C420jpeg".encode()
    assert path.stat().st_size == len(head) + 1 + 4 * (6 + frame_bytes(w, h))
    assert count_frames(path) == 4


def test_planes_are_writable_copies(tmp_path):
    path = tmp_path / "a.y4m"
    pics = random_pictures(1, 8, 8)
    write_y4m(path, pics)
    with Y4MReader(path) as r:
        pic = r.read_frame()
    assert pic.y.flags.writeable and pic.u.flags.writeable
    pic.y[0, 0] ^= 0xFF  # must not raise, and must not touch the file
    assert read_y4m(path)[1][0] == pics[0] != pic


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_real_clips(name):
    w, h, n, fps = CLIPS[name]
    path = shared_dir() / "clips" / name
    with Y4MReader(path) as r:
        assert (r.width, r.height, r.fps) == (w, h, fps)
        assert r.count_frames() == n
        pics = list(r)
    assert len(pics) == n
    assert all(p.y.shape == (h, w) and p.u.shape == ((h + 1) // 2, (w + 1) // 2) for p in pics)
    # Real content: the luma is not constant and pictures differ over time.
    assert pics[0].y.std() > 5
    assert not np.array_equal(pics[0].y, pics[-1].y)


def test_count_does_not_move_the_read_position():
    path = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    with Y4MReader(path) as r:
        first = r.read_frame()
        assert r.count_frames() == 10
        second = r.read_frame()
        rest = list(r)
    _, all_pics = read_y4m(path)
    assert first == all_pics[0] and second == all_pics[1] and rest == all_pics[2:]


def test_reader_matches_ffmpeg_raw_decode(tmp_path):
    """ffmpeg's own y4m demuxer, asked for raw yuv420p, yields exactly our planes."""
    path = shared_dir() / "clips" / "bigbuckbunny_320x180_48f.y4m"
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        check=True,
        capture_output=True,
    ).stdout
    _, pics = read_y4m(path)
    assert raw == b"".join(p.to_bytes() for p in pics)


def test_reads_odd_size_file_made_by_ffmpeg(tmp_path):
    src = shared_dir() / "clips" / "carphone_qcif_120f.y4m"
    odd = tmp_path / "odd.y4m"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(src), "-frames:v", "3", "-vf", "scale=175:143",
         "-pix_fmt", "yuv420p", "-strict", "-1", "-y", str(odd)],
        check=True,
    )  # fmt: skip
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(odd), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        check=True,
        capture_output=True,
    ).stdout
    header, pics = read_y4m(odd)
    assert (header.width, header.height, len(pics)) == (175, 143, 3)
    assert pics[0].u.shape == (72, 88)
    assert raw == b"".join(p.to_bytes() for p in pics)


def test_writer_output_accepted_by_ffmpeg(tmp_path):
    pics = random_pictures(3, 33, 17, seed=5)
    path = tmp_path / "w.y4m"
    write_y4m(path, pics, fps=(25, 1))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-count_frames", "-show_entries",
         "stream=width,height,pix_fmt,r_frame_rate,nb_read_frames", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert probe == "33,17,yuv420p,25/1,3"
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
        check=True,
        capture_output=True,
    ).stdout
    assert raw == b"".join(p.to_bytes() for p in pics)


def test_writer_output_accepted_by_vpxenc(tmp_path):
    """vpxenc encodes what we wrote, and vpxdec's decode of it is close to our pictures."""
    _, pics = read_y4m(shared_dir() / "clips" / "park_joy_160x90_10f.y4m")
    pics = pics[:5]
    src = tmp_path / "in.y4m"
    write_y4m(src, pics, fps=(50, 1))
    ivf = tmp_path / "out.ivf"
    subprocess.run(
        ["vpxenc", "--codec=vp8", "--good", "--cpu-used=4", "--end-usage=q", "--cq-level=4",
         "--min-q=0", "--max-q=8", "--ivf", "-q", "-o", str(ivf), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    with IvfReader(ivf) as r:
        assert (r.width, r.height) == (160, 90)
        assert (r.header.rate, r.header.scale) == (50, 1)
        assert r.count_frames() == 5
    dec = tmp_path / "dec.y4m"
    subprocess.run(["vpxdec", "-o", str(dec), str(ivf)], check=True, capture_output=True)
    _, back = read_y4m(dec)
    assert len(back) == 5
    for a, b in zip(pics, back, strict=True):
        for pa, pb in ((a.y, b.y), (a.u, b.u), (a.v, b.v)):
            mse = np.mean((pa.astype(float) - pb.astype(float)) ** 2)
            psnr = 10 * np.log10(255**2 / max(mse, 1e-9))
            assert psnr > 35, f"decoded plane PSNR {psnr:.1f} dB: planes mixed up?"


@pytest.mark.parametrize("tag", [" C420", " C420jpeg", " C420mpeg2", " C420paldv", ""])
def test_accepted_colorspaces(tmp_path, tag):
    pics = random_pictures(2, 5, 3)
    path = raw_y4m(
        tmp_path / "c.y4m",
        f"YUV4MPEG2 W5 H3 F24:1 Ip A1:1{tag} XYSCSS=420JPEG XCOLORRANGE=FULL",
        [p.to_bytes() for p in pics],
    )
    header, back = read_y4m(path)
    assert back == pics
    assert header.colorspace == (tag.strip()[1:] or "420jpeg")
    assert header.extras == ("YSCSS=420JPEG", "COLORRANGE=FULL")


@pytest.mark.parametrize("cs", ["422", "444", "mono", "420p10", "444alpha", "411"])
def test_rejected_colorspaces(tmp_path, cs):
    path = raw_y4m(tmp_path / "c.y4m", f"YUV4MPEG2 W4 H4 F24:1 C{cs}", [bytes(48)])
    with pytest.raises(Y4MError, match=rf"c\.y4m: Y4M colorspace C{cs} is not supported"):
        Y4MReader(path)


def test_frame_parameters_and_unknown_tags_ignored(tmp_path):
    pics = random_pictures(2, 4, 2)
    path = raw_y4m(
        tmp_path / "p.y4m",
        "YUV4MPEG2 W4 H2 F30:1 Ip A0:0 C420 Zfuture",
        [p.to_bytes() for p in pics],
        frame_line=b"FRAME Ip XFOO=1\n",
    )
    assert read_y4m(path)[1] == pics
    assert count_frames(path) == 2


def test_missing_rate_is_none(tmp_path):
    path = raw_y4m(tmp_path / "r.y4m", "YUV4MPEG2 W2 H2", [bytes(6)])
    header, pics = read_y4m(path)
    assert header.fps is None and len(pics) == 1


@pytest.mark.parametrize("cut", [1, 100, frame_bytes(20, 10) - 1])
def test_truncated_last_frame(tmp_path, cut):
    pics = random_pictures(3, 20, 10)
    path = tmp_path / "t.y4m"
    write_y4m(path, pics)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    with Y4MReader(path) as r:
        assert r.read_frame() == pics[0]
        assert r.read_frame() == pics[1]
        with pytest.raises(Y4MError, match=r"t\.y4m: frame 2 is truncated"):
            r.read_frame()
        with pytest.raises(Y4MError, match=r"t\.y4m: frame 2 is truncated"):
            r.count_frames()


def test_file_ending_inside_frame_line(tmp_path):
    path = tmp_path / "f.y4m"
    write_y4m(path, random_pictures(1, 4, 4))
    with open(path, "ab") as f:
        f.write(b"FRA")
    with pytest.raises(Y4MError, match=r"f\.y4m: frame 1: file ends inside the FRAME line"):
        read_y4m(path)
    with pytest.raises(Y4MError, match="frame 1"):
        count_frames(path)


def test_garbage_instead_of_frame_header(tmp_path):
    path = raw_y4m(tmp_path / "g.y4m", "YUV4MPEG2 W2 H2", [bytes(6)], frame_line=b"FRAMEX\n")
    with pytest.raises(Y4MError, match="frame 0: expected a FRAME header"):
        read_y4m(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty file"),
        (b"RIFF....WAVEfmt \n", "not a Y4M file"),
        (b"YUV4MPEG2X W2 H2\n", "not a Y4M file"),
        (b"YUV4MPEG2 W2 H2", "file ends inside the Y4M header"),
        (b"YUV4MPEG2 H2 F1:1\n", "no W tag"),
        (b"YUV4MPEG2 W2\n", "no H tag"),
        (b"YUV4MPEG2 Wabc H2\n", "Wabc is not a number"),
        (b"YUV4MPEG2 W0 H2\n", "out of range"),
        (b"YUV4MPEG2 W2 H2 F30\n", "F30 is not a ratio"),
        (b"YUV4MPEG2 W2 H2 F0:1\n", "not positive"),
        (b"\x00" * 5000, "not a Y4M file"),
    ],
)
def test_bad_headers(tmp_path, content, message):
    path = tmp_path / "bad.y4m"
    path.write_bytes(content)
    with pytest.raises(Y4MError, match=message) as info:
        Y4MReader(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(Y4MError, match="cannot open"):
        Y4MReader(tmp_path / "nope.y4m")


def test_writer_checks(tmp_path):
    with Y4MWriter(tmp_path / "w.y4m", 8, 8) as w:
        with pytest.raises(Y4MError, match="frame 0 is 4x4, the stream is 8x8"):
            w.write(Picture.blank(4, 4))
        w.write(Picture.blank(8, 8, luma=16))
        assert w.frames_written == 1
    with pytest.raises(Y4MError, match="C422"):
        Y4MWriter(tmp_path / "x.y4m", 8, 8, colorspace="422")
    with pytest.raises(ValueError, match="chroma"):
        Picture(np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        Picture(np.zeros((4, 4)), np.zeros((2, 2)), np.zeros((2, 2)))


def test_writer_mpeg2_colorspace_is_metadata(tmp_path):
    pics = random_pictures(1, 6, 6)
    with Y4MWriter(tmp_path / "m.y4m", 6, 6, (24, 1), colorspace="420mpeg2") as w:
        w.write(pics[0])
    header, back = read_y4m(tmp_path / "m.y4m")
    assert header.colorspace == "420mpeg2" and back == pics
