//! SSE2 kernels of `distortion`, exactly their scalar references.
//!
//! - [`sse`]: sixteen pixels per step, widened to 16-bit differences (within +-255) and squared
//!   and paired by `madd` into 32-bit sums (each pair at most 2 * 255^2, so the lanes cannot
//!   overflow for runs of 2^16 pixels).
//! - [`block4_variances`]: a row per step, widened to 16 bits; `madd` by ones sums pixel pairs
//!   and `madd` by itself pairs their squares into 32-bit lanes (at most 2 * 255^2 per lane and
//!   row, four rows per band of 4x4 blocks), and a shuffle joins the pairs into blocks.
//!
//! - [`block_sad`]: a row per `psadbw` (16 pixels; 8 and 4 pixels loaded into the low lane,
//!   the rest zero on both sides, so adding nothing), the two 64-bit lane sums added at the end.
//! - [`block_sse`]: a row per step, widened and `madd`-ed as in [`sse`] (a 16x16 block's sum is
//!   at most 256 * 255^2, far inside the 32-bit lanes).
//!
//! The block kernels load rows through raw pointers: `BlockPair::new` has checked that every
//! row of both blocks lies inside its slice.
//!
//! SSE2 is part of the x86_64 baseline.

use std::arch::x86_64::*;

use super::BlockPair;

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

/// 256 times the sum of the sixteen 4x4 blocks' variances of the 16x16 block at `at`.
#[inline]
pub(super) fn block4_variances(data: &[u8], stride: usize, at: usize) -> u64 {
    let rows = &data[at..at + 15 * stride + 16];
    // SAFETY: SSE2 is always present on x86_64.
    unsafe { block4_variances_rows(rows, stride) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn block4_variances_rows(rows: &[u8], stride: usize) -> u64 {
    let zero = _mm_setzero_si128();
    let ones = _mm_set1_epi16(1);
    let mut total = 0u64;
    for band in 0..4 {
        let (mut s_lo, mut s_hi) = (_mm_setzero_si128(), _mm_setzero_si128());
        let (mut q_lo, mut q_hi) = (_mm_setzero_si128(), _mm_setzero_si128());
        for r in 0..4 {
            let row = &rows[(band * 4 + r) * stride..][..16];
            // SAFETY: 16 bytes, unaligned load.
            let v = unsafe { _mm_loadu_si128(row.as_ptr().cast()) };
            let (lo, hi) = (_mm_unpacklo_epi8(v, zero), _mm_unpackhi_epi8(v, zero));
            s_lo = _mm_add_epi32(s_lo, _mm_madd_epi16(lo, ones));
            s_hi = _mm_add_epi32(s_hi, _mm_madd_epi16(hi, ones));
            q_lo = _mm_add_epi32(q_lo, _mm_madd_epi16(lo, lo));
            q_hi = _mm_add_epi32(q_hi, _mm_madd_epi16(hi, hi));
        }
        // Lanes hold pixel pairs (0,1), (2,3), ...: adding each lane's neighbour leaves a
        // block's total in lanes 0 and 2.
        let join = |x: __m128i| _mm_add_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
        let (s_lo, s_hi, q_lo, q_hi) = (join(s_lo), join(s_hi), join(q_lo), join(q_hi));
        let lanes = |x: __m128i| {
            let mut out = [0u32; 4];
            // SAFETY: 16 bytes into a 16-byte array, unaligned store.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), x) };
            [out[0], out[2]]
        };
        let (s, q) = ([lanes(s_lo), lanes(s_hi)], [lanes(q_lo), lanes(q_hi)]);
        for h in 0..2 {
            for b in 0..2 {
                total += (16 * q[h][b] - s[h][b] * s[h][b]) as u64;
            }
        }
    }
    total
}

/// Each row of both blocks in the low bytes of a register (`w` of 4, 8 or 16 pixels, zeros
/// above), passed to `f`.
#[inline]
#[target_feature(enable = "sse2")]
fn for_rows(p: BlockPair, mut f: impl FnMut(__m128i, __m128i)) {
    let load = |ptr: *const u8| {
        // SAFETY: `BlockPair::new` checked that every row of both blocks is in bounds;
        // unaligned loads of exactly `w` bytes.
        unsafe {
            match p.w {
                16 => _mm_loadu_si128(ptr.cast()),
                8 => _mm_loadl_epi64(ptr.cast()),
                _ => _mm_cvtsi32_si128(ptr.cast::<i32>().read_unaligned()),
            }
        }
    };
    let (a, b) = (p.a.as_ptr(), p.b.as_ptr());
    for r in 0..p.h {
        // SAFETY: row `r` starts inside both slices (checked by `BlockPair::new`).
        let (ra, rb) = unsafe { (a.add(r * p.astride), b.add(r * p.bstride)) };
        f(load(ra), load(rb));
    }
}

/// Sum of absolute differences of the pair's blocks.
#[inline]
pub(super) fn block_sad(p: BlockPair) -> u32 {
    // SAFETY: SSE2 is always present on x86_64.
    unsafe { block_sad_sse2(p) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn block_sad_sse2(p: BlockPair) -> u32 {
    let mut acc = _mm_setzero_si128();
    for_rows(p, |a, b| acc = _mm_add_epi64(acc, _mm_sad_epu8(a, b)));
    let s = _mm_add_epi64(acc, _mm_unpackhi_epi64(acc, acc));
    _mm_cvtsi128_si32(s) as u32
}

/// Sum of squared differences of the pair's blocks.
#[inline]
pub(super) fn block_sse(p: BlockPair) -> u32 {
    // SAFETY: SSE2 is always present on x86_64.
    unsafe { block_sse_sse2(p) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn block_sse_sse2(p: BlockPair) -> u32 {
    let zero = _mm_setzero_si128();
    let mut acc = _mm_setzero_si128();
    let wide = p.w == 16;
    for_rows(p, |a, b| {
        let lo = _mm_sub_epi16(_mm_unpacklo_epi8(a, zero), _mm_unpacklo_epi8(b, zero));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(lo, lo));
        if wide {
            let hi = _mm_sub_epi16(_mm_unpackhi_epi8(a, zero), _mm_unpackhi_epi8(b, zero));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(hi, hi));
        }
    });
    let s = _mm_add_epi32(acc, _mm_shuffle_epi32::<0b01_00_11_10>(acc));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s) as u32
}
