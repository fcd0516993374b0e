"""Rate control by target bitrate: which quality level each chunk is encoded at. Pure.

ExCamera's output size is set by pass 0's quantizers (the rebases keep them), but not by pass 0's
sizes: a pass-0 chunk spends most of its bits on its key frame, which the rebase turns into an
inter frame at a weighted quantizer (on carphone at level 30, 259 kB of pass-0 chunks become
96 kB). So the statistics that predict the output are the output's own: each *trial* is a whole
ExCamera encode (every chunk in parallel, as any encode) at known per-chunk levels, and its
per-chunk sizes feed the next allocation.

1. The first trial runs every chunk at one level guessed from the target's bits per pixel
   (``first_level``).
2. Size follows the quantizer, not the level: vpxenc's levels map to quantizer indices in
   steps of 1 to 3 (``CQ_LEVEL_QINDEX``), and bytes fall as ``(qindex + Q_OFFSET) ** -gamma``
   (``log_step``). Until trials lie on both sides of the target, each chunk's size is
   modelled as ``bytes_k * exp(-gamma * (log_step(level) - log_step(level_k)))`` around the
   trial closest to the target; ``gamma`` is the secant of the two trials closest to the
   target, or ``DEFAULT_GAMMA`` after one trial. ``allocate`` picks the allocation whose
   predicted total is closest to the target among "every chunk at level B, n of them (spread
   over the clip) at B+1": a fractional level, as uniform a quality as integer levels allow.
   Uneven levels were measured and lose or stay within one encode's noise: the key chunk
   finer, a ramp along the batch, per-chunk SSIM-per-byte slopes equalized (a chunk's level
   moves every later chunk's quality through the chain; bench/compression-ideas.md, eighth
   session).
3. Once the target is bracketed, the next mean log step is interpolated between the closest
   trial over and the closest under it (``within``), kept off the bracket's ends so that it
   shrinks every time.

The loop (``run.encode_to_target``, and ``bench/ratecontrol_replay.py`` on measured sizes)
asks ``next_levels`` for each next trial: the search stops at the first trial within
``TOLERANCE`` of the target, after ``MAX_TRIALS``, or when the target lies beyond what levels
0..63 reach; the encode fails if no trial is within ``ACCEPT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..xcenc.plan import CQ_LEVEL_QINDEX, MAX_CQ_LEVEL

# ExCamera[6,16]'s bytes at every level 0..63 of the four shared clips: ln(bytes) against
# ln(q + Q_OFFSET), q the level's quantizer index, is a line of slope -gamma, gamma 1.03..1.31,
# within RMS 0.01..0.09; a line in the level misses by RMS 0.10..0.23, its slope twice as
# steep at levels 0..8 as above 12 (bench/compression-ideas.md, eighth session).
Q_OFFSET = 10
DEFAULT_GAMMA = 1.2
MIN_GAMMA, MAX_GAMMA = 0.3, 5.0
# Bits per pixel of ExCamera[6,16] at level 30: carphone 0.25, bigbuckbunny about 0.3.
REFERENCE_LEVEL, REFERENCE_BPP = 30, 0.28
TOLERANCE = 0.03  # a trial this close ends the search
ACCEPT = 0.05  # the promise: the file's bitrate within 5% of the target
MAX_TRIALS = 6


@dataclass(frozen=True)
class Trial:
    """One whole encode: each chunk's level and the bytes of its output."""

    levels: tuple[int, ...]
    chunk_bytes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.chunk_bytes)

    @property
    def mean_step(self) -> float:
        """The mean of the chunks' ``log_step``."""
        return sum(map(log_step, self.levels)) / len(self.levels)

    def error(self, target_bytes: float) -> float:
        """Relative miss: +0.04 is 4% over the target."""
        return self.total / target_bytes - 1


def log_step(level: int) -> float:
    """ln(quantizer index + ``Q_OFFSET``) of a level: bytes fall as ``exp(-gamma log_step)``."""
    return math.log(CQ_LEVEL_QINDEX[level] + Q_OFFSET)


def first_level(target_kbps: float, width: int, height: int, fps: tuple[int, int]) -> int:
    """The level of the first trial, from the target's bits per pixel."""
    bpp = target_kbps * 1000 * fps[1] / fps[0] / (width * height)
    want = log_step(REFERENCE_LEVEL) - math.log(bpp / REFERENCE_BPP) / DEFAULT_GAMMA
    return min(range(MAX_CQ_LEVEL + 1), key=lambda v: abs(log_step(v) - want))


def up_order(n_chunks: int) -> list[int]:
    """The chunks in the order they move up a level: any first m of them are spread over the
    clip (positions ranked by the bit-reversed binary fraction of their index)."""
    def radical_inverse(k: int) -> float:
        f, scale = 0.0, 0.5
        while k:
            f += scale * (k & 1)
            k >>= 1
            scale /= 2
        return f

    return sorted(range(n_chunks), key=lambda k: (radical_inverse(k), k))


def levels_at(n_chunks: int, base: int, n_up: int) -> tuple[int, ...]:
    """Every chunk at ``base``, the first ``n_up`` of ``up_order`` at ``base + 1``."""
    up = set(up_order(n_chunks)[:n_up])
    return tuple(base + (k in up) for k in range(n_chunks))


def gamma(trials: list[Trial], target_bytes: float) -> float:
    """``-d ln(bytes) / d log_step`` from the two trials closest to the target with different
    mean log steps, clamped to a plausible range; ``DEFAULT_GAMMA`` without two such trials."""
    ranked = sorted(trials, key=lambda t: abs(math.log(t.total / target_bytes)))
    for other in ranked[1:]:
        ds = other.mean_step - ranked[0].mean_step
        if abs(ds) > 1e-9:
            g = (math.log(ranked[0].total) - math.log(other.total)) / ds
            return min(MAX_GAMMA, max(MIN_GAMMA, g))
    return DEFAULT_GAMMA


def bracket(trials: list[Trial], target_bytes: float) -> tuple[Trial, Trial] | None:
    """The closest trials over and under the target, once there are both."""
    over = [t for t in trials if t.total > target_bytes]
    under = [t for t in trials if t.total <= target_bytes]
    if not over or not under:
        return None
    return min(over, key=lambda t: t.total), max(under, key=lambda t: t.total)


def within(lo: Trial, hi: Trial, target_bytes: float, n: int) -> tuple[int, ...]:
    """Levels between a trial over the target (``lo``) and one under it (``hi``): the mean log
    step interpolated in log bytes, kept to the middle 60% of the bracket so that it shrinks
    even where size follows the quantizer unevenly (a clip whose key frames dominate barely
    changes over some levels, then a lot)."""
    a, b = lo.mean_step, hi.mean_step
    t = math.log(lo.total / target_bytes) / math.log(lo.total / hi.total)
    m = a + min(0.8, max(0.2, t)) * (b - a)
    base = max(v for v in range(MAX_CQ_LEVEL) if log_step(v) <= m)
    frac = (m - log_step(base)) / (log_step(base + 1) - log_step(base))
    return levels_at(n, base, min(n, round(frac * n)))


def predict(trial: Trial, levels: tuple[int, ...], g: float) -> float:
    """Bytes of an encode at ``levels``, from ``trial``'s per-chunk sizes."""
    return sum(b * math.exp(-g * (log_step(lv) - log_step(l0)))
               for b, l0, lv in zip(trial.chunk_bytes, trial.levels, levels, strict=True))


def allocate(trials: list[Trial], target_bytes: float) -> tuple[int, ...]:
    """The next trial's per-chunk levels (see the module docstring)."""
    n = len(trials[0].levels)
    if (pair := bracket(trials, target_bytes)) is not None:
        return within(*pair, target_bytes, n)
    best = min(trials, key=lambda t: abs(math.log(t.total / target_bytes)))
    g = gamma(trials, target_bytes)
    n = len(best.levels)
    order = up_order(n)
    choice, miss = (0, 0), math.inf
    for base in range(MAX_CQ_LEVEL + 1):
        terms = [b * math.exp(-g * (log_step(base) - log_step(l0)))
                 for b, l0 in zip(best.chunk_bytes, best.levels, strict=True)]
        total = sum(terms)
        step = 0.0 if base == MAX_CQ_LEVEL else log_step(base + 1) - log_step(base)
        for n_up in range(n if base < MAX_CQ_LEVEL else 1):
            if n_up:  # one more chunk a level up
                total -= terms[order[n_up - 1]] * (1 - math.exp(-g * step))
            m = abs(math.log(total / target_bytes))
            if m < miss:
                choice, miss = (base, n_up), m
    return levels_at(n, *choice)


def next_levels(trials: list[Trial], target_bytes: float) -> tuple[int, ...] | None:
    """The next trial's levels, or None when the search ends: the last trial is within
    ``TOLERANCE``, ``MAX_TRIALS`` have run, the target lies beyond every level, or the model
    has nothing new to try."""
    last = trials[-1]
    miss = last.error(target_bytes)
    if abs(miss) <= TOLERANCE or len(trials) >= MAX_TRIALS:
        return None
    if miss > 0 and all(v == MAX_CQ_LEVEL for v in last.levels) or \
            miss < 0 and all(v == 0 for v in last.levels):
        return None
    levels = allocate(trials, target_bytes)
    return None if any(t.levels == levels for t in trials) else levels
