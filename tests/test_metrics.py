"""excamera.metrics against outside implementations and cases with known answers.

- SSIM against scikit-image's ``structural_similarity`` (Gaussian weights, sigma 1.5,
  population covariance, data range 255), per window position, on real clip frames and on
  encoded/decoded pairs. scikit-image filters the whole picture with reflected borders and then
  drops the 5-sample margin where the window does not fit (``crop(S, pad)``), which leaves
  exactly the window positions our "valid" definition uses: the borders never enter, so the two
  agree up to floating-point summation order. The test also shows the margin is what differs, so
  the comparison cannot pass by covering it up.
- PSNR against ffmpeg's ``psnr`` filter, per plane and averaged, on Y4M pairs that ffmpeg reads
  itself.
- BD-rate against cases computed by hand from Bjontegaard's definition, and against a second
  implementation (a least-squares fit on a centred, scaled basis and a numerical integral
  instead of ``polyfit``/``polyint``) on the curves the committed benchmark results hold.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from _shared_paths import REPO, shared_dir
from excamera.metrics import (
    WINDOW,
    QualityMeter,
    bd_rate,
    psnr_from_mse,
    ssim,
    ssim_db,
    ssim_map,
)
from excamera.xc.codec import Decoder
from excamera.xc.encoder import Encoder
from excamera.xc.y4m import Picture, Y4MReader, Y4MWriter

CLIPS = ["carphone_qcif_120f.y4m", "bus_cif_17f.y4m", "bigbuckbunny_320x180_48f.y4m",
         "park_joy_160x90_10f.y4m"]
# Both sides compute in float64 and differ only in summation order. The variances are
# E[x^2] - E[x]^2 with E[x^2] up to 255^2 = 65025, so each carries a rounding error of about
# 65025 * 2.2e-16 = 1.4e-11, and SSIM divides it by at least C2 = 58.5: a few 1e-13 per term,
# about 1e-12 seen. 1e-10 bounds that with room; a change of definition moves the mean by
# 8e-7 (K1 10% off) to 4e-3 (sigma 1.4) on real frames (test_the_ssim_check_is_sensitive).
SSIM_TOL = 1e-10


def frames(clip: str, n: int) -> list[Picture]:
    with Y4MReader(shared_dir() / "clips" / clip) as r:
        return [r.read_frame() for _ in range(n)]


def skimage_map(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    mean, full = structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255, full=True)
    return float(mean), full


def check_ssim_against_skimage(x: np.ndarray, y: np.ndarray) -> float:
    ours = ssim_map(x, y)
    mean, full = skimage_map(x, y)
    pad = (WINDOW - 1) // 2
    inner = full[pad:-pad, pad:-pad]
    assert ours.shape == inner.shape == (x.shape[0] - 2 * pad, x.shape[1] - 2 * pad)
    assert np.max(np.abs(ours - inner)) < SSIM_TOL
    assert ssim(x, y) == pytest.approx(mean, abs=SSIM_TOL)
    return mean


def fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (which must exit 0)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_codec_layer_does_not_import_the_pipelines() -> None:
    """xc-enc's SSIM target needs the metrics, not the jobs that run on mu."""
    code = ("import sys, excamera.xc.encoder, excamera.xc.enc, excamera.xc.tools, "
            "excamera.xc.decode_cmd, excamera.metrics; "
            "print(sorted(m for m in sys.modules if m.startswith(('excamera.pipelines', "
            "'excamera.mu'))))")
    assert fresh_python(code) == "[]"


# --- SSIM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", CLIPS)
def test_ssim_matches_skimage_on_clip_frames(clip: str) -> None:
    """Neighbouring frames of real clips (motion: a wide range of SSIM values)."""
    pics = frames(clip, 6)
    values = [check_ssim_against_skimage(pics[0].y, p.y) for p in pics[1:]]
    assert values[0] < 0.999 and min(values) > 0.05  # real differences, not identical frames


@pytest.mark.parametrize("qindex", [4, 40, 90, 127])
def test_ssim_matches_skimage_on_encoded_pairs(qindex: int) -> None:
    """Sources against their encoded and decoded pictures, from nearly lossless to the coarsest
    quantizer; the decoder's pictures are checked against the encoder's reconstruction too."""
    src = frames("carphone_qcif_120f.y4m", 4)
    enc = Encoder(176, 144, quality=qindex, speed="rt")
    dec = Decoder()
    values = []
    for p in src:
        r = enc.encode_frame(p)
        shown = dec.decode(r.data)
        assert shown == r.recon
        values.append(check_ssim_against_skimage(p.y, shown.y))
    assert 0.2 < min(values) and max(values) < 1.0


@pytest.mark.parametrize("size", [(11, 11), (17, 33), (143, 175)])
def test_ssim_matches_skimage_on_odd_sizes(size: tuple[int, int]) -> None:
    h, w = size
    pics = frames("carphone_qcif_120f.y4m", 3)
    check_ssim_against_skimage(pics[0].y[:h, :w], pics[2].y[:h, :w])


def test_ssim_borders_are_what_differs() -> None:
    """The margin skimage drops is where its reflected borders would disagree with any other
    border rule: the full map's mean differs from ours measurably, the cropped one does not.
    (Were the crop wrong, test_ssim_matches_skimage_* would fail on their shapes.)"""
    a, b = frames("bus_cif_17f.y4m", 2)
    mean, full = skimage_map(a.y, b.y)
    assert abs(float(full.mean()) - ssim(a.y, b.y)) > 1e-4
    assert mean == pytest.approx(ssim(a.y, b.y), abs=SSIM_TOL)


@pytest.mark.parametrize("change", [{"sigma": 1.4}, {"use_sample_covariance": True},
                                    {"K1": 0.011}, {"data_range": 256}])
def test_the_ssim_check_is_sensitive(change: dict) -> None:
    """Any one change of definition on skimage's side moves its mean far past SSIM_TOL."""
    a, b = frames("bus_cif_17f.y4m", 2)
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False,
          "data_range": 255, **change}
    assert abs(structural_similarity(a.y, b.y, **kw) - ssim(a.y, b.y)) > 1000 * SSIM_TOL


def test_ssim_refuses_what_it_cannot_define() -> None:
    y = np.zeros((10, 40), np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(y, y)
    with pytest.raises(ValueError, match="different sizes"):
        ssim(np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8))


# --- PSNR -----------------------------------------------------------------------------------


def ffmpeg_psnr(a: Path, b: Path) -> dict[str, float]:
    """ffmpeg's psnr filter on two Y4M files: its closing line's y, u, v, average, min, max."""
    done = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(a), "-i", str(b),
                           "-lavfi", "psnr", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = [s for s in done.stderr.splitlines() if "PSNR y:" in s]
    assert len(line) == 1, done.stderr
    return {k: float(v) for k, v in re.findall(r"(\w+):([\d.]+|inf)", line[0].split("PSNR")[1])}


def crop(p: Picture, w: int, h: int) -> Picture:
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return Picture(p.y[:h, :w].copy(), p.u[:ch, :cw].copy(), p.v[:ch, :cw].copy())


@pytest.mark.parametrize(("qindex", "size"), [(20, (176, 144)), (100, (176, 144)),
                                              (60, (175, 143))])
def test_psnr_matches_ffmpeg(tmp_path: Path, qindex: int, size: tuple[int, int]) -> None:
    """A clip and its encoded/decoded version written as Y4M; ffmpeg reads both itself.
    ffmpeg prints 6 decimals; our per-plane, average, and per-frame extremes agree to that."""
    w, h = size
    src = [crop(p, w, h) for p in frames("carphone_qcif_120f.y4m", 12)]
    enc = Encoder(w, h, quality=qindex, speed="rt")
    recon = [enc.encode_frame(p).recon for p in src]
    with Y4MWriter(tmp_path / "src.y4m", w, h, (30, 1)) as a, \
            Y4MWriter(tmp_path / "dec.y4m", w, h, (30, 1)) as b:
        for p, r in zip(src, recon, strict=True):
            a.write(p)
            b.write(r)
    theirs = ffmpeg_psnr(tmp_path / "dec.y4m", tmp_path / "src.y4m")
    meter = QualityMeter()
    per_frame = []
    for p, r in zip(src, recon, strict=True):
        meter.add(p, r)
        one = QualityMeter()
        one.add(p, r)
        per_frame.append(one.psnr_all)
    tol = 2e-6
    assert meter.psnr_plane(0) == pytest.approx(theirs["y"], abs=tol)
    assert meter.psnr_plane(1) == pytest.approx(theirs["u"], abs=tol)
    assert meter.psnr_plane(2) == pytest.approx(theirs["v"], abs=tol)
    assert meter.psnr_y == meter.psnr_plane(0)
    assert meter.psnr_all == pytest.approx(theirs["average"], abs=tol)
    assert min(per_frame) == pytest.approx(theirs["min"], abs=tol)
    assert max(per_frame) == pytest.approx(theirs["max"], abs=tol)
    assert 20 < meter.psnr_all < 60


def test_psnr_of_identical_pictures_is_infinite() -> None:
    assert psnr_from_mse(0.0) == math.inf
    p = frames("park_joy_160x90_10f.y4m", 1)[0]
    m = QualityMeter()
    m.add(p, p)
    assert m.psnr_y == m.psnr_all == math.inf and m.ssim == pytest.approx(1.0)


@pytest.mark.parametrize(("clip", "size"), [
    ("bigbuckbunny_320x180_48f.y4m", None), ("bus_cif_17f.y4m", None),
    ("carphone_qcif_120f.y4m", (175, 143)), ("carphone_qcif_120f.y4m", (11, 11)),
    ("park_joy_160x90_10f.y4m", (33, 17))])
def test_the_extensions_frame_sums_equal_the_numpy_definition(clip, size) -> None:
    """QualityMeter takes each frame's sums from Rust (``_xc.frame_quality``): the squared
    errors exactly numpy's, the SSIM :func:`ssim`'s (itself checked against scikit-image)."""
    pics = frames(clip, 4)
    if size is not None:
        pics = [crop(p, *size) for p in pics]
    for a, b in zip(pics, pics[1:] + pics[:1], strict=True):
        meter = QualityMeter()
        meter.add(a, b)
        sse = [float(np.sum((x.astype(np.int64) - y) ** 2))
               for x, y in ((a.y, b.y), (a.u, b.u), (a.v, b.v))]
        assert meter.sse == sse and meter.samples == [a.y.size, a.u.size, a.v.size]
        assert meter.ssim_frames == 1
        assert meter.ssim_sum == pytest.approx(ssim(a.y, b.y), abs=SSIM_TOL)
        assert 0.05 < meter.ssim_sum < 0.9999


def test_the_extensions_frame_sums_refuse_what_they_cannot_define() -> None:
    from excamera._xc import frame_quality

    p = crop(frames("park_joy_160x90_10f.y4m", 1)[0], 10, 30)
    meter = QualityMeter()
    meter.add(p, p)  # narrower than the window: squared errors, no SSIM
    assert meter.ssim_frames == 0 and meter.ssim is None and meter.samples == [300, 75, 75]
    data = p.to_bytes()
    with pytest.raises(ValueError, match="frame 1: frame_quality: the decoded picture has 449 "
                       "bytes, a 10x30 I420 picture 450"):
        meter.add_i420(data, data[:-1], 10, 30)
    with pytest.raises(ValueError, match="bad size 0x30"):
        frame_quality(data, data, 0, 30)


def test_a_meter_fed_bytes_loads_no_numpy() -> None:
    """What a worker runs to measure its chunk: I420 bytes in, sums out, numpy never imported
    (a process per worker would pay its import per chunk)."""
    code = ("import sys\nfrom excamera.metrics import QualityMeter\n"
            "m = QualityMeter()\nm.add_i420(bytes(24 * 16 * 3 // 2), bytes(range(256)) * 2 + "
            "bytes(64), 24, 16)\n"
            "print(m.frames, m.samples, m.ssim_frames, 'numpy' in sys.modules)")
    assert fresh_python(code).split() == ["1", "[384,", "96,", "96]", "1", "False"]


# --- BD-rate: cases with a known answer ------------------------------------------------------

RATES = [100.0, 180.0, 350.0, 700.0, 1300.0]
PSNR = [30.1, 32.4, 35.0, 37.6, 40.2]


def test_identical_curves_are_zero() -> None:
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.8, 1.25, 0.5])
def test_constant_rate_factor(factor: float) -> None:
    """B needs ``factor`` times A's bits at every quality: BD-rate is exactly factor - 1."""
    assert bd_rate(RATES, PSNR, [r * factor for r in RATES], PSNR) == pytest.approx(
        100 * (factor - 1), rel=1e-9)


def test_only_the_overlap_counts() -> None:
    """Both curves sample one exponential law on different but overlapping quality ranges."""
    q_a, q_b = np.linspace(30, 40, 5), np.linspace(35, 45, 6)
    law = lambda q: np.exp(0.2 * q + 0.01 * (q - 37) ** 3 / 10)  # noqa: E731 (a cubic in log)
    assert bd_rate(law(q_a), q_a, law(q_b), q_b) == pytest.approx(0.0, abs=1e-6)
    # Shift B's quality up by 1 dB at the same rates: B is better, so BD-rate is negative, and
    # for a log-linear law it is exp(-slope * shift) - 1.
    lin = lambda q: np.exp(0.23 * q)  # noqa: E731
    got = bd_rate(lin(q_a), q_a, lin(q_b), q_b + 1.0)
    assert got == pytest.approx(100 * (math.exp(-0.23) - 1), rel=1e-6)


def test_hand_computed_cases() -> None:
    """Curves whose log-rates are exact polynomials of degree <= 3, so the cubic fits recover
    them exactly and the integral is done by hand.

    1. A: ln R = q/10 on [30, 40]; B: ln R = q/10 + (q - 35)^2 / 100 on the same qualities.
       mean(ln R_B - ln R_A) = (1/10) * integral_{-5}^{5} x^2/100 dx = (1/10) * (250/3)/100
       = 1/12, so BD-rate = 100 * (e^(1/12) - 1) = 8.690404...%.
    2. A on [28, 40], B on [30, 44]: only [30, 40] counts. B: ln R = q/10 + (q - 30)/20.
       mean = (1/10) * integral_0^10 x/20 dx = (1/10) * 2.5 = 1/4:
       100 * (e^(1/4) - 1) = 28.402541...%.
    3. Case 1 with B's excess negated: 100 * (e^(-1/12) - 1) = -7.995558...%.
    """
    q = np.array([30.0, 32.5, 35.0, 37.5, 40.0])
    a = np.exp(q / 10)
    b = np.exp(q / 10 + (q - 35) ** 2 / 100)
    assert bd_rate(a, q, b, q) == pytest.approx(8.690404, abs=1e-6)
    assert bd_rate(a, q, np.exp(q / 10 - (q - 35) ** 2 / 100), q) == pytest.approx(
        -7.995558, abs=1e-6)
    qa, qb = np.array([28.0, 31.0, 34.0, 37.0, 40.0]), np.array([30.0, 33.0, 37.0, 41.0, 44.0])
    assert bd_rate(np.exp(qa / 10), qa, np.exp(qb / 10 + (qb - 30) / 20), qb) == pytest.approx(
        28.402541, abs=1e-6)


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATES[:3], PSNR[:3], RATES, PSNR)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNR, RATES, [q + 20 for q in PSNR])
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0, *RATES[1:]], PSNR, RATES, PSNR)


def test_ssim_db() -> None:
    assert ssim_db(0.99) == pytest.approx(20.0)
    assert ssim_db(0.9) == pytest.approx(10.0)
    assert ssim_db(1.0) == math.inf


# --- BD-rate: a second implementation on real curves ----------------------------------------


def bd_rate_reference(ra: list[float], qa: list[float], rb: list[float],
                      qb: list[float]) -> float:
    """Bjontegaard's definition again, by other means: each cubic fitted by least squares on
    the quality centred and scaled to [-1, 1] (a differently conditioned problem than
    ``polyfit`` on raw dB), and the mean over the overlap taken by the composite trapezoid
    rule on 200,001 points instead of the antiderivative."""
    lo, hi = max(min(qa), min(qb)), min(max(qa), max(qb))
    grid = np.linspace(lo, hi, 200_001)

    def fitted(r: list[float], q: list[float]) -> np.ndarray:
        mid, half = (max(q) + min(q)) / 2, (max(q) - min(q)) / 2
        x = (np.asarray(q) - mid) / half
        coef = np.linalg.lstsq(np.vander(x, 4), np.log(r), rcond=None)[0]
        return np.vander((grid - mid) / half, 4) @ coef

    diff = fitted(rb, qb) - fitted(ra, qa)
    mean = float(np.sum((diff[1:] + diff[:-1]) / 2) * (grid[1] - grid[0]) / (hi - lo))
    return 100 * (math.exp(mean) - 1)


def committed_curves() -> list[tuple[str, list[float], list[float], list[float], list[float],
                                     float | None]]:
    """(name, rates A, quality A, rates B, quality B, BD-rate the file reports) for every curve
    pair in the committed benchmark results."""
    out = []
    enc = json.loads((REPO / "bench" / "encode-results.json").read_text())
    for clip in enc["results"]:
        pts = clip["bd_points"]
        xc = [p for p in pts if p["encoder"].startswith("xc")]
        vpx = [p for p in pts if p["encoder"].startswith("vpxenc")]
        for key, qual in (("psnr_y", lambda p: p["psnr_y"]),
                          ("ssim_db", lambda p: ssim_db(p["ssim"]))):
            out.append((f"encode {clip['clip']} {key}", [p["kbps"] for p in vpx],
                        [qual(p) for p in vpx], [p["kbps"] for p in xc], [qual(p) for p in xc],
                        clip["bd_rate_percent"][key]))
    for path in sorted((REPO / "bench").glob("excamera*-results.json")):
        ex = json.loads(path.read_text())
        rows = ex["rows"]
        for key in ("ssim_db", "psnr_y"):
            out.append((f"{path.name} {key}",
                        [r["vpxenc"]["bytes"] for r in rows], [r["vpxenc"][key] for r in rows],
                        [r["excamera"]["bytes"] for r in rows],
                        [r["excamera"][key] for r in rows], ex[f"bd_rate_{key}"]))
    return out


def test_bd_rate_matches_a_second_implementation_on_committed_results() -> None:
    """Every BD-rate in bench/*-results.json is what bd_rate computes from the points stored
    beside it, and a second implementation agrees within 1e-6 percentage points."""
    curves = committed_curves()
    assert len(curves) >= 4
    for name, ra, qa, rb, qb, reported in curves:
        got = bd_rate(ra, qa, rb, qb)
        assert got == pytest.approx(bd_rate_reference(ra, qa, rb, qb), abs=1e-6), name
        assert reported == pytest.approx(got, abs=1e-9), name
