"""IVF reader and writer: round trips, every conformance vector, and damaged files."""

from __future__ import annotations

import csv
import pickle
import struct
import subprocess

import pytest

from _shared_paths import shared_dir, vectors_dir
from excamera.xc.ivf import (
    IvfError,
    IvfFrame,
    IvfHeader,
    IvfReader,
    IvfWriter,
    count_frames,
    read_ivf,
)


def manifest() -> list[dict[str, str]]:
    with open(vectors_dir() / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_round_trip_and_frame_count_fixup(tmp_path):
    path = tmp_path / "rt.ivf"
    frames = [bytes([i]) * (i * 37 % 500) for i in range(20)]  # includes an empty frame
    with IvfWriter(path, 175, 143, rate=30000, scale=1001) as w:
        for i, data in enumerate(frames):
            w.write(data, pts=i * 2)
    raw = path.read_bytes()
    assert raw[:4] == b"DKIF"
    assert struct.unpack_from("<HH4sHHIII", raw, 4) == (0, 32, b"VP80", 175, 143, 30000, 1001, 20)
    assert len(raw) == 32 + sum(12 + len(d) for d in frames)
    header, back = read_ivf(path)
    assert (header.width, header.height, header.rate, header.scale) == (175, 143, 30000, 1001)
    assert header.frame_count == 20 and header.fourcc == "VP80"
    assert [f.data for f in back] == frames
    assert [f.pts for f in back] == [2 * i for i in range(20)]


def test_writer_default_pts_and_count_while_open(tmp_path):
    path = tmp_path / "p.ivf"
    w = IvfWriter(path, 16, 16)
    w.write(b"abc")
    w.write(b"de")
    w._f.flush()
    # Before close the header says 0 frames, but every written frame is readable.
    assert struct.unpack_from("<I", path.read_bytes(), 24)[0] == 0
    assert count_frames(path) == 2
    w.close()
    w.close()  # idempotent
    header, frames = read_ivf(path)
    assert header.frame_count == 2 and [f.pts for f in frames] == [0, 1]


@pytest.mark.parametrize("row", manifest(), ids=lambda r: r["file"].rsplit("/", 1)[-1])
def test_conformance_vectors(row):
    path = vectors_dir() / row["file"]
    with IvfReader(path) as r:
        h = r.header
        assert h.fourcc == row["fourcc"]
        assert (h.width, h.height) == (int(row["width"]), int(row["height"]))
        assert f"{h.rate}/{h.scale}" == row["rate/scale"]
        assert h.frame_count == int(row["ivf_hdr_frames"])
        n = r.count_frames()
        frames = list(r)
    assert n == len(frames) == int(row["ivf_frames_counted"])
    assert 32 + sum(12 + len(f.data) for f in frames) == int(row["bytes"])
    # VP8 frame tag: bit 0 of the first byte is 0 for a key frame; the first is a key frame.
    assert frames[0].data[0] & 1 == 0


def test_fourcc_i420_variant_reads_the_same():
    for n in range(1, 5):
        a = read_ivf(vectors_dir() / f"vp80-03-segmentation-0{n}.ivf")
        b = read_ivf(
            vectors_dir() / "libvpx-test-data-extra" / f"vp80-03-segmentation-0{n}.fourcc-I420.ivf"
        )
        assert (a[0].fourcc, b[0].fourcc) == ("VP80", "I420")
        assert a[1] == b[1]


def test_rewritten_vector_decodes_identically(tmp_path):
    """Copy a vector frame by frame through the writer; vpxdec's per-frame MD5s are unchanged."""
    src = vectors_dir() / "vp80-00-comprehensive-006.ivf"  # 175x143: odd size
    header, frames = read_ivf(src)
    out = tmp_path / "copy.ivf"
    with IvfWriter(out, header.width, header.height, header.rate, header.scale) as w:
        for f in frames:
            w.write(f.data, f.pts)
    md5 = subprocess.run(
        ["vpxdec", "--md5", "--i420", "-o", "/dev/null", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    whole = (vectors_dir() / "WHOLE_OUTPUT_HASHES.tsv").read_text()
    line = next(ln for ln in whole.splitlines() if "comprehensive-006" in ln)
    assert md5 in line.split()
    assert out.read_bytes()[32:] == src.read_bytes()[32:]


def _vector_bytes() -> bytes:
    return (vectors_dir() / "vp80-00-comprehensive-001.ivf").read_bytes()


def test_truncated_payload(tmp_path):
    data = _vector_bytes()
    path = tmp_path / "cut.ivf"
    path.write_bytes(data[:-10])
    with pytest.raises(IvfError, match=r"cut\.ivf: frame 28 is truncated"):
        count_frames(path)
    with pytest.raises(IvfError, match=r"cut\.ivf: frame 28 is truncated"):
        read_ivf(path)


def test_truncated_frame_header(tmp_path):
    header, frames = read_ivf(vectors_dir() / "vp80-00-comprehensive-001.ivf")
    end_of_frame_3 = 32 + sum(12 + len(f.data) for f in frames[:4])
    path = tmp_path / "fh.ivf"
    path.write_bytes(_vector_bytes()[: end_of_frame_3 + 5])
    with IvfReader(path) as r:
        assert [r.read_frame().data for _ in range(4)] == [f.data for f in frames[:4]]
        with pytest.raises(IvfError, match=r"fh\.ivf: frame 4: frame header truncated \(5 of 12"):
            r.read_frame()
    with pytest.raises(IvfError, match="frame 4"):
        count_frames(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty file"),
        (b"RIFF" + bytes(40), "not an IVF file"),
        (b"\x1aE\xdf\xa3" + bytes(40), "not an IVF file"),  # a WebM/Matroska file
        (b"DKI", "IVF header truncated"),
        (b"DKIF\x00\x00\x20\x00VP80", "IVF header truncated"),
        (struct.pack("<4sHH4sHHIIII", b"DKIF", 1, 32, b"VP80", 1, 1, 1, 1, 0, 0), "version 1"),
        (struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 40, b"VP80", 1, 1, 1, 1, 0, 0), "header size"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.ivf"
    path.write_bytes(content)
    with pytest.raises(IvfError, match=message) as info:
        IvfReader(path)
    assert str(path) in str(info.value)


def test_implausible_frame_size(tmp_path):
    path = tmp_path / "huge.ivf"
    head = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", 16, 16, 30, 1, 1, 0)
    path.write_bytes(head + struct.pack("<IQ", 0xFFFFFFF0, 0) + b"x" * 10)
    with pytest.raises(IvfError, match="frame 0: size 4294967280 bytes is implausible"):
        read_ivf(path)


def test_vpxenc_output_reads(tmp_path):
    src = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    out = tmp_path / "e.ivf"
    subprocess.run(
        ["vpxenc", "--codec=vp8", "--good", "--cpu-used=8", "--limit=4", "--ivf", "-o", str(out),
         str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    header, frames = read_ivf(out)
    assert (header.width, header.height, header.fourcc) == (160, 90, "VP80")
    assert header.frame_count == len(frames) == 4
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)


def test_writer_argument_checks(tmp_path):
    with pytest.raises(IvfError, match="fourcc"):
        IvfWriter(tmp_path / "a.ivf", 16, 16, fourcc="VP8")
    with pytest.raises(IvfError, match="16-bit"):
        IvfWriter(tmp_path / "a.ivf", 70000, 16)
    with pytest.raises(IvfError, match="timebase"):
        IvfWriter(tmp_path / "a.ivf", 16, 16, rate=0)
    with IvfWriter(tmp_path / "b.ivf", 16, 16) as w, pytest.raises(IvfError, match="pts -1"):
        w.write(b"x", pts=-1)


def test_header_and_frame_are_named_tuples():
    """They were collections.namedtuple; callers still unpack them, compare them with tuples,
    read fields by name, print and pickle them."""
    header = IvfHeader("VP80", 176, 144, 30, 1, 29)
    assert header == ("VP80", 176, 144, 30, 1, 29, 0) and header.unused == 0
    assert (header.fourcc, header.width, header.height) == ("VP80", 176, 144)
    assert (header.rate, header.scale, header.frame_count) == (30, 1, 29)
    assert repr(header) == ("IvfHeader(fourcc='VP80', width=176, height=144, rate=30, scale=1, "
                            "frame_count=29, unused=0)")
    frame = IvfFrame(pts=7, data=b"xy")
    data, pts = frame
    assert (data, pts, frame.data, frame.pts) == (b"xy", 7, b"xy", 7)
    assert hash(frame) == hash((b"xy", 7)) and repr(frame) == "IvfFrame(data=b'xy', pts=7)"
    for value in (header, frame):
        copy = pickle.loads(pickle.dumps(value))
        assert copy == value and type(copy) is type(value)
    with pytest.raises(AttributeError):
        frame.extra = 1  # slots, as a namedtuple's
