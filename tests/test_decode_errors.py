"""Bad input through the Python surface: a DecodeError from the API, and from the commands one
line on stderr naming the file and frame, a non-zero exit, and never a traceback.

mu's workers run ``xc-dump`` and ``excamera decode`` unattended and log their stderr, so a
failure has to say, in one line, which file and which frame went wrong.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from _shared_paths import vectors_dir
from excamera.xc.codec import DecodeError, Decoder, State, decode_frame
from excamera.xc.ivf import IvfWriter, read_ivf

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"

pytestmark = pytest.mark.timeout(120)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def vectors() -> Path:
    return vectors_dir()


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return [f.data for f in read_ivf(vectors() / "vp80-00-comprehensive-001.ivf")[1]]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


# --- the API ------------------------------------------------------------------------------

def test_inter_frame_first_is_a_decode_error(frames: list[bytes]) -> None:
    with pytest.raises(DecodeError) as err:
        decode_frame(State(), frames[1])
    assert "key frame" in one_line(err.value)
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize(("damage", "words"), [
    (lambda f: b"", "truncated frame header"),
    (lambda f: f[:2], "truncated frame header"),
    (lambda f: f[:7], "truncated frame header"),
    (lambda f: f[:3] + b"\x9d\x01\x2b" + f[6:], "start code"),
    (lambda f: f[:6] + b"\0\0" + f[8:], "zero dimensions"),
    (lambda f: f[:12], "first partition size"),
    (lambda f: bytes([f[0] | 0x0E]) + f[1:], "version"),  # version 7
])
def test_damaged_key_frame_is_a_decode_error(frames: list[bytes], damage, words: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_frame(State(), damage(frames[0]))
    assert words in one_line(err.value)


def test_damaged_inter_frame_is_an_error_and_leaves_the_state_usable(frames: list[bytes]) -> None:
    state, _ = decode_frame(State(), frames[0])
    before = state.hash
    with pytest.raises(DecodeError):
        decode_frame(state, frames[1][:5])
    assert state.hash == before
    # The stream carries on from the untouched state exactly as if nothing happened.
    s1, p1 = decode_frame(state, frames[1])
    reference, p2 = decode_frame(decode_frame(State(), frames[0])[0], frames[1])
    assert s1 == reference and p1 == p2


def test_decoder_names_the_failing_frame(frames: list[bytes]) -> None:
    dec = Decoder()
    assert dec.decode(frames[0]) is not None
    assert dec.decode(frames[1]) is not None
    with pytest.raises(DecodeError) as err:
        dec.decode(b"\x00")
    assert one_line(err.value).startswith("frame 2: ")
    assert dec.frames_decoded == 2


def test_garbage_never_escapes_as_another_exception(frames: list[bytes]) -> None:
    """Random bytes with valid-looking tags: a DecodeError or a picture, nothing else."""
    import random

    rng = random.Random(1234)
    state, _ = decode_frame(State(), frames[0])
    outcomes = {"error": 0, "ok": 0}
    for _ in range(300):
        data = bytearray(rng.randbytes(rng.randrange(0, 400)))
        if len(data) >= 3 and rng.random() < 0.7:
            size = rng.randrange(0, len(data))
            raw = 1 | (1 << 4) | (size << 5)  # inter frame, shown
            data[0:3] = raw.to_bytes(3, "little")
        try:
            decode_frame(state, bytes(data))
            outcomes["ok"] += 1
        except DecodeError as exc:
            one_line(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


# --- libvpx's invalid streams -------------------------------------------------------------

INVALID = [
    "invalid-vp80-00-comprehensive-018.ivf.2kf_0x6.ivf",
    "invalid-vp80-00-comprehensive-s17661_r01-05_b6-.ivf",
]


@pytest.mark.parametrize("name", INVALID)
def test_invalid_streams_fail_where_libvpx_fails(name: str) -> None:
    """Per packet, decoded or refused as libvpx's .res file records (0 = decoded), carrying on
    from the last good state after a refused packet as a player would."""
    path = vectors() / "libvpx-test-data-extra" / name
    expected = [int(v) == 0 for v in Path(f"{path}.res").read_text().split()]
    state, got = State(), []
    for frame in read_ivf(path)[1]:
        try:
            state, _ = decode_frame(state, frame.data)
            got.append(True)
        except DecodeError as exc:
            one_line(exc)
            got.append(False)
    assert got == expected and not all(got)


@pytest.mark.parametrize("name", INVALID)
def test_commands_reject_invalid_streams(tmp_path: Path, name: str) -> None:
    path = vectors() / "libvpx-test-data-extra" / name
    first_bad = [int(v) for v in Path(f"{path}.res").read_text().split()].index(7)
    for done, prog in ((run_decode(path, tmp_path / "out.y4m"), "excamera decode"),
                       (run_xc_dump(path, tmp_path / "out.state"), "xc-dump")):
        line = single_error_line(done)
        assert line.startswith(prog + ":")
        assert f"{path}: frame {first_bad}: " in line
    assert not (tmp_path / "out.state").exists()


# --- the commands -------------------------------------------------------------------------

def run_decode(path: Path, out: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "excamera.cli", "decode", str(path), "-o",
                           str(out)], capture_output=True, text=True, timeout=60,
                          env=child_env())


def run_xc_dump(path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys\nfrom excamera.xc.tools import xc_dump_main\nsys.exit(xc_dump_main())"
    return subprocess.run([sys.executable, "-c", code, str(path), str(out)],
                          capture_output=True, text=True, timeout=60, env=child_env())


def single_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def write_ivf(path: Path, frames: list[bytes], w: int = 176, h: int = 144) -> Path:
    with IvfWriter(path, w, h) as writer:
        for f in frames:
            writer.write(f)
    return path


def bad_files(tmp: Path, frames: list[bytes]) -> dict[str, tuple[Path, str]]:
    """Each bad file with the words its error line must hold (besides the file name)."""
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    raw = good.read_bytes()
    (tmp / "text.ivf").write_text("this is not a video\n")
    (tmp / "empty.ivf").write_bytes(b"")
    (tmp / "riff.ivf").write_bytes(b"RIFF" + raw[4:])
    (tmp / "short-header.ivf").write_bytes(raw[:20])
    cut = 32 + 12 + len(frames[0]) + 12 + 40
    (tmp / "truncated.ivf").write_bytes(raw[:cut])
    body = bytearray(raw)
    struct.pack_into("<I", body, 32 + 12 + len(frames[0]), 0x7FFFFFFF)
    (tmp / "huge-size.ivf").write_bytes(bytes(body))
    return {
        "not-ivf": (tmp / "text.ivf", "not an IVF"),
        "empty": (tmp / "empty.ivf", "empty"),
        "riff": (tmp / "riff.ivf", "DKIF"),
        "short-header": (tmp / "short-header.ivf", "truncated"),
        "truncated-frame": (tmp / "truncated.ivf", "frame 1"),
        "huge-frame-size": (tmp / "huge-size.ivf", "frame 1"),
        "no-frames": (write_ivf(tmp / "noframes.ivf", []), "no frames"),
        "inter-first": (write_ivf(tmp / "inter.ivf", frames[1:4]), "frame 0: inter frame"),
        "zero-length-frame": (write_ivf(tmp / "zero.ivf", [frames[0], b"", frames[1]]),
                              "frame 1: truncated frame header"),
        "corrupt-key-frame": (write_ivf(tmp / "corrupt.ivf",
                                        [frames[0][:3] + b"\0\0\0" + frames[0][6:]]),
                              "frame 0: bad key frame start code"),
        "missing": (tmp / "does-not-exist.ivf", "No such file"),
    }


BAD = ["not-ivf", "empty", "riff", "short-header", "truncated-frame", "huge-frame-size",
       "no-frames", "inter-first", "zero-length-frame", "corrupt-key-frame", "missing"]


@pytest.mark.parametrize("kind", BAD)
def test_excamera_decode_bad_input_is_one_line(tmp_path: Path, frames: list[bytes],
                                               kind: str) -> None:
    path, words = bad_files(tmp_path, frames)[kind]
    line = single_error_line(run_decode(path, tmp_path / "out.y4m"))
    assert line.startswith("excamera decode: error: ") and str(path) in line
    assert words in line, line


@pytest.mark.parametrize("kind", BAD)
def test_xc_dump_bad_input_is_one_line(tmp_path: Path, frames: list[bytes], kind: str) -> None:
    path, words = bad_files(tmp_path, frames)[kind]
    out = tmp_path / "out.state"
    done = run_xc_dump(path, out)
    assert done.returncode == 2
    line = single_error_line(done)
    assert line.startswith("xc-dump: ") and str(path) in line
    assert words in line, line
    assert not out.exists(), "no state is written for a stream that failed"


def test_unwritable_outputs_are_one_line(tmp_path: Path) -> None:
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    missing_dir = tmp_path / "no" / "such" / "dir"
    line = single_error_line(run_decode(good, missing_dir / "out.y4m"))
    assert str(missing_dir / "out.y4m") in line
    done = run_xc_dump(good, missing_dir / "out.state")
    assert done.returncode == 2 and str(missing_dir / "out.state") in single_error_line(done)


def test_decode_to_stdout_and_dev_null(tmp_path: Path) -> None:
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", str(good), "-o", "-"],
                          capture_output=True, timeout=60, env=child_env())
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.startswith(b"YUV4MPEG2 W176 H144 ")
    assert done.stdout.count(b"FRAME") == 29
    assert run_decode(good, "/dev/null").returncode == 0


@pytest.mark.parametrize("form", [[], ["--i420"]], ids=["y4m", "i420"])
def test_decode_to_a_full_device_is_one_line(form: list[str]) -> None:
    """The decoder writes the pictures itself (not through Python's file): a failed write still
    comes back as the errno's own message, not Rust's "(os error 28)"."""
    good = vectors() / "vp80-00-comprehensive-006.ivf"
    done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", str(good), *form,
                           "-o", "/dev/full"], capture_output=True, text=True, timeout=60,
                          env=child_env())
    assert single_error_line(done) == "excamera decode: error: /dev/full: No space left on device"
    assert done.returncode == 1


def test_stream_decoder_writes_only_a_shown_frame(frames: list[bytes], tmp_path: Path) -> None:
    """``write_shown`` writes the frame the last decode showed, once, byte for byte the record
    ``decode_y4m`` makes; with nothing shown since, it refuses rather than repeat a frame."""
    from excamera._xc import StreamDecoder

    writer, reference = StreamDecoder(None), StreamDecoder(None)
    with pytest.raises(ValueError, match="no shown frame"):
        writer.write_shown(1, True)
    out = tmp_path / "out"
    with open(out, "wb") as f:
        for data in frames[:3]:
            assert writer.decode_y4m(data, False)[2] is None
            writer.write_shown(f.fileno(), data is not frames[1])
        with pytest.raises(ValueError, match="no shown frame"):
            writer.write_shown(f.fileno(), True)
    writer.decode_y4m(frames[3], False)
    with pytest.raises(ValueError, match="invalid file descriptor"):
        writer.write_shown(-1, True)
    writer.decode_y4m(frames[4], False)
    closed = os.open(os.devnull, os.O_WRONLY)
    os.close(closed)
    with pytest.raises(OSError) as err:
        writer.write_shown(closed, True)
    assert err.value.strerror == os.strerror(9)  # EBADF, Python's own message
    records = [reference.decode_y4m(data)[2] for data in frames[:3]]
    assert out.read_bytes() == records[0] + records[1][len(b"FRAME\n"):] + records[2]


def test_decode_to_a_closed_pipe_stops_quietly() -> None:
    """`excamera decode IN -o - | head`: the reader leaving is not an error to report."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "excamera.cli", "decode",
         str(vectors() / "vp80-00-comprehensive-006.ivf"), "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(60).startswith(b"YUV4MPEG2 W175 H143")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""


@pytest.mark.parametrize("args", [["-o", "-"], [], ["--md5"], ["--md5", "--i420", "-o", "%4"]],
                         ids=["dash", "default", "md5", "md5-per-frame"])
def test_decode_with_standard_output_closed_is_one_line(args: list[str]) -> None:
    """`excamera decode IN >&-`: what would go to standard output (pictures, or --md5's lines)
    has nowhere to go. One line and exit 1, not a traceback, nor digests silently lost."""
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", str(good), *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=60, env=child_env(), preexec_fn=lambda: os.close(1))
    assert single_error_line(done) == "excamera decode: error: standard output is closed"
    assert done.returncode == 1


def test_decode_to_a_file_with_standard_output_closed(tmp_path: Path) -> None:
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    for out in (tmp_path / "out.y4m", Path(os.devnull)):
        done = subprocess.run([sys.executable, "-m", "excamera.cli", "decode", str(good), "-o",
                               str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=60, env=child_env(),
                              preexec_fn=lambda: os.close(1))
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "out.y4m").read_bytes().count(b"FRAME\n") == 29



def test_decode_of_a_file_and_of_standard_input_agree(tmp_path: Path, frames: list[bytes],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """From a regular IVF file the decoder reads, decodes and writes the frames itself in one
    call (`StreamDecoder.decode_ivf_to`); from standard input the Python loop does. Same exit
    status, error line and output for every damaged file, a size change, --skip and --limit."""
    from excamera.cli import main
    from excamera.xc import decode_cmd

    used: list[str] = []

    def spy(name: str):  # noqa: ANN202
        loop = getattr(decode_cmd, name)
        return lambda *args: used.append(name) or loop(*args)

    for name in ("_decode_packets", "_decode_rest"):
        monkeypatch.setattr(decode_cmd, name, spy(name))
    bad = [path for kind, (path, _) in bad_files(tmp_path, frames).items() if kind != "missing"]
    other_size = read_ivf(vectors() / "vp80-05-sharpness-1438.ivf")[1][0].data
    resized = write_ivf(tmp_path / "resized.ivf", [frames[0], frames[1], other_size])
    good = vectors() / "vp80-00-comprehensive-001.ivf"
    cases = [(path, []) for path in bad] + [
        (resized, []), (resized, ["--i420"]), (good, ["--skip", "3", "--limit", "5"]),
        (good, ["--limit", "1", "--i420"]), (good, ["--skip", "29"]), (good, ["--skip", "40"])]
    loops = {str(good): 0, "-": 0}
    for path, extra in cases:
        seen = []
        for source in (str(path), "-"):
            out = tmp_path / "out"
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
            used.clear()
            status = main(["decode", source, "-o", str(out), *extra])
            err = capsys.readouterr().err.replace(str(path), "standard input")
            seen.append((status, err, out.read_bytes() if out.exists() else None))
            out.unlink(missing_ok=True)
            assert used in ([], ["_decode_packets" if source == "-" else "_decode_rest"]), used
            loops["-" if source == "-" else str(good)] += len(used)
        assert seen[0] == seen[1], (path, extra)
        assert seen[0][0] == 0 or seen[0][1].count("\n") == 1, seen[0][1]
    # Six damaged files open (four fail at their header), and the six other cases.
    assert loops[str(good)] == loops["-"] == 12


def test_decode_ivf_to_refuses_a_negative_descriptor() -> None:
    from excamera._xc import StreamDecoder

    with pytest.raises(ValueError, match="invalid file descriptor -1"):
        StreamDecoder(None).decode_ivf_to(-1, 32, 0, "in.ivf", 1, True, b"", 0, None)


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_decode_interrupted_between_frames(source: str) -> None:
    """Ctrl-C stops a decode at the next frame, whichever loop runs it (from a file the decoder
    runs it without the GIL): "interrupted", exit 130."""
    import signal

    vector = vectors() / "vp80-00-comprehensive-006.ivf"  # 48 frames of 37 KB: beyond a pipe
    args = [str(vector)] if source == "file" else ["-"]
    proc = subprocess.Popen([sys.executable, "-m", "excamera.cli", "decode", *args, "-o", "-"],
                            stdin=subprocess.PIPE if source == "stdin" else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stdin is not None:
        proc.stdin.write(vector.read_bytes())
        proc.stdin.close()
    # The first frame is out: decoding has started, and the writer now waits on the full pipe.
    assert proc.stdout.read(100).startswith(b"YUV4MPEG2 W175 H143")
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130
    assert proc.stderr.read() == b"excamera decode: interrupted\n"
    assert len(rest) < 48 * (175 * 143 * 3 // 2)  # it stopped before the end
