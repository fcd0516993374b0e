"""Rate control by target bitrate: which quality level each chunk is encoded at. Pure.

ExCamera's output size is set by pass 0's quantizers (the rebases keep them), but not by pass 0's
sizes: a pass-0 chunk spends most of its bits on its key frame, which the rebase turns into an
inter frame at a weighted quantizer (on carphone at level 30, 259 kB of pass-0 chunks become
96 kB). So the statistics that predict the output are the output's own: each *trial* is a whole
ExCamera encode (every chunk in parallel, as any encode) at known per-chunk levels, and its
per-chunk sizes feed the next allocation.

1. The first trial runs every chunk at one level guessed from the target's bits per pixel
   (``first_level``).
2. Until trials lie on both sides of the target, each chunk's size is modelled as
   ``bytes_k * exp(-slope * (level - level_k))`` around the trial closest to the target;
   ``slope`` (log bytes per level) is the secant of the two trials closest to the target, or
   ``DEFAULT_SLOPE`` after one trial. ``allocate`` picks the allocation whose predicted total
   is closest to the target among "every chunk at level B, n of them (spread over the clip)
   at B+1": a fractional level, as uniform a quality as integer levels allow.
3. Once the target is bracketed, the next mean level is interpolated between the closest
   trial over and the closest under it (``within``), kept off the bracket's ends so that it
   shrinks every time.

The loop (``run.encode``) stops at the first trial within ``TOLERANCE`` of the target, and fails
if none is within ``ACCEPT`` after ``MAX_TRIALS`` or when the target lies beyond what levels
0..63 reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..xcenc.plan import MAX_CQ_LEVEL

# ln(bytes) per cq level of ExCamera[6,16]'s output, levels 12..44: 0.031..0.055 on carphone,
# 0.038..0.052 on bigbuckbunny (bench/excamera*-results.json).
DEFAULT_SLOPE = 0.04
MIN_SLOPE, MAX_SLOPE = 0.01, 0.2
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
    def mean_level(self) -> float:
        return sum(self.levels) / len(self.levels)

    def error(self, target_bytes: float) -> float:
        """Relative miss: +0.04 is 4% over the target."""
        return self.total / target_bytes - 1


def first_level(target_kbps: float, width: int, height: int, fps: tuple[int, int]) -> int:
    """The level of the first trial, from the target's bits per pixel."""
    bpp = target_kbps * 1000 * fps[1] / fps[0] / (width * height)
    level = REFERENCE_LEVEL - math.log(bpp / REFERENCE_BPP) / DEFAULT_SLOPE
    return min(MAX_CQ_LEVEL, max(0, round(level)))


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


def slope(trials: list[Trial], target_bytes: float) -> float:
    """Log bytes per level from the two trials closest to the target with different mean
    levels, clamped to a plausible range; ``DEFAULT_SLOPE`` without two such trials."""
    ranked = sorted(trials, key=lambda t: abs(math.log(t.total / target_bytes)))
    for other in ranked[1:]:
        dl = other.mean_level - ranked[0].mean_level
        if abs(dl) > 1e-9:
            s = (math.log(ranked[0].total) - math.log(other.total)) / dl
            return min(MAX_SLOPE, max(MIN_SLOPE, s))
    return DEFAULT_SLOPE


def bracket(trials: list[Trial], target_bytes: float) -> tuple[Trial, Trial] | None:
    """The closest trials over and under the target, once there are both."""
    over = [t for t in trials if t.total > target_bytes]
    under = [t for t in trials if t.total <= target_bytes]
    if not over or not under:
        return None
    return min(over, key=lambda t: t.total), max(under, key=lambda t: t.total)


def within(lo: Trial, hi: Trial, target_bytes: float, n: int) -> tuple[int, ...]:
    """Levels between a trial over the target (``lo``) and one under it (``hi``): the mean
    level interpolated in log bytes, kept to the middle 60% of the bracket so that it shrinks
    even where size follows level unevenly (a clip whose key frames dominate barely changes
    over some levels, then a lot)."""
    a, b = lo.mean_level, hi.mean_level
    t = math.log(lo.total / target_bytes) / math.log(lo.total / hi.total)
    m = a + min(0.8, max(0.2, t)) * (b - a)
    base = math.floor(m)
    return levels_at(n, base, round((m - base) * n))


def predict(trial: Trial, levels: tuple[int, ...], s: float) -> float:
    """Bytes of an encode at ``levels``, from ``trial``'s per-chunk sizes."""
    return sum(b * math.exp(-s * (lv - l0))
               for b, l0, lv in zip(trial.chunk_bytes, trial.levels, levels, strict=True))


def allocate(trials: list[Trial], target_bytes: float) -> tuple[int, ...]:
    """The next trial's per-chunk levels (see the module docstring)."""
    n = len(trials[0].levels)
    if (pair := bracket(trials, target_bytes)) is not None:
        return within(*pair, target_bytes, n)
    best = min(trials, key=lambda t: abs(math.log(t.total / target_bytes)))
    s = slope(trials, target_bytes)
    n = len(best.levels)
    order = up_order(n)
    choice, miss = (0, 0), math.inf
    for base in range(MAX_CQ_LEVEL + 1):
        terms = [b * math.exp(-s * (base - l0))
                 for b, l0 in zip(best.chunk_bytes, best.levels, strict=True)]
        total = sum(terms)
        for n_up in range(n if base < MAX_CQ_LEVEL else 1):
            if n_up:  # one more chunk a level up
                total -= terms[order[n_up - 1]] * (1 - math.exp(-s))
            m = abs(math.log(total / target_bytes))
            if m < miss:
                choice, miss = (base, n_up), m
    return levels_at(n, *choice)
