"""xc-enc and the Python encoder API, checked against libvpx's decoder (vpxdec) on real clips.

Every encode here is decoded three ways that must agree bit for bit: vpxdec's per-frame MD5
(``vpxdec --md5 --i420 -o x-%4.i420``), our decoder, and the encoder's own reconstruction.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _shared_paths import shared_dir
from excamera.metrics import ssim
from excamera.xc.codec import Decoder, State
from excamera.xc.encoder import (
    ConstantQ,
    EncodeError,
    Encoder,
    TargetSize,
    TargetSsim,
    encode_picture,
    entry_hash32,
)
from excamera.xc.ivf import IvfReader, IvfWriter, read_ivf
from excamera.xc.y4m import Picture, read_y4m, write_y4m

XC_ENC = [sys.executable, "-m", "excamera.xc.tools_main", "xc-enc"]
XC_DUMP = [sys.executable, "-m", "excamera.xc.tools_main", "xc-dump"]


def clip(name: str) -> Path:
    return shared_dir() / "clips" / name


@pytest.fixture(scope="module")
def carphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 frames of carphone (QCIF), as a Y4M."""
    _, pics = read_y4m(clip("carphone_qcif_120f.y4m"))
    out = tmp_path_factory.mktemp("clips") / "carphone12.y4m"
    write_y4m(out, pics[:12], fps=(30, 1))
    return out


@pytest.fixture(scope="module")
def park_joy() -> Path:
    return clip("park_joy_160x90_10f.y4m")  # odd: 90 rows is not a multiple of 16


def run_enc(*args: object, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([*XC_ENC, *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)
    if check:
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    return done


def vpxdec_md5s(ivf: Path, workdir: Path) -> list[str]:
    """vpxdec's MD5 of every decoded frame (one file per frame)."""
    done = subprocess.run(["vpxdec", "--md5", "--i420", "-o", "x-%4.i420", str(ivf)],
                          capture_output=True, text=True, cwd=workdir, timeout=300)
    assert done.returncode == 0, done.stderr
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def our_decode(ivf: Path, state: State | None = None) -> tuple[list[Picture], State]:
    dec = Decoder(state)
    pics = [p for f in read_ivf(ivf)[1] if (p := dec.decode(f.data)) is not None]
    return pics, dec.state


def md5(p: Picture) -> str:
    return hashlib.md5(p.to_bytes()).hexdigest()


def is_key(frame: bytes) -> bool:
    return frame[0] & 1 == 0


@pytest.mark.parametrize("name", ["carphone", "park_joy"])
@pytest.mark.parametrize("q", [4, 40, 100])
def test_primary_encode_decodes_in_vpxdec(request, tmp_path: Path, name: str, q: int) -> None:
    src = request.getfixturevalue(name)
    out, state = tmp_path / "out.ivf", tmp_path / "out.state"
    run_enc("-y", q, "-O", state, "-o", out, src)
    _, source = read_y4m(src)
    header, frames = read_ivf(out)
    assert len(frames) == len(source)
    assert (header.width, header.height) == (source[0].width, source[0].height)
    assert header.unused == entry_hash32(State())  # a primary encode starts from a fresh state
    assert is_key(frames[0].data) and not any(is_key(f.data) for f in frames[1:])

    ours, final = our_decode(out)
    assert vpxdec_md5s(out, tmp_path) == [md5(p) for p in ours]
    # The Python API encodes the same bytes, and its reconstruction is what decoders show.
    enc = Encoder(source[0].width, source[0].height, quality=q)
    for pic, frame, shown in zip(source, frames, ours, strict=True):
        result = enc.encode_frame(pic)
        assert result.data == frame.data
        assert result.recon == shown
    # -O is the state xc-dump computes from the output.
    subprocess.run([*XC_DUMP, str(out), str(tmp_path / "dump.state")], check=True)
    assert state.read_bytes() == (tmp_path / "dump.state").read_bytes() == final.to_bytes()
    # Coarser quantizers cost fewer bits.
    assert sum(len(f.data) for f in frames) > 0


def test_quantizer_controls_size_and_quality(carphone: Path, tmp_path: Path) -> None:
    _, source = read_y4m(carphone)
    sizes, quality = [], []
    for q in (10, 60, 120):
        run_enc("-y", q, "-o", tmp_path / f"{q}.ivf", carphone)
        frames = read_ivf(tmp_path / f"{q}.ivf")[1]
        sizes.append(sum(len(f.data) for f in frames))
        pics, _ = our_decode(tmp_path / f"{q}.ivf")
        quality.append(np.mean([ssim(s.y, d.y) for s, d in zip(source, pics, strict=True)]))
    assert sizes[0] > sizes[1] > sizes[2]
    assert quality[0] > quality[1] > quality[2]


@pytest.mark.parametrize("target", [0.95, 0.99])
def test_target_ssim(carphone: Path, tmp_path: Path, target: float) -> None:
    """-s: each frame at the coarsest qindex meeting the target. Tolerance: every frame must
    meet it here (bisection only misses when qindex 0 cannot reach it), measured on vpxdec-
    equal decodes with the same SSIM the encoder uses."""
    out = tmp_path / "s.ivf"
    run_enc("-s", target, "-o", out, carphone)
    _, source = read_y4m(carphone)
    pics, _ = our_decode(out)
    assert vpxdec_md5s(out, tmp_path) == [md5(p) for p in pics]
    scores = [ssim(s.y, d.y) for s, d in zip(source, pics, strict=True)]
    assert min(scores) >= target
    # ...and not by spending everything: the coarsest qindex just below target is nearby.
    assert np.mean(scores) < target + (1 - target) * 0.5
    frames = read_ivf(out)[1]
    q0 = tmp_path / "q0.ivf"
    run_enc("-y", 0, "-o", q0, carphone)
    assert sum(len(f.data) for f in frames) < 0.8 * sum(len(f.data) for f in read_ivf(q0)[1])


def test_default_is_ssim_099_and_two_pass(park_joy: Path, tmp_path: Path) -> None:
    _, source = read_y4m(park_joy)
    run_enc("-o", tmp_path / "d.ivf", park_joy)
    run_enc("--two-pass", "-q", "best", "-o", tmp_path / "t.ivf", park_joy)
    for name in ("d.ivf", "t.ivf"):
        pics, _ = our_decode(tmp_path / name)
        assert min(ssim(s.y, d.y) for s, d in zip(source, pics, strict=True)) >= 0.99
        assert vpxdec_md5s(tmp_path / name, tmp_path) == [md5(p) for p in pics]


def test_target_frame_sizes(carphone: Path, tmp_path: Path) -> None:
    """-F: frame i at the finest qindex whose size is <= line i. Tolerance: every frame within
    its target (none of these needs qindex 127), and the clip within 25% under the total."""
    targets = [5000] + [400, 900] * 6
    sizes_file = tmp_path / "sizes.txt"
    sizes_file.write_text("".join(f"{s}\n" for s in targets))
    out = tmp_path / "f.ivf"
    run_enc("-F", sizes_file, "-o", out, carphone)
    got = [len(f.data) for f in read_ivf(out)[1]]
    assert len(got) == 12
    assert all(g <= t for g, t in zip(got, targets, strict=False))
    assert sum(got) >= 0.75 * sum(targets[:12])
    pics, _ = our_decode(out)
    assert vpxdec_md5s(out, tmp_path) == [md5(p) for p in pics]


def test_kf_dist_speeds_and_ivf_input(carphone: Path, tmp_path: Path) -> None:
    run_enc("-y", 50, "--kf-dist", 4, "-q", "rt", "-o", tmp_path / "k.ivf", carphone)
    frames = read_ivf(tmp_path / "k.ivf")[1]
    assert [i for i, f in enumerate(frames) if is_key(f.data)] == [0, 4, 8]
    pics, _ = our_decode(tmp_path / "k.ivf")
    assert vpxdec_md5s(tmp_path / "k.ivf", tmp_path) == [md5(p) for p in pics]
    # -i ivf: the IVF is decoded and its pictures encoded.
    run_enc("-i", "ivf", "-y", 30, "-o", tmp_path / "re.ivf", tmp_path / "k.ivf")
    again = Encoder(pics[0].width, pics[0].height, quality=30)
    assert [f.data for f in read_ivf(tmp_path / "re.ivf")[1]] == [again.encode(p) for p in pics]


def test_encode_given_state(carphone: Path, tmp_path: Path) -> None:
    """-I: continue another encode's state with inter frames only."""
    _, source = read_y4m(carphone)
    write_y4m(tmp_path / "a.y4m", source[:6], fps=(30, 1))
    write_y4m(tmp_path / "b.y4m", source[6:], fps=(30, 1))
    run_enc("-y", 40, "-O", tmp_path / "a.state", "-o", tmp_path / "a.ivf", tmp_path / "a.y4m")
    run_enc("-y", 40, "-I", tmp_path / "a.state", "-O", tmp_path / "b.state",
            "-o", tmp_path / "b.ivf", tmp_path / "b.y4m")
    header, frames_b = read_ivf(tmp_path / "b.ivf")
    a_state = State.from_bytes((tmp_path / "a.state").read_bytes())
    assert header.unused == entry_hash32(a_state) != entry_hash32(State())
    assert not any(is_key(f.data) for f in frames_b)
    # The two halves concatenated are one valid stream (vpxdec agrees with us).
    with IvfWriter(tmp_path / "ab.ivf", header.width, header.height) as w:
        for f in [*read_ivf(tmp_path / "a.ivf")[1], *frames_b]:
            w.write(f.data)
    pics, final = our_decode(tmp_path / "ab.ivf")
    assert vpxdec_md5s(tmp_path / "ab.ivf", tmp_path) == [md5(p) for p in pics]
    assert final.to_bytes() == (tmp_path / "b.state").read_bytes()


def test_python_api(park_joy: Path) -> None:
    _, source = read_y4m(park_joy)
    enc = Encoder(160, 90, quality=TargetSsim(0.97), speed="rt")
    results = [enc.encode_frame(p) for p in source[:3]]
    assert [r.key_frame for r in results] == [True, False, False]
    assert all(ssim(s.y, r.recon.y) >= 0.97 for s, r in zip(source, results, strict=False))
    assert all(1 <= r.trials <= 8 for r in results)
    assert enc.frames_encoded == 3 and enc.state == results[-1].state
    # A pure step leaves its input state alone, and an explicit key frame is honoured.
    r = encode_picture(enc.state, source[3], key_frame=True, qindex=20)
    assert is_key(r.data) and enc.state == results[-1].state
    sized = Encoder(160, 90, quality=TargetSize((3000, 300)))
    assert len(sized.encode(source[0])) <= 3000 and len(sized.encode(source[1])) <= 300
    with pytest.raises(EncodeError, match="no target size"):
        sized.encode(source[2])
    with pytest.raises(EncodeError, match="160x90"):
        Encoder(176, 144, quality=ConstantQ(10)).encode(source[0])
    with pytest.raises(ValueError, match="out of range"):
        ConstantQ(128)


def test_strided_planes_encode_as_contiguous_ones(park_joy: Path) -> None:
    """Planes that are not C-contiguous (a Fortran-order copy, a strided view) reach the codec
    with the same pixels as contiguous ones: the binding copies those element by element."""
    _, source = read_y4m(park_joy)
    pic = source[0]
    wide = [np.zeros((p.shape[0], 2 * p.shape[1]), np.uint8) for p in (pic.y, pic.u, pic.v)]
    for w, p in zip(wide, (pic.y, pic.u, pic.v), strict=True):
        w[:, ::2] = p
    odd = Picture(np.asfortranarray(pic.y), wide[1][:, ::2], wide[2][:, ::2])
    assert not odd.y.flags.c_contiguous and not odd.u.flags.c_contiguous
    want = encode_picture(State(), pic, key_frame=True, qindex=30)
    got = encode_picture(State(), odd, key_frame=True, qindex=30)
    assert got.data == want.data and got.state == want.state


# ---- re-encode plumbing that does not need the rebase itself -------------------------------


# read(2)'s system call number, as /proc/PID/syscall shows it.
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def reading_stdin(pid: int) -> bool:
    """Whether process ``pid`` is blocked in read(2) on its standard input."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return fields[:2] == [READ_SYSCALL[os.uname().machine], "0x0"]


def test_reencode_waits_for_stdin_eof(park_joy: Path, tmp_path: Path) -> None:
    """Without -W, -r blocks until stdin closes (before reading any file); with -W it does not."""
    argv = [*XC_ENC, "-r", "-I", str(tmp_path / "missing.state"), "-p", str(tmp_path / "p.ivf"),
            "-o", str(tmp_path / "o.ivf"), str(park_joy)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # It gets to a blocking read of stdin without having failed on the missing state: it
        # read no file first. (The deadline only turns a hang into a failure.)
        deadline = time.monotonic() + 120
        while not reading_stdin(proc.pid):
            assert proc.poll() is None, f"xc-enc -r did not wait for stdin: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "xc-enc -r never read its stdin"
            time.sleep(0.02)
        assert proc.poll() is None
        proc.stdin.write("anything\n")
        proc.stdin.close()
        proc.wait(timeout=120)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "missing.state" in err and "Traceback" not in err
    # -W: the same command fails although stdin stays open.
    proc = subprocess.Popen([*XC_ENC, "-W", *argv[len(XC_ENC):]], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=120)  # stdin is still open: -W must not wait for it
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    assert proc.returncode != 0 and "missing.state" in err


def _error(*args: object) -> str:
    done = run_enc(*args, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_errors(park_joy: Path, carphone: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(b"not a y4m\n")
    assert "bad.y4m" in _error("-y", 10, "-o", tmp_path / "x.ivf", bad)
    truncated = tmp_path / "trunc.y4m"
    truncated.write_bytes(park_joy.read_bytes()[:-100])
    assert "trunc.y4m" in _error("-y", 10, "-o", tmp_path / "x.ivf", truncated)
    bad_state = tmp_path / "bad.state"
    bad_state.write_bytes(b"XCST garbage")
    assert "bad.state" in _error("-y", 10, "-I", bad_state, "-o", tmp_path / "x.ivf", park_joy)
    assert "-y 200" in _error("-y", 200, "-o", tmp_path / "x.ivf", park_joy)
    sizes = tmp_path / "sizes.txt"
    sizes.write_text("1000\n2000\n")
    assert "sizes.txt" in _error("-F", sizes, "-o", tmp_path / "x.ivf", park_joy)
    # -I of another picture size.
    run_enc("-y", 60, "-O", tmp_path / "cp.state", "-o", tmp_path / "cp.ivf", carphone)
    assert "cp.state" in _error("-y", 10, "-I", tmp_path / "cp.state", "-o", tmp_path / "x.ivf",
                                park_joy)
    # Re-encode: prediction stream vs frames mismatches, named by file.
    pred = tmp_path / "pred.ivf"
    run_enc("-y", 60, "-O", tmp_path / "pj.state", "-o", pred, park_joy)
    short = tmp_path / "short.ivf"
    with IvfReader(pred) as r, IvfWriter(short, r.width, r.height) as w:
        for f in list(r)[:-1]:
            w.write(f.data)
    common = ["-r", "-W", "-I", tmp_path / "pj.state", "-o", tmp_path / "x.ivf"]
    msg = _error(*common, "-p", short, park_joy)
    assert "short.ivf" in msg and "9 shown prediction frames" in msg and "10 frames" in msg
    assert "after dropping" in _error(*common, "-e", "-p", pred, park_joy)
    assert "cp.ivf" in _error(*common, "-p", tmp_path / "cp.ivf", park_joy)
    assert "bad.state" in _error(*common, "-p", pred, "-S", bad_state, park_joy)
    assert "-p" in _error("-r", "-W", "-I", tmp_path / "pj.state", park_joy)


def test_ivf_header_unused_field_round_trips(tmp_path: Path) -> None:
    with IvfWriter(tmp_path / "h.ivf", 16, 16, unused=0xDEADBEEF) as w:
        w.write(b"\x00" * 10)
    raw = (tmp_path / "h.ivf").read_bytes()
    assert struct.unpack_from("<I", raw, 28)[0] == 0xDEADBEEF
    with IvfReader(tmp_path / "h.ivf") as r:
        assert r.header.unused == 0xDEADBEEF


# mu's pass-0 vpxenc settings (xcenc.plan.VPXENC_SETTINGS), alt-refs included.
def vpxenc_chunk(src: Path, out: Path, cq: int = 20) -> None:
    from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS

    subprocess.run(["vpxenc", *VPXENC_SETTINGS, f"--cq-level={cq}", "-o", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def two_chunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """carphone frames 0..11 and 12..23 as two vpxenc chunks, and chunk 0's final state."""
    d = tmp_path_factory.mktemp("chunks")
    _, pics = read_y4m(clip("carphone_qcif_120f.y4m"))
    for k in (0, 1):
        write_y4m(d / f"c{k}.y4m", pics[12 * k: 12 * k + 12], fps=(30, 1))
        vpxenc_chunk(d / f"c{k}.y4m", d / f"v{k}.ivf")
    subprocess.run([*XC_DUMP, str(d / "v0.ivf"), str(d / "v0.state")], check=True)
    return d


def test_reencode_vpxenc_chunk_onto_other_state(two_chunks: Path, tmp_path: Path) -> None:
    d = two_chunks
    out, state = tmp_path / "r1.ivf", tmp_path / "r1.state"
    run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75,
            "-O", state, "-o", out, d / "c1.y4m")
    header, frames = read_ivf(out)
    v0_state = State.from_bytes((d / "v0.state").read_bytes())
    assert header.unused == entry_hash32(v0_state)
    assert not is_key(frames[0].data)
    # Chunk 0 then the re-encoded chunk 1 is one stream; vpxdec and we agree on every frame.
    joined = tmp_path / "joined.ivf"
    with IvfWriter(joined, header.width, header.height) as w:
        for f in [*read_ivf(d / "v0.ivf")[1], *frames]:
            w.write(f.data)
    pics, final = our_decode(joined)
    assert vpxdec_md5s(joined, tmp_path) == [md5(p) for p in pics]
    assert final.to_bytes() == state.read_bytes()
    _, source = read_y4m(d / "c1.y4m")
    shown = pics[-len(source):]
    assert min(ssim(s.y, p.y) for s, p in zip(source, shown, strict=True)) > 0.9
    # -e: a prediction stream with one extra leading frame gives the same result.
    extra = tmp_path / "extra.ivf"
    with IvfWriter(extra, header.width, header.height) as w:
        for f in [read_ivf(d / "v0.ivf")[1][-1], *read_ivf(d / "v1.ivf")[1]]:
            w.write(f.data)
    run_enc("-r", "-W", "-e", "-I", d / "v0.state", "-p", extra, "-w", 0.75,
            "-o", tmp_path / "e.ivf", d / "c1.y4m")
    assert [f.data for f in read_ivf(tmp_path / "e.ivf")[1]] == [f.data for f in frames]


def test_reencode_phase_flags_and_prediction_state(two_chunks: Path, tmp_path: Path) -> None:
    """A second rebase of the re-encoded chunk (-p it, -S the state it was encoded from) with
    mu's S-phase and closing-phase flags still decodes identically in vpxdec. alfalfa's
    --refine-sw is not implemented, so it is refused rather than accepted and ignored."""
    d = two_chunks
    run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "--s-ac-qi", 30,
            "--reencode-first-frame", "-o", tmp_path / "p1.ivf", d / "c1.y4m")
    run_enc("-r", "-W", "-I", d / "v0.state", "-p", tmp_path / "p1.ivf", "-S", d / "v0.state",
            "--fix-prob-tables", "-O", tmp_path / "p2.state",
            "-o", tmp_path / "p2.ivf", d / "c1.y4m")
    final = decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "p2.ivf", tmp_path)
    assert final.to_bytes() == (tmp_path / "p2.state").read_bytes()
    refused = run_enc("-r", "-W", "-I", d / "v0.state", "-p", tmp_path / "p1.ivf", "-S",
                      d / "v0.state", "--refine-sw", "-o", tmp_path / "r.ivf", d / "c1.y4m",
                      check=False)
    assert refused.returncode == 2 and "unrecognized arguments: --refine-sw" in refused.stderr
    assert not (tmp_path / "r.ivf").exists()
    # The rebase's own errors (here: -S missing for a stream that does not start with a key
    # frame) are one line naming the input.
    msg = _error("-r", "-W", "-I", d / "v0.state", "-p", tmp_path / "p1.ivf",
                 "-o", tmp_path / "x.ivf", d / "c1.y4m")
    assert "c1.y4m" in msg


def decode_joined_as_vpxdec(head: Path, tail: Path, tmp_path: Path) -> State:
    """Join two QCIF streams, check our decode of the whole against vpxdec's MD5s, and return
    the state it ends in."""
    joined = tmp_path / "joined.ivf"
    with IvfWriter(joined, 176, 144) as w:
        for f in [*read_ivf(head)[1], *read_ivf(tail)[1]]:
            w.write(f.data)
    pics, final = our_decode(joined)
    assert vpxdec_md5s(joined, tmp_path) == [md5(p) for p in pics]
    return final


def test_reencode_first_frame_efforts(two_chunks: Path, tmp_path: Path) -> None:
    """-q picks the converted first frame's effort: rt, good, good-split (good with best's
    SPLITMV search), good-refs (good's SPLITMV on every reference) and best each encode it
    their own way, and the good-split and good-refs chunks, joined to their predecessor, decode
    identically in vpxdec."""
    d = two_chunks
    firsts = {}
    for effort in ("rt", "good", "good-split", "good-refs", "best"):
        out = tmp_path / f"{effort}.ivf"
        run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75, "-q", effort,
                "-o", out, d / "c1.y4m")
        firsts[effort] = read_ivf(out)[1][0].data
    assert len(set(firsts.values())) == 5
    decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "good-split.ivf", tmp_path)
    decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "good-refs.ivf", tmp_path)


def test_reencode_activity_rd(two_chunks: Path, tmp_path: Path) -> None:
    """--activity-rd weights each rebased macroblock's lambda by its activity: the rebased
    frames change, and so does the converted first frame, encoded in full, whose mode
    decisions take the SSIM tuning's lower lambda (``EncodeParams::ssim_decisions``); the
    joined stream still decodes identically in vpxdec."""
    d = two_chunks
    outs = {}
    for flags in ((), ("--activity-rd",)):
        out = tmp_path / f"a{len(flags)}.ivf"
        run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75, *flags,
                "-o", out, d / "c1.y4m")
        outs[flags] = [f.data for f in read_ivf(out)[1]]
    plain, weighted = outs[()], outs[("--activity-rd",)]
    assert all(a != b for a, b in zip(plain, weighted, strict=True))
    decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "a1.ivf", tmp_path)


def test_reencode_redecide_rest(two_chunks: Path, tmp_path: Path) -> None:
    """--redecide-rest SPEED decides every frame after the first anew (a full encode at SPEED
    onto the state the frames before it reach) instead of rebasing the previous encode's
    decisions: the first frame is unchanged, every later one changes, and so does each speed's
    choice; the joined stream decodes identically in vpxdec. Its speeds are -q's, spelled out
    in xc-enc for start-up time."""
    from excamera.xc import enc
    from excamera.xc.encoder import SPEEDS

    assert enc._SPEEDS == SPEEDS
    d = two_chunks
    outs = {}
    for rest in ((), ("--redecide-rest", "good"), ("--redecide-rest", "good-refs")):
        out = tmp_path / f"r{len(outs)}.ivf"
        run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75, "-q", "good",
                "--activity-rd", *rest, "-o", out, d / "c1.y4m")
        outs[rest[1:]] = [f.data for f in read_ivf(out)[1]]
    kept, good, refs = outs[()], outs[("good",)], outs[("good-refs",)]
    assert kept[0] == good[0] == refs[0]
    assert all(a != b for a, b in zip(kept[1:], good[1:], strict=True))
    assert good != refs
    decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "r2.ivf", tmp_path)
    bad = run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "--redecide-rest",
                  "fast", "-o", tmp_path / "x.ivf", d / "c1.y4m", check=False)
    assert bad.returncode != 0 and "--redecide-rest" in bad.stderr


def test_reencode_full_key(two_chunks: Path, tmp_path: Path) -> None:
    """--full-key (the batch-start re-key's): a chunk re-encoded from a fresh state with
    --s-ac-qi keeps a key frame at that quantizer, now xc's own key-frame encode rather than
    vpxenc's intra modes re-quantized, smaller at no less SSIM on this chunk; the later frames
    are rebased onto it and the chunk decodes identically in vpxdec."""
    from vp8_headers import parse_frame

    d = two_chunks
    fresh = tmp_path / "fresh.state"
    fresh.write_bytes(State().to_bytes())
    _, source = read_y4m(d / "c0.y4m")
    outs = {}
    for flags in ((), ("--full-key",)):
        out = tmp_path / f"k{len(flags)}.ivf"
        run_enc("-r", "-W", "-I", fresh, "-p", d / "v0.ivf", "--s-ac-qi", 12, "--activity-rd",
                *flags, "-o", out, d / "c0.y4m")
        frames = [f.data for f in read_ivf(out)[1]]
        assert is_key(frames[0]) and not any(is_key(f) for f in frames[1:])
        assert parse_frame(frames[0]).y_ac_qi == 12
        pics, _ = our_decode(out)
        assert vpxdec_md5s(out, tmp_path) == [md5(p) for p in pics]
        outs[flags] = (len(frames[0]), ssim(pics[0].y, source[0].y))
    (requantized, q_ssim), (full, f_ssim) = outs[()], outs[("--full-key",)]
    assert full < requantized and f_ssim >= q_ssim - 0.001, outs


def test_reencode_content_weight(two_chunks: Path, tmp_path: Path) -> None:
    """--content-weight moves -w by the chunk's pass-0 statistics: the converted first frame's
    quantizer is round(w*kf_q + (1-w)*next_q) with w = 0.75 + 0.1 ln(r / (1.5 next_q)) in
    0.5..0.95, r the key frame's size over the other frames' mean size."""
    import math

    from vp8_headers import parse_frame

    d = two_chunks
    pred = [f.data for f in read_ivf(d / "v1.ivf")[1]]
    kf_q, next_q = parse_frame(pred[0]).y_ac_qi, parse_frame(pred[1]).y_ac_qi
    r = len(pred[0]) / (sum(map(len, pred[1:])) / (len(pred) - 1))
    w = min(max(0.75 + 0.1 * math.log(r / (1.5 * next_q)), 0.5), 0.95)
    firsts = {}
    for flags in ((), ("--content-weight",)):
        out = tmp_path / f"w{len(flags)}.ivf"
        run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75, *flags,
                "-o", out, d / "c1.y4m")
        firsts[flags] = parse_frame(read_ivf(out)[1][0].data).y_ac_qi
    assert firsts[()] == round(0.75 * kf_q + 0.25 * next_q)
    assert firsts[("--content-weight",)] == round(w * kf_q + (1 - w) * next_q)
    assert firsts[()] != firsts[("--content-weight",)], (r, next_q, w)


def test_reencode_floored_key(two_chunks: Path, tmp_path: Path) -> None:
    """--floored-key, for a prediction whose key frame vpxenc floored with --min-q (the
    pipeline's pass 0, ``plan.key_floor_level``): -w weights from quantizer 0, not from the
    key frame's, to the next frame's; with --content-weight, r is read against 1.228 next_q
    (the weight 0.1 ln(1.5 / 1.228) = 0.02 above the unfloored one)."""
    import math

    from excamera.pipelines.xcenc.plan import CQ_LEVEL_QINDEX, VPXENC_SETTINGS, key_floor_level
    from vp8_headers import parse_frame

    d, level = two_chunks, 20
    pred_ivf = tmp_path / "floored.ivf"
    floor = key_floor_level(level)
    settings = [f"--min-q={floor}" if s == "--min-q=0" else s for s in VPXENC_SETTINGS]
    subprocess.run(["vpxenc", *settings, f"--cq-level={level}", "-o", str(pred_ivf),
                    str(d / "c1.y4m")], check=True, capture_output=True, timeout=300)
    pred = [f.data for f in read_ivf(pred_ivf)[1]]
    kf_q, next_q = parse_frame(pred[0]).y_ac_qi, parse_frame(pred[1]).y_ac_qi
    assert kf_q >= CQ_LEVEL_QINDEX[floor] > 0  # vpxenc honoured the floor
    r = len(pred[0]) / (sum(map(len, pred[1:])) / (len(pred) - 1))
    firsts = {}
    for flags in ((), ("--floored-key",), ("--floored-key", "--content-weight")):
        out = tmp_path / f"f{len(flags)}.ivf"
        run_enc("-r", "-W", "-I", d / "v0.state", "-p", pred_ivf, "-w", 0.75, *flags,
                "-o", out, d / "c1.y4m")
        firsts[flags] = parse_frame(read_ivf(out)[1][0].data).y_ac_qi
    assert firsts[()] == round(0.75 * kf_q + 0.25 * next_q)
    assert firsts[("--floored-key",)] == round(0.25 * next_q) < firsts[()]
    w = min(max(0.75 + 0.1 * math.log(r / (1.228 * next_q)), 0.5), 0.95)
    assert firsts[("--floored-key", "--content-weight")] == round((1 - w) * next_q)
    decode_joined_as_vpxdec(d / "v0.ivf", tmp_path / "f2.ivf", tmp_path)


def test_reencode_static_key(tmp_path: Path) -> None:
    """--static-key (the batch-start re-key's, with the floored pass 0 ``excamera encode``
    runs): a chunk whose pass 0 reads static (bigbuckbunny's opening: ln(r / (1.228 next_q))
    above -0.3, r the key frame's size over the other frames' mean) gets its key frame at
    (1 - W) times the next frame's quantizer instead of --s-ac-qi; a busy chunk (carphone's
    opening) keeps --s-ac-qi. The static chunk still decodes identically in vpxdec."""
    import math

    from excamera.pipelines.xcenc.plan import vpxenc_pass0_settings
    from vp8_headers import parse_frame

    fresh = tmp_path / "fresh.state"
    fresh.write_bytes(State().to_bytes())
    keys = {}
    for name in ("bigbuckbunny_320x180_48f.y4m", "carphone_qcif_120f.y4m"):
        src, pred_ivf = tmp_path / f"{name[:3]}.y4m", tmp_path / f"{name[:3]}.ivf"
        write_y4m(src, read_y4m(clip(name))[1][:6], fps=(30, 1))
        subprocess.run(["vpxenc", *vpxenc_pass0_settings(36, True), "-o", str(pred_ivf),
                        str(src)], check=True, capture_output=True, timeout=300)
        pred = [f.data for f in read_ivf(pred_ivf)[1]]
        next_q = parse_frame(pred[1]).y_ac_qi
        r = len(pred[0]) / (sum(map(len, pred[1:])) / (len(pred) - 1))
        for flags in ((), ("--static-key", 0.79)):
            out = tmp_path / f"{name[:3]}{len(flags)}.ivf"
            run_enc("-r", "-W", "-I", fresh, "-p", pred_ivf, "--s-ac-qi", 13, "--full-key",
                    "--activity-rd", "--floored-key", *flags, "-o", out, src)
            keys[name[:3], flags] = parse_frame(read_ivf(out)[1][0].data).y_ac_qi
        keys[name[:3]] = (math.log(r / (1.228 * next_q)), next_q)
    (s_still, q_still), (s_busy, _) = keys["big"], keys["car"]
    assert s_busy < -0.3 < s_still, keys
    assert keys["big", ()] == keys["car", ()] == keys["car", ("--static-key", 0.79)] == 13
    assert keys["big", ("--static-key", 0.79)] == round(0.21 * q_still) != 13, keys
    pics, _ = our_decode(tmp_path / "big2.ivf")
    assert vpxdec_md5s(tmp_path / "big2.ivf", tmp_path) == [md5(p) for p in pics]


def test_reencode_linked_chain_flags(two_chunks: Path, tmp_path: Path) -> None:
    """The pipeline's ``excamera`` chain flags: the first frame (best effort) leaves golden with
    --keep-golden, the last frame hands on a golden that is not its own picture with
    --last-keeps-refs, macroblocks may change reference with --choose-refs, and the joined
    stream still decodes identically in vpxdec."""
    from vp8_headers import parse_frame

    d = two_chunks
    out, state = tmp_path / "l.ivf", tmp_path / "l.state"
    run_enc("-r", "-W", "-I", d / "v0.state", "-p", d / "v1.ivf", "-w", 0.75, "-q", "best",
            "--keep-golden", "--last-keeps-refs", "--choose-refs", "-O", state, "-o", out,
            d / "c1.y4m")
    frames = [f.data for f in read_ivf(out)[1]]
    first = parse_frame(frames[0])
    assert (first.key_frame, first.refresh_last, first.refresh_golden,
            first.refresh_altref) == (False, True, False, True)
    last = parse_frame(frames[-1])
    assert not (last.refresh_golden and last.refresh_altref)
    final = State.from_bytes(state.read_bytes())
    v0 = State.from_bytes((d / "v0.state").read_bytes())
    # Golden is still chunk 0's (its key frame): nothing in chunk 1 refreshed it.
    assert np.array_equal(final.reference("golden")[0], v0.reference("golden")[0])
    assert not np.array_equal(final.reference("golden")[0], final.reference("last")[0])
    joined = tmp_path / "joined.ivf"
    with IvfWriter(joined, 176, 144) as w:
        for f in [*read_ivf(d / "v0.ivf")[1], *read_ivf(out)[1]]:
            w.write(f.data)
    pics, end = our_decode(joined)
    assert vpxdec_md5s(joined, tmp_path) == [md5(p) for p in pics]
    assert end.to_bytes() == state.read_bytes()
