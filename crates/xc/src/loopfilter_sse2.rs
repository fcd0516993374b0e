//! SSE2 loop filter kernels: sixteen segments of one edge per call, one segment per byte lane.
//!
//! The eight pixel rows p3..q3 across an edge are held in eight 16-lane registers. Horizontal
//! edges load them directly (each row is contiguous); vertical edges load sixteen 8-pixel rows
//! and transpose them. The arithmetic follows [`super::scalar`]: every clamp of the spec to
//! -128..=127 is a saturating signed byte operation, and the spec's decisions become lane masks
//! (a masked-off adjustment is 0, which leaves the pixels unchanged, as when the spec skips it).
//! SSE2 is part of the x86_64 baseline, so no runtime detection is needed; only the loads and
//! stores of [`Block`] are `unsafe`, inside a footprint whose bounds were checked once.

// Index loops over constant ranges unroll fully; an `enumerate().take().skip()` chain here
// did not (it kept its iterator state on the stack, ~10% of the filter's time).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::lanes::Thresholds;
use super::{EdgeDir, EdgeKind, EdgePlanes};

/// `ROWS` rows of `W` (8 or 16) bytes, `stride` apart, inside a slice checked once when the
/// block is made; row loads and stores then need only the (usually constant) row index check.
pub(crate) struct Block<'a, const ROWS: usize, const W: usize> {
    ptr: *mut u8,
    stride: usize,
    _data: std::marker::PhantomData<&'a mut [u8]>,
}

impl<'a, const ROWS: usize, const W: usize> Block<'a, ROWS, W> {
    /// The block whose first row starts at `data[start]`.
    ///
    /// # Panics
    /// If the block does not lie inside `data`.
    #[inline(always)]
    pub(crate) fn new(data: &'a mut [u8], start: usize, stride: usize) -> Self {
        const { assert!(ROWS > 0 && (W == 8 || W == 16)) };
        let end = (ROWS - 1).checked_mul(stride).and_then(|o| o.checked_add(start + W));
        let rows = &mut data[start..end.expect("block size overflows")];
        Block { ptr: rows.as_mut_ptr(), stride, _data: std::marker::PhantomData }
    }

    /// Load row `row` (8-byte rows go to the low half).
    #[inline(always)]
    pub(crate) fn load(&self, row: usize) -> __m128i {
        assert!(row < ROWS);
        // SAFETY: row < ROWS, so bytes row * stride .. row * stride + W lie inside the slice
        // checked in `new` (its length is (ROWS - 1) * stride + W). Loads are unaligned, and
        // SSE2 is part of the x86_64 baseline.
        unsafe {
            let p = self.ptr.add(row * self.stride);
            if W == 16 {
                _mm_loadu_si128(p.cast())
            } else {
                _mm_loadl_epi64(p.cast())
            }
        }
    }

    /// Store `v` (its low half for 8-byte rows) to row `row`.
    #[inline(always)]
    pub(crate) fn store(&mut self, row: usize, v: __m128i) {
        assert!(row < ROWS);
        // SAFETY: as in `load`; `self` holds the slice's unique borrow.
        unsafe {
            let p = self.ptr.add(row * self.stride);
            if W == 16 {
                _mm_storeu_si128(p.cast(), v)
            } else {
                _mm_storel_epi64(p.cast(), v)
            }
        }
    }
}

#[inline]
#[target_feature(enable = "sse2")]
fn abs_diff(a: __m128i, b: __m128i) -> __m128i {
    _mm_or_si128(_mm_subs_epu8(a, b), _mm_subs_epu8(b, a))
}

/// 0xFF in lanes where `x <= limit` (unsigned).
#[inline]
#[target_feature(enable = "sse2")]
fn le(x: __m128i, limit: __m128i) -> __m128i {
    _mm_cmpeq_epi8(_mm_subs_epu8(x, limit), _mm_setzero_si128())
}

/// Arithmetic shift right of signed bytes by `N` (via 16-bit lanes holding the byte on top).
#[inline]
#[target_feature(enable = "sse2")]
fn sra8<const N: i32>(x: __m128i) -> __m128i {
    let lo = _mm_srai_epi16::<N>(_mm_unpacklo_epi8(_mm_setzero_si128(), x));
    let hi = _mm_srai_epi16::<N>(_mm_unpackhi_epi8(_mm_setzero_si128(), x));
    // The results fit in a byte, so the saturating pack is exact.
    _mm_packs_epi16(_mm_srai_epi16::<8>(lo), _mm_srai_epi16::<8>(hi))
}

/// `c((27|18|9) * w + 63) >> 7)` for signed bytes `w`, given `w` widened to 16 bits.
#[inline]
#[target_feature(enable = "sse2")]
fn tap(lo: __m128i, hi: __m128i, k: i16) -> __m128i {
    let (k, r) = (_mm_set1_epi16(k), _mm_set1_epi16(63));
    let lo = _mm_srai_epi16::<7>(_mm_add_epi16(_mm_mullo_epi16(lo, k), r));
    let hi = _mm_srai_epi16::<7>(_mm_add_epi16(_mm_mullo_epi16(hi, k), r));
    _mm_packs_epi16(lo, hi)
}

/// Filter the eight rows p3..q3 (as pixels) in place.
#[inline]
#[target_feature(enable = "sse2")]
pub(crate) fn filter_rows<const K: u8>(px: &mut [__m128i; 8], t: Thresholds) {
    let kind = kind_of::<K>();
    debug_assert!(t.edge < 255, "edge limit 255 would be lost to saturation");
    let [p3, p2, p1, p0, q0, q1, q2, q3] = *px;
    let edge = _mm_set1_epi8(t.edge as i8);
    let interior = _mm_set1_epi8(t.interior as i8);
    let hev_t = _mm_set1_epi8(t.hev as i8);
    let sign = _mm_set1_epi8(-128);

    // |p0 - q0| * 2 + |p1 - q1| / 2 <= edge; saturation at 255 exceeds every edge limit.
    let a0 = abs_diff(p0, q0);
    let a1 = _mm_srli_epi16::<1>(_mm_and_si128(abs_diff(p1, q1), _mm_set1_epi8(-2)));
    let mut mask = le(_mm_adds_epu8(_mm_adds_epu8(a0, a0), a1), edge);

    // Signed values (spec u2s).
    let (sp1, sp0) = (_mm_xor_si128(p1, sign), _mm_xor_si128(p0, sign));
    let (sq0, sq1) = (_mm_xor_si128(q0, sign), _mm_xor_si128(q1, sign));
    // c(c(p1 - q1) + 3 * (q0 - p0)): once a run of same-sign saturating adds saturates, the
    // exact sum is beyond the range too, so the chain equals the spec's clamp of the sum.
    let d = _mm_subs_epi8(sq0, sp0);
    let outer = _mm_subs_epi8(sp1, sq1);
    let three = |x: __m128i| _mm_adds_epi8(_mm_adds_epi8(_mm_adds_epi8(x, d), d), d);

    let (np0, nq0);
    let (mut np1, mut nq1) = (p1, q1);
    let (mut np2, mut nq2) = (p2, q2);
    match kind {
        EdgeKind::Simple => {
            let f = _mm_and_si128(three(outer), mask);
            let f1 = sra8::<3>(_mm_adds_epi8(f, _mm_set1_epi8(4)));
            let f2 = sra8::<3>(_mm_adds_epi8(f, _mm_set1_epi8(3)));
            nq0 = _mm_xor_si128(_mm_subs_epi8(sq0, f1), sign);
            np0 = _mm_xor_si128(_mm_adds_epi8(sp0, f2), sign);
        }
        EdgeKind::NormalMb | EdgeKind::NormalSub => {
            let m = _mm_max_epu8(
                _mm_max_epu8(
                    _mm_max_epu8(abs_diff(p3, p2), abs_diff(p2, p1)),
                    _mm_max_epu8(abs_diff(q3, q2), abs_diff(q2, q1)),
                ),
                _mm_max_epu8(abs_diff(p1, p0), abs_diff(q1, q0)),
            );
            mask = _mm_and_si128(mask, le(m, interior));
            let not_hev = le(_mm_max_epu8(abs_diff(p1, p0), abs_diff(q1, q0)), hev_t);
            if kind == EdgeKind::NormalMb {
                let w = _mm_and_si128(three(outer), mask);
                // High edge variance lanes: the common adjustment with the outer taps.
                let fh = _mm_andnot_si128(not_hev, w);
                let f1 = sra8::<3>(_mm_adds_epi8(fh, _mm_set1_epi8(4)));
                let f2 = sra8::<3>(_mm_adds_epi8(fh, _mm_set1_epi8(3)));
                let hq0 = _mm_subs_epi8(sq0, f1);
                let hp0 = _mm_adds_epi8(sp0, f2);
                // The others: the wide filter with taps 27, 18, 9.
                let wl = _mm_and_si128(not_hev, w);
                let lo = _mm_srai_epi16::<8>(_mm_unpacklo_epi8(wl, wl));
                let hi = _mm_srai_epi16::<8>(_mm_unpackhi_epi8(wl, wl));
                let a = tap(lo, hi, 27);
                nq0 = _mm_xor_si128(_mm_subs_epi8(hq0, a), sign);
                np0 = _mm_xor_si128(_mm_adds_epi8(hp0, a), sign);
                let a = tap(lo, hi, 18);
                nq1 = _mm_xor_si128(_mm_subs_epi8(sq1, a), sign);
                np1 = _mm_xor_si128(_mm_adds_epi8(sp1, a), sign);
                let a = tap(lo, hi, 9);
                let (sp2, sq2) = (_mm_xor_si128(p2, sign), _mm_xor_si128(q2, sign));
                nq2 = _mm_xor_si128(_mm_subs_epi8(sq2, a), sign);
                np2 = _mm_xor_si128(_mm_adds_epi8(sp2, a), sign);
            } else {
                let f = _mm_and_si128(three(_mm_andnot_si128(not_hev, outer)), mask);
                let f1 = sra8::<3>(_mm_adds_epi8(f, _mm_set1_epi8(4)));
                let f2 = sra8::<3>(_mm_adds_epi8(f, _mm_set1_epi8(3)));
                nq0 = _mm_xor_si128(_mm_subs_epi8(sq0, f1), sign);
                np0 = _mm_xor_si128(_mm_adds_epi8(sp0, f2), sign);
                // (f1 + 1) >> 1 cannot overflow: f1 is in -16..=15.
                let a = _mm_and_si128(sra8::<1>(_mm_adds_epi8(f1, _mm_set1_epi8(1))), not_hev);
                nq1 = _mm_xor_si128(_mm_subs_epi8(sq1, a), sign);
                np1 = _mm_xor_si128(_mm_adds_epi8(sp1, a), sign);
            }
        }
    }
    *px = [p3, np2, np1, np0, nq0, nq1, nq2, q3];
}

/// Edge kinds as const parameters.
pub(crate) const MB: u8 = 0;
pub(crate) const SUB: u8 = 1;
pub(crate) const SIMPLE: u8 = 2;

#[inline(always)]
pub(crate) const fn kind_of<const K: u8>() -> EdgeKind {
    match K {
        MB => EdgeKind::NormalMb,
        SUB => EdgeKind::NormalSub,
        _ => EdgeKind::Simple,
    }
}

/// Horizontal edge, 16 segments: q0's row starts at `data[pos]`.
#[inline]
#[target_feature(enable = "sse2")]
fn filter_h16<const K: u8>(data: &mut [u8], pos: usize, stride: usize, t: Thresholds) {
    let mut b = Block::<8, 16>::new(data, pos - 4 * stride, stride);
    let mut px: [__m128i; 8] = std::array::from_fn(|k| b.load(k));
    filter_rows::<K>(&mut px, t);
    for k in 1..7 {
        b.store(k, px[k]);
    }
}

/// Horizontal edge, 8 segments in each of two planes with the same layout (U and V).
#[inline]
#[target_feature(enable = "sse2")]
fn filter_h8x2<const K: u8>(a: &mut [u8], b: &mut [u8], pos: usize, stride: usize, t: Thresholds) {
    let mut a = Block::<8, 8>::new(a, pos - 4 * stride, stride);
    let mut b = Block::<8, 8>::new(b, pos - 4 * stride, stride);
    let mut px: [__m128i; 8] = std::array::from_fn(|k| _mm_unpacklo_epi64(a.load(k), b.load(k)));
    filter_rows::<K>(&mut px, t);
    for k in 1..7 {
        a.store(k, px[k]);
        b.store(k, _mm_unpackhi_epi64(px[k], px[k]));
    }
}

/// Transpose sixteen 8-byte rows (low halves of `r`) into eight 16-byte columns.
#[inline]
#[target_feature(enable = "sse2")]
pub(crate) fn transpose_16x8(r: &[__m128i; 16]) -> [__m128i; 8] {
    // Pairs of rows interleaved bytewise: a[i] holds rows 2i, 2i+1.
    let a: [__m128i; 8] = std::array::from_fn(|i| _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]));
    // b[2j] = columns 0..4 of rows 4j..4j+4, b[2j+1] = columns 4..8.
    let b: [__m128i; 8] = std::array::from_fn(|i| {
        let (x, y) = (a[(i / 2) * 2], a[(i / 2) * 2 + 1]);
        if i % 2 == 0 {
            _mm_unpacklo_epi16(x, y)
        } else {
            _mm_unpackhi_epi16(x, y)
        }
    });
    // c[4h + k]: columns 2k, 2k+1 of rows 8h..8h+8.
    let c: [__m128i; 8] = std::array::from_fn(|i| {
        let (h, k) = (i / 4, i % 4);
        let (x, y) = (b[4 * h + k / 2], b[4 * h + 2 + k / 2]);
        if k % 2 == 0 {
            _mm_unpacklo_epi32(x, y)
        } else {
            _mm_unpackhi_epi32(x, y)
        }
    });
    std::array::from_fn(|col| {
        let (x, y) = (c[col / 2], c[4 + col / 2]);
        if col % 2 == 0 {
            _mm_unpacklo_epi64(x, y)
        } else {
            _mm_unpackhi_epi64(x, y)
        }
    })
}

/// Transpose eight 16-byte columns back into sixteen rows of 8 bytes: element `2i` of the
/// result holds rows 2i (low half) and 2i+1 (high half).
#[inline]
#[target_feature(enable = "sse2")]
pub(crate) fn transpose_8x16(c: &[__m128i; 8]) -> [__m128i; 8] {
    // a[2j] / a[2j+1]: columns 2j, 2j+1 interleaved, rows 0..8 / 8..16.
    let a: [__m128i; 8] = std::array::from_fn(|i| {
        let (x, y) = (c[(i / 2) * 2], c[(i / 2) * 2 + 1]);
        if i % 2 == 0 {
            _mm_unpacklo_epi8(x, y)
        } else {
            _mm_unpackhi_epi8(x, y)
        }
    });
    // b[4h + k]: columns 4g..4g+4 (g = k / 2) for rows 8h + 4(k % 2) .. +4.
    let b: [__m128i; 8] = std::array::from_fn(|i| {
        let (h, k) = (i / 4, i % 4);
        let g = k / 2;
        let (x, y) = (a[4 * g + h], a[4 * g + 2 + h]);
        if k % 2 == 0 {
            _mm_unpacklo_epi16(x, y)
        } else {
            _mm_unpackhi_epi16(x, y)
        }
    });
    // Rows: for each block of 4 rows (h, half), combine the columns 0..4 and 4..8 parts.
    std::array::from_fn(|i| {
        // i-th pair of rows: rows 2i, 2i+1 -> h = i / 4, sub-block s = (i % 4) / 2.
        let (h, s) = (i / 4, (i % 4) / 2);
        let (x, y) = (b[4 * h + s], b[4 * h + 2 + s]);
        if i % 2 == 0 {
            _mm_unpacklo_epi32(x, y)
        } else {
            _mm_unpackhi_epi32(x, y)
        }
    })
}

/// Filter sixteen 8-pixel rows (p3..q3 each, in the low halves of `r`); returns them as in
/// [`transpose_8x16`].
#[inline]
#[target_feature(enable = "sse2")]
fn filter_vertical<const K: u8>(r: &[__m128i; 16], t: Thresholds) -> [__m128i; 8] {
    let mut cols = transpose_16x8(r);
    filter_rows::<K>(&mut cols, t);
    transpose_8x16(&cols)
}

/// Vertical edge, 16 segments: q0 of row j is at `data[pos + j * stride]`.
#[inline]
#[target_feature(enable = "sse2")]
fn filter_v16<const K: u8>(data: &mut [u8], pos: usize, stride: usize, t: Thresholds) {
    let mut b = Block::<16, 8>::new(data, pos - 4, stride);
    let r: [__m128i; 16] = std::array::from_fn(|j| b.load(j));
    let rows = filter_vertical::<K>(&r, t);
    for i in 0..8 {
        b.store(2 * i, rows[i]);
        b.store(2 * i + 1, _mm_unpackhi_epi64(rows[i], rows[i]));
    }
}

/// Vertical edge, 8 segments in each of two planes with the same layout (U and V).
#[inline]
#[target_feature(enable = "sse2")]
fn filter_v8x2<const K: u8>(a: &mut [u8], b: &mut [u8], pos: usize, stride: usize, t: Thresholds) {
    let mut a = Block::<8, 8>::new(a, pos - 4, stride);
    let mut b = Block::<8, 8>::new(b, pos - 4, stride);
    let r: [__m128i; 16] = std::array::from_fn(|j| if j < 8 { a.load(j) } else { b.load(j - 8) });
    let rows = filter_vertical::<K>(&r, t);
    for i in 0..4 {
        a.store(2 * i, rows[i]);
        a.store(2 * i + 1, _mm_unpackhi_epi64(rows[i], rows[i]));
        b.store(2 * i, rows[4 + i]);
        b.store(2 * i + 1, _mm_unpackhi_epi64(rows[4 + i], rows[4 + i]));
    }
}

/// Filter the sixteen segments of one edge (the contract of [`super::filter_edge`]).
#[inline]
pub fn filter_edge(
    planes: EdgePlanes,
    pos: usize,
    stride: usize,
    dir: EdgeDir,
    kind: EdgeKind,
    t: Thresholds,
) {
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always present.
    unsafe { filter_edge_sse2(planes, pos, stride, dir, kind, t) }
}

#[inline]
#[target_feature(enable = "sse2")]
fn filter_edge_sse2(
    planes: EdgePlanes,
    pos: usize,
    stride: usize,
    dir: EdgeDir,
    kind: EdgeKind,
    t: Thresholds,
) {
    match kind {
        EdgeKind::NormalMb => filter_edge_kind::<MB>(planes, pos, stride, dir, t),
        EdgeKind::NormalSub => filter_edge_kind::<SUB>(planes, pos, stride, dir, t),
        EdgeKind::Simple => filter_edge_kind::<SIMPLE>(planes, pos, stride, dir, t),
    }
}

#[inline]
#[target_feature(enable = "sse2")]
fn filter_edge_kind<const K: u8>(
    planes: EdgePlanes,
    pos: usize,
    stride: usize,
    dir: EdgeDir,
    t: Thresholds,
) {
    match (planes, dir) {
        (EdgePlanes::Luma(y), EdgeDir::Vertical) => filter_v16::<K>(y, pos, stride, t),
        (EdgePlanes::Luma(y), EdgeDir::Horizontal) => filter_h16::<K>(y, pos, stride, t),
        (EdgePlanes::Chroma(u, v), EdgeDir::Vertical) => filter_v8x2::<K>(u, v, pos, stride, t),
        (EdgePlanes::Chroma(u, v), EdgeDir::Horizontal) => filter_h8x2::<K>(u, v, pos, stride, t),
    }
}
