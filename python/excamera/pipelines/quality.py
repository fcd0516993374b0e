"""Objective quality of an encode against its source: PSNR and SSIM, with numpy only.

PSNR follows the convention of ffmpeg's ``psnr`` filter so the two can be checked against
each other: squared errors are summed over the whole clip, per plane, and the PSNR is taken of
the mean: ``Y`` over luma samples, ``all`` over every Y, U and V sample (each plane weighted by
its number of samples). 8-bit peak 255; identical pictures give ``inf``.

SSIM is the original one of Wang, Bovik, Sheikh and Simoncelli (2004) on luma: an 11x11
Gaussian window with sigma 1.5 (applied as two separable 1-D passes), K1 = 0.01, K2 = 0.03,
L = 255, computed only where the window fits inside the picture ("valid"), averaged over the
picture, then over frames. (libvpx's ``--tune=ssim`` tooling uses 8x8 windows instead; the
Gaussian form is the reference definition and what most tools report.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from excamera.xc.y4m import Picture

WINDOW = 11
SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _gaussian() -> np.ndarray:
    x = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
    g = np.exp(-(x * x) / (2 * SIGMA * SIGMA))
    return g / g.sum()


_G = _gaussian()


def _blur(a: np.ndarray) -> np.ndarray:
    """Valid-region separable Gaussian filter of a 2-D float array."""
    rows = sliding_window_view(a, WINDOW, axis=1) @ _G
    return sliding_window_view(rows, WINDOW, axis=0) @ _G


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two same-size 8-bit luma planes (see the module docstring)."""
    if x.shape != y.shape:
        raise ValueError(f"SSIM of different sizes {x.shape} and {y.shape}")
    if min(x.shape) < WINDOW:
        raise ValueError(f"SSIM needs pictures of at least {WINDOW}x{WINDOW}")
    a = x.astype(np.float64)
    b = y.astype(np.float64)
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a * mu_a
    var_b = _blur(b * b) - mu_b * mu_b
    cov = _blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a * mu_a + mu_b * mu_b + C1) * (var_a + var_b + C2)
    return float(np.mean(num / den))


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
        if (src.width, src.height) != (dec.width, dec.height):
            raise ValueError(
                f"frame {self.frames}: decoded {dec.width}x{dec.height}, source "
                f"{src.width}x{src.height}"
            )
        for i, (s, d) in enumerate(((src.y, dec.y), (src.u, dec.u), (src.v, dec.v))):
            diff = s.astype(np.int32) - d.astype(np.int32)
            self.sse[i] += float(np.sum(diff * diff))
            self.samples[i] += diff.size
        if min(src.y.shape) >= WINDOW:
            self.ssim_sum += ssim(src.y, dec.y)
            self.ssim_frames += 1
        self.frames += 1

    @property
    def psnr_y(self) -> float:
        return psnr_from_mse(self.sse[0] / max(1, self.samples[0]))

    @property
    def psnr_all(self) -> float:
        return psnr_from_mse(sum(self.sse) / max(1, sum(self.samples)))

    @property
    def ssim(self) -> float | None:
        """Mean SSIM over the frames; None (not measured) for pictures smaller than the window,
        which SSIM is not defined on."""
        return self.ssim_sum / self.ssim_frames if self.ssim_frames else None
