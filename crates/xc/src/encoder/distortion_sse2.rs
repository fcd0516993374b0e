//! SSE2 kernels of `distortion`, exactly their scalar references.
//!
//! - [`sse`]: sixteen pixels per step, widened to 16-bit differences (within +-255) and squared
//!   and paired by `madd` into 32-bit sums (each pair at most 2 * 255^2, so the lanes cannot
//!   overflow for runs of 2^16 pixels).
//! - [`block16_sums`]: a row per step; `sad` against zero sums the pixels into two 64-bit lanes,
//!   and `madd` squares and pairs them into four 32-bit lanes (at most 4 * 255^2 per lane and
//!   row, 16 rows: about 2^22).
//!
//! SSE2 is part of the x86_64 baseline.

use std::arch::x86_64::*;

/// Sum of `(a[i] - b[i])^2` over the common length.
#[inline]
pub(super) fn sse(a: &[u8], b: &[u8]) -> u32 {
    let n = a.len().min(b.len());
    let whole = n / 16 * 16;
    // SAFETY: SSE2 is always present on x86_64.
    let head = unsafe { sse_whole(&a[..whole], &b[..whole]) };
    head.wrapping_add(super::sse_scalar(&a[whole..n], &b[whole..n]))
}

#[inline]
#[target_feature(enable = "sse2")]
fn sse_whole(a: &[u8], b: &[u8]) -> u32 {
    let zero = _mm_setzero_si128();
    let mut acc = _mm_setzero_si128();
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        // SAFETY: each chunk is 16 bytes; unaligned loads.
        let (va, vb) =
            unsafe { (_mm_loadu_si128(ca.as_ptr().cast()), _mm_loadu_si128(cb.as_ptr().cast())) };
        let lo = _mm_sub_epi16(_mm_unpacklo_epi8(va, zero), _mm_unpacklo_epi8(vb, zero));
        let hi = _mm_sub_epi16(_mm_unpackhi_epi8(va, zero), _mm_unpackhi_epi8(vb, zero));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(lo, lo));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(hi, hi));
    }
    let s = _mm_add_epi32(acc, _mm_shuffle_epi32::<0b01_00_11_10>(acc));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s) as u32
}

/// The sum and sum of squares of the 16x16 block at `at` (rows `stride` apart).
#[inline]
pub(super) fn block16_sums(data: &[u8], stride: usize, at: usize) -> (u32, u32) {
    let rows = &data[at..at + 15 * stride + 16];
    // SAFETY: SSE2 is always present on x86_64.
    unsafe { block16_sums_rows(rows, stride) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn block16_sums_rows(rows: &[u8], stride: usize) -> (u32, u32) {
    let zero = _mm_setzero_si128();
    let (mut sum, mut sq) = (_mm_setzero_si128(), _mm_setzero_si128());
    for r in 0..16 {
        let row = &rows[r * stride..r * stride + 16];
        // SAFETY: 16 bytes, unaligned load.
        let v = unsafe { _mm_loadu_si128(row.as_ptr().cast()) };
        sum = _mm_add_epi64(sum, _mm_sad_epu8(v, zero));
        let (lo, hi) = (_mm_unpacklo_epi8(v, zero), _mm_unpackhi_epi8(v, zero));
        sq = _mm_add_epi32(sq, _mm_add_epi32(_mm_madd_epi16(lo, lo), _mm_madd_epi16(hi, hi)));
    }
    let s = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
    let q = _mm_add_epi32(sq, _mm_shuffle_epi32::<0b01_00_11_10>(sq));
    let q = _mm_add_epi32(q, _mm_shuffle_epi32::<0b10_11_00_01>(q));
    (_mm_cvtsi128_si32(s) as u32, _mm_cvtsi128_si32(q) as u32)
}
