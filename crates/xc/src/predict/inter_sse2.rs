//! SSE2 interpolation kernels for 16- and 8-pixel-wide blocks (see [`super::lanes`] for the
//! arithmetic they share).
//!
//! Each output row is accumulated in eight or sixteen 16-bit lanes with wrapping multiplies
//! and adds. The exact value `64 + sum(tap * pixel)` of every VP8 filter lies in
//! -8096..=40864, so starting the accumulator at `64 + 8096` makes the wrapped 16-bit value
//! the exact (non-negative) `64 + 8096 + sum`; a saturating unsigned subtraction of 8096
//! then yields `max(0, 64 + sum)`, and `>> 7` with an unsigned saturating pack gives the
//! spec's clamped `(sum + 64) >> 7`. SSE2 is part of the x86_64 baseline; only the loads and
//! stores are `unsafe`, each on a slice whose length was checked.

use std::arch::x86_64::*;

/// Bias that makes every accumulator value non-negative.
const BIAS: i16 = 8096;

#[inline]
#[target_feature(enable = "sse2")]
fn load16(s: &[u8]) -> __m128i {
    let s = &s[..16];
    // SAFETY: `s` holds 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn load8(s: &[u8]) -> __m128i {
    let s = &s[..8];
    // SAFETY: `s` holds 8 readable bytes; the load is unaligned.
    unsafe { _mm_loadl_epi64(s.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn store16(d: &mut [u8], v: __m128i) {
    let d = &mut d[..16];
    // SAFETY: `d` holds 16 writable bytes; the store is unaligned.
    unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn store8(d: &mut [u8], v: __m128i) {
    let d = &mut d[..8];
    // SAFETY: `d` holds 8 writable bytes; the store is unaligned.
    unsafe { _mm_storel_epi64(d.as_mut_ptr().cast(), v) }
}

/// Filter one row of `W` (8 or 16) outputs: output `c` combines `s[c + i * step]` for taps
/// `i` in `A..B` (the others are zero); `s` starts two steps before the first output's centre
/// pixel. Even and odd taps go to separate accumulators to shorten the dependency chain.
#[inline]
#[target_feature(enable = "sse2")]
fn filter_row<const W: usize, const A: usize, const B: usize>(
    s: &[u8],
    step: usize,
    k: &[__m128i; 6],
) -> __m128i {
    let zero = _mm_setzero_si128();
    let s = &s[..5 * step + W];
    let mut lo = [_mm_set1_epi16(64 + BIAS), zero];
    let mut hi = lo;
    for i in A..B {
        if W == 16 {
            let v = load16(&s[i * step..]);
            lo[i & 1] = _mm_add_epi16(lo[i & 1], _mm_mullo_epi16(_mm_unpacklo_epi8(v, zero), k[i]));
            hi[i & 1] = _mm_add_epi16(hi[i & 1], _mm_mullo_epi16(_mm_unpackhi_epi8(v, zero), k[i]));
        } else {
            let v = load8(&s[i * step..]);
            lo[i & 1] = _mm_add_epi16(lo[i & 1], _mm_mullo_epi16(_mm_unpacklo_epi8(v, zero), k[i]));
        }
    }
    let bias = _mm_set1_epi16(BIAS);
    let lo = _mm_srli_epi16::<7>(_mm_subs_epu16(_mm_add_epi16(lo[0], lo[1]), bias));
    let hi = _mm_srli_epi16::<7>(_mm_subs_epu16(_mm_add_epi16(hi[0], hi[1]), bias));
    _mm_packus_epi16(lo, hi)
}

/// [`pass`] for taps `A..B`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "sse2")]
fn pass_taps<const W: usize, const A: usize, const B: usize>(
    src: &[u8],
    off: usize,
    stride: usize,
    step: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    rows: usize,
    k: &[__m128i; 6],
) {
    for r in 0..rows {
        let v = filter_row::<W, A, B>(&src[off + r * stride - 2 * step..], step, k);
        let d = &mut dst[doff + r * dstride..];
        if W == 16 {
            store16(d, v);
        } else {
            store8(d, v);
        }
    }
}

/// One 1-D pass over `rows` rows; see [`super::lanes`] for the layout. The six-tap filters of
/// odd fractions have zero outer taps and the bilinear ones only two taps; each shape gets
/// its own unrolled loop.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "sse2")]
fn pass<const W: usize>(
    src: &[u8],
    off: usize,
    stride: usize,
    step: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    rows: usize,
    t: &[i32; 6],
) {
    let k = t.map(|k| _mm_set1_epi16(k as i16));
    let args = (src, off, stride, step);
    if t[0] != 0 || t[5] != 0 {
        pass_taps::<W, 0, 6>(args.0, args.1, args.2, args.3, dst, doff, dstride, rows, &k);
    } else if t[1] != 0 || t[4] != 0 {
        pass_taps::<W, 1, 5>(args.0, args.1, args.2, args.3, dst, doff, dstride, rows, &k);
    } else {
        pass_taps::<W, 2, 4>(args.0, args.1, args.2, args.3, dst, doff, dstride, rows, &k);
    }
}

/// Same contract as [`super::scalar::filter_block`] for `W` x `W` blocks, `W` 8 or 16.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn filter_block<const W: usize>(
    src: &[u8],
    off: usize,
    stride: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    hx: &[i32; 6],
    vy: &[i32; 6],
    fx: usize,
    fy: usize,
) {
    debug_assert!(W == 8 || W == 16);
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always present.
    unsafe { filter_block_sse2::<W>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy) }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "sse2")]
fn filter_block_sse2<const W: usize>(
    src: &[u8],
    off: usize,
    stride: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    hx: &[i32; 6],
    vy: &[i32; 6],
    fx: usize,
    fy: usize,
) {
    match (fx, fy) {
        (0, 0) => {
            for r in 0..W {
                let s = &src[off + r * stride..];
                let d = &mut dst[doff + r * dstride..];
                if W == 16 {
                    store16(d, load16(s));
                } else {
                    store8(d, load8(s));
                }
            }
        }
        (_, 0) => pass::<W>(src, off, stride, 1, dst, doff, dstride, W, hx),
        (0, _) => pass::<W>(src, off, stride, stride, dst, doff, dstride, W, vy),
        _ => {
            // Rows -2 ..= W + 2 of the horizontally filtered block.
            let mut tmp = [0u8; 21 * 16];
            pass::<W>(src, off - 2 * stride, stride, 1, &mut tmp, 0, W, W + 5, hx);
            pass::<W>(&tmp, 2 * W, W, W, dst, doff, dstride, W, vy);
        }
    }
}
