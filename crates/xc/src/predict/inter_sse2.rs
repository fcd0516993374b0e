//! SSE2 interpolation kernels for 16- and 8-pixel-wide blocks (see [`super::lanes`] for the
//! arithmetic they share).
//!
//! Each output row is accumulated in eight or sixteen 16-bit lanes with wrapping multiplies
//! and adds. The exact value `64 + sum(tap * pixel)` of every VP8 filter lies in
//! -8096..=40864, so starting the accumulator at `64 + 8096` makes the wrapped 16-bit value
//! the exact (non-negative) `64 + 8096 + sum`; a saturating unsigned subtraction of 8096
//! then yields `max(0, 64 + sum)`, and `>> 7` with an unsigned saturating pack gives the
//! spec's clamped `(sum + 64) >> 7`. SSE2 is part of the x86_64 baseline; only the loads and
//! stores are `unsafe`, inside footprints whose bounds were checked once.

// Index loops over constant tap ranges unroll fully.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::loopfilter::sse2::Block;

/// Bias that makes every accumulator value non-negative.
pub(super) const BIAS: i16 = 8096;

/// The filter footprint of a `W` x `H` block (2 pixels before and 3 after it in both
/// directions) inside the source plane, checked once. Its size is in the type, so that the
/// kernels' loads at constant positions need no run-time index check (they cost 0.8% of a
/// 640x272 decode's instructions when the size was a field).
pub(super) struct Footprint<'a, const W: usize, const H: usize> {
    ptr: *const u8,
    stride: usize,
    _data: std::marker::PhantomData<&'a [u8]>,
}

impl<'a, const W: usize, const H: usize> Footprint<'a, W, H> {
    const ROWS: usize = H + 5;
    const COLS: usize = W + 5;

    /// The `(W + 5) x (H + 5)` footprint of the block whose origin is `src[off]`.
    ///
    /// # Panics
    /// If the footprint is not inside `src`.
    #[inline(always)]
    pub(super) fn new(src: &'a [u8], off: usize, stride: usize) -> Self {
        let start = off - 2 * stride - 2;
        let s = &src[start..start + (Self::ROWS - 1) * stride + Self::COLS];
        Footprint { ptr: s.as_ptr(), stride, _data: std::marker::PhantomData }
    }

    /// Load `N` (8 or 16) bytes from row `r`, column `c` of the footprint.
    #[inline(always)]
    pub(super) fn load<const N: usize>(&self, r: usize, c: usize) -> __m128i {
        assert!(r < Self::ROWS && c + N <= Self::COLS);
        // SAFETY: the bytes r * stride + c .. + N lie inside the slice checked in `new`,
        // whose length is (ROWS - 1) * stride + COLS. SSE2 is baseline on x86_64.
        unsafe {
            let p = self.ptr.add(r * self.stride + c);
            if N == 16 {
                _mm_loadu_si128(p.cast())
            } else {
                _mm_loadl_epi64(p.cast())
            }
        }
    }
}

/// Combine six rows of `W` (8 or 16) pixels with taps `A..B` (the others are zero) into one
/// rounded, clamped row. Even and odd taps go to separate accumulators for a shorter chain.
#[inline]
#[target_feature(enable = "sse2")]
fn combine<const W: usize, const A: usize, const B: usize>(
    v: &[__m128i; 6],
    k: &[__m128i; 6],
) -> __m128i {
    let zero = _mm_setzero_si128();
    let mut lo = [_mm_set1_epi16(64 + BIAS), zero];
    let mut hi = lo;
    for i in A..B {
        lo[i & 1] = _mm_add_epi16(lo[i & 1], _mm_mullo_epi16(_mm_unpacklo_epi8(v[i], zero), k[i]));
        if W == 16 {
            hi[i & 1] =
                _mm_add_epi16(hi[i & 1], _mm_mullo_epi16(_mm_unpackhi_epi8(v[i], zero), k[i]));
        }
    }
    let bias = _mm_set1_epi16(BIAS);
    let lo = _mm_srli_epi16::<7>(_mm_subs_epu16(_mm_add_epi16(lo[0], lo[1]), bias));
    let hi = _mm_srli_epi16::<7>(_mm_subs_epu16(_mm_add_epi16(hi[0], hi[1]), bias));
    _mm_packus_epi16(lo, hi)
}

/// Row `r` (footprint coordinates) of the horizontally filtered block, or the unfiltered
/// pixels when `H` is false.
#[inline]
#[target_feature(enable = "sse2")]
fn source_row<const W: usize, const R: usize, const H: bool, const A: usize, const B: usize>(
    fp: &Footprint<W, R>,
    r: usize,
    k: &[__m128i; 6],
) -> __m128i {
    if H {
        let mut v = [_mm_setzero_si128(); 6];
        for i in A..B {
            v[i] = fp.load::<W>(r, i);
        }
        combine::<W, A, B>(&v, k)
    } else {
        fp.load::<W>(r, 2)
    }
}

/// Interpolate a `W` x `R` block: horizontal taps `HA..HB` when `H`, vertical taps `VA..VB`
/// when `V`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "sse2")]
fn interpolate<
    const W: usize,
    const R: usize,
    const H: bool,
    const HA: usize,
    const HB: usize,
    const V: bool,
    const VA: usize,
    const VB: usize,
>(
    fp: &Footprint<W, R>,
    out: &mut Block<R, W>,
    kh: &[__m128i; 6],
    kv: &[__m128i; 6],
) {
    if !V {
        for y in 0..R {
            out.store(y, source_row::<W, R, H, HA, HB>(fp, y + 2, kh));
        }
        return;
    }
    // Every source row the taps in use reach, once, then each output row from six of them by
    // constant index (see the AVX2 kernel: a sliding window went through the stack).
    let src: [__m128i; 21] = std::array::from_fn(|r| {
        if (VA..R + VB - 1).contains(&r) {
            source_row::<W, R, H, HA, HB>(fp, r, kh)
        } else {
            _mm_setzero_si128() // never read
        }
    });
    for y in 0..R {
        let win: [__m128i; 6] = std::array::from_fn(|i| src[y + i]);
        out.store(y, combine::<W, VA, VB>(&win, kv));
    }
}

/// Tap range of a filter: six-tap filters of odd fractions have zero outer taps, bilinear
/// filters only the two middle ones.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Six,
    Four,
    Two,
}

pub(super) fn shape(t: &[i32; 6]) -> Shape {
    if t[0] != 0 || t[5] != 0 {
        Shape::Six
    } else if t[1] != 0 || t[4] != 0 {
        Shape::Four
    } else {
        Shape::Two
    }
}

/// Select the vertical shape for a given horizontal one.
#[inline]
#[target_feature(enable = "sse2")]
fn with_vertical<
    const W: usize,
    const R: usize,
    const H: bool,
    const HA: usize,
    const HB: usize,
>(
    fp: &Footprint<W, R>,
    out: &mut Block<R, W>,
    kh: &[__m128i; 6],
    kv: &[__m128i; 6],
    v: Option<Shape>,
) {
    match v {
        None => interpolate::<W, R, H, HA, HB, false, 2, 3>(fp, out, kh, kv),
        Some(Shape::Six) => interpolate::<W, R, H, HA, HB, true, 0, 6>(fp, out, kh, kv),
        Some(Shape::Four) => interpolate::<W, R, H, HA, HB, true, 1, 5>(fp, out, kh, kv),
        Some(Shape::Two) => interpolate::<W, R, H, HA, HB, true, 2, 4>(fp, out, kh, kv),
    }
}

/// Same contract as [`super::scalar::filter_block`] for `W` x `R` blocks, `W` 8 or 16.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn filter_block<const W: usize, const R: usize>(
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
    unsafe { filter_block_sse2::<W, R>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy) }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "sse2")]
fn filter_block_sse2<const W: usize, const R: usize>(
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
    let fp = Footprint::<W, R>::new(src, off, stride);
    let mut out = Block::<R, W>::new(dst, doff, dstride);
    let kh = hx.map(|k| _mm_set1_epi16(k as i16));
    let kv = vy.map(|k| _mm_set1_epi16(k as i16));
    let v = (fy != 0).then(|| shape(vy));
    let (fp, o) = (&fp, &mut out);
    match (fx != 0).then(|| shape(hx)) {
        None => with_vertical::<W, R, false, 2, 3>(fp, o, &kh, &kv, v),
        Some(Shape::Six) => with_vertical::<W, R, true, 0, 6>(fp, o, &kh, &kv, v),
        Some(Shape::Four) => with_vertical::<W, R, true, 1, 5>(fp, o, &kh, &kv, v),
        Some(Shape::Two) => with_vertical::<W, R, true, 2, 4>(fp, o, &kh, &kv, v),
    }
}
