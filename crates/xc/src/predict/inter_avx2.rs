//! AVX2 interpolation kernels: 16x16 luma blocks, and pairs of 8x8 chroma blocks (U and V
//! with the same vector) side by side; either way one 16-lane register per row.
//!
//! The arithmetic is that of the SSE2 kernels (see `inter_sse2.rs`: wrapping 16-bit sums
//! biased by 8096, then a saturating subtraction, `>> 7` and a clamp to 255). Horizontally
//! filtered rows stay in 16-bit form, each computed once, for the vertical pass.
//! Selected once at run time when the CPU has AVX2 (see [`kernel`]).

// Index loops over constant tap ranges unroll fully.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::sse2::{shape, Footprint, Shape, BIAS};
use super::Kernels;
use crate::loopfilter::sse2::Block;

/// The AVX2 kernels, when this CPU has AVX2.
pub(super) fn kernels() -> Option<Kernels> {
    is_x86_feature_detected!("avx2").then_some(Kernels {
        block16: filter_block16,
        pair8: filter_pair::<8>,
        pair8x4: filter_pair::<4>,
        block8x8: filter_block8::<8>,
        block8x4: filter_block8::<4>,
        clamped_rows_avx2: true,
    })
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
    let fp = Footprint::<16, 16>::new(src, off, stride);
    let mut out = Block::<16, 16>::new(dst, doff, dstride);
    // SAFETY: this function is reachable only through `kernels`, which hands it out only
    // after `is_x86_feature_detected!("avx2")` succeeded.
    unsafe { filter_avx2::<false, 16, 16>(&fp, &fp, &mut out, hx, vy, fx, fy) }
}

/// Same contract as [`super::filter_block_pair`], for 8 x `R` blocks (`R` 8 or 4).
#[allow(clippy::too_many_arguments)]
fn filter_pair<const R: usize>(
    src: [&[u8]; 2],
    off: usize,
    stride: usize,
    dst: [&mut [u8]; 2],
    doff: usize,
    dstride: usize,
    hx: &[i32; 6],
    vy: &[i32; 6],
    fx: usize,
    fy: usize,
) {
    let [su, sv] = src;
    let [du, dv] = dst;
    let (fu, fv) = (Footprint::<8, R>::new(su, off, stride), Footprint::<8, R>::new(sv, off, stride));
    let mut out = (Block::<R, 8>::new(du, doff, dstride), Block::<R, 8>::new(dv, doff, dstride));
    // SAFETY: as in `filter_block16`.
    unsafe { filter_avx2::<true, 8, R>(&fu, &fv, &mut out, hx, vy, fx, fy) }
}

/// Where the rows go: one 16-wide block, or the two 8-wide blocks of a chroma pair. A type
/// rather than an enum, so that each kernel instance stores without a per-row branch.
trait Out {
    /// Store sixteen bytes as row `y` (split in halves for a pair).
    fn store(&mut self, y: usize, v: __m128i);
}

impl<const R: usize> Out for Block<'_, R, 16> {
    #[inline(always)]
    fn store(&mut self, y: usize, v: __m128i) {
        Block::store(self, y, v)
    }
}

impl<const R: usize> Out for (Block<'_, R, 8>, Block<'_, R, 8>) {
    #[inline(always)]
    fn store(&mut self, y: usize, v: __m128i) {
        self.0.store(y, v);
        // SAFETY: SSE2 is baseline on x86_64.
        self.1.store(y, unsafe { _mm_unpackhi_epi64(v, v) });
    }
}

/// Sixteen pixels from row `r`, column `c` of the footprint(s), widened to 16 bits: 16 of
/// `a`, or 8 of `a` and then 8 of `b` when `PAIR`.
#[inline]
#[target_feature(enable = "avx2")]
fn widen<const PAIR: bool, const S: usize, const R: usize>(
    a: &Footprint<S, R>,
    b: &Footprint<S, R>, r: usize, c: usize) -> __m256i {
    if PAIR {
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi64(a.load::<8>(r, c), b.load::<8>(r, c)))
    } else {
        _mm256_cvtepu8_epi16(a.load::<16>(r, c))
    }
}

/// `min(max(0, acc - BIAS) >> 7, 255)`: the filtered value from a biased accumulator.
#[inline]
#[target_feature(enable = "avx2")]
fn finish(acc: [__m256i; 2]) -> __m256i {
    let v = _mm256_subs_epu16(_mm256_add_epi16(acc[0], acc[1]), _mm256_set1_epi16(BIAS));
    _mm256_min_epi16(_mm256_srli_epi16::<7>(v), _mm256_set1_epi16(255))
}

/// Filter six rows in byte form (each lane's low eight bytes, see [`bytes`]) vertically with
/// the tap pairs of the shape whose taps are `A..B` (see [`PairTaps`]), in 16 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn combine<const A: usize, const B: usize>(v: &[__m256i; 6], k: &[__m256i; 3]) -> __m256i {
    let mut acc = _mm256_set1_epi16(64 + BIAS);
    for p in 0..(B - A) / 2 {
        let (a, b) = PAIRS[A][p];
        acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(v[a], v[b]), k[p]));
    }
    finish([acc, _mm256_setzero_si256()])
}

/// A row of sixteen 16-bit values (all in 0..=255) in byte form: each lane's eight values
/// as its low eight bytes, ready to be interleaved with another row's by `punpcklbw`.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes(v: __m256i) -> __m256i {
    _mm256_packus_epi16(v, v)
}

/// The horizontal taps of a block as byte pairs for `pmaddubsw` (unsigned pixels times signed
/// taps, the two products of a pair added with signed saturation), with the shuffles that
/// put each pair's two pixels side by side; the vertical pass pairs its taps the same way. Six taps pair as (0, 5), (1, 3), (2, 4), four as
/// (1, 3), (2, 4), bilinear ones as (2, 3): every VP8 tap but the whole-pixel filter's 128
/// fits a signed byte (that filter never runs horizontally), and no pair saturates, since
/// at most one tap of each is large and positive (`255 * 128 = 32640` at most, the others'
/// magnitudes are far smaller). The three sums then add exactly as the six products did.
struct PairTaps {
    taps: [__m256i; 3],
    shuffles: [__m256i; 3],
}

/// The tap pairs of each shape (indexed by its first tap: 0 six, 1 four, 2 bilinear).
const PAIRS: [[(usize, usize); 3]; 3] =
    [[(0, 5), (1, 3), (2, 4)], [(1, 3), (2, 4), (2, 4)], [(2, 3), (2, 3), (2, 3)]];

/// Shuffle indices that pair footprint columns `x + a` and `x + b` for output `x` of a row
/// loaded as [`h_pixels`] does: for a 16-wide block, columns 0..16 in the low lane and
/// 5..21 in the high one (outputs 0..8 and 8..16); for a pair, each lane holds columns
/// 0..8 and then 5..13 of its own block (outputs 0..8).
const fn pair_shuffle(a: usize, b: usize, pair: bool) -> [u8; 32] {
    let mut idx = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (lane, j) = (i / 16, (i % 16) / 2);
        let col = j + if i % 2 == 0 { a } else { b };
        idx[i] = if pair {
            if col < 8 {
                col as u8
            } else {
                (col + 3) as u8
            }
        } else {
            (col + 8 * lane - 5 * lane) as u8
        };
        i += 1;
    }
    idx
}

/// [`pair_shuffle`] for every pair of [`PAIRS`], single blocks first, then pairs.
const SHUFFLES: [[[[u8; 32]; 3]; 3]; 2] = {
    let mut t = [[[[0u8; 32]; 3]; 3]; 2];
    let mut m = 0;
    while m < 2 {
        let mut s = 0;
        while s < 3 {
            let mut p = 0;
            while p < 3 {
                let (a, b) = PAIRS[s][p];
                t[m][s][p] = pair_shuffle(a, b, m == 1);
                p += 1;
            }
            s += 1;
        }
        m += 1;
    }
    t
};

/// The pairs of `taps` for the shape whose first nonzero tap is `first` (0, 1 or 2), each
/// pair's two taps as the bytes of every 16-bit lane.
#[inline]
#[target_feature(enable = "avx2")]
fn tap_pairs(taps: &[i32; 6], first: usize) -> [__m256i; 3] {
    PAIRS[first].map(|(a, b)| _mm256_set1_epi16(((taps[b] as i16) << 8) | (taps[a] as u8 as i16)))
}

/// The index of a shape's first nonzero tap, and of its pairs in [`PAIRS`]; `None` (no
/// filter) gives 0, unused.
fn first_tap(s: Option<Shape>) -> usize {
    match s {
        None | Some(Shape::Six) => 0,
        Some(Shape::Four) => 1,
        Some(Shape::Two) => 2,
    }
}

impl PairTaps {
    /// The pairs of `taps` for the shape whose first nonzero tap is `first` (0, 1 or 2).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn new<const PAIR: bool>(taps: &[i32; 6], first: usize) -> Self {
        let tables = &SHUFFLES[PAIR as usize][first];
        PairTaps {
            taps: tap_pairs(taps, first),
            // SAFETY: each table holds 32 bytes.
            shuffles: std::array::from_fn(|p| unsafe {
                _mm256_loadu_si256(tables[p].as_ptr() as *const __m256i)
            }),
        }
    }
}

/// Footprint row `r` as [`pair_shuffle`] expects it.
#[inline]
#[target_feature(enable = "avx2")]
fn h_pixels<const PAIR: bool, const S: usize, const R: usize>(
    a: &Footprint<S, R>,
    b: &Footprint<S, R>,
    r: usize,
) -> __m256i {
    if PAIR {
        let lo = _mm_unpacklo_epi64(a.load::<8>(r, 0), a.load::<8>(r, 5));
        let hi = _mm_unpacklo_epi64(b.load::<8>(r, 0), b.load::<8>(r, 5));
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
    } else {
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a.load::<16>(r, 0)), a.load::<16>(r, 5))
    }
}

/// Footprint row `r` in byte form (see [`bytes`]), horizontally filtered with taps `A..B`
/// when `H`.
#[inline]
#[target_feature(enable = "avx2")]
fn source_bytes<
    const PAIR: bool,
    const S: usize,
    const R: usize,
    const H: bool,
    const A: usize,
    const B: usize,
>(
    fa: &Footprint<S, R>,
    fb: &Footprint<S, R>,
    r: usize,
    k: &PairTaps,
) -> __m256i {
    if H {
        bytes(source_row::<PAIR, S, R, H, A, B>(fa, fb, r, k))
    } else if PAIR {
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(fa.load::<8>(r, 2)), fb.load::<8>(r, 2))
    } else {
        _mm256_permute4x64_epi64::<0x50>(_mm256_castsi128_si256(fa.load::<16>(r, 2)))
    }
}

/// Footprint row `r`, horizontally filtered with taps `A..B` when `H`, in 16 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn source_row<
    const PAIR: bool,
    const S: usize,
    const R: usize,
    const H: bool,
    const A: usize,
    const B: usize,
>(
    fa: &Footprint<S, R>,
    fb: &Footprint<S, R>,
    r: usize,
    k: &PairTaps,
) -> __m256i {
    if H {
        let v = h_pixels::<PAIR, S, R>(fa, fb, r);
        let mut acc = _mm256_set1_epi16(64 + BIAS);
        for p in 0..(B - A) / 2 {
            let pairs = _mm256_shuffle_epi8(v, k.shuffles[p]);
            acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(pairs, k.taps[p]));
        }
        finish([acc, _mm256_setzero_si256()])
    } else {
        widen::<PAIR, S, R>(fa, fb, r, 2)
    }
}

/// Pack sixteen 16-bit values (all in 0..=255) to bytes and store them as row `y`.
#[inline]
#[target_feature(enable = "avx2")]
fn store_row(out: &mut impl Out, y: usize, v: __m256i) {
    let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi16(v, v));
    out.store(y, _mm256_castsi256_si128(packed));
}

#[inline]
#[target_feature(enable = "avx2")]
fn interpolate<
    const PAIR: bool,
    const S: usize,
    const R: usize,
    const H: bool,
    const HA: usize,
    const HB: usize,
    const V: bool,
    const VA: usize,
    const VB: usize,
>(
    fa: &Footprint<S, R>,
    fb: &Footprint<S, R>,
    out: &mut impl Out,
    kh: &PairTaps,
    kv: &[__m256i; 3],
) {
    let rows = R;
    if !V {
        for y in 0..rows {
            store_row(out, y, source_row::<PAIR, S, R, H, HA, HB>(fa, fb, y + 2, kh));
        }
        return;
    }
    // Every source row the taps in use reach, once (footprint row r is source row r - 2),
    // then each output row from six of them by constant index: a sliding window of registers
    // made the compiler move all six through the stack for every row.
    let src: [__m256i; 21] = std::array::from_fn(|r| {
        if (VA..rows + VB - 1).contains(&r) {
            source_bytes::<PAIR, S, R, H, HA, HB>(fa, fb, r, kh)
        } else {
            _mm256_setzero_si256() // never read
        }
    });
    for y in 0..rows {
        let win: [__m256i; 6] = std::array::from_fn(|i| src[y + i]);
        store_row(out, y, combine::<VA, VB>(&win, kv));
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn with_vertical<
    const PAIR: bool,
    const S: usize,
    const R: usize,
    const H: bool,
    const HA: usize,
    const HB: usize,
>(
    fa: &Footprint<S, R>,
    fb: &Footprint<S, R>,
    out: &mut impl Out,
    kh: &PairTaps,
    kv: &[__m256i; 3],
    v: Option<Shape>,
) {
    match v {
        None => interpolate::<PAIR, S, R, H, HA, HB, false, 2, 3>(fa, fb, out, kh, kv),
        Some(Shape::Six) => interpolate::<PAIR, S, R, H, HA, HB, true, 0, 6>(fa, fb, out, kh, kv),
        Some(Shape::Four) => interpolate::<PAIR, S, R, H, HA, HB, true, 1, 5>(fa, fb, out, kh, kv),
        Some(Shape::Two) => interpolate::<PAIR, S, R, H, HA, HB, true, 2, 4>(fa, fb, out, kh, kv),
    }
}

#[target_feature(enable = "avx2")]
fn filter_avx2<const PAIR: bool, const S: usize, const R: usize>(
    fa: &Footprint<S, R>,
    fb: &Footprint<S, R>,
    out: &mut impl Out,
    hx: &[i32; 6],
    vy: &[i32; 6],
    fx: usize,
    fy: usize,
) {
    let v = (fy != 0).then(|| shape(vy));
    let kv = tap_pairs(vy, first_tap(v));
    let o = out;
    let h = (fx != 0).then(|| shape(hx));
    let kh = PairTaps::new::<PAIR>(hx, first_tap(h));
    match h {
        None => with_vertical::<PAIR, S, R, false, 2, 3>(fa, fb, o, &kh, &kv, v),
        Some(Shape::Six) => with_vertical::<PAIR, S, R, true, 0, 6>(fa, fb, o, &kh, &kv, v),
        Some(Shape::Four) => with_vertical::<PAIR, S, R, true, 1, 5>(fa, fb, o, &kh, &kv, v),
        Some(Shape::Two) => with_vertical::<PAIR, S, R, true, 2, 4>(fa, fb, o, &kh, &kv, v),
    }
}

/// Same contract as [`super::scalar::filter_block`] for 8 x `R` blocks (`R` 8 or 4): two rows
/// at a time, one in each 128-bit lane, so that the 16-lane operations are all used (the
/// SSE2 kernel's horizontal pass filled eight lanes).
#[allow(clippy::too_many_arguments)]
fn filter_block8<const R: usize>(
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
    let fp = Footprint::<8, R>::new(src, off, stride);
    let mut out = Block::<R, 8>::new(dst, doff, dstride);
    // SAFETY: as in `filter_block16`.
    unsafe { filter8_avx2::<R>(&fp, &mut out, hx, vy, fx, fy) }
}

/// Footprint rows `r` (low lane) and `r + 1` (high lane), horizontally filtered with taps
/// `A..B` when `H`, in 16 bits. `r + 1` past the footprint reads row `r` again (its result
/// is never used).
#[inline]
#[target_feature(enable = "avx2")]
fn row_pair<const R: usize, const H: bool, const A: usize, const B: usize>(
    fp: &Footprint<8, R>,
    r: usize,
    k: &PairTaps,
) -> __m256i {
    let r1 = if r + 1 < R + 5 { r + 1 } else { r };
    if H {
        let lo = _mm_unpacklo_epi64(fp.load::<8>(r, 0), fp.load::<8>(r, 5));
        let hi = _mm_unpacklo_epi64(fp.load::<8>(r1, 0), fp.load::<8>(r1, 5));
        let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
        let mut acc = _mm256_set1_epi16(64 + BIAS);
        for p in 0..(B - A) / 2 {
            let pairs = _mm256_shuffle_epi8(v, k.shuffles[p]);
            acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(pairs, k.taps[p]));
        }
        finish([acc, _mm256_setzero_si256()])
    } else {
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi64(fp.load::<8>(r, 2), fp.load::<8>(r1, 2)))
    }
}

/// [`row_pair`] in byte form (see [`bytes`]).
#[inline]
#[target_feature(enable = "avx2")]
fn row_pair_bytes<const R: usize, const H: bool, const A: usize, const B: usize>(
    fp: &Footprint<8, R>,
    r: usize,
    k: &PairTaps,
) -> __m256i {
    if H {
        bytes(row_pair::<R, H, A, B>(fp, r, k))
    } else {
        let r1 = if r + 1 < R + 5 { r + 1 } else { r };
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(fp.load::<8>(r, 2)), fp.load::<8>(r1, 2))
    }
}

/// Store output rows `y` (low lane) and `y + 1` (high lane).
#[inline]
#[target_feature(enable = "avx2")]
fn store_pair<const R: usize>(out: &mut Block<R, 8>, y: usize, v: __m256i) {
    let packed = _mm256_packus_epi16(v, v);
    out.store(y, _mm256_castsi256_si128(packed));
    out.store(y + 1, _mm256_extracti128_si256::<1>(packed));
}

#[inline]
#[target_feature(enable = "avx2")]
fn interpolate8<
    const R: usize,
    const H: bool,
    const HA: usize,
    const HB: usize,
    const V: bool,
    const VA: usize,
    const VB: usize,
>(
    fp: &Footprint<8, R>,
    out: &mut Block<R, 8>,
    kh: &PairTaps,
    kv: &[__m256i; 3],
) {
    if !V {
        for y in (0..R).step_by(2) {
            store_pair(out, y, row_pair::<R, H, HA, HB>(fp, y + 2, kh));
        }
        return;
    }
    // Row pairs from footprint row VA on: `even[k]` holds rows VA + 2k and VA + 2k + 1,
    // `odd[k]` rows VA + 2k + 1 and VA + 2k + 2 (lanes of two neighbours). Output rows y and
    // y + 1 take tap i from the pair that starts at row y + i.
    let even: [__m256i; 7] = std::array::from_fn(|k| {
        if VA + 2 * k < R + VB - 1 {
            row_pair_bytes::<R, H, HA, HB>(fp, VA + 2 * k, kh)
        } else {
            _mm256_setzero_si256() // never read
        }
    });
    let odd: [__m256i; 6] =
        std::array::from_fn(|k| _mm256_permute2x128_si256::<0x21>(even[k], even[k + 1]));
    for y in (0..R).step_by(2) {
        let win: [__m256i; 6] = std::array::from_fn(|i| {
            if (VA..VB).contains(&i) {
                let t = y + i - VA;
                if t.is_multiple_of(2) {
                    even[t / 2]
                } else {
                    odd[t / 2]
                }
            } else {
                _mm256_setzero_si256() // tap unused
            }
        });
        store_pair(out, y, combine::<VA, VB>(&win, kv));
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn with_vertical8<const R: usize, const H: bool, const HA: usize, const HB: usize>(
    fp: &Footprint<8, R>,
    out: &mut Block<R, 8>,
    kh: &PairTaps,
    kv: &[__m256i; 3],
    v: Option<Shape>,
) {
    match v {
        None => interpolate8::<R, H, HA, HB, false, 2, 3>(fp, out, kh, kv),
        Some(Shape::Six) => interpolate8::<R, H, HA, HB, true, 0, 6>(fp, out, kh, kv),
        Some(Shape::Four) => interpolate8::<R, H, HA, HB, true, 1, 5>(fp, out, kh, kv),
        Some(Shape::Two) => interpolate8::<R, H, HA, HB, true, 2, 4>(fp, out, kh, kv),
    }
}

#[target_feature(enable = "avx2")]
fn filter8_avx2<const R: usize>(
    fp: &Footprint<8, R>,
    out: &mut Block<R, 8>,
    hx: &[i32; 6],
    vy: &[i32; 6],
    fx: usize,
    fy: usize,
) {
    let v = (fy != 0).then(|| shape(vy));
    let kv = tap_pairs(vy, first_tap(v));
    let h = (fx != 0).then(|| shape(hx));
    // Each lane holds one row's columns 0..8 and 5..13, as a U+V pair's lanes do.
    let kh = PairTaps::new::<true>(hx, first_tap(h));
    match h {
        None => with_vertical8::<R, false, 2, 3>(fp, out, &kh, &kv, v),
        Some(Shape::Six) => with_vertical8::<R, true, 0, 6>(fp, out, &kh, &kv, v),
        Some(Shape::Four) => with_vertical8::<R, true, 1, 5>(fp, out, &kh, &kv, v),
        Some(Shape::Two) => with_vertical8::<R, true, 2, 4>(fp, out, &kh, &kv, v),
    }
}
