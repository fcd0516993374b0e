//! SSE2 kernels of `distortion`, exactly their scalar references.
//!
//! - [`sse`]: sixteen pixels per step, widened to 16-bit differences (within +-255) and squared
//!   and paired by `madd` into 32-bit sums (each pair at most 2 * 255^2, so the lanes cannot
//!   overflow for runs of 2^16 pixels).
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
