//! AVX2 interpolation kernel for 16-pixel-wide blocks: one 16-lane register per row.
//!
//! The arithmetic is that of the SSE2 kernels (see `inter_sse2.rs`: wrapping 16-bit sums
//! biased by 8096, then a saturating subtraction, `>> 7` and a clamp to 255). Horizontally
//! filtered rows stay in 16-bit form in a window of six registers for the vertical pass.
//! Selected once at run time when the CPU has AVX2 (see [`kernel`]).

// Index loops over constant tap ranges unroll fully.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::sse2::{shape, Footprint, Shape, BIAS};
use super::Kernel;
use crate::loopfilter::sse2::Block;

/// The AVX2 kernel for 16x16 blocks, when this CPU has AVX2.
pub(super) fn kernel() -> Option<Kernel> {
    is_x86_feature_detected!("avx2").then_some(filter_block16 as Kernel)
}

/// Same contract as [`super::scalar::filter_block`] for 16x16 blocks.
#[allow(clippy::too_many_arguments)]
fn filter_block16(
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
    // SAFETY: this function is reachable only through `kernel`, which hands it out only
    // after `is_x86_feature_detected!("avx2")` succeeded.
    unsafe { filter_block16_avx2(src, off, stride, dst, doff, dstride, hx, vy, fx, fy) }
}

/// Sixteen pixels of footprint row `r` from column `c`, widened to 16 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn widen(fp: &Footprint, r: usize, c: usize) -> __m256i {
    _mm256_cvtepu8_epi16(fp.load::<16>(r, c))
}

/// `min(max(0, acc - BIAS) >> 7, 255)`: the filtered value from a biased accumulator.
#[inline]
#[target_feature(enable = "avx2")]
fn finish(acc: [__m256i; 2]) -> __m256i {
    let v = _mm256_subs_epu16(_mm256_add_epi16(acc[0], acc[1]), _mm256_set1_epi16(BIAS));
    _mm256_min_epi16(_mm256_srli_epi16::<7>(v), _mm256_set1_epi16(255))
}

/// Sum taps `A..B` of six 16-bit rows.
#[inline]
#[target_feature(enable = "avx2")]
fn combine<const A: usize, const B: usize>(v: &[__m256i; 6], k: &[__m256i; 6]) -> __m256i {
    let mut acc = [_mm256_set1_epi16(64 + BIAS), _mm256_setzero_si256()];
    for i in A..B {
        acc[i & 1] = _mm256_add_epi16(acc[i & 1], _mm256_mullo_epi16(v[i], k[i]));
    }
    finish(acc)
}

/// Footprint row `r`, horizontally filtered with taps `A..B` when `H`, in 16 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn source_row<const H: bool, const A: usize, const B: usize>(
    fp: &Footprint,
    r: usize,
    k: &[__m256i; 6],
) -> __m256i {
    if H {
        let mut v = [_mm256_setzero_si256(); 6];
        for i in A..B {
            v[i] = widen(fp, r, i);
        }
        combine::<A, B>(&v, k)
    } else {
        widen(fp, r, 2)
    }
}

/// Pack sixteen 16-bit values (all in 0..=255) to bytes and store them as row `y`.
#[inline]
#[target_feature(enable = "avx2")]
fn store_row(out: &mut Block<16, 16>, y: usize, v: __m256i) {
    let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(v, v));
    out.store(y, _mm256_castsi256_si128(packed));
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
fn interpolate<
    const H: bool,
    const HA: usize,
    const HB: usize,
    const V: bool,
    const VA: usize,
    const VB: usize,
>(
    fp: &Footprint,
    out: &mut Block<16, 16>,
    kh: &[__m256i; 6],
    kv: &[__m256i; 6],
) {
    if !V {
        for y in 0..16 {
            store_row(out, y, source_row::<H, HA, HB>(fp, y + 2, kh));
        }
        return;
    }
    // win[i] holds source row y - 2 + i (footprint row y + i) for the taps in use.
    let mut win = [_mm256_setzero_si256(); 6];
    for i in VA..VB - 1 {
        win[i] = source_row::<H, HA, HB>(fp, i, kh);
    }
    for y in 0..16 {
        win[VB - 1] = source_row::<H, HA, HB>(fp, y + VB - 1, kh);
        store_row(out, y, combine::<VA, VB>(&win, kv));
        for i in VA..VB - 1 {
            win[i] = win[i + 1];
        }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn with_vertical<const H: bool, const HA: usize, const HB: usize>(
    fp: &Footprint,
    out: &mut Block<16, 16>,
    kh: &[__m256i; 6],
    kv: &[__m256i; 6],
    v: Option<Shape>,
) {
    match v {
        None => interpolate::<H, HA, HB, false, 2, 3>(fp, out, kh, kv),
        Some(Shape::Six) => interpolate::<H, HA, HB, true, 0, 6>(fp, out, kh, kv),
        Some(Shape::Four) => interpolate::<H, HA, HB, true, 1, 5>(fp, out, kh, kv),
        Some(Shape::Two) => interpolate::<H, HA, HB, true, 2, 4>(fp, out, kh, kv),
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn filter_block16_avx2(
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
    let fp = Footprint::new(src, off, stride, 16);
    let mut out = Block::<16, 16>::new(dst, doff, dstride);
    let kh = hx.map(|k| _mm256_set1_epi16(k as i16));
    let kv = vy.map(|k| _mm256_set1_epi16(k as i16));
    let v = (fy != 0).then(|| shape(vy));
    let (fp, o) = (&fp, &mut out);
    match (fx != 0).then(|| shape(hx)) {
        None => with_vertical::<false, 2, 3>(fp, o, &kh, &kv, v),
        Some(Shape::Six) => with_vertical::<true, 0, 6>(fp, o, &kh, &kv, v),
        Some(Shape::Four) => with_vertical::<true, 1, 5>(fp, o, &kh, &kv, v),
        Some(Shape::Two) => with_vertical::<true, 2, 4>(fp, o, &kh, &kv, v),
    }
}
