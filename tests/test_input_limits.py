"""Hostile inputs cost little: a Y4M header or a PNG that declares a huge picture is refused with
one line before its memory is allocated. Memory is the peak RSS of the real command's process
(its workers included), as the kernel reports it to ``wait4``."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import png
import pytest

from _shared_paths import shared_dir
from excamera.pipelines.png2y4m import DEFAULT_MAX_PIXELS, PngConvertError, read_png_rgb
from excamera.xc.y4m import MAX_DIMENSION, Y4MError, Y4MReader, frame_bytes

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
CLI = [sys.executable, "-m", "excamera.cli"]
XC_ENC = [sys.executable, "-m", "excamera.xc.tools_main", "xc-enc"]
# A bare interpreter with numpy and the codec loaded stays well under this; each case below
# would have cost at least 400 MB before it was refused up front.
CHEAP_KB = 200_000

pytestmark = pytest.mark.timeout(300)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_kb: int  # the largest RSS of the process or of any descendant it waited for


# Runs the command as its child and writes the child's peak RSS (with its descendants) to a
# file. A process's peak includes the memory of the process it was forked from, up to its
# exec; this small wrapper, not the test runner with its hundreds of MB, is that process.
_WRAPPER = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[2:]).returncode\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "open(sys.argv[1], 'w').write(str(peak))\n"
            "sys.exit(code)\n")


def run_measured(argv: list[str], tmp: Path, stdin: bytes | None = None,
                 timeout: float = 240) -> Measured:
    """Run ``argv`` to its end and return its output and peak RSS in KiB."""
    out, err, peak = tmp / "stdout", tmp / "stderr", tmp / "peak"
    peak.unlink(missing_ok=True)
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(peak), *argv],
                                stdin=subprocess.PIPE if stdin is not None else None,
                                stdout=fo, stderr=fe, env=child_env(), cwd=tmp,
                                start_new_session=True)
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    killer.start()
    try:
        if stdin is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.wait()
    finally:
        killer.cancel()
    return Measured(proc.returncode, out.read_text(), err.read_text(), int(peak.read_text()))


def one_line(m: Measured) -> str:
    assert m.returncode != 0, m
    lines = m.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in m.stderr, m.stderr
    return lines[0]


def y4m_claiming(path: Path, w: int, h: int, body: int = 1000) -> Path:
    """A Y4M whose header declares a w x h picture, followed by one FRAME of ``body`` bytes."""
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F30:1 C420jpeg\nFRAME\n".encode() + bytes(body))
    return path


# --- Y4M ----------------------------------------------------------------------------------

def test_y4m_header_refuses_sizes_vp8_cannot_code(tmp_path: Path) -> None:
    assert MAX_DIMENSION == 16383
    for w, h in ((16384, 16), (16, 16384), (65536, 65536)):
        path = y4m_claiming(tmp_path / "big.y4m", w, h)
        with pytest.raises(Y4MError, match=r"big\.y4m: Y4M size [WH]\d+ is larger than VP8's "
                           r"16383"):
            Y4MReader(path)
    with Y4MReader(y4m_claiming(tmp_path / "edge.y4m", 16383, 2)) as r:
        assert (r.width, r.height) == (16383, 2)


def test_truncated_frame_is_found_before_its_buffer_is_made(tmp_path: Path) -> None:
    """The API: a regular file's remaining size is checked before the frame is allocated."""
    path = y4m_claiming(tmp_path / "t.y4m", 16000, 16000)
    tracemalloc.start()
    try:
        with Y4MReader(path) as r, pytest.raises(Y4MError) as info:
            r.read_frame()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # the frame would be 384 MB
    assert str(info.value) == (f"{path}: frame 0 is truncated (1000 of "
                               f"{frame_bytes(16000, 16000)} bytes); the file ends inside it")


@pytest.mark.parametrize("size", [(16384, 16384), (16384, 16)])
def test_xc_enc_refuses_an_oversized_header_cheaply(tmp_path: Path, size) -> None:
    # 16384x16 with its whole frame present was a traceback from the encoder; 16384x16384
    # allocated 400 MB before noticing the file ends.
    path = y4m_claiming(tmp_path / "big.y4m", *size, body=frame_bytes(*size) if size[1] == 16
                        else 1000)
    m = run_measured([*XC_ENC, str(path), "-o", "out.ivf", "-y", "40"], tmp_path)
    line = one_line(m)
    assert line == f"xc-enc: {path}: Y4M size W16384 is larger than VP8's 16383"
    assert m.peak_kb < CHEAP_KB, m.peak_kb
    assert not (tmp_path / "out.ivf").exists()


def test_xc_enc_refuses_a_truncated_frame_before_allocating_it(tmp_path: Path) -> None:
    path = y4m_claiming(tmp_path / "cut.y4m", 16000, 16000)
    m = run_measured([*XC_ENC, str(path), "-o", "out.ivf"], tmp_path)
    assert "frame 0 is truncated (1000 of 384000000 bytes)" in one_line(m)
    assert m.peak_kb < CHEAP_KB, m.peak_kb


def test_xc_enc_reads_a_pipe_piece_by_piece(tmp_path: Path) -> None:
    """No file size to check on a pipe: memory follows the bytes that arrive, not the header."""
    data = y4m_claiming(tmp_path / "cut.y4m", 16000, 16000).read_bytes()
    m = run_measured([*XC_ENC, "/dev/stdin", "-o", "out.ivf"], tmp_path, stdin=data)
    assert "/dev/stdin: frame 0 is truncated (1000 of 384000000 bytes)" in one_line(m)
    assert m.peak_kb < CHEAP_KB, m.peak_kb
    # and a real clip through a pipe encodes like the file does
    clip = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    piped = run_measured([*XC_ENC, "/dev/stdin", "-o", "piped.ivf", "-y", "60"], tmp_path,
                         stdin=clip.read_bytes())
    assert piped.returncode == 0, piped.stderr
    direct = run_measured([*XC_ENC, str(clip), "-o", "direct.ivf", "-y", "60"], tmp_path)
    assert direct.returncode == 0, direct.stderr
    assert (tmp_path / "piped.ivf").read_bytes() == (tmp_path / "direct.ivf").read_bytes()


@pytest.mark.parametrize("size,words", [
    ((16384, 16384), "Y4M size W16384 is larger than VP8's 16383"),
    ((16000, 16000), "frame 0 is truncated (1000 of 384000000 bytes)"),
])
def test_excamera_encode_refuses_a_y4m_bomb_cheaply(tmp_path: Path, size, words: str) -> None:
    path = y4m_claiming(tmp_path / "bomb.y4m", *size)
    m = run_measured([*CLI, "encode", str(path), "-o", "out.ivf"], tmp_path)
    line = one_line(m)
    assert line.startswith("excamera encode: error: ") and words in line, line
    assert m.peak_kb < CHEAP_KB, m.peak_kb
    assert not (tmp_path / "out.ivf").exists()


# --- PNG ----------------------------------------------------------------------------------

def zero_png(path: Path, w: int, h: int) -> Path:
    """A w x h RGB PNG of zeros, written row by row (it compresses about a thousandfold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    row = bytes(3 * w)
    with open(path, "wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=8, compression=9).write(
            f, (row for _ in range(h)))
    return path


def test_png_pixel_count_is_checked_from_the_header(tmp_path: Path) -> None:
    small = zero_png(tmp_path / "small.png", 10, 10)
    assert read_png_rgb(small, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(PngConvertError) as info:
        read_png_rgb(small, max_pixels=99)
    assert str(info.value) == (f"{small}: PNG is 10x10 = 100 pixels, more than the limit of 99 "
                               "(raise it with --max-pixels)")
    assert DEFAULT_MAX_PIXELS == 3840 * 2160
    # The header alone decides: nothing after IHDR is read, so garbage there does not matter.
    ihdr = struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "head.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"garbage" * 10)
    with pytest.raises(PngConvertError, match="5000x5000 = 25000000 pixels, more than the limit"):
        read_png_rgb(tmp_path / "head.png")


def test_png2y4m_job_refuses_a_png_bomb_with_little_memory(tmp_path: Path) -> None:
    """The issue's case: 4000x4000 zeros (a few tens of KB) took a worker to 1.27 GB."""
    store = tmp_path / "store"
    bomb = zero_png(store / "clip-png16" / "00000001.png", 4000, 4000)
    assert bomb.stat().st_size < 100_000
    m = run_measured([*CLI, "png2y4m", "-n", "1", "-f", "1", "-v", "clip", "-b", str(store),
                      "-t", "0"], tmp_path)
    assert m.returncode == 1
    assert "clip-png16/00000001.png: PNG is 4000x4000 = 16000000 pixels, more than the limit " \
        f"of {DEFAULT_MAX_PIXELS}" in m.stderr, m.stderr
    assert "Traceback" not in m.stderr
    assert m.peak_kb < 300_000, m.peak_kb  # the coordinator and its worker, each ~100 MB
    assert not (store / "clip-y4m_01").exists()


def test_png2y4m_max_pixels_flag_reaches_the_workers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for i in (1, 2):
        zero_png(store / "clip-png16" / f"{i:08d}.png", 10, 10)
    base = [*CLI, "png2y4m", "-n", "2", "-f", "1", "-v", "clip", "-b", str(store), "-t", "0"]
    refused = run_measured([*base, "--max-pixels", "99"], tmp_path)
    assert refused.returncode == 1
    assert "PNG is 10x10 = 100 pixels, more than the limit of 99" in refused.stderr
    done = run_measured([*base, "--max-pixels", "100"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (store / "clip-y4m_01").iterdir()) == \
        ["00000000.y4m", "00000001.y4m"]
    bad = run_measured([*base, "--max-pixels", "0"], tmp_path)
    assert one_line(bad) == "excamera png2y4m: error: --max-pixels must be at least 1, not 0"
