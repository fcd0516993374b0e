"""The Bjontegaard delta rate against cases whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from excamera.quality import bd_rate, ssim_db

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
