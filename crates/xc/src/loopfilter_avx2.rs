//! AVX2 loop filter kernel: one edge of a macroblock in all three planes at once, 32 segments
//! per call, one per byte lane: the sixteen luma segments in the low half of each register and
//! the eight U and eight V segments in the high half.
//!
//! The planes are independent, so a luma edge and a chroma edge with the same thresholds can be
//! filtered together as long as each plane's own edges keep their order (see
//! [`super::filter_edge_yuv`]). The arithmetic is that of `loopfilter_sse2.rs` on 256-bit
//! registers: every operation used is lane-wise, and the unpack/pack pairs that widen bytes to
//! 16 bits work within each 128-bit half, so they give back the bytes in their lanes. Loads,
//! stores and transposes are the SSE2 ones. Chosen once at run time when the CPU has AVX2.

// Index loops over constant ranges unroll fully.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::lanes::Thresholds;
use super::sse2::{filter_rows as filter_rows_sse2, kind_of, transpose_16x8, transpose_8x16};
use super::sse2::{Block, MB, SIMPLE, SUB};
use super::{EdgeDir, EdgeKind};

/// The kernel, when this CPU has AVX2.
pub(super) fn kernel() -> Option<super::YuvKernel> {
    is_x86_feature_detected!("avx2").then_some(filter_edge_yuv as super::YuvKernel)
}

/// The kernel for a macroblock's inner edges, when this CPU has AVX2.
pub(super) fn inner_kernel() -> Option<super::InnerKernel> {
    is_x86_feature_detected!("avx2").then_some(filter_inner as super::InnerKernel)
}

#[inline]
#[target_feature(enable = "avx2")]
fn abs_diff(a: __m256i, b: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_subs_epu8(a, b), _mm256_subs_epu8(b, a))
}

/// 0xFF in lanes where `x <= limit` (unsigned).
#[inline]
#[target_feature(enable = "avx2")]
fn le(x: __m256i, limit: __m256i) -> __m256i {
    _mm256_cmpeq_epi8(_mm256_subs_epu8(x, limit), _mm256_setzero_si256())
}

/// Arithmetic shift right of signed bytes by `N`.
#[inline]
#[target_feature(enable = "avx2")]
fn sra8<const N: i32>(x: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let lo = _mm256_srai_epi16::<N>(_mm256_unpacklo_epi8(zero, x));
    let hi = _mm256_srai_epi16::<N>(_mm256_unpackhi_epi8(zero, x));
    _mm256_packs_epi16(_mm256_srai_epi16::<8>(lo), _mm256_srai_epi16::<8>(hi))
}

/// `c(((27|18|9) * w + 63) >> 7)` for signed bytes `w`, given `w` widened to 16 bits.
#[inline]
#[target_feature(enable = "avx2")]
fn tap(lo: __m256i, hi: __m256i, k: i16) -> __m256i {
    let (k, r) = (_mm256_set1_epi16(k), _mm256_set1_epi16(63));
    let lo = _mm256_srai_epi16::<7>(_mm256_add_epi16(_mm256_mullo_epi16(lo, k), r));
    let hi = _mm256_srai_epi16::<7>(_mm256_add_epi16(_mm256_mullo_epi16(hi, k), r));
    _mm256_packs_epi16(lo, hi)
}

/// Filter the eight rows p3..q3 (as pixels) in place: `filter_rows` of `loopfilter_sse2.rs`.
#[inline]
#[target_feature(enable = "avx2")]
fn filter_rows<const K: u8>(px: &mut [__m256i; 8], t: Thresholds) {
    let kind = kind_of::<K>();
    debug_assert!(t.edge < 255, "edge limit 255 would be lost to saturation");
    let [p3, p2, p1, p0, q0, q1, q2, q3] = *px;
    let edge = _mm256_set1_epi8(t.edge as i8);
    let interior = _mm256_set1_epi8(t.interior as i8);
    let hev_t = _mm256_set1_epi8(t.hev as i8);
    let sign = _mm256_set1_epi8(-128);

    let a0 = abs_diff(p0, q0);
    let a1 = _mm256_srli_epi16::<1>(_mm256_and_si256(abs_diff(p1, q1), _mm256_set1_epi8(-2)));
    let mut mask = le(_mm256_adds_epu8(_mm256_adds_epu8(a0, a0), a1), edge);

    let (sp1, sp0) = (_mm256_xor_si256(p1, sign), _mm256_xor_si256(p0, sign));
    let (sq0, sq1) = (_mm256_xor_si256(q0, sign), _mm256_xor_si256(q1, sign));
    let d = _mm256_subs_epi8(sq0, sp0);
    let outer = _mm256_subs_epi8(sp1, sq1);
    let three = |x: __m256i| _mm256_adds_epi8(_mm256_adds_epi8(_mm256_adds_epi8(x, d), d), d);

    let (np0, nq0);
    let (mut np1, mut nq1) = (p1, q1);
    let (mut np2, mut nq2) = (p2, q2);
    match kind {
        EdgeKind::Simple => {
            let f = _mm256_and_si256(three(outer), mask);
            let f1 = sra8::<3>(_mm256_adds_epi8(f, _mm256_set1_epi8(4)));
            let f2 = sra8::<3>(_mm256_adds_epi8(f, _mm256_set1_epi8(3)));
            nq0 = _mm256_xor_si256(_mm256_subs_epi8(sq0, f1), sign);
            np0 = _mm256_xor_si256(_mm256_adds_epi8(sp0, f2), sign);
        }
        EdgeKind::NormalMb | EdgeKind::NormalSub => {
            let m = _mm256_max_epu8(
                _mm256_max_epu8(
                    _mm256_max_epu8(abs_diff(p3, p2), abs_diff(p2, p1)),
                    _mm256_max_epu8(abs_diff(q3, q2), abs_diff(q2, q1)),
                ),
                _mm256_max_epu8(abs_diff(p1, p0), abs_diff(q1, q0)),
            );
            mask = _mm256_and_si256(mask, le(m, interior));
            let not_hev = le(_mm256_max_epu8(abs_diff(p1, p0), abs_diff(q1, q0)), hev_t);
            if kind == EdgeKind::NormalMb {
                let w = _mm256_and_si256(three(outer), mask);
                let fh = _mm256_andnot_si256(not_hev, w);
                let f1 = sra8::<3>(_mm256_adds_epi8(fh, _mm256_set1_epi8(4)));
                let f2 = sra8::<3>(_mm256_adds_epi8(fh, _mm256_set1_epi8(3)));
                let hq0 = _mm256_subs_epi8(sq0, f1);
                let hp0 = _mm256_adds_epi8(sp0, f2);
                let wl = _mm256_and_si256(not_hev, w);
                let lo = _mm256_srai_epi16::<8>(_mm256_unpacklo_epi8(wl, wl));
                let hi = _mm256_srai_epi16::<8>(_mm256_unpackhi_epi8(wl, wl));
                let a = tap(lo, hi, 27);
                nq0 = _mm256_xor_si256(_mm256_subs_epi8(hq0, a), sign);
                np0 = _mm256_xor_si256(_mm256_adds_epi8(hp0, a), sign);
                let a = tap(lo, hi, 18);
                nq1 = _mm256_xor_si256(_mm256_subs_epi8(sq1, a), sign);
                np1 = _mm256_xor_si256(_mm256_adds_epi8(sp1, a), sign);
                let a = tap(lo, hi, 9);
                let (sp2, sq2) = (_mm256_xor_si256(p2, sign), _mm256_xor_si256(q2, sign));
                nq2 = _mm256_xor_si256(_mm256_subs_epi8(sq2, a), sign);
                np2 = _mm256_xor_si256(_mm256_adds_epi8(sp2, a), sign);
            } else {
                let f = _mm256_and_si256(three(_mm256_andnot_si256(not_hev, outer)), mask);
                let f1 = sra8::<3>(_mm256_adds_epi8(f, _mm256_set1_epi8(4)));
                let f2 = sra8::<3>(_mm256_adds_epi8(f, _mm256_set1_epi8(3)));
                nq0 = _mm256_xor_si256(_mm256_subs_epi8(sq0, f1), sign);
                np0 = _mm256_xor_si256(_mm256_adds_epi8(sp0, f2), sign);
                let a =
                    _mm256_and_si256(sra8::<1>(_mm256_adds_epi8(f1, _mm256_set1_epi8(1))), not_hev);
                nq1 = _mm256_xor_si256(_mm256_subs_epi8(sq1, a), sign);
                np1 = _mm256_xor_si256(_mm256_adds_epi8(sp1, a), sign);
            }
        }
    }
    *px = [p3, np2, np1, np0, nq0, nq1, nq2, q3];
}

/// Luma in the low half, chroma in the high half.
#[inline]
#[target_feature(enable = "avx2")]
fn join(luma: __m128i, chroma: __m128i) -> __m256i {
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(luma), chroma)
}

/// Filter the rows (`join`ed) and split them back into their luma and chroma halves.
#[inline]
#[target_feature(enable = "avx2")]
fn filter_split<const K: u8>(
    y: [__m128i; 8],
    c: [__m128i; 8],
    t: Thresholds,
) -> ([__m128i; 8], [__m128i; 8]) {
    let mut px: [__m256i; 8] = std::array::from_fn(|k| join(y[k], c[k]));
    filter_rows::<K>(&mut px, t);
    (
        std::array::from_fn(|k| _mm256_castsi256_si128(px[k])),
        std::array::from_fn(|k| _mm256_extracti128_si256::<1>(px[k])),
    )
}

/// Horizontal edge: q0's rows start at `y[ypos]`, `u[cpos]` and `v[cpos]`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
fn filter_h<const K: u8>(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    ypos: usize,
    cpos: usize,
    ystride: usize,
    cstride: usize,
    t: Thresholds,
) {
    let mut by = Block::<8, 16>::new(y, ypos - 4 * ystride, ystride);
    let mut bu = Block::<8, 8>::new(u, cpos - 4 * cstride, cstride);
    let mut bv = Block::<8, 8>::new(v, cpos - 4 * cstride, cstride);
    let rows_y: [__m128i; 8] = std::array::from_fn(|k| by.load(k));
    let rows_c: [__m128i; 8] = std::array::from_fn(|k| _mm_unpacklo_epi64(bu.load(k), bv.load(k)));
    let (ry, rc) = filter_split::<K>(rows_y, rows_c, t);
    for k in 1..7 {
        by.store(k, ry[k]);
        bu.store(k, rc[k]);
        bv.store(k, _mm_unpackhi_epi64(rc[k], rc[k]));
    }
}

/// The eight rows of a U block, then the eight of the V block beside it (8 pixels each).
/// (No target feature: it could not be forced inline, and its closure was not inlined.)
#[inline(always)]
fn chroma_rows(bu: &Block<8, 8>, bv: &Block<8, 8>) -> [__m128i; 16] {
    std::array::from_fn(|j| if j < 8 { bu.load(j) } else { bv.load(j - 8) })
}

/// Store rows transposed back from chroma columns (`transpose_8x16`: two rows a register,
/// U's first).
#[inline(always)]
fn store_chroma_pairs(bu: &mut Block<8, 8>, bv: &mut Block<8, 8>, rc: &[__m128i; 8]) {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    let high = |x: __m128i| unsafe { _mm_unpackhi_epi64(x, x) };
    for i in 0..4 {
        bu.store(2 * i, rc[i]);
        bu.store(2 * i + 1, high(rc[i]));
        bv.store(2 * i, rc[4 + i]);
        bv.store(2 * i + 1, high(rc[4 + i]));
    }
}

/// Vertical edge: q0 of row j is at `y[ypos + j * ystride]` (and likewise in U and V).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
fn filter_v<const K: u8>(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    ypos: usize,
    cpos: usize,
    ystride: usize,
    cstride: usize,
    t: Thresholds,
) {
    let mut by = Block::<16, 8>::new(y, ypos - 4, ystride);
    let mut bu = Block::<8, 8>::new(u, cpos - 4, cstride);
    let mut bv = Block::<8, 8>::new(v, cpos - 4, cstride);
    let ry: [__m128i; 16] = std::array::from_fn(|j| by.load(j));
    let rc = chroma_rows(&bu, &bv);
    let (cy, cc) = filter_split::<K>(transpose_16x8(&ry), transpose_16x8(&rc), t);
    let (ry, rc) = (transpose_8x16(&cy), transpose_8x16(&cc));
    for i in 0..8 {
        by.store(2 * i, ry[i]);
        by.store(2 * i + 1, _mm_unpackhi_epi64(ry[i], ry[i]));
    }
    store_chroma_pairs(&mut bu, &mut bv, &rc);
}

/// The contract of [`super::filter_edge_yuv`].
#[allow(clippy::too_many_arguments)]
fn filter_edge_yuv(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    ypos: usize,
    cpos: usize,
    ystride: usize,
    cstride: usize,
    dir: EdgeDir,
    kind: EdgeKind,
    t: Thresholds,
) {
    // SAFETY: reachable only through `kernel`, which hands it out only after
    // `is_x86_feature_detected!("avx2")` succeeded.
    unsafe { filter_edge_yuv_avx2(y, u, v, ypos, cpos, ystride, cstride, dir, kind, t) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
fn filter_edge_yuv_avx2(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    ypos: usize,
    cpos: usize,
    ystride: usize,
    cstride: usize,
    dir: EdgeDir,
    kind: EdgeKind,
    t: Thresholds,
) {
    let (p, s) = ((ypos, cpos), (ystride, cstride));
    match (dir, kind) {
        (EdgeDir::Vertical, EdgeKind::NormalMb) => filter_v::<MB>(y, u, v, p.0, p.1, s.0, s.1, t),
        (EdgeDir::Vertical, EdgeKind::NormalSub) => filter_v::<SUB>(y, u, v, p.0, p.1, s.0, s.1, t),
        (EdgeDir::Vertical, EdgeKind::Simple) => filter_v::<SIMPLE>(y, u, v, p.0, p.1, s.0, s.1, t),
        (EdgeDir::Horizontal, EdgeKind::NormalMb) => filter_h::<MB>(y, u, v, p.0, p.1, s.0, s.1, t),
        (EdgeDir::Horizontal, EdgeKind::NormalSub) => {
            filter_h::<SUB>(y, u, v, p.0, p.1, s.0, s.1, t)
        }
        (EdgeDir::Horizontal, EdgeKind::Simple) => {
            filter_h::<SIMPLE>(y, u, v, p.0, p.1, s.0, s.1, t)
        }
    }
}

/// The contract of [`super::filter_inner_yuv`].
#[allow(clippy::too_many_arguments)]
fn filter_inner(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    ypos: usize,
    cpos: usize,
    ystride: usize,
    cstride: usize,
    dir: EdgeDir,
    t: Thresholds,
) {
    let (by, bu, bv) = (
        Block::<16, 16>::new(y, ypos, ystride),
        Block::<8, 8>::new(u, cpos, cstride),
        Block::<8, 8>::new(v, cpos, cstride),
    );
    // SAFETY: reachable only through `inner_kernel`, which hands it out only after
    // `is_x86_feature_detected!("avx2")` succeeded.
    unsafe {
        match dir {
            EdgeDir::Vertical => filter_inner_avx2::<true>(by, bu, bv, t),
            EdgeDir::Horizontal => filter_inner_avx2::<false>(by, bu, bv, t),
        }
    }
}

/// Horizontal edges work on the rows as loaded (chroma rows: U in the low half, V in the
/// high half). For vertical edges each plane's block is transposed once (a register per pixel
/// column) and back at the end: one vertical edge at a time costs a transpose in and out per
/// edge, and the luma edges' footprints overlap. Then the luma lines 0..8, 4..12 and 8..16
/// are filtered in order, the first eight with the chroma ones.
#[target_feature(enable = "avx2")]
fn filter_inner_avx2<const VERTICAL: bool>(
    mut by: Block<16, 16>,
    mut bu: Block<8, 8>,
    mut bv: Block<8, 8>,
    t: Thresholds,
) {
    let rows: [__m128i; 16] = std::array::from_fn(|j| by.load(j));
    let mut luma = rows;
    let chroma;
    if VERTICAL {
        let right: [__m128i; 16] = std::array::from_fn(|j| _mm_unpackhi_epi64(rows[j], rows[j]));
        let (left, right) = (transpose_16x8(&rows), transpose_16x8(&right));
        luma = std::array::from_fn(|k| if k < 8 { left[k] } else { right[k - 8] });
        chroma = transpose_16x8(&chroma_rows(&bu, &bv));
    } else {
        chroma = std::array::from_fn(|k| _mm_unpacklo_epi64(bu.load(k), bv.load(k)));
    }
    let first: [__m128i; 8] = std::array::from_fn(|k| luma[k]);
    let (ly, chroma) = filter_split::<SUB>(first, chroma, t);
    luma[..8].copy_from_slice(&ly);
    for p3 in [4, 8] {
        let mut px: [__m128i; 8] = std::array::from_fn(|k| luma[p3 + k]);
        filter_rows_sse2::<SUB>(&mut px, t);
        luma[p3..p3 + 8].copy_from_slice(&px);
    }
    if VERTICAL {
        let left = transpose_8x16(&std::array::from_fn(|k| luma[k]));
        let right = transpose_8x16(&std::array::from_fn(|k| luma[8 + k]));
        for i in 0..8 {
            by.store(2 * i, _mm_unpacklo_epi64(left[i], right[i]));
            by.store(2 * i + 1, _mm_unpackhi_epi64(left[i], right[i]));
        }
        store_chroma_pairs(&mut bu, &mut bv, &transpose_8x16(&chroma));
    } else {
        // The subblock filter changes p1, p0, q0 and q1: rows 2..6, 6..10 and 10..14.
        for j in 2..14 {
            by.store(j, luma[j]);
        }
        for k in 2..6 {
            bu.store(k, chroma[k]);
            bv.store(k, _mm_unpackhi_epi64(chroma[k], chroma[k]));
        }
    }
}
