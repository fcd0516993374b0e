"""Objective quality, in one place for the codec, the pipelines and the benchmarks.

Per picture and clip (:func:`ssim`, :class:`QualityMeter`) and per rate-quality curve
(:func:`bd_rate`). numpy and the codec's extension only, each imported on first use, so the
codec layer (``xc-enc -s`` targets an SSIM) can import it without the pipelines, and a worker
that only adds up a chunk's quality loads no numpy. Each definition is checked against an
outside implementation in ``tests/test_metrics.py``: SSIM against scikit-image, PSNR against
ffmpeg's ``psnr`` filter, BD-rate against a hand-computed case and a different fit and
integration.

:class:`QualityMeter` takes each frame's sums from the extension (``_xc.frame_quality``, the
same definitions in Rust, four times faster than numpy's SSIM and without its import), which
the tests hold equal to :func:`ssim` and to numpy's squared errors; :func:`ssim` and
:func:`ssim_map` are the numpy form, the reference checked against scikit-image.

**PSNR** follows the convention of ffmpeg's ``psnr`` filter: squared errors are summed over
the whole clip, per plane, and the PSNR is taken of the mean: ``Y`` over luma samples, ``all``
over every Y, U and V sample (each plane weighted by its number of samples). 8-bit peak 255;
identical pictures give ``inf``.

**SSIM** is the original one of Wang, Bovik, Sheikh and Simoncelli (2004) on luma: an 11x11
Gaussian window with sigma 1.5 (applied as two separable 1-D passes), K1 = 0.01, K2 = 0.03,
L = 255, population (not sample) covariances, computed only where the window fits inside the
picture ("valid", so no border rule enters), averaged over the picture, then over frames.
(libvpx's ``--tune=ssim`` tooling uses 8x8 windows instead; the Gaussian form is the reference
definition and what most tools report.)

**BD-rate** (G. Bjontegaard, VCEG-M33, 2001) compares two whole rate-quality *curves*, each a
few (bitrate, quality) points of one encoder on one clip at different quantizers: the average
bitrate difference of encoder B against encoder A at equal quality. Fit each curve's log-rate
as a cubic polynomial of quality (least squares), integrate both fits over the quality range
the two curves share, and take the mean difference of log-rates, exp'ed:
``100 * (exp(mean(log R_B - log R_A)) - 1)`` percent. Negative means B needs fewer bits for the
same quality. Quality is PSNR in dB, or for SSIM its dB form ``-10 log10(1 - SSIM)``
(:func:`ssim_db`), which spreads the values near 1 that an SSIM curve bunches up and so keeps
the cubic fit well conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from excamera.xc.y4m import Picture

__all__ = ["QualityMeter", "bd_rate", "psnr_from_mse", "ssim", "ssim_db", "ssim_map"]

WINDOW = 11
SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
_Bytes = bytes | bytearray | memoryview


# --- per picture and per clip ---------------------------------------------------------------


@cache
def _gaussian() -> np.ndarray:
    import numpy as np

    x = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
    g = np.exp(-(x * x) / (2 * SIGMA * SIGMA))
    return g / g.sum()


def _blur(a: np.ndarray) -> np.ndarray:
    """Valid-region separable Gaussian filter of a 2-D float array."""
    from numpy.lib.stride_tricks import sliding_window_view

    g = _gaussian()
    rows = sliding_window_view(a, WINDOW, axis=1) @ g
    return sliding_window_view(rows, WINDOW, axis=0) @ g


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two same-size 8-bit luma planes (see the module docstring)."""
    return float(ssim_map(x, y).mean())


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The SSIM of every window position that fits inside the picture: shape (H-10, W-10),
    entry [i, j] for the window whose top-left sample is [i, j]."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM of different sizes {x.shape} and {y.shape}")
    if min(x.shape) < WINDOW:
        raise ValueError(f"SSIM needs pictures of at least {WINDOW}x{WINDOW}")
    import numpy as np

    a = x.astype(np.float64)
    b = y.astype(np.float64)
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a * mu_a
    var_b = _blur(b * b) - mu_b * mu_b
    cov = _blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a * mu_a + mu_b * mu_b + C1) * (var_a + var_b + C2)
    return num / den


def psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0 * 255.0 / mse)


@dataclass
class QualityMeter:
    """Accumulates per-frame comparisons; ``add(source, decoded)`` once per shown frame."""

    frames: int = 0
    sse: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    samples: list[int] = field(default_factory=lambda: [0, 0, 0])
    ssim_sum: float = 0.0
    ssim_frames: int = 0  # frames large enough for the SSIM window (all or none of a clip)

    def add(self, src: Picture, dec: Picture) -> None:
        """One shown frame, as pictures."""
        self._check_size(src.width, src.height, dec.width, dec.height)
        self.add_i420(src.to_bytes(), dec.to_bytes(), src.width, src.height)

    def add_i420(self, src: _Bytes, dec: _Bytes, width: int, height: int) -> None:
        """One shown frame, as two ``width`` x ``height`` I420 pictures (bytes-like)."""
        from excamera._xc import frame_quality

        try:
            sse, samples, frame_ssim = frame_quality(src, dec, width, height)
        except ValueError as exc:
            raise ValueError(f"frame {self.frames}: {exc}") from None
        for i in range(3):
            self.sse[i] += float(sse[i])
            self.samples[i] += samples[i]
        if frame_ssim is not None:
            self.ssim_sum += frame_ssim
            self.ssim_frames += 1
        self.frames += 1

    def _check_size(self, sw: int, sh: int, dw: int, dh: int) -> None:
        if (sw, sh) != (dw, dh):
            raise ValueError(f"frame {self.frames}: decoded {dw}x{dh}, source {sw}x{sh}")

    def psnr_plane(self, plane: int) -> float:
        """PSNR of one plane over the clip (0 Y, 1 U, 2 V)."""
        return psnr_from_mse(self.sse[plane] / max(1, self.samples[plane]))

    @property
    def psnr_y(self) -> float:
        return self.psnr_plane(0)

    @property
    def psnr_all(self) -> float:
        return psnr_from_mse(sum(self.sse) / max(1, sum(self.samples)))

    @property
    def ssim(self) -> float | None:
        """Mean SSIM over the frames; None (not measured) for pictures smaller than the window,
        which SSIM is not defined on."""
        return self.ssim_sum / self.ssim_frames if self.ssim_frames else None


# --- per rate-quality curve -----------------------------------------------------------------


def ssim_db(ssim: float) -> float:
    """SSIM as decibels, ``-10 log10(1 - ssim)`` (identical pictures: infinity)."""
    return math.inf if ssim >= 1.0 else -10.0 * math.log10(1.0 - ssim)


def _check_curve(name: str, rates: Sequence[float], quality: Sequence[float]) -> None:
    if len(rates) != len(quality):
        raise ValueError(f"curve {name}: {len(rates)} rates but {len(quality)} qualities")
    if len(rates) < 4:
        raise ValueError(f"curve {name}: BD-rate needs at least 4 points, got {len(rates)}")
    if any(not r > 0 or not math.isfinite(r) for r in rates):
        raise ValueError(f"curve {name}: rates must be positive and finite")
    if any(not math.isfinite(q) for q in quality):
        raise ValueError(f"curve {name}: qualities must be finite")
    if len(set(quality)) != len(quality):
        raise ValueError(f"curve {name}: two points have the same quality")


def bd_rate(rates_a: Sequence[float], quality_a: Sequence[float],
            rates_b: Sequence[float], quality_b: Sequence[float]) -> float:
    """BD-rate of curve B against curve A, in percent (negative: B is more efficient)."""
    import numpy as np

    _check_curve("A", rates_a, quality_a)
    _check_curve("B", rates_b, quality_b)
    qa, qb = np.asarray(quality_a, float), np.asarray(quality_b, float)
    la, lb = np.log(np.asarray(rates_a, float)), np.log(np.asarray(rates_b, float))
    lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
    if not hi > lo:
        raise ValueError(f"the curves' quality ranges do not overlap "
                         f"(A {qa.min():.3f}..{qa.max():.3f}, B {qb.min():.3f}..{qb.max():.3f})")
    fit_a = np.polyint(np.polyfit(qa, la, 3))
    fit_b = np.polyint(np.polyfit(qb, lb, 3))
    mean_a = (np.polyval(fit_a, hi) - np.polyval(fit_a, lo)) / (hi - lo)
    mean_b = (np.polyval(fit_b, hi) - np.polyval(fit_b, lo)) / (hi - lo)
    return float(100.0 * (math.exp(mean_b - mean_a) - 1.0))
