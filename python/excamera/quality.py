"""Comparing encoders: the Bjontegaard delta rate (BD-rate).

Per-frame quality metrics (PSNR, SSIM) live in :mod:`excamera.pipelines.quality`; this module
compares two whole rate-quality *curves*, each a few (bitrate, quality) points of one encoder
on one clip at different quantizers.

BD-rate (G. Bjontegaard, VCEG-M33, 2001) is the average bitrate difference of encoder B
against encoder A at equal quality: fit each curve's log-rate as a cubic polynomial of quality,
integrate both fits over the quality range the two curves share, and take the mean difference
of log-rates, exp'ed: ``100 * (exp(mean(log R_B - log R_A)) - 1)`` percent. Negative means B
needs fewer bits for the same quality. Quality is PSNR in dB, or for SSIM its dB form
``-10 log10(1 - SSIM)`` (:func:`ssim_db`), which spreads the values near 1 that an SSIM curve
bunches up and so keeps the cubic fit well conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_rate", "ssim_db"]


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
