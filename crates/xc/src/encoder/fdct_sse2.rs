//! SSE2 forward DCT of two horizontally adjacent 4x4 residual blocks at once, bit-exact with
//! [`super::fdct4x4`] of each.
//!
//! A register holds one row of both blocks (8 lanes: four per block). Each pass first
//! transposes both blocks, so that its butterflies run across registers; the rotations
//! `d * C1 + c * S1` are `madd`s of interleaved 16-bit pairs into exact 32-bit sums. Every
//! intermediate value fits 16 bits (residuals are within +-255: the first pass's outputs
//! within +-8160, the second pass's sums within +-32648), so the 16-bit lanes compute what the
//! scalar code computes in 32 bits. SSE2 is part of the x86_64 baseline.

use std::arch::x86_64::*;

use super::{C1, S1};

/// Eight bytes of `data` at `at`, in the low half.
#[inline]
#[target_feature(enable = "sse2")]
fn load8(data: &[u8], at: usize) -> __m128i {
    let b: [u8; 8] = data[at..at + 8].try_into().expect("eight bytes");
    _mm_cvtsi64_si128(i64::from_le_bytes(b))
}

/// Transpose the 4x4 block in the low half and the one in the high half of `r0..r3` (one row
/// of each per register) into one column of each per register.
#[inline]
#[target_feature(enable = "sse2")]
fn transpose_pair(r: [__m128i; 4]) -> [__m128i; 4] {
    let t0 = _mm_unpacklo_epi16(r[0], r[1]);
    let t1 = _mm_unpacklo_epi16(r[2], r[3]);
    let t2 = _mm_unpackhi_epi16(r[0], r[1]);
    let t3 = _mm_unpackhi_epi16(r[2], r[3]);
    let u0 = _mm_unpacklo_epi32(t0, t1);
    let u1 = _mm_unpackhi_epi32(t0, t1);
    let u2 = _mm_unpacklo_epi32(t2, t3);
    let u3 = _mm_unpackhi_epi32(t2, t3);
    [
        _mm_unpacklo_epi64(u0, u2),
        _mm_unpackhi_epi64(u0, u2),
        _mm_unpacklo_epi64(u1, u3),
        _mm_unpackhi_epi64(u1, u3),
    ]
}

/// `(d * m0 + c * m1 + round) >> SHIFT` per lane, in 32 bits, packed back to 16.
#[inline]
#[target_feature(enable = "sse2")]
fn rotate<const SHIFT: i32>(d: __m128i, c: __m128i, m0: i32, m1: i32, round: i32) -> __m128i {
    let m = _mm_set1_epi32((m1 << 16) | (m0 & 0xffff));
    let r = _mm_set1_epi32(round);
    let lo = _mm_srai_epi32::<SHIFT>(_mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(d, c), m), r));
    let hi = _mm_srai_epi32::<SHIFT>(_mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(d, c), m), r));
    _mm_packs_epi32(lo, hi)
}

/// [`super::fdct4x4_pair`].
pub fn fdct4x4_pair(src: &[u8], pred: &[u8], stride: usize, off: usize) -> [[i16; 16]; 2] {
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always present.
    unsafe { fdct4x4_pair_sse2(src, pred, stride, off) }
}

#[target_feature(enable = "sse2")]
fn fdct4x4_pair_sse2(src: &[u8], pred: &[u8], stride: usize, off: usize) -> [[i16; 16]; 2] {
    let zero = _mm_setzero_si128();
    let row = |r: usize| {
        let at = off + r * stride;
        let s = _mm_unpacklo_epi8(load8(src, at), zero);
        let p = _mm_unpacklo_epi8(load8(pred, at), zero);
        _mm_sub_epi16(s, p)
    };
    // First pass, along each row: lanes are rows after the transpose, registers columns.
    let [x0, x1, x2, x3] = transpose_pair([row(0), row(1), row(2), row(3)]);
    let a = _mm_slli_epi16::<3>(_mm_add_epi16(x0, x3));
    let b = _mm_slli_epi16::<3>(_mm_add_epi16(x1, x2));
    let c = _mm_slli_epi16::<3>(_mm_sub_epi16(x1, x2));
    let d = _mm_slli_epi16::<3>(_mm_sub_epi16(x0, x3));
    let t = [
        _mm_add_epi16(a, b),
        rotate::<12>(d, c, C1, S1, 2048),
        _mm_sub_epi16(a, b),
        rotate::<12>(d, c, S1, -C1, 2048),
    ];
    // Second pass, down each column: lanes are columns again, registers rows.
    let [y0, y1, y2, y3] = transpose_pair(t);
    let a = _mm_add_epi16(y0, y3);
    let b = _mm_add_epi16(y1, y2);
    let c = _mm_sub_epi16(y1, y2);
    let d = _mm_sub_epi16(y0, y3);
    let eight = _mm_set1_epi16(8);
    let out = [
        _mm_srai_epi16::<4>(_mm_add_epi16(_mm_add_epi16(a, b), eight)),
        rotate::<16>(d, c, C1, S1, 32768),
        _mm_srai_epi16::<4>(_mm_add_epi16(_mm_sub_epi16(a, b), eight)),
        rotate::<16>(d, c, S1, -C1, 32768),
    ];
    let mut rows = [[0i16; 8]; 4];
    for (dst, v) in rows.iter_mut().zip(out) {
        // SAFETY: `dst` is 16 writable bytes; the store has no alignment requirement.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), v) };
    }
    let mut blocks = [[0i16; 16]; 2];
    for (r, lanes) in rows.iter().enumerate() {
        blocks[0][4 * r..4 * r + 4].copy_from_slice(&lanes[..4]);
        blocks[1][4 * r..4 * r + 4].copy_from_slice(&lanes[4..]);
    }
    blocks
}
