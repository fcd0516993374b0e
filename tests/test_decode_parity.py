"""``excamera decode`` against ``vpxdec``, flag for flag: the same command line gives the same
bytes and the same ``--md5`` lines.

vpxdec (libvpx 1.12, Debian's vpx-tools) is the oracle. Every conformance vector is decoded by
both tools with ``--md5`` (Y4M, so the header and frame records count too; ``--scale`` for the
two whose size changes) and ``--md5 --i420`` with a per-frame name pattern; the per-frame lines
must also equal the ``.md5`` file shipped with the vector, an oracle independent of both. A few
cases compare the written files themselves. Streams these tests make with vpxenc cover what the
vectors do not: key frames and hidden alt-ref frames for ``--skip``/``--limit``, VP8's own
resizing and hand-made container sizes for ``--scale`` (libyuv's bilinear up and down paths),
WebM through PyAV, standard input. Bad input must give one line and exit 1.
"""

from __future__ import annotations

import filecmp
import os
import pty
import resource
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from _shared_paths import conformance_vectors, shared_dir, vectors_dir
from excamera.xc.ivf import IvfWriter, read_ivf
from vp8_headers import parse_frame

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
SIZE_CHANGING = {"vp80-03-segmentation-1425", "vp80-03-segmentation-1436"}
PER_FRAME = ["--md5", "--i420", "-o", "%wx%h-%4.i420"]

pytestmark = pytest.mark.timeout(120)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def excamera(args: list[str], cwd: Path, stdin: bytes | None = None,
             code: str = "") -> subprocess.CompletedProcess[bytes]:
    prefix = [sys.executable, "-c", code + "import sys\nfrom excamera.cli import main\n"
              "sys.exit(main())"] if code else [sys.executable, "-m", "excamera.cli"]
    return subprocess.run([*prefix, "decode", *args], cwd=cwd, env=child_env(), input=stdin,
                          capture_output=True, timeout=90)


def vpxdec(args: list[str], cwd: Path, stdin: bytes | None = None
           ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["vpxdec", *args], cwd=cwd, input=stdin, capture_output=True,
                          timeout=90)


def same_output(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run both tools with ``args``; both succeed with the same standard output (returned)."""
    ours, theirs = excamera(args, cwd, stdin), vpxdec(args, cwd, stdin)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout, f"{args}: differs from vpxdec"
    return ours.stdout


def one_error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 1, done
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], done.stderr
    assert lines[0].startswith("excamera decode: error: "), lines[0]
    return lines[0]


# --- the conformance vectors ----------------------------------------------------------------

@pytest.mark.parametrize("vector", conformance_vectors(), ids=lambda p: p.stem)
def test_vector_md5_matches_vpxdec(vector: Path, tmp_path: Path) -> None:
    y4m = ["--md5", "--scale"] if vector.stem in SIZE_CHANGING else ["--md5"]
    (line,) = same_output([*y4m, str(vector)], tmp_path).decode().splitlines()
    assert line.endswith("  -")
    named = ["--md5", "--i420", "-o", f"{vector.stem}-%wx%h-%4.i420", str(vector)]
    lines = same_output(named, tmp_path).decode().splitlines()
    assert lines == Path(f"{vector}.md5").read_text().splitlines()


def test_size_changing_vectors_flag_for_flag(tmp_path: Path) -> None:
    for stem in sorted(SIZE_CHANGING):
        vector = vectors_dir() / f"{stem}.ivf"
        sizes = {line.split("-")[-2] for line in same_output([*PER_FRAME, str(vector)],
                                                              tmp_path).decode().splitlines()}
        assert len(sizes) >= 2, sizes
        # Every picture at the container's size (352x288), raw and per frame.
        same_output(["--md5", "--i420", str(vector)], tmp_path)
        same_output(["--md5", "--scale", "--i420", str(vector)], tmp_path)
        scaled = same_output(["--md5", "--scale", "--rawvideo", "-o", "%wx%h-%3", str(vector)],
                             tmp_path).decode().splitlines()
        assert {line.split()[1].split("-")[0] for line in scaled} == {"352x288"}
        # Y4M without --scale: vpxdec writes frames of other sizes under a 352x288 header;
        # excamera refuses to write a Y4M that is not one.
        line = one_error_line(excamera(["-o", "out.y4m", str(vector)], tmp_path))
        assert "size changes" in line and "--scale" in line
        assert not (tmp_path / "out.y4m").exists()


@pytest.mark.parametrize("name,flags", [
    ("vp80-00-comprehensive-006", ["-o", "out.y4m"]),  # 175x143: odd sizes
    ("vp80-00-comprehensive-006", ["--i420", "-o", "out.yuv"]),
    ("vp80-05-sharpness-1438", ["--i420", "-o", "f-%wx%h-%2.yuv", "--skip=0", "--limit=4"]),
    ("vp80-03-segmentation-1436", ["--scale", "-o", "out-%wx%h.y4m"]),
    ("vp80-03-segmentation-1425", ["--rawvideo", "-o", "%w_%h_%5"]),
])
def test_written_files_equal_vpxdec(tmp_path: Path, name: str, flags: list[str]) -> None:
    vector = vectors_dir() / f"{name}.ivf"
    ours, theirs = tmp_path / "excamera", tmp_path / "vpxdec"
    ours.mkdir()
    theirs.mkdir()
    assert excamera([*flags, str(vector)], ours).returncode == 0
    assert vpxdec([*flags, str(vector)], theirs).returncode == 0
    names = sorted(p.name for p in theirs.iterdir())
    assert names and names == sorted(p.name for p in ours.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(ours, theirs, names, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_standard_input_and_output(tmp_path: Path) -> None:
    data = (vectors_dir() / "vp80-00-comprehensive-007.ivf").read_bytes()
    y4m = same_output(["-o", "-", "-"], tmp_path, stdin=data)
    assert y4m.startswith(b"YUV4MPEG2 W176 H144 F30:1 Ip C420jpeg\n")
    same_output(["--i420", "-o", "-", "--limit=9", "-"], tmp_path, stdin=data)
    # No -o: standard output too, unless it is a terminal.
    same_output(["--limit=2", "-"], tmp_path, stdin=data)
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", "-"], input=data,
                              stdout=terminal, stderr=subprocess.PIPE, env=child_env(),
                              timeout=90)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "not writing video to a terminal" in one_error_line(done)
    # Cut inside frame 3, through a pipe: one line naming standard input and the frame.
    cut = data[: 32 + sum(12 + len(f.data) for f in read_ivf(
        vectors_dir() / "vp80-00-comprehensive-007.ivf")[1][:3]) + 20]
    line = one_error_line(excamera(["--md5", "-"], tmp_path, stdin=cut))
    assert "standard input: frame 3" in line


# --- streams the tests make --------------------------------------------------------------

@cache
def encoded(root: Path, name: str, *args: str, clip: str = "carphone_qcif_120f.y4m",
            frames: int = 20, ext: str = "ivf") -> Path:
    out = root / f"{name}.{ext}"
    cmd = ["vpxenc", "--quiet", "--disable-warning-prompt", f"--limit={frames}", f"--{ext}",
           *args, "-o", str(out), str(shared_dir() / "clips" / clip)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0 and out.exists(), f"{cmd}: {done.stderr}"
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("made")


def test_skip_and_limit_count_packets_hidden_ones_included(made: Path) -> None:
    ivf = encoded(made, "keys", "--codec=vp8", "--kf-max-dist=10", "--auto-alt-ref=1",
                  "--lag-in-frames=16", "--passes=2", frames=30)
    headers = [parse_frame(f.data) for f in read_ivf(ivf)[1]]
    assert any(not h.show_frame for h in headers), "no hidden alt-ref frame"
    keys = [i for i, h in enumerate(headers) if h.key_frame]
    assert len(keys) >= 2
    for flags in (["--limit=7"], [f"--skip={keys[1]}"], [f"--skip={keys[1]}", "--limit=5"],
                  ["--limit=1"], ["--limit=0"]):
        same_output([*PER_FRAME, *flags, str(ivf)], made)
        same_output(["--md5", *flags, str(ivf)], made)
    # Decoding cannot start on an inter frame: vpxdec fails, and so does excamera, in one line.
    assert keys[1] > 1
    assert vpxdec(["--md5", "--skip=1", str(ivf)], made).returncode != 0
    line = one_error_line(excamera(["--md5", "--skip=1", str(ivf)], made))
    assert f"{ivf}: frame 1: " in line


def test_vp8_resizing_scales_like_vpxdec(made: Path) -> None:
    ivf = encoded(made, "resampled", "--codec=vp8", "--resize-allowed=1", "--end-usage=cbr",
                  "--target-bitrate=20", "--resize-down=60", "--resize-up=90", "--buf-sz=500",
                  "--buf-initial-sz=400", "--buf-optimal-sz=400", "--kf-max-dist=8",
                  clip="bigbuckbunny_320x180_48f.y4m", frames=48)
    lines = same_output([*PER_FRAME, str(ivf)], made).decode().splitlines()
    assert len({line.split("-")[0] for line in lines}) >= 2, "the size never changed"
    same_output(["--md5", "--scale", str(ivf)], made)
    same_output(["--md5", "--scale", "--i420", "-o", "%wx%h-%4", str(ivf)], made)


def rewrap(src: list[Path], dest: Path, width: int, height: int) -> Path:
    """The frames of ``src`` in one IVF whose header declares ``width`` x ``height``."""
    with IvfWriter(dest, max(width, 1), max(height, 1)) as w:
        for path in src:
            for frame in read_ivf(path)[1]:
                w.write(frame.data)
    if (width, height) != (max(width, 1), max(height, 1)):
        raw = bytearray(dest.read_bytes())
        raw[12:16] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
        dest.write_bytes(bytes(raw))
    return dest


@pytest.mark.parametrize("size", [(300, 200), (100, 300), (175, 290), (352, 150), (200, 144),
                                  (88, 72), (59, 48), (132, 108), (264, 216)])
def test_scale_to_container_sizes_like_vpxdec(made: Path, size: tuple[int, int]) -> None:
    """Pictures (176x144, then 352x288) larger and smaller than the container's size, on each
    axis: libyuv's bilinear up and down paths, its box steps in both, rows only (same width),
    columns only (same height), exact halves, quarters (88x72), 3/4 and 3/8 (132x108, 264x216;
    each with columns done by libyuv's x86 code and by its C code), and its box filter."""
    small = encoded(made, "odd", "--codec=vp8", frames=3)
    big = encoded(made, "bus", "--codec=vp8", clip="bus_cif_17f.y4m", frames=3)
    ivf = rewrap([small, big], made / f"scale-{size[0]}x{size[1]}.ivf", *size)
    same_output(["--md5", "--scale", str(ivf)], made)
    same_output(["--md5", "--scale", "--i420", "-o", "%wx%h-%2", str(ivf)], made)


def test_scale_without_a_container_size_uses_the_first_picture(made: Path) -> None:
    small = encoded(made, "odd", "--codec=vp8", frames=3)
    big = encoded(made, "bus", "--codec=vp8", clip="bus_cif_17f.y4m", frames=3)
    ivf = rewrap([big, small], made / "nosize.ivf", 0, 0)
    lines = same_output(["--md5", "--scale", "--i420", "-o", "%wx%h-%1", str(ivf)],
                        made).decode().splitlines()
    assert {line.split()[1].split("-")[0] for line in lines} == {"352x288"}


def test_webm_through_pyav(made: Path) -> None:
    # 40 frames at 30000/1001: vpxdec guesses the Y4M rate from the first second's timestamps.
    webm = encoded(made, "long", "--codec=vp8", frames=40, ext="webm")
    assert webm.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    y4m = same_output(["-o", "-", str(webm)], made)
    assert y4m.startswith(b"YUV4MPEG2 W176 H144 F30000000:1001000 Ip C420jpeg\n")
    same_output([*PER_FRAME, "--skip=0", "--limit=12", str(webm)], made)
    # vpxdec cannot read WebM from a pipe (libwebm seeks); excamera can, with the same result.
    piped = excamera(["--md5", "-"], made, stdin=webm.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == vpxdec(["--md5", str(webm)], made).stdout
    # Hidden alt-ref frames in their own blocks: numbered as vpxdec numbers them.
    alt = encoded(made, "altref", "--codec=vp8", "--auto-alt-ref=1", "--lag-in-frames=16",
                  "--passes=2", frames=20, ext="webm")
    lines = same_output(PER_FRAME + [str(alt)], made).decode().splitlines()
    numbers = [int(line.rsplit("-", 1)[1].split(".")[0]) for line in lines]
    assert len(numbers) == 20 and numbers[-1] > 20, "no hidden frame"
    # Shorter than a second: the guess stops at the last frame.
    short = encoded(made, "short", "--codec=vp8", frames=5, ext="webm")
    assert same_output(["-o", "-", str(short)], made).startswith(b"YUV4MPEG2 W176 H144 F4000000:")


# --- bad input: one line, exit 1 -----------------------------------------------------------

def test_bad_patterns_and_flags_are_one_line(tmp_path: Path) -> None:
    vector = str(vectors_dir() / "vp80-00-comprehensive-001.ivf")
    for pattern, words in (("a%x", "%x is not one of"), ("end%", "a final %"),
                           ("%%4", "%% is not one of")):
        assert words in one_error_line(excamera(["--i420", "-o", pattern, vector], tmp_path))
    line = one_error_line(excamera(["-o", "f-%4.y4m", vector], tmp_path))
    assert "needs --i420 or --rawvideo" in line
    for flag in ("--limit", "--skip"):
        line = one_error_line(excamera([f"{flag}=-1", "--md5", vector], tmp_path))
        assert line == f"excamera decode: error: {flag} -1: must be at least 0"
    assert list(tmp_path.iterdir()) == []


def test_not_vp8_or_webm_without_pyav(made: Path) -> None:
    vp9 = encoded(made, "vp9", "--codec=vp9", frames=2, ext="webm")
    assert "no VP8 video track" in one_error_line(excamera(["--md5", str(vp9)], made))
    vp9 = encoded(made, "vp9", "--codec=vp9", frames=2, ext="ivf")
    line = one_error_line(excamera(["--md5", str(vp9)], made))
    assert line.endswith("vp9.ivf: the IVF header says VP90 (VP9); excamera decodes VP8 only")
    vp8 = encoded(made, "short", "--codec=vp8", frames=5, ext="webm")
    no_av = "import sys\nsys.modules['av'] = None\n"  # what an install without PyAV sees
    line = one_error_line(excamera(["--md5", str(vp8)], made, code=no_av))
    assert "needs PyAV" in line and "pip install av" in line
    garbage = made / "garbage.webm"
    garbage.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 4)
    assert str(garbage) in one_error_line(excamera(["--md5", str(garbage)], made))


def limit_memory() -> None:
    """In the child: 1 GiB of address space, less than a 16383x16383 picture and its three
    references (1.6 GB; vpxdec takes 850 MB to refuse the key frame below)."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_huge_sizes_are_one_line_and_cheap(made: Path) -> None:
    ivf = rewrap([encoded(made, "odd", "--codec=vp8", frames=3)], made / "huge.ivf",
                 65535, 65535)
    line = one_error_line(excamera(["--md5", "--scale", str(ivf)], made))
    assert "65535x65535" in line and "at most 16383x16383" in line
    assert "size changes" in one_error_line(excamera(["-o", "out.y4m", str(ivf)], made))
    assert not (made / "out.y4m").exists()
    # A key frame that claims 16383x16383 in a few kilobytes.
    key = bytearray(read_ivf(vectors_dir() / "vp80-00-comprehensive-001.ivf")[1][0].data)
    key[6:10] = (16383).to_bytes(2, "little") * 2
    claims = made / "claims.ivf"
    with IvfWriter(claims, 176, 144) as w:
        w.write(bytes(key))
    done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", "--md5", "--scale",
                           str(claims)], cwd=made, env=child_env(), capture_output=True,
                          timeout=90, preexec_fn=limit_memory)
    assert "frame 0: corrupt key frame" in one_error_line(done)


def limit_memory_small() -> None:
    """In the child: 256 MiB of address space, less than one 16383x16383 frame (402 MB)."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 28, 1 << 28))


def test_a_frame_that_cannot_be_allocated_is_one_line(made: Path) -> None:
    """Where a 16383x16383 frame's memory cannot be had, the decode fails with one line naming
    it (the allocation is an error, not the abort of a failed `vec!`)."""
    key = bytearray(read_ivf(vectors_dir() / "vp80-00-comprehensive-001.ivf")[1][0].data)
    key[6:10] = (16383).to_bytes(2, "little") * 2
    claims = made / "claims-small.ivf"
    with IvfWriter(claims, 176, 144) as w:
        w.write(bytes(key))
    done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", "--md5",
                           str(claims)], cwd=made, env=child_env(), capture_output=True,
                          timeout=90, preexec_fn=limit_memory_small)
    line = one_error_line(done)
    assert line.endswith("claims-small.ivf: frame 0: out of memory: cannot allocate the "
                         "402653184 bytes of a 16383x16383 frame"), line
