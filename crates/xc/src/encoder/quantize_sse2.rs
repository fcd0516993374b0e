//! SSE2 [`super::quantize_block`]: the sixteen levels at once. The quotient
//! `(|c| + round) / q` is found by a single-precision division truncated toward zero, which is
//! the integer quotient for every `n = |c| + round < 2^16` and `q < 2^16` (both exact in f32):
//! when `n / q` is an integer the division is exact; otherwise it lies at least `1 / q` below
//! the next integer `k`, while rounding moves it by at most half an ulp of `k`,
//! `2^-24 * k <= 2^-24 * (2^16 / q + 1)`, which is less than `1 / q`, so the rounded quotient
//! stays below `k`. The cap is applied to the quotient before truncation
//! (`min(floor(x), cap) = floor(min(x, cap))` for an integer cap). SSE2 is part of the x86_64
//! baseline.

use super::BlockQuant;
use std::arch::x86_64::*;

#[inline]
pub(super) fn quantize_block(
    coeffs: &[i16; 16],
    first: usize,
    bq: &BlockQuant,
    levels: &mut [i16; 16],
) -> bool {
    // SAFETY: SSE2 is always present on x86_64.
    unsafe { quantize(coeffs, first, bq, levels) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn quantize(coeffs: &[i16; 16], first: usize, bq: &BlockQuant, levels: &mut [i16; 16]) -> bool {
    // SAFETY: unaligned loads and stores of the two halves of 16-element arrays.
    let (a, b) = unsafe {
        (_mm_loadu_si128(coeffs.as_ptr().cast()), _mm_loadu_si128(coeffs.as_ptr().add(8).cast()))
    };
    let zero = _mm_setzero_si128();
    // |c| as 16 unsigned bits: max(c, -c), which for i16::MIN is i16::MIN, 32768 unsigned.
    let abs = |v: __m128i| _mm_max_epi16(v, _mm_sub_epi16(zero, v));
    let (aa, ab) = (abs(a), abs(b));
    // Position 0 takes the DC's rounding, step and cap; the others the AC's.
    let round0 = _mm_set_epi32(bq.round[1], bq.round[1], bq.round[1], bq.round[0]);
    let round1 = _mm_set1_epi32(bq.round[1]);
    let q0 = _mm_set_ps(bq.q[1] as f32, bq.q[1] as f32, bq.q[1] as f32, bq.q[0] as f32);
    let q1 = _mm_set1_ps(bq.q[1] as f32);
    let cap0 = _mm_set_ps(bq.cap[1] as f32, bq.cap[1] as f32, bq.cap[1] as f32, bq.cap[0] as f32);
    let cap1 = _mm_set1_ps(bq.cap[1] as f32);
    let level = |v: __m128i, round: __m128i, q: __m128, cap: __m128| {
        let n = _mm_cvtepi32_ps(_mm_add_epi32(v, round));
        _mm_cvttps_epi32(_mm_min_ps(_mm_div_ps(n, q), cap))
    };
    let l0 = level(_mm_unpacklo_epi16(aa, zero), round0, q0, cap0);
    let l1 = level(_mm_unpackhi_epi16(aa, zero), round1, q1, cap1);
    let l2 = level(_mm_unpacklo_epi16(ab, zero), round1, q1, cap1);
    let l3 = level(_mm_unpackhi_epi16(ab, zero), round1, q1, cap1);
    // Levels are at most MAX_LEVEL: the signed packs keep them.
    let (ma, mb) = (_mm_packs_epi32(l0, l1), _mm_packs_epi32(l2, l3));
    // `first` = 1 clears position 0.
    let ma = _mm_and_si128(ma, _mm_set_epi16(-1, -1, -1, -1, -1, -1, -1, first as i16 - 1));
    // Signs back: (m ^ s) - s with s = -1 for negative coefficients.
    let sign = |m: __m128i, c: __m128i| {
        let s = _mm_srai_epi16(c, 15);
        _mm_sub_epi16(_mm_xor_si128(m, s), s)
    };
    let (la, lb) = (sign(ma, a), sign(mb, b));
    // SAFETY: as the loads.
    unsafe {
        _mm_storeu_si128(levels.as_mut_ptr().cast(), la);
        _mm_storeu_si128(levels.as_mut_ptr().add(8).cast(), lb);
    }
    let nonzero = _mm_or_si128(ma, mb);
    _mm_movemask_epi8(_mm_cmpeq_epi16(nonzero, zero)) != 0xFFFF
}
