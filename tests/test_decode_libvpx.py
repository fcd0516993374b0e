"""xc against libvpx on streams these tests make themselves with ``vpxenc``.

The conformance vectors fix one set of encoder choices; here each case turns one encoder knob
(alt-ref with lag, token partitions, error resilience, noise sensitivity, sharpness, key frame
spacing, odd sizes, frame dropping, real-time speed, q extremes, static threshold,
segmentation, bitstream profiles, spatial resampling) on short, small cuts of the shared
clips. Every shown frame xc decodes must be byte-identical to ``vpxdec``'s (compared as the
per-frame MD5 lines ``vpxdec --md5 --i420`` prints), and each case also checks, with an
independent header reader, that the knob really produced the bitstream feature it targets, so
a case cannot pass by quietly exercising nothing.

Damaged streams (cut frames, flipped bits) are compared too: xc must refuse the packet vpxdec
refuses and decode every other one to the same picture. The few known divergences, all on
damaged data and explained where they are listed, are strict xfails.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from _shared_paths import shared_dir, vectors_dir
from excamera.xc.codec import State, decode_frame
from excamera.xc.ivf import IvfWriter, read_ivf
from excamera.xc.y4m import Picture, Y4MReader, Y4MWriter, chroma_size
from vp8_headers import FrameInfo, parse_frame

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"

pytestmark = pytest.mark.timeout(120)

CLIPS = {
    "carphone": "carphone_qcif_120f.y4m",  # 176x144
    "bus": "bus_cif_17f.y4m",  # 352x288: 18 macroblock rows, enough for 8 token partitions
    "bbb": "bigbuckbunny_320x180_48f.y4m",
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Workspace:
    """Encoded streams and cropped sources, made once per test session and shared by cases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clips = shared_dir() / "clips"

    @cache  # noqa: B019 (one Workspace per session; the cache dies with it)
    def source(self, name: str, frames: int) -> Path:
        """A clip as Y4M; ``crop:WxH`` cuts a WxH window (any size, odd too) from carphone,
        ``tiles:WxH`` fills a WxH picture with carphone tiles, each a frame further on."""
        if name.startswith("tiles:"):
            return self.tiles(name, frames)
        if not name.startswith("crop:"):
            return self.clips / CLIPS[name]
        w, h = (int(v) for v in name[5:].split("x"))
        out = self.root / f"crop-{w}x{h}-{frames}.y4m"
        cw, ch = chroma_size(w, h)
        with Y4MReader(self.clips / CLIPS["carphone"]) as r, Y4MWriter(out, w, h, (30, 1)) as wr:
            # An even offset inside the picture keeps luma and chroma sites aligned.
            x0, y0 = min(16, (r.width - w) // 2 * 2), min(8, (r.height - h) // 2 * 2)
            for i, p in enumerate(r):
                if i == frames:
                    break
                wr.write(
                    Picture(
                        p.y[y0 : y0 + h, x0 : x0 + w].copy(),
                        p.u[y0 // 2 : y0 // 2 + ch, x0 // 2 : x0 // 2 + cw].copy(),
                        p.v[y0 // 2 : y0 // 2 + ch, x0 // 2 : x0 // 2 + cw].copy(),
                    )
                )
        return out

    def tiles(self, name: str, frames: int) -> Path:
        w, h = (int(v) for v in name[6:].split("x"))
        out = self.root / f"tiles-{w}x{h}-{frames}.y4m"
        with Y4MReader(self.clips / CLIPS["carphone"]) as r:
            clip = [p for _, p in zip(range(frames + 64), r, strict=False)]
        tw, th = clip[0].y.shape[1], clip[0].y.shape[0]
        cols, rows = -(-w // tw), -(-h // th)

        def plane(i: int, get: Callable[[Picture], np.ndarray], pw: int, ph: int) -> np.ndarray:
            # Tile k shows frame i + k: neighbouring tiles move differently.
            grid = [[get(clip[i + c + r * cols]) for c in range(cols)] for r in range(rows)]
            return np.block(grid)[:ph, :pw].copy()

        cw, ch = chroma_size(w, h)
        with Y4MWriter(out, w, h, (30, 1)) as wr:
            for i in range(frames):
                wr.write(Picture(plane(i, lambda p: p.y, w, h), plane(i, lambda p: p.u, cw, ch),
                                 plane(i, lambda p: p.v, cw, ch)))
        return out

    def encode(self, case_id: str, source: str, frames: int, args: tuple[str, ...]) -> Path:
        out = self.root / f"{case_id}.ivf"
        cmd = ["vpxenc", "--codec=vp8", "--ivf", "--quiet", "--disable-warning-prompt",
               f"--limit={frames}", *args, "-o", str(out), str(self.source(source, frames))]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.root)
        assert done.returncode == 0 and out.exists(), f"{' '.join(cmd)} failed: {done.stderr}"
        return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("libvpx"))


def vpxdec_md5_lines(ivf: Path) -> list[str]:
    """libvpx's verdict: one ``md5  NAME-WxH-NNNN.i420`` line per shown frame."""
    done = subprocess.run(
        ["vpxdec", "--md5", "--i420", "-o", "f-%wx%h-%4.i420", str(ivf)],
        capture_output=True, text=True, timeout=60, cwd=ivf.parent,
    )
    assert done.returncode == 0, f"vpxdec {ivf.name}: {done.stderr}"
    return done.stdout.splitlines()


def xc_md5_lines(ivf: Path) -> list[str]:
    """The same lines from xc via the Python API (NNNN is the 1-based packet number)."""
    _, frames = read_ivf(ivf)
    state, lines = State(), []
    for i, frame in enumerate(frames, start=1):
        state, picture = decode_frame(state, frame.data)
        if picture is not None:
            digest = hashlib.md5(picture.to_bytes()).hexdigest()
            lines.append(f"{digest}  f-{picture.width}x{picture.height}-{i:04d}.i420")
    return lines


def headers(ivf: Path) -> list[FrameInfo]:
    return [parse_frame(f.data) for f in read_ivf(ivf)[1]]


# --- what each case must show in the bitstream -------------------------------------------------

def has_hidden_altref(h: list[FrameInfo]) -> None:
    hidden = [i for i in h if not i.show_frame]
    assert hidden and all(i.refresh_altref for i in hidden), "no hidden alt-ref frame"


def partitions(n: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert {i.partitions for i in h} == {n}

    return check


def error_resilient(h: list[FrameInfo]) -> None:
    assert not any(i.refresh_entropy_probs for i in h), "probabilities persist across frames"


def sharpness(n: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert any(i.sharpness == n for i in h), {i.sharpness for i in h}

    return check


def key_frames_at_least(n: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert sum(i.key_frame for i in h) >= n

    return check


def size(w: int, h: int) -> Callable[[list[FrameInfo]], None]:
    def check(hs: list[FrameInfo]) -> None:
        assert (hs[0].width, hs[0].height) == (w, h)

    return check


def frames_dropped(submitted: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert len(h) < submitted, "the encoder dropped no frame"

    return check


def q_index(q: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert {i.y_ac_qi for i in h} == {q}

    return check


def segmented(h: list[FrameInfo]) -> None:
    assert any(i.segmentation_enabled and i.update_mb_segmentation_map for i in h)


def version(v: int) -> Callable[[list[FrameInfo]], None]:
    def check(h: list[FrameInfo]) -> None:
        assert {i.version for i in h} == {v}
        # Versions 1 and 3 use the simple loop filter (spec 9.1); 2 keeps the normal one.
        assert all(i.simple_filter == (v in (1, 3)) for i in h if i.filter_level)

    return check


def resized(h: list[FrameInfo]) -> None:
    sizes = {(i.width, i.height) for i in h if i.key_frame}
    assert len(sizes) >= 2, f"key frames never changed size: {sizes}"
    assert any(i.horizontal_scale or i.vertical_scale for i in h if i.key_frame)


def nothing(h: list[FrameInfo]) -> None:
    assert h


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    frames: int
    args: tuple[str, ...]
    check: Callable[[list[FrameInfo]], None] = nothing


CASES: list[Case] = [
    Case("baseline", "carphone", 8, ("--good", "--cpu-used=1")),
    Case("altref-lag-2pass", "carphone", 30,
         ("--passes=2", "--auto-alt-ref=1", "--lag-in-frames=16"), has_hidden_altref),
    *[Case(f"token-parts-{n}", "bus", 3, (f"--token-parts={n}",), partitions(1 << n))
      for n in (1, 2, 3)],
    Case("error-resilient", "carphone", 8, ("--error-resilient=1",), error_resilient),
    *[Case(f"noise-sensitivity-{n}", "carphone", 5, (f"--noise-sensitivity={n}",))
      for n in range(1, 7)],
    Case("noise-sensitivity-rt", "carphone", 8, ("--rt", "--noise-sensitivity=3")),
    *[Case(f"sharpness-{n}", "carphone", 4, (f"--sharpness={n}",), sharpness(n))
      for n in range(1, 8)],
    Case("kf-max-dist-2", "carphone", 8, ("--kf-max-dist=2",), key_frames_at_least(3)),
    *[Case(f"size-{w}x{h}", f"crop:{w}x{h}", 5, (), size(w, h))
      for (w, h) in ((175, 143), (33, 17), (17, 33), (1, 1), (17, 1), (1, 17), (2, 2))],
    Case("drop-frame", "carphone", 30,
         ("--end-usage=cbr", "--target-bitrate=15", "--drop-frame=80", "--buf-sz=100",
          "--buf-initial-sz=50", "--buf-optimal-sz=60", "--undershoot-pct=100"),
         frames_dropped(30)),
    Case("rt-cpu-used-8", "carphone", 10, ("--rt", "--cpu-used=8")),
    Case("best-cpu-used-0", "bus", 3, ("--best", "--cpu-used=0")),
    Case("q-0", "carphone", 4, ("--min-q=0", "--max-q=0"), q_index(0)),
    Case("q-63", "carphone", 6, ("--min-q=63", "--max-q=63"), q_index(127)),
    Case("static-thresh", "carphone", 8, ("--static-thresh=2000",)),
    Case("segmentation-rt", "carphone", 12,
         ("--rt", "--cpu-used=-16", "--end-usage=cbr", "--target-bitrate=100"), segmented),
    Case("screen-content", "carphone", 12,
         ("--rt", "--screen-content-mode=2", "--end-usage=cbr", "--target-bitrate=100"),
         segmented),
    *[Case(f"profile-{p}", "carphone", 6, (f"--profile={p}",), version(p)) for p in (1, 2, 3)],
    # Frames of 1 MB or more, which the decoder reconstructs with prefetch hints.
    Case("large-frame", "tiles:1280x720", 4, ("--good", "--cpu-used=5"), size(1280, 720)),
    Case("spatial-resampling", "bbb", 48,
         ("--resize-allowed=1", "--end-usage=cbr", "--target-bitrate=20", "--resize-down=60",
          "--resize-up=90", "--buf-sz=500", "--buf-initial-sz=400", "--buf-optimal-sz=400",
          "--kf-max-dist=8"), resized),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_xc_matches_vpxdec(ws: Workspace, case: Case) -> None:
    ivf = ws.encode(case.id, case.source, case.frames, case.args)
    case.check(headers(ivf))
    expected = vpxdec_md5_lines(ivf)
    assert expected, "vpxdec decoded nothing"
    got = xc_md5_lines(ivf)
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                     min(len(got), len(expected)))
        pytest.fail(f"{case.id}: {len(got)} xc frames vs {len(expected)} vpxdec frames; first "
                    f"difference at shown frame {first}: xc {got[first:first + 1]} "
                    f"vpxdec {expected[first:first + 1]}")


def test_hidden_frames_leave_gaps_in_packet_numbers(ws: Workspace) -> None:
    """The alt-ref stream's hidden packet produces no picture, in xc as in vpxdec."""
    ivf = ws.encode("altref-lag-2pass", "carphone", 30,
                    ("--passes=2", "--auto-alt-ref=1", "--lag-in-frames=16"))
    numbers = [int(line[-9:-5]) for line in xc_md5_lines(ivf)]
    hidden = [n for n, h in enumerate(headers(ivf), start=1) if not h.show_frame]
    assert hidden and not set(hidden) & set(numbers)
    assert len(numbers) + len(hidden) == len(headers(ivf))


def concatenate(parts: list[Path], out: Path) -> Path:
    """One IVF holding every packet of ``parts`` in order (the header says the first size)."""
    streams = [read_ivf(p) for p in parts]
    head = streams[0][0]
    with IvfWriter(out, head.width, head.height, rate=head.rate, scale=head.scale) as w:
        pts = 0
        for _, frames in streams:
            for f in frames:
                w.write(f.data, pts=pts)
                pts += 1
    return out


def test_concatenated_streams_of_different_sizes(ws: Workspace) -> None:
    """Key frames that change the size mid-stream: xc follows them as vpxdec does."""
    a = ws.encode("cat-a", "crop:175x143", 4, ())
    b = ws.encode("cat-b", "crop:33x17", 4, ("--profile=1",))
    c = ws.encode("cat-c", "bus", 2, ("--token-parts=2",))
    ivf = concatenate([a, b, c, a], ws.root / "concatenated.ivf")
    sizes = [(h.width, h.height) for h in headers(ivf) if h.key_frame]
    assert sizes == [(175, 143), (33, 17), (352, 288), (175, 143)]
    expected = vpxdec_md5_lines(ivf)
    assert len(expected) == 14
    assert xc_md5_lines(ivf) == expected


def run_decode_cli(ivf: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "excamera.cli", "decode", str(ivf), "-o", str(out)],
        capture_output=True, text=True, timeout=60, env=child_env(),
    )


@pytest.mark.parametrize("case_id", ["altref-lag-2pass", "size-175x143", "profile-3",
                                     "token-parts-3", "size-1x1"])
def test_excamera_decode_y4m_matches_vpxdec_bytes(ws: Workspace, case_id: str) -> None:
    """``excamera decode -o OUT.y4m`` writes exactly vpxdec's I420 bytes, frame by frame."""
    case = next(c for c in CASES if c.id == case_id)
    ivf = ws.encode(case.id, case.source, case.frames, case.args)
    yuv = ws.root / f"{case.id}.vpxdec.yuv"
    subprocess.run(["vpxdec", "--i420", "-o", str(yuv), str(ivf)], check=True, timeout=60,
                   capture_output=True)
    y4m = ws.root / f"{case.id}.xc.y4m"
    done = run_decode_cli(ivf, y4m)
    assert done.returncode == 0, done.stderr
    reference = yuv.read_bytes()
    with Y4MReader(y4m) as r:
        pictures = list(r)
        head = read_ivf(ivf)[0]
        assert (r.header.width, r.header.height) == (head.width, head.height)
    frame_len = len(pictures[0].to_bytes())
    assert len(reference) == frame_len * len(pictures), "shown frame count differs from vpxdec"
    for i, p in enumerate(pictures):
        want = np.frombuffer(reference[i * frame_len : (i + 1) * frame_len], np.uint8)
        got = np.frombuffer(p.to_bytes(), np.uint8)
        assert np.array_equal(got, want), f"{case.id}: frame {i} differs in " \
            f"{int((got != want).sum())} bytes"


def test_excamera_decode_refuses_size_change_for_y4m(ws: Workspace) -> None:
    """Y4M holds one size: a resampled stream fails with one line naming the file, no traceback."""
    case = next(c for c in CASES if c.id == "spatial-resampling")
    ivf = ws.encode(case.id, case.source, case.frames, case.args)
    done = run_decode_cli(ivf, ws.root / "resampled.y4m")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(ivf) in lines[0] and "size changes" in lines[0]


# --- damaged streams: xc refuses and decodes exactly what vpxdec refuses and decodes ---------

class SplitMix:
    """A tiny deterministic PRNG (splitmix64), so damage is the same on every Python."""

    def __init__(self, seed: int) -> None:
        self.state = seed & (2**64 - 1)

    def below(self, n: int) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return (z ^ (z >> 31)) % n


def damage(frames: list[bytes], seed: int, mode: str) -> list[bytes]:
    """Damage about a third of the frames: ``trunc`` cuts a frame anywhere after its tag,
    ``tokens`` flips bits in the token partitions, ``all`` anywhere after the tag."""
    rng = SplitMix(seed)
    out = []
    for f in frames:
        if rng.below(3):
            out.append(f)
            continue
        info = parse_frame(f)
        head = 10 if info.key_frame else 3
        if mode == "trunc":
            out.append(f[: head + rng.below(len(f) - head)])
            continue
        lo = head + info.first_part_size if mode == "tokens" else head
        g = bytearray(f)
        if lo < len(g):
            for _ in range(1 + rng.below(3)):
                g[lo + rng.below(len(g) - lo)] ^= 1 << rng.below(8)
        out.append(bytes(g))
    return out


def vpxdec_until_failure(ivf: Path) -> tuple[list[str], int | None]:
    """vpxdec's MD5 lines, and the 0-based packet it refused (it stops there), if any."""
    done = subprocess.run(["vpxdec", "--md5", "--i420", "-o", "f-%4.i420", str(ivf)],
                          capture_output=True, text=True, timeout=60, cwd=ivf.parent)
    failed = None
    for line in done.stderr.splitlines():
        if "Failed to decode frame" in line:
            failed = int(line.split("Failed to decode frame ")[1].split(":")[0]) - 1
            break
    return done.stdout.splitlines(), failed


def xc_until_failure(frames: list[bytes]) -> tuple[list[str], int | None]:
    from excamera.xc.codec import DecodeError

    state, lines = State(), []
    for i, frame in enumerate(frames, start=1):
        try:
            state, picture = decode_frame(state, frame)
        except DecodeError:
            return lines, i - 1
        if picture is not None:
            digest = hashlib.md5(picture.to_bytes()).hexdigest()
            lines.append(f"{digest}  f-{i:04d}.i420")
    return lines, None


# Why xc and vpxdec (libvpx 1.12, x86) part ways on some damaged data. Each was traced to its
# cause; none arises in a stream a VP8 encoder writes.
COPY_FLAG_3 = (
    "a flipped header bit gives copy_buffer_to_golden = 3 (undefined): xc refuses the frame, "
    "libvpx decodes it and carries on")
IDCT_OVERFLOW = (
    "damaged tokens give coefficients whose inverse DCT overflows 16 bits: one pixel is 255 in xc "
    "(the spec's C arithmetic, every store wrapped to a short) and 0 in vpxdec; a generic-C build "
    "of the same libvpx (configure --target=generic-gnu) decodes it exactly as xc does, so it is "
    "x86 libvpx's SIMD transform, which wraps intermediate sums before the final shift")
V3_CHROMA_BORDER = (
    "version 3 with damaged modes: a chroma block predicted from 8-19 pixels left of the frame; "
    "xc replicates the edge without limit (the spec's extension), libvpx clamps only vectors "
    "beyond 19 pixels, reads past its 16-pixel chroma border and gets the previous row's pixels "
    "(a buffer-layout artifact; generic-C libvpx does the same)")

VECTORS = ("vp80-00-comprehensive-001", "vp80-00-comprehensive-005", "vp80-00-comprehensive-007",
           "vp80-00-comprehensive-016", "vp80-03-segmentation-1437", "vp80-04-partitions-1405")
# The pairs whose 20 seeds include a divergence (which seeds: KNOWN_DIVERGENCES below).
DIVERGENT = {
    ("vp80-00-comprehensive-005", "all"): V3_CHROMA_BORDER,  # 8 of 20 seeds
    ("vp80-00-comprehensive-007", "all"): COPY_FLAG_3,  # seed 10
    ("vp80-04-partitions-1405", "all"): IDCT_OVERFLOW,  # seed 13
}


def divergence(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


DAMAGED = [
    pytest.param(v, m, id=f"{v[5:]}-{m}",
                 marks=[divergence(DIVERGENT[v, m])] if (v, m) in DIVERGENT else [])
    for m in ("trunc", "all", "tokens") for v in VECTORS
]


@pytest.mark.parametrize(("vector", "mode"), DAMAGED)
def test_damaged_streams_decode_like_vpxdec(ws: Workspace, vector: str, mode: str) -> None:
    """20 damaged copies of a vector: xc refuses the same packet vpxdec refuses (first failure),
    and every picture before it is identical, damaged frames included."""
    frames = [f.data for f in read_ivf(vectors_dir() / f"{vector}.ivf")[1]]
    refused = damaged_shown = 0
    for seed in range(20):
        bad = damage(frames, seed, mode)
        ivf = ws.root / f"damaged-{vector}-{mode}-{seed}.ivf"
        with IvfWriter(ivf, 176, 144) as w:
            for f in bad:
                w.write(f)
        want, want_fail = vpxdec_until_failure(ivf)
        got, got_fail = xc_until_failure(bad)
        assert got_fail == want_fail, f"seed {seed}: xc refused packet {got_fail}, " \
            f"vpxdec {want_fail}"
        assert got == want, f"seed {seed}: pictures differ"
        refused += got_fail is not None
        decoded = bad[: len(bad) if got_fail is None else got_fail]
        damaged_shown += sum(a != b for a, b in zip(decoded, frames, strict=False))
    # The damage must have been exercised: cuts are refused, flipped bits mostly decode.
    assert refused > 0 if mode == "trunc" else damaged_shown > 0


def decode_damaged(ws: Workspace, vector: str, mode: str, seed: int) -> bool:
    """Whether xc and vpxdec agree on one damaged copy of a vector (refusal and pictures)."""
    frames = [f.data for f in read_ivf(vectors_dir() / f"{vector}.ivf")[1]]
    bad = damage(frames, seed, mode)
    ivf = ws.root / f"one-{vector}-{mode}-{seed}.ivf"
    with IvfWriter(ivf, 176, 144) as w:
        for f in bad:
            w.write(f)
    return xc_until_failure(bad) == vpxdec_until_failure(ivf)


@pytest.mark.parametrize(("vector", "mode", "seed"), [("vp80-00-comprehensive-016", "tokens", 9),
                                                     ("vp80-04-partitions-1405", "all", 18)])
def test_tokens_running_out_in_a_macroblock(ws: Workspace, vector: str, mode: str,
                                            seed: int) -> None:
    """A macroblock whose token partition runs out while its tokens are read, all of them empty,
    counts as coefficient-free, so its inner edges are not loop-filtered: libvpx 1.12 sets
    mb_skip_coeff = (eobtotal == 0) with no end-of-data check. (xc once kept such macroblocks
    filtered; these damaged streams then differed from vpxdec by 1-2 levels at a few pixels.)"""
    assert decode_damaged(ws, vector, mode, seed)


KNOWN_DIVERGENCES = [
    pytest.param("vp80-00-comprehensive-007", "all", 10, marks=divergence(COPY_FLAG_3)),
    pytest.param("vp80-00-comprehensive-001", "all", 36, marks=divergence(COPY_FLAG_3)),
    pytest.param("vp80-04-partitions-1405", "all", 13, marks=divergence(IDCT_OVERFLOW)),
    pytest.param("vp80-04-partitions-1405", "tokens", 25, marks=divergence(IDCT_OVERFLOW)),
    *[pytest.param("vp80-00-comprehensive-005", "all", seed, marks=divergence(V3_CHROMA_BORDER))
      for seed in (2, 4, 10, 11, 13, 14, 16, 17, 24)],
]


@pytest.mark.parametrize(("vector", "mode", "seed"), KNOWN_DIVERGENCES)
def test_known_damaged_stream_divergences(ws: Workspace, vector: str, mode: str,
                                          seed: int) -> None:
    assert decode_damaged(ws, vector, mode, seed)
