//! Inter prediction (RFC 6386 section 18): motion-compensated copies of a reference frame
//! with six-tap ("bicubic") or bilinear sub-pixel interpolation.
//!
//! Motion vectors arrive in quarter-pel luma units ([`Mv`]). Like the spec (18.1) we work in
//! eighth-pel units of the plane being predicted: a luma vector is doubled, a chroma vector is
//! already in eighth-pel chroma units (see [`chroma_mv_full`] and [`chroma_mv_split`]).
//! A block's source origin is its own position plus `mv >> 3` (floor), and `mv & 7` selects
//! the filter for each direction.
//!
//! Pixels outside the reference plane are read with coordinates clamped to the plane (the
//! macroblock-aligned plane), which is what libvpx's border extension amounts to. Blocks
//! whose whole filter footprint is inside the plane read it directly; the others first copy
//! the footprint, clamped, into a small buffer.
//!
//! The per-block filtering goes through [`filter_block`], the single dispatch point where a
//! SIMD sibling of the scalar kernels would be selected.

use std::mem::MaybeUninit;

use crate::frame::{Frame, Plane};
use crate::mb::{MbInfo, MbMode, Mv};

/// Sub-pixel interpolation filter, chosen by the frame header's version number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterFilter {
    /// The six-tap filters of spec 18.3 (versions 0).
    SixTap,
    /// Two-tap bilinear filters (versions 1, 2, 3).
    Bilinear,
}

/// Six-tap filters indexed by eighth-pel displacement (spec 18.3), taps for offsets -2..=3.
pub const SIXTAP_FILTERS: [[i32; 6]; 8] = [
    [0, 0, 128, 0, 0, 0],
    [0, -6, 123, 12, -1, 0],
    [2, -11, 108, 36, -8, 1],
    [0, -9, 93, 50, -6, 0],
    [3, -16, 77, 77, -16, 3],
    [0, -6, 50, 93, -9, 0],
    [1, -8, 36, 108, -11, 2],
    [0, -1, 12, 123, -6, 0],
];

/// Bilinear filters indexed by eighth-pel displacement (spec 18.3), as six taps.
pub const BILINEAR_FILTERS: [[i32; 6]; 8] = [
    [0, 0, 128, 0, 0, 0],
    [0, 0, 112, 16, 0, 0],
    [0, 0, 96, 32, 0, 0],
    [0, 0, 80, 48, 0, 0],
    [0, 0, 64, 64, 0, 0],
    [0, 0, 48, 80, 0, 0],
    [0, 0, 32, 96, 0, 0],
    [0, 0, 16, 112, 0, 0],
];

/// Pixels of filter support before a sample (the six-tap reaches 2 back, 3 forward).
const BEFORE: usize = 2;
/// Pixels of filter support after the last sample of a block.
const AFTER: usize = 3;
/// Largest block edge predicted at once.
const MAX_BLOCK: usize = 16;
/// Footprint edge of the largest block.
const MAX_FOOT: usize = MAX_BLOCK + BEFORE + AFTER;
/// Row stride of a clamped footprint built with AVX2: one 32-byte store a row.
const WIDE_ROW: usize = 32;
/// A clamped footprint's buffer: `MAX_FOOT` rows of `MAX_FOOT` pixels (portable), or of
/// `WIDE_ROW` (AVX2).
const FOOT_BUF: usize = MAX_FOOT * WIDE_ROW;

impl InterFilter {
    fn taps(self, frac: usize) -> &'static [i32; 6] {
        match self {
            InterFilter::SixTap => &SIXTAP_FILTERS[frac],
            InterFilter::Bilinear => &BILINEAR_FILTERS[frac],
        }
    }
}

/// Chroma motion vector (eighth-pel chroma units) of a non-split macroblock.
///
/// libvpx derives it from the doubled luma vector `2q` as `(2q + sign) / 2` truncated toward
/// zero, which equals `q` for every integer `q`: the quarter-pel luma vector *is* the
/// eighth-pel chroma vector. With `full_pixel` (version 3) the fraction is cleared with
/// `& !7` (spec 18.1), which rounds negative components toward minus infinity.
pub fn chroma_mv_full(mv: Mv, full_pixel: bool) -> (i32, i32) {
    let mask = if full_pixel { !7 } else { !0 };
    (mv.row as i32 & mask, mv.col as i32 & mask)
}

/// Chroma motion vectors (eighth-pel chroma units) of the four chroma 4x4 blocks of a split
/// macroblock, in raster order, each as `(row, col)`.
///
/// Chroma block (i, j) averages luma subblocks {0, 1, 4, 5} + 8i + 2j. Per spec 18.1 the sum
/// `s` of the four doubled luma components becomes `(s + 4) >> 3` when `s >= 0` and
/// `-((-s + 4) >> 3)` otherwise (rounding half away from zero), then `& !7` if `full_pixel`.
pub fn chroma_mv_split(mvs: &[Mv; 16], full_pixel: bool) -> [(i32, i32); 4] {
    let mask = if full_pixel { !7 } else { !0 };
    let avg = |s: i32| {
        if s >= 0 {
            (s + 4) >> 3
        } else {
            -((-s + 4) >> 3)
        }
    };
    std::array::from_fn(|k| {
        let base = (k / 2) * 8 + (k % 2) * 2;
        let blocks = [base, base + 1, base + 4, base + 5];
        let row: i32 = blocks.iter().map(|&b| 2 * mvs[b].row as i32).sum();
        let col: i32 = blocks.iter().map(|&b| 2 * mvs[b].col as i32).sum();
        (avg(row) & mask, avg(col) & mask)
    })
}

/// Build the inter prediction of macroblock (mbx, mby) into `dst` from `reference`.
///
/// Luma: one 16x16 block with `info.mv` unless `info.y_mode == Split`, in which case each
/// 8x8 quadrant whose four subblock vectors agree is predicted at once and the others per
/// 4x4 subblock with `info.mvs[b]`. Chroma: one 8x8 block per plane, or four 4x4 blocks
/// per plane for split macroblocks, with the vectors described above.
pub fn predict_inter_mb(
    reference: &Frame,
    dst: &mut Frame,
    mbx: usize,
    mby: usize,
    info: &MbInfo,
    filter: InterFilter,
    full_pixel: bool,
) {
    let (lx, ly) = (mbx * 16, mby * 16);
    let (cx, cy) = (mbx * 8, mby * 8);
    if info.y_mode == MbMode::Split {
        let mvs = &info.mvs;
        for q in 0..4 {
            let first = (q / 2) * 8 + (q % 2) * 2;
            let quad = [first, first + 1, first + 4, first + 5];
            if quad.iter().all(|&b| mvs[b] == mvs[first]) {
                let mv = mvs[first];
                let (x, y) = (lx + (q % 2) * 8, ly + (q / 2) * 8);
                predict_block(
                    &reference.y,
                    &mut dst.y,
                    x,
                    y,
                    8,
                    2 * mv.row as i32,
                    2 * mv.col as i32,
                    filter,
                );
            } else {
                // As libvpx does: two side-by-side subblocks with the same vector are one 8x4
                // block (each output pixel depends only on its own footprint and vector).
                for b in [first, first + 4] {
                    let (x, y) = (lx + (b % 4) * 4, ly + (b / 4) * 4);
                    let pair = mvs[b] == mvs[b + 1];
                    for (k, w) in if pair { [(0, 8)].as_slice() } else { &[(0, 4), (1, 4)] } {
                        let mv = mvs[b + k];
                        let (r, c) = (2 * mv.row as i32, 2 * mv.col as i32);
                        predict_rect(&reference.y, &mut dst.y, x + 4 * k, y, *w, 4, r, c, filter);
                    }
                }
            }
        }
        // Chroma subblocks side by side with one vector are one 8x4 block, as for luma (16x8
        // partitions give two such pairs a plane).
        let cmvs = chroma_mv_split(mvs, full_pixel);
        for (r, pair) in cmvs.chunks_exact(2).enumerate() {
            let y = cy + 4 * r;
            if pair[0] == pair[1] {
                let (row, col) = pair[0];
                predict_chroma_rect(reference, dst, cx, y, 8, row, col, filter);
            } else {
                for (k, &(row, col)) in pair.iter().enumerate() {
                    predict_chroma_rect(reference, dst, cx + 4 * k, y, 4, row, col, filter);
                }
            }
        }
    } else {
        let mv = info.mv;
        predict_block(
            &reference.y,
            &mut dst.y,
            lx,
            ly,
            16,
            2 * mv.row as i32,
            2 * mv.col as i32,
            filter,
        );
        let (row, col) = chroma_mv_full(mv, full_pixel);
        predict_chroma_pair(reference, dst, cx, cy, row, col, filter);
    }
}

/// Starts loading the reference pixels that [`predict_inter_mb`] will read for a macroblock,
/// and the pixels it will write, so that the misses overlap with other work (the decoder asks
/// a macroblock ahead of reconstruction). The inter kernels' hottest instructions were the
/// first loads of each reference row: at 1280x720 a 16x16 block's 21 source rows and the
/// chroma blocks' 2 x 13 are each a stride apart, more streams than the hardware prefetcher
/// follows.
///
/// A hint only: it reads and writes no pixels, so a wrong guess (split macroblocks use their
/// last vector) costs a few instructions, not correctness.
#[derive(Debug)]
pub(crate) struct FootprintPrefetch {
    /// Per plane, the cache line of the last footprint's first row's last byte.
    last: [usize; 3],
    /// The same for the destination blocks.
    last_dst: [usize; 3],
}

impl FootprintPrefetch {
    pub(crate) fn new() -> Self {
        FootprintPrefetch { last: [usize::MAX; 3], last_dst: [usize::MAX; 3] }
    }

    /// Prefetch the footprint of macroblock (mbx, mby) predicted from `reference` with `info`.
    pub(crate) fn macroblock(&mut self, reference: &Frame, mbx: usize, mby: usize, info: &MbInfo) {
        let (row, col) = (info.mv.row as isize, info.mv.col as isize);
        // Luma vectors are quarter-pel (whole pixels `>> 2`), chroma vectors eighth-pel (`>> 3`).
        let [y, u, v] = &mut self.last;
        footprint(&reference.y, y, mbx * 16, mby * 16, 16, row >> 2, col >> 2);
        footprint(&reference.u, u, mbx * 8, mby * 8, 8, row >> 3, col >> 3);
        footprint(&reference.v, v, mbx * 8, mby * 8, 8, row >> 3, col >> 3);
    }

    /// Prefetch the pixels of macroblock (mbx, mby) of `frame`, about to be written.
    pub(crate) fn destination(&mut self, frame: &Frame, mbx: usize, mby: usize) {
        let [y, u, v] = &mut self.last_dst;
        rows(&frame.y, y, mbx * 16 + 15, mby * 16, mby * 16 + 16);
        rows(&frame.u, u, mbx * 8 + 7, mby * 8, mby * 8 + 8);
        rows(&frame.v, v, mbx * 8 + 7, mby * 8, mby * 8 + 8);
    }
}

/// Prefetch the rows of the filter footprint of the `size` x `size` block at (x, y) displaced
/// by (dy, dx) whole pixels, clamped to the plane as the clamped reads are. One hint a row, at
/// the row's last byte, and none when that byte's line is the one of the footprint before
/// (`last`): the macroblocks of a row usually share a vector, so their footprints differ by
/// 16 (8) pixels and the block before has loaded everything left of its last byte.
#[inline(always)]
fn footprint(p: &Plane, last: &mut usize, x: usize, y: usize, size: usize, dy: isize, dx: isize) {
    let (b, a) = (BEFORE as isize, AFTER as isize);
    let x1 = (x as isize + dx + size as isize + a - 1).clamp(0, p.width as isize - 1) as usize;
    let y0 = (y as isize + dy - b).clamp(0, p.height as isize - 1) as usize;
    let y1 = (y as isize + dy + size as isize + a).clamp(1, p.height as isize) as usize;
    rows(p, last, x1, y0, y1);
}

/// Prefetch column `x` of rows `y0..y1` of `p` (inside the plane), unless the first row's
/// byte is in line `last`.
#[inline(always)]
fn rows(p: &Plane, last: &mut usize, x: usize, y0: usize, y1: usize) {
    // Addresses computed without bounds checks: a prefetch does not access memory, so only
    // the hint's cost matters here.
    let mut at = p.data.as_ptr().wrapping_add(y0 * p.stride + x);
    let line = at as usize / 64;
    if line == *last {
        return;
    }
    *last = line;
    for _ in y0..y1 {
        prefetch(at);
        at = at.wrapping_add(p.stride);
    }
}

/// A prefetch hint into all cache levels; nothing where there is no such instruction.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` (SSE, baseline on x86_64) only hints the cache: it does not
    // access memory, so any address is sound (the callers' are inside a live plane).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Predict the 8x8 U and V blocks at (x, y) with the same vector: together (U and V have the
/// same size), from the planes when the filter footprint is inside them, else from clamped
/// copies of both footprints.
fn predict_chroma_pair(
    reference: &Frame,
    dst: &mut Frame,
    x: usize,
    y: usize,
    mv_row: i32,
    mv_col: i32,
    filter: InterFilter,
) {
    let sx = x as isize + (mv_col >> 3) as isize;
    let sy = y as isize + (mv_row >> 3) as isize;
    let (b, a) = (BEFORE as isize, AFTER as isize);
    let p = &reference.u;
    let inside = sx - b >= 0
        && sy - b >= 0
        && sx + 8 + a <= p.width as isize
        && sy + 8 + a <= p.height as isize;
    if inside && reference.v.stride == p.stride && dst.v.stride == dst.u.stride {
        let (fx, fy) = ((mv_col & 7) as usize, (mv_row & 7) as usize);
        let off = sy as usize * p.stride + sx as usize;
        let doff = y * dst.u.stride + x;
        let src = [&reference.u.data[..], &reference.v.data[..]];
        let stride = dst.u.stride;
        let out = [&mut dst.u.data[..], &mut dst.v.data[..]];
        filter_block_pair(src, off, p.stride, out, doff, stride, fx, fy, filter);
    } else if reference.v.width == p.width
        && reference.v.height == p.height
        && dst.v.stride == dst.u.stride
    {
        // Footprints past an edge: both clamped (into rows of the same stride, the planes
        // having the same size), then filtered together as above.
        let (fx, fy) = ((mv_col & 7) as usize, (mv_row & 7) as usize);
        let (mut bu, mut bv) = (MaybeUninit::uninit(), MaybeUninit::uninit());
        let (fu, stride) = clamped_footprint(p, sx, sy, 8, 8, &mut bu);
        let (fv, _) = clamped_footprint(&reference.v, sx, sy, 8, 8, &mut bv);
        let off = BEFORE * stride + BEFORE;
        let (doff, dstride) = (y * dst.u.stride + x, dst.u.stride);
        let out = [&mut dst.u.data[..], &mut dst.v.data[..]];
        filter_block_pair([fu, fv], off, stride, out, doff, dstride, fx, fy, filter);
    } else {
        predict_block(&reference.u, &mut dst.u, x, y, 8, mv_row, mv_col, filter);
        predict_block(&reference.v, &mut dst.v, x, y, 8, mv_row, mv_col, filter);
    }
}

/// Predict the `w` x 4 U and V blocks (`w` 8 or 4) at (x, y) with the same vector: together,
/// like [`predict_chroma_pair`], when both the vector has a fraction and the 8x4 filter
/// footprint is inside the planes (a 4x4 block is the left half of an 8x4 one, filtered into
/// a scratch block), else each plane on its own. Split macroblocks have up to eight such
/// blocks a plane: as pairs, half the calls (a quarter of the interpolation calls of a
/// 1280x720 stream were 4x4 blocks).
#[allow(clippy::too_many_arguments)]
fn predict_chroma_rect(
    reference: &Frame,
    dst: &mut Frame,
    x: usize,
    y: usize,
    w: usize,
    mv_row: i32,
    mv_col: i32,
    filter: InterFilter,
) {
    let sx = x as isize + (mv_col >> 3) as isize;
    let sy = y as isize + (mv_row >> 3) as isize;
    let (fx, fy) = ((mv_col & 7) as usize, (mv_row & 7) as usize);
    let (b, a) = (BEFORE as isize, AFTER as isize);
    let (pu, pv) = (&reference.u, &reference.v);
    let together = (fx | fy) != 0
        && sx - b >= 0
        && sy - b >= 0
        && sx + 8 + a <= pu.width as isize
        && sy + 4 + a <= pu.height as isize
        && (pv.width, pv.height, pv.stride) == (pu.width, pu.height, pu.stride)
        && dst.v.stride == dst.u.stride;
    if !together {
        predict_rect(pu, &mut dst.u, x, y, w, 4, mv_row, mv_col, filter);
        predict_rect(pv, &mut dst.v, x, y, w, 4, mv_row, mv_col, filter);
        return;
    }
    let off = sy as usize * pu.stride + sx as usize;
    let src = [&pu.data[..], &pv.data[..]];
    let (doff, dstride) = (y * dst.u.stride + x, dst.u.stride);
    if w == 8 {
        let out = [&mut dst.u.data[..], &mut dst.v.data[..]];
        filter_pair_rows::<4>(src, off, pu.stride, out, doff, dstride, fx, fy, filter);
    } else {
        let (mut tu, mut tv) = ([0u8; 8 * 4], [0u8; 8 * 4]);
        filter_pair_rows::<4>(src, off, pu.stride, [&mut tu, &mut tv], 0, 8, fx, fy, filter);
        for (t, plane) in [(&tu, &mut dst.u), (&tv, &mut dst.v)] {
            for (r, row) in t.chunks_exact(8).enumerate() {
                let d = doff + r * dstride;
                plane.data[d..d + w].copy_from_slice(&row[..w]);
            }
        }
    }
}

/// Predict the `size` x `size` block at (x, y) of `dst` from `src` displaced by the
/// eighth-pel vector (`mv_row`, `mv_col`).
#[allow(clippy::too_many_arguments)]
pub fn predict_block(
    src: &Plane,
    dst: &mut Plane,
    x: usize,
    y: usize,
    size: usize,
    mv_row: i32,
    mv_col: i32,
    filter: InterFilter,
) {
    predict_rect(src, dst, x, y, size, size, mv_row, mv_col, filter);
}

/// [`predict_block`] for a `w` x `h` block.
#[allow(clippy::too_many_arguments)]
fn predict_rect(
    src: &Plane,
    dst: &mut Plane,
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    mv_row: i32,
    mv_col: i32,
    filter: InterFilter,
) {
    debug_assert!(w <= MAX_BLOCK && h <= MAX_BLOCK);
    let sx = x as isize + (mv_col >> 3) as isize;
    let sy = y as isize + (mv_row >> 3) as isize;
    let (fx, fy) = ((mv_col & 7) as usize, (mv_row & 7) as usize);
    let doff = y * dst.stride + x;
    if fx == 0
        && fy == 0
        && sx >= 0
        && sy >= 0
        && sx + w as isize <= src.width as isize
        && sy + h as isize <= src.height as isize
    {
        // A whole-pixel vector to a block inside the plane: the prediction is the block
        // itself, which needs no filter footprint around it (a footprint reaching past an
        // edge would take the clamped path below: a zero vector at the frame's edge).
        let off = sy as usize * src.stride + sx as usize;
        // Constant sizes for the decoder's blocks: fixed moves, not calls.
        match (w, h) {
            (16, 16) => copy_block(src, off, dst, doff, 16, 16),
            (8, 8) => copy_block(src, off, dst, doff, 8, 8),
            (8, 4) => copy_block(src, off, dst, doff, 8, 4),
            (4, 4) => copy_block(src, off, dst, doff, 4, 4),
            _ => copy_block(src, off, dst, doff, w, h),
        }
        return;
    }
    let (b, a) = (BEFORE as isize, AFTER as isize);
    let inside = sx - b >= 0
        && sy - b >= 0
        && sx + w as isize + a <= src.width as isize
        && sy + h as isize + a <= src.height as isize;
    if inside {
        let off = sy as usize * src.stride + sx as usize;
        let (s, d) = (&src.data[..], &mut dst.data[..]);
        filter_rect(s, off, src.stride, d, doff, dst.stride, w, h, fx, fy, filter);
    } else {
        // Constant sizes for the block sizes the decoder uses, so that the row copies of
        // `clamped_footprint` compile to fixed moves instead of calls (this path runs for a
        // quarter of the blocks of a 640x272 stream).
        let mut buf = MaybeUninit::uninit();
        let (foot, stride) = match (w, h) {
            (16, 16) => clamped_footprint(src, sx, sy, 16, 16, &mut buf),
            (8, 8) => clamped_footprint(src, sx, sy, 8, 8, &mut buf),
            (8, 4) => clamped_footprint(src, sx, sy, 8, 4, &mut buf),
            (4, 4) => clamped_footprint(src, sx, sy, 4, 4, &mut buf),
            _ => clamped_footprint(src, sx, sy, w, h, &mut buf),
        };
        let off = BEFORE * stride + BEFORE;
        filter_rect(foot, off, stride, &mut dst.data, doff, dst.stride, w, h, fx, fy, filter);
    }
}

/// Copy the `w` x `h` block at `src.data[off..]` to `dst.data[doff..]`.
#[inline(always)]
fn copy_block(src: &Plane, off: usize, dst: &mut Plane, doff: usize, w: usize, h: usize) {
    for r in 0..h {
        let (s, d) = (off + r * src.stride, doff + r * dst.stride);
        dst.data[d..d + w].copy_from_slice(&src.data[s..s + w]);
    }
}

/// Write into `buf` the filter footprint of the `w` x `h` block whose origin is (`sx`, `sy`)
/// in `src`, with coordinates clamped to the plane; returns the bytes written and the stride
/// of their rows. Through [`clamped_rows_avx2`] where [`kernels`] chose AVX2 and the plane is
/// at least 32 pixels wide (the buffer is not zeroed first: a `memset` call per block, 0.7% of
/// a 640x272 decode's time), else [`clamped_footprint_portable`].
#[inline(always)]
fn clamped_footprint<'b>(
    src: &Plane,
    sx: isize,
    sy: isize,
    w: usize,
    h: usize,
    buf: &'b mut MaybeUninit<[u8; FOOT_BUF]>,
) -> (&'b [u8], usize) {
    #[cfg(target_arch = "x86_64")]
    if src.width >= 32 && kernels().clamped_rows_avx2 {
        let (x_first, y_first) = (sx - BEFORE as isize, sy - BEFORE as isize);
        // SAFETY: `kernels` sets `clamped_rows_avx2` only where AVX2 was detected.
        let rows = unsafe { clamped_rows_avx2(src, x_first, y_first, h + BEFORE + AFTER, buf) };
        return (rows, WIDE_ROW);
    }
    let buf = buf.write([0u8; FOOT_BUF]);
    clamped_footprint_portable(src, sx, sy, w, h, buf);
    (&buf[..], w + BEFORE + AFTER)
}

/// [`clamped_footprint`] without SIMD, the reference of [`clamped_rows_avx2`].
#[inline(always)]
fn clamped_footprint_portable(
    src: &Plane,
    sx: isize,
    sy: isize,
    w: usize,
    h: usize,
    buf: &mut [u8; FOOT_BUF],
) {
    let (b, foot) = (BEFORE as isize, w + BEFORE + AFTER);
    let x_first = sx - b;
    let width = src.width as isize;
    let x_inside = x_first >= 0 && x_first + foot as isize <= width;
    // Clamped columns in a plane at least 32 pixels wide: the footprint row is read at a
    // fixed offset `x` in a 96-byte line made of 32 copies of the left edge pixel, 32 pixels
    // of the row starting at `start` and 32 copies of the right edge pixel. Every copy has a
    // size known here, so there are no calls (slice fills and copies of run-time lengths
    // were three calls a row, 1.5% of a 640x272 decode's instructions). Footprints reaching
    // more than 32 pixels past an edge read pixels that are all the edge pixel either way.
    let start = x_first.clamp(0, (width - 32).max(0)) as usize;
    let x = (32 + (x_first - start as isize).clamp(-32, 64 - foot as isize)) as usize;
    let mut line = [0u8; 96];
    for (r, row) in buf.chunks_exact_mut(foot).take(h + BEFORE + AFTER).enumerate() {
        let yy = (sy - b + r as isize).clamp(0, src.height as isize - 1) as usize;
        let plane_row = &src.data[yy * src.stride..yy * src.stride + src.width];
        if x_inside {
            row.copy_from_slice(&plane_row[x_first as usize..x_first as usize + foot]);
        } else if width >= 32 {
            line[..32].fill(plane_row[0]);
            line[32..64].copy_from_slice(&plane_row[start..start + 32]);
            line[64..].fill(plane_row[src.width - 1]);
            row.copy_from_slice(&line[x..x + foot]);
        } else {
            // Narrow planes: the edge pixel repeated left of the plane, the row inside it,
            // the edge pixel repeated right of it.
            let left = (-x_first).clamp(0, foot as isize) as usize;
            let right = (x_first + foot as isize - width).clamp(0, foot as isize) as usize;
            let mid = foot - left - right.min(foot - left);
            let first = x_first.clamp(0, width - 1) as usize;
            row[..left].fill(plane_row[0]);
            row[left..left + mid].copy_from_slice(&plane_row[first..first + mid]);
            row[left + mid..].fill(plane_row[src.width - 1]);
        }
    }
}

/// The rows of [`clamped_footprint`], `WIDE_ROW` bytes apart: each row a shuffle of 32 plane
/// pixels by indices computed once for the block, stored with one 32-byte store. The
/// interpolation kernels' loads that follow each fall inside one such store, so the store
/// can forward its data to them; rows of `w + 5` bytes written in two overlapping stores (or
/// read from a line just written, as the portable path does) could not be forwarded, and
/// those loads waited for the stores to reach the cache (the hottest instructions of
/// `predict_rect`, then of the kernel).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn clamped_rows_avx2<'b>(
    src: &Plane,
    x_first: isize,
    y_first: isize,
    rows: usize,
    buf: &'b mut MaybeUninit<[u8; FOOT_BUF]>,
) -> &'b [u8] {
    use std::arch::x86_64::*;
    assert!(rows <= MAX_FOOT);
    debug_assert!(src.width >= 32);
    let base = buf.as_mut_ptr() as *mut u8;
    let width = src.width as isize;
    // The 32 plane pixels from `start` hold every clamped column of the footprint (as in
    // the portable path's line); output byte `j` of a row is pixel `idx[j]` of them,
    // `clamp(x_first + j, 0, width - 1) - start`, which is `clamp(d + j, 0, 31)` with
    // `d = x_first - start`: `start > 0` only when `x_first >= start` (`d >= 0`), and
    // `d + j` passes 31 only when `x_first > width - 32`, where `width - 1 - start` is 31.
    // `d` is clamped to -32..=32 first (the result is the same) so that the sums fit bytes.
    let start = x_first.clamp(0, width - 32);
    let d = (x_first - start).clamp(-32, 32) as i8;
    // SAFETY: AVX2 is enabled here; `pixels` holds 32 bytes, and each store below 32 bytes
    // of `buf`.
    unsafe {
        let iota = _mm256_setr_epi8(
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
            24, 25, 26, 27, 28, 29, 30, 31,
        );
        let sum = _mm256_add_epi8(_mm256_set1_epi8(d), iota);
        let idx = _mm256_min_epi8(
            _mm256_max_epi8(sum, _mm256_setzero_si256()),
            _mm256_set1_epi8(31),
        );
        // `pshufb` takes the low four bits of an index and gives 0 where its top bit is set:
        // each row is the OR of a shuffle of its first 16 pixels (indices below 16) and one
        // of the next 16 (the others), both broadcast to the two halves.
        let high = _mm256_cmpgt_epi8(idx, _mm256_set1_epi8(15));
        let top = _mm256_set1_epi8(-128);
        let from_lo = _mm256_or_si256(idx, _mm256_and_si256(high, top));
        let from_hi = _mm256_or_si256(idx, _mm256_andnot_si256(high, top));
        let start = start as usize;
        for r in 0..rows {
            let yy = (y_first + r as isize).clamp(0, src.height as isize - 1) as usize;
            let at = yy * src.stride + start;
            let pixels = &src.data[at..at + 32];
            let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(pixels.as_ptr() as *const _));
            let hi =
                _mm256_broadcastsi128_si256(_mm_loadu_si128(pixels.as_ptr().add(16) as *const _));
            let row =
                _mm256_or_si256(_mm256_shuffle_epi8(lo, from_lo), _mm256_shuffle_epi8(hi, from_hi));
            // Row r of `rows <= MAX_FOOT` rows lies inside the buffer's MAX_FOOT rows.
            _mm256_storeu_si256(base.add(r * WIDE_ROW) as *mut __m256i, row);
        }
        // SAFETY: the first `rows` rows, every byte of them, were written above.
        std::slice::from_raw_parts(base, rows * WIDE_ROW)
    }
}

/// Block interpolation of a `size` x `size` block: [`filter_rect`].
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn filter_block(
    src: &[u8],
    off: usize,
    stride: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    size: usize,
    fx: usize,
    fy: usize,
    filter: InterFilter,
) {
    filter_rect(src, off, stride, dst, doff, dstride, size, size, fx, fy, filter);
}

/// Dispatch point for block interpolation: `w` x `h` output at `dst[doff..]` from the
/// source whose block origin is `src[off..]`; the source must hold 2 pixels before and 3
/// after the block in both directions.
///
/// On x86_64, 16- and 8-wide blocks go to the SSE2 kernels of `inter_sse2.rs` (SSE2 is
/// baseline there): measured on a 1280x720 stream, interpolation went from 30% of the decode
/// time with the auto-vectorized [`lanes`] kernels to about 12%, a 1.22x faster decode.
/// 16x16 blocks use the AVX2 kernel of `inter_avx2.rs` when the CPU has AVX2 (chosen once,
/// see `kernel16`): a further 3% faster decode on the same stream. 8x4 blocks (pairs of
/// split subblocks with one vector) use the SSE2 kernel too, and so do 4x4 blocks, as the left
/// half of an 8x4 block where the source holds its footprint: 4.6% fewer instructions in a
/// 640x272 decode (callgrind; the machine was too loaded to time it). The rest, and other
/// architectures, use [`lanes`]. [`scalar`] is the plain reference both are tested
/// against.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn filter_rect(
    src: &[u8],
    off: usize,
    stride: usize,
    dst: &mut [u8],
    doff: usize,
    dstride: usize,
    w: usize,
    h: usize,
    fx: usize,
    fy: usize,
    filter: InterFilter,
) {
    let (hx, vy) = (filter.taps(fx), filter.taps(fy));
    match (w, h) {
        #[cfg(target_arch = "x86_64")]
        (16, 16) => (kernels().block16)(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        #[cfg(target_arch = "x86_64")]
        (8, 8) => (kernels().block8x8)(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        #[cfg(target_arch = "x86_64")]
        (8, 4) => (kernels().block8x4)(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        #[cfg(not(target_arch = "x86_64"))]
        (16, 16) => lanes::filter_block::<16>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        #[cfg(not(target_arch = "x86_64"))]
        (8, 8) => lanes::filter_block::<8>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        // A 4x4 block as the left half of an 8x4 one, when the source holds the wider
        // footprint (the right half's pixels past a row's end are read but not kept).
        #[cfg(target_arch = "x86_64")]
        (4, 4) if off + 6 * stride + 11 <= src.len() => {
            let mut tmp = [0u8; 8 * 4];
            (kernels().block8x4)(src, off, stride, &mut tmp, 0, 8, hx, vy, fx, fy);
            for (r, row) in tmp.chunks_exact(8).enumerate() {
                dst[doff + r * dstride..doff + r * dstride + 4].copy_from_slice(&row[..4]);
            }
        }
        (4, 4) => lanes::filter_block::<4>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy),
        _ => scalar::filter_block(src, off, stride, dst, doff, dstride, w, h, hx, vy, fx, fy),
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "inter_sse2.rs"]
mod sse2;

#[cfg(target_arch = "x86_64")]
#[path = "inter_avx2.rs"]
mod avx2;

/// A block interpolation kernel with the contract of [`filter_block`] for one block size.
#[cfg(target_arch = "x86_64")]
type Kernel = fn(&[u8], usize, usize, &mut [u8], usize, usize, &[i32; 6], &[i32; 6], usize, usize);

/// A kernel with the contract of [`filter_block_pair`].
#[cfg(target_arch = "x86_64")]
type PairKernel =
    fn([&[u8]; 2], usize, usize, [&mut [u8]; 2], usize, usize, &[i32; 6], &[i32; 6], usize, usize);

/// The interpolation kernels of one instruction set, by block size.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Kernels {
    block16: Kernel,
    pair8: PairKernel,
    pair8x4: PairKernel,
    block8x8: Kernel,
    block8x4: Kernel,
    /// Clamped footprints through [`clamped_rows_avx2`] (else [`clamped_footprint_portable`]).
    clamped_rows_avx2: bool,
}

/// The kernels chosen once: AVX2 when the CPU has it, else SSE2.
#[cfg(target_arch = "x86_64")]
fn kernels() -> &'static Kernels {
    static KERNELS: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    KERNELS.get_or_init(|| {
        avx2::kernels().unwrap_or(Kernels {
            block16: sse2::filter_block::<16, 16>,
            pair8: pair_of::<8>,
            pair8x4: pair_of::<4>,
            block8x8: sse2::filter_block::<8, 8>,
            block8x4: sse2::filter_block::<8, 4>,
            clamped_rows_avx2: false,
        })
    })
}

/// [`filter_block_pair`] (`R` = 8) or [`filter_pair_rows`] (`R` = 4) as two 8 x `R` blocks.
#[allow(clippy::too_many_arguments)]
fn pair_of<const R: usize>(
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
    for (s, d) in src.into_iter().zip(dst) {
        #[cfg(target_arch = "x86_64")]
        sse2::filter_block::<8, R>(s, off, stride, d, doff, dstride, hx, vy, fx, fy);
        #[cfg(not(target_arch = "x86_64"))]
        if R == 8 {
            lanes::filter_block::<8>(s, off, stride, d, doff, dstride, hx, vy, fx, fy);
        } else {
            scalar::filter_block(s, off, stride, d, doff, dstride, 8, R, hx, vy, fx, fy);
        }
    }
}

/// Dispatch point for a pair of 8x8 blocks at the same position of two planes of the same
/// layout, with the same vector (the U and V blocks of a macroblock): [`filter_block`] on
/// each. With AVX2 both go through one 16-lane kernel: measured 2.5% faster decode of a
/// 1280x720 stream, 3.5% of a CIF one.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn filter_block_pair(
    src: [&[u8]; 2],
    off: usize,
    stride: usize,
    dst: [&mut [u8]; 2],
    doff: usize,
    dstride: usize,
    fx: usize,
    fy: usize,
    filter: InterFilter,
) {
    filter_pair_rows::<8>(src, off, stride, dst, doff, dstride, fx, fy, filter);
}

/// [`filter_block_pair`] for a pair of 8 x `R` blocks, `R` 8 or 4 (the chroma blocks of split
/// macroblocks).
#[allow(clippy::too_many_arguments)]
#[inline]
fn filter_pair_rows<const R: usize>(
    src: [&[u8]; 2],
    off: usize,
    stride: usize,
    dst: [&mut [u8]; 2],
    doff: usize,
    dstride: usize,
    fx: usize,
    fy: usize,
    filter: InterFilter,
) {
    let (hx, vy) = (filter.taps(fx), filter.taps(fy));
    #[cfg(target_arch = "x86_64")]
    {
        let k = if R == 8 { kernels().pair8 } else { kernels().pair8x4 };
        k(src, off, stride, dst, doff, dstride, hx, vy, fx, fy);
    }
    #[cfg(not(target_arch = "x86_64"))]
    pair_of::<R>(src, off, stride, dst, doff, dstride, hx, vy, fx, fy);
}

/// Fixed-width interpolation kernels that the compiler can vectorize (the portable path).
///
/// Each output sample is accumulated in wrapping 16-bit arithmetic: for every VP8 filter the
/// exact sum `64 + sum(tap * pixel)` lies in -8096..=40864 (the half-pel filter's negative
/// taps sum to -32 and its positive ones to 160, the extremes of the table), a range
/// narrower than 2^16, so the wrapped value identifies it: wrapped values above 40864 are
/// negative sums, which saturate to 0.
pub mod lanes {
    /// Largest exact accumulator value (`64 + 255 * 160`).
    const MAX_SUM: u16 = 64 + 255 * 160;

    #[inline(always)]
    fn finish(acc: u16) -> u8 {
        if acc > MAX_SUM {
            0
        } else {
            (acc >> 7).min(255) as u8
        }
    }

    /// One 1-D pass: `rows` rows of `W` outputs; output (r, c) filters `src` around
    /// `src[off + r * stride + c]` with taps `step` apart.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
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
        let taps = t.map(|k| k as u16);
        for r in 0..rows {
            let base = off + r * stride - 2 * step;
            let mut acc = [64u16; W];
            for (i, &k) in taps.iter().enumerate() {
                if k == 0 {
                    continue;
                }
                let s = &src[base + i * step..base + i * step + W];
                for (a, &p) in acc.iter_mut().zip(s) {
                    *a = a.wrapping_add((p as u16).wrapping_mul(k));
                }
            }
            let out = &mut dst[doff + r * dstride..doff + r * dstride + W];
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = finish(a);
            }
        }
    }

    /// Same contract as [`super::scalar::filter_block`] for `W` x `W` blocks.
    #[allow(clippy::too_many_arguments)]
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
        match (fx, fy) {
            (0, 0) => {
                for r in 0..W {
                    let s = off + r * stride;
                    dst[doff + r * dstride..doff + r * dstride + W].copy_from_slice(&src[s..s + W]);
                }
            }
            (_, 0) => pass::<W>(src, off, stride, 1, dst, doff, dstride, W, hx),
            (0, _) => pass::<W>(src, off, stride, stride, dst, doff, dstride, W, vy),
            _ => {
                let mut tmp = [0u8; super::MAX_FOOT * super::MAX_BLOCK];
                pass::<W>(src, off - 2 * stride, stride, 1, &mut tmp, 0, W, W + 5, hx);
                pass::<W>(&tmp, 2 * W, W, W, dst, doff, dstride, W, vy);
            }
        }
    }
}

/// Plain scalar interpolation kernels.
pub mod scalar {
    /// Apply a 6-tap filter to six pixels `step` apart starting at `src[base]`, rounding and
    /// saturating to 8 bits (spec `interp`).
    #[inline(always)]
    fn tap6(src: &[u8], base: usize, step: usize, t: &[i32; 6]) -> u8 {
        let mut acc = 64;
        for (i, &k) in t.iter().enumerate() {
            acc += src[base + i * step] as i32 * k;
        }
        (acc >> 7).clamp(0, 255) as u8
    }

    /// One-dimensional pass over `rows` x `cols` samples: output (r, c) filters the source
    /// around `src[off + r * stride + c]` with taps spaced `step` apart.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn pass(
        src: &[u8],
        off: usize,
        stride: usize,
        step: usize,
        dst: &mut [u8],
        doff: usize,
        dstride: usize,
        rows: usize,
        cols: usize,
        t: &[i32; 6],
    ) {
        for r in 0..rows {
            let base = off + r * stride - 2 * step;
            let out = &mut dst[doff + r * dstride..doff + r * dstride + cols];
            for (c, px) in out.iter_mut().enumerate() {
                *px = tap6(src, base + c, step, t);
            }
        }
    }

    /// Two-pass interpolation: horizontal over the block's rows plus 2 above and 3 below,
    /// rounded to 8 bits, then vertical. A pass whose fraction is 0 is the identity filter
    /// and is skipped, which gives identical results.
    #[allow(clippy::too_many_arguments)]
    pub fn filter_block(
        src: &[u8],
        off: usize,
        stride: usize,
        dst: &mut [u8],
        doff: usize,
        dstride: usize,
        w: usize,
        h: usize,
        hx: &[i32; 6],
        vy: &[i32; 6],
        fx: usize,
        fy: usize,
    ) {
        match (fx, fy) {
            (0, 0) => {
                for r in 0..h {
                    let s = off + r * stride;
                    dst[doff + r * dstride..doff + r * dstride + w].copy_from_slice(&src[s..s + w]);
                }
            }
            (_, 0) => pass(src, off, stride, 1, dst, doff, dstride, h, w, hx),
            (0, _) => pass(src, off, stride, stride, dst, doff, dstride, h, w, vy),
            _ => {
                const T: usize = super::MAX_BLOCK;
                let mut tmp = [0u8; super::MAX_FOOT * T];
                // Rows -2 ..= h + 2 of the horizontally filtered block.
                pass(src, off - 2 * stride, stride, 1, &mut tmp, 0, T, h + 5, w, hx);
                pass(&tmp, 2 * T, T, T, dst, doff, dstride, h, w, vy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mb::MbInfo;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_frame(rng: &mut Rng, w: usize, h: usize) -> Frame {
        let mut f = Frame::new(w, h, 0);
        for p in [&mut f.y, &mut f.u, &mut f.v] {
            for v in p.data.iter_mut() {
                *v = rng.below(256) as u8;
            }
        }
        f
    }

    /// Direct per-pixel transcription of spec 18.3 (Hinterp over 9 rows then Vinterp) for
    /// one output pixel, reading the reference with clamped coordinates.
    fn spec_pixel(
        p: &Plane,
        x: isize,
        y: isize,
        mv_row: i32,
        mv_col: i32,
        filter: InterFilter,
    ) -> u8 {
        let (ox, oy) = (x + (mv_col >> 3) as isize, y + (mv_row >> 3) as isize);
        let table = match filter {
            InterFilter::SixTap => &SIXTAP_FILTERS,
            InterFilter::Bilinear => &BILINEAR_FILTERS,
        };
        let hf = &table[(mv_col & 7) as usize];
        let vf = &table[(mv_row & 7) as usize];
        let interp = |vals: [i32; 6], f: &[i32; 6]| -> i32 {
            let a: i32 = vals.iter().zip(f).map(|(v, k)| v * k).sum();
            ((a + 64) >> 7).clamp(0, 255)
        };
        // temp rows oy-2 ..= oy+3 at column ox.
        let temp: [i32; 6] = std::array::from_fn(|r| {
            let yy = oy - 2 + r as isize;
            let vals = std::array::from_fn(|i| p.at_clamped(ox - 2 + i as isize, yy) as i32);
            interp(vals, hf)
        });
        interp(temp, vf) as u8
    }

    fn mb_info(mode: MbMode, mv: Mv) -> MbInfo {
        MbInfo { y_mode: mode, mv, mvs: [mv; 16], ..Default::default() }
    }

    #[test]
    fn full_pel_vectors_copy_exactly() {
        let mut rng = Rng(7);
        let reference = random_frame(&mut rng, 64, 48);
        let mut dst = Frame::new(64, 48, 0);
        // mv (row, col) = (+2, -3) full pixels = (8, -12) quarter-pel.
        let info = mb_info(MbMode::New, Mv { row: 8, col: -12 });
        for filter in [InterFilter::SixTap, InterFilter::Bilinear] {
            predict_inter_mb(&reference, &mut dst, 1, 1, &info, filter, false);
            for r in 0..16 {
                for c in 0..16 {
                    assert_eq!(dst.y.at(16 + c, 16 + r), reference.y.at(16 + c - 3, 16 + r + 2));
                }
            }
            // Chroma vector = quarter-pel value as eighth-pel: (8, -12) -> (+1, -1.5) pixels.
            for r in 0..8 {
                for c in 0..8 {
                    let want =
                        spec_pixel(&reference.u, 8 + c as isize, 8 + r as isize, 8, -12, filter);
                    assert_eq!(dst.u.at(8 + c, 8 + r), want);
                }
            }
        }
    }

    #[test]
    fn filters_of_constant_plane_give_constant() {
        let reference = Frame::new(48, 48, 77);
        let mut dst = Frame::new(48, 48, 0);
        for filter in [InterFilter::SixTap, InterFilter::Bilinear] {
            for row in -9..9 {
                for col in -9..9 {
                    let info = mb_info(MbMode::New, Mv { row, col });
                    predict_inter_mb(&reference, &mut dst, 1, 1, &info, filter, false);
                    assert!(dst.y.data.iter().filter(|&&v| v != 0).all(|&v| v == 77));
                    assert_eq!(dst.y.at(20, 20), 77);
                    assert_eq!(dst.v.at(12, 12), 77);
                }
            }
        }
    }

    #[test]
    fn block_far_outside_reads_clamped_edge() {
        let mut rng = Rng(99);
        let reference = random_frame(&mut rng, 32, 32);
        let mut dst = Frame::new(32, 32, 0);
        // Far up-left (-200, -300 pixels, with a fraction): every pixel = top-left corner.
        let info = mb_info(MbMode::New, Mv { row: -801, col: -1202 });
        predict_inter_mb(&reference, &mut dst, 0, 0, &info, InterFilter::SixTap, false);
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(dst.y.at(c, r), reference.y.at(0, 0));
            }
        }
        // Far right, same rows: each row equals the last column of the (clamped) row.
        let info = mb_info(MbMode::New, Mv { row: 0, col: 4 * 500 });
        predict_inter_mb(&reference, &mut dst, 1, 1, &info, InterFilter::SixTap, false);
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(dst.y.at(16 + c, 16 + r), reference.y.at(31, 16 + r));
            }
        }
        for r in 0..8 {
            for c in 0..8 {
                assert_eq!(dst.u.at(8 + c, 8 + r), reference.u.at(15, 8 + r));
            }
        }
    }

    /// The AVX2 rows of a clamped footprint against the portable ones: every block size the
    /// decoder uses, columns from far left to far right of planes 32 to 70 pixels wide
    /// (inside too), rows above, inside and below.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn clamped_rows_avx2_match_portable() {
        assert!(is_x86_feature_detected!("avx2"), "this test needs AVX2");
        let mut rng = Rng(0x51ab);
        let mut compared = 0;
        for (pw, ph) in [(32, 32), (40, 24), (70, 36)] {
            let frame = random_frame(&mut rng, pw, ph);
            let p = &frame.y;
            for (w, h) in [(16, 16), (8, 8), (8, 4), (4, 4)] {
                let foot = w + BEFORE + AFTER;
                for sx in -60..pw as isize + 40 {
                    let sy = rng.below(ph as u64 + 40) as isize - 20;
                    let (mut want, mut got) = ([0u8; FOOT_BUF], MaybeUninit::uninit());
                    clamped_footprint_portable(p, sx, sy, w, h, &mut want);
                    let (x_first, y_first) = (sx - BEFORE as isize, sy - BEFORE as isize);
                    // SAFETY: AVX2 was detected above.
                    let got = unsafe { clamped_rows_avx2(p, x_first, y_first, h + 5, &mut got) };
                    assert_eq!(got.len(), (h + 5) * WIDE_ROW);
                    for r in 0..h + 5 {
                        let (a, b) = (&got[r * WIDE_ROW..][..foot], &want[r * foot..][..foot]);
                        assert_eq!(a, b, "{pw}x{ph} {w}x{h} at ({sx}, {sy}), row {r}");
                    }
                    compared += 1;
                }
            }
        }
        assert!(compared > 1000);
    }

    #[test]
    fn sixtap_and_bilinear_match_spec_formula_on_random_data() {
        let mut rng = Rng(0xdead_beef);
        let reference = random_frame(&mut rng, 64, 48);
        let mut dst = Frame::new(64, 48, 0);
        for round in 0..400 {
            let filter = if round % 2 == 0 { InterFilter::SixTap } else { InterFilter::Bilinear };
            let (mbx, mby) = (rng.below(4) as usize, rng.below(3) as usize);
            let split = round % 3 == 0;
            // Mostly small vectors (in-bounds fast path), some reaching past the edges.
            let range = if round % 4 == 0 { 200 } else { 24 };
            let mut rand_mv = || Mv {
                row: (rng.below(2 * range + 1) as i64 - range as i64) as i16,
                col: (rng.below(2 * range + 1) as i64 - range as i64) as i16,
            };
            let mut info = mb_info(if split { MbMode::Split } else { MbMode::Near }, rand_mv());
            if split {
                // Quadrant 0 shares one vector (8x8 path), the rest differ per subblock; every
                // other split round quadrant 1 has quadrant 0's vector too (a 16x8 partition's
                // top half: the chroma subblocks above are then one 8x4 block).
                let q0 = rand_mv();
                let top = if round % 2 == 0 { [0, 1, 4, 5].as_slice() } else { &[0, 1, 2, 3, 4, 5, 6, 7] };
                for b in 0..16 {
                    info.mvs[b] = if top.contains(&b) { q0 } else { rand_mv() };
                }
            }
            let full_pixel = round % 5 == 0;
            predict_inter_mb(&reference, &mut dst, mbx, mby, &info, filter, full_pixel);
            for r in 0..16 {
                for c in 0..16 {
                    let mv = if split { info.mvs[(r / 4) * 4 + c / 4] } else { info.mv };
                    let (x, y) = (mbx * 16 + c, mby * 16 + r);
                    let want = spec_pixel(
                        &reference.y,
                        x as isize,
                        y as isize,
                        2 * mv.row as i32,
                        2 * mv.col as i32,
                        filter,
                    );
                    assert_eq!(dst.y.at(x, y), want, "round {round} luma ({c},{r})");
                }
            }
            let cm = if split {
                chroma_mv_split(&info.mvs, full_pixel)
            } else {
                [chroma_mv_full(info.mv, full_pixel); 4]
            };
            for r in 0..8 {
                for c in 0..8 {
                    let (row, col) = cm[(r / 4) * 2 + c / 4];
                    let (x, y) = (mbx * 8 + c, mby * 8 + r);
                    for (rp, dp) in [(&reference.u, &dst.u), (&reference.v, &dst.v)] {
                        let want = spec_pixel(rp, x as isize, y as isize, row, col, filter);
                        assert_eq!(dp.at(x, y), want, "round {round} chroma ({c},{r})");
                    }
                }
            }
        }
    }

    #[test]
    fn dispatched_and_lane_kernels_match_scalar_reference() {
        let mut rng = Rng(31);
        let (w, h) = (40, 40);
        for round in 0..600 {
            // Random data, with every third round using only 0 and 255 to hit the extremes
            // of the accumulator range.
            let src: Vec<u8> = (0..w * h)
                .map(|_| {
                    let v = rng.below(256) as u8;
                    if round % 3 == 0 {
                        if v & 1 == 0 {
                            0
                        } else {
                            255
                        }
                    } else {
                        v
                    }
                })
                .collect();
            let filter = if round % 2 == 0 { InterFilter::SixTap } else { InterFilter::Bilinear };
            for size in [4usize, 8, 16] {
                let (fx, fy) = (rng.below(8) as usize, rng.below(8) as usize);
                let off = (2 + rng.below(10) as usize) * w + 2 + rng.below(10) as usize;
                let mut got = vec![0u8; 16 * 16];
                let mut want = vec![0u8; 16 * 16];
                filter_block(&src, off, w, &mut got, 0, 16, size, fx, fy, filter);
                let (hx, vy) = (filter.taps(fx), filter.taps(fy));
                scalar::filter_block(&src, off, w, &mut want, 0, 16, size, size, hx, vy, fx, fy);
                assert_eq!(got, want, "round {round} size {size} frac ({fx},{fy})");
                // The portable kernels (the dispatch target on other architectures).
                let mut lanes_out = vec![0u8; 16 * 16];
                let (o, d) = (&mut lanes_out, 16);
                match size {
                    16 => lanes::filter_block::<16>(&src, off, w, o, 0, d, hx, vy, fx, fy),
                    8 => lanes::filter_block::<8>(&src, off, w, o, 0, d, hx, vy, fx, fy),
                    _ => lanes::filter_block::<4>(&src, off, w, o, 0, d, hx, vy, fx, fy),
                }
                assert_eq!(lanes_out, want, "lanes: round {round} size {size} ({fx},{fy})");
                // Every x86_64 kernel, not only the one the dispatch picks on this CPU.
                #[cfg(target_arch = "x86_64")]
                {
                    let mut kernels: Vec<(&str, Kernel)> = match size {
                        16 => vec![("sse2", sse2::filter_block::<16, 16>)],
                        8 => vec![("sse2", sse2::filter_block::<8, 8>)],
                        _ => vec![],
                    };
                    match (size, avx2::kernels()) {
                        (16, Some(k)) => kernels.push(("avx2", k.block16)),
                        (8, Some(k)) => kernels.push(("avx2", k.block8x8)),
                        _ => {}
                    }
                    if size == 8 {
                        // Pairs: the same block position in a second plane (the first plane
                        // reversed, so its data differs).
                        let src2: Vec<u8> = src.iter().rev().copied().collect();
                        let mut want2 = vec![0u8; 16 * 16];
                        scalar::filter_block(
                            &src2, off, w, &mut want2, 0, 16, 8, 8, hx, vy, fx, fy,
                        );
                        let mut pairs: Vec<(&str, PairKernel)> = vec![("pair_of_8", pair_of::<8>)];
                        if let Some(k) = avx2::kernels() {
                            pairs.push(("avx2 pair", k.pair8));
                        }
                        for (name, k) in pairs {
                            let (mut o1, mut o2) = (vec![0u8; 16 * 16], vec![0u8; 16 * 16]);
                            k([&src, &src2], off, w, [&mut o1, &mut o2], 0, 16, hx, vy, fx, fy);
                            assert_eq!((&o1, &o2), (&want, &want2), "{name}: round {round}");
                        }
                    }
                    for (name, k) in kernels {
                        let mut out = vec![0u8; 16 * 16];
                        k(&src, off, w, &mut out, 0, 16, hx, vy, fx, fy);
                        assert_eq!(out, want, "{name}: round {round} size {size} ({fx},{fy})");
                    }
                }
            }
        }
    }

    /// The 8x4 and 4x4 blocks of split macroblocks: the dispatch (AVX2 or SSE2 on x86_64, 4x4
    /// as the half of an 8x4 block where the source allows) and every x86_64 8x4 kernel against the scalar reference, on random
    /// and extreme pixels, with both filters and every fraction.
    #[test]
    fn rect_8x4_and_4x4_match_scalar() {
        let mut rng = Rng(0x8a4);
        let (w, h) = (40, 40);
        for round in 0..400 {
            let src: Vec<u8> = (0..w * h)
                .map(|_| match (round % 3, rng.below(256) as u8) {
                    (0, v) => (v & 1) * 255,
                    (_, v) => v,
                })
                .collect();
            let filter = if round % 2 == 0 { InterFilter::SixTap } else { InterFilter::Bilinear };
            for bw in [8, 4] {
                let (fx, fy) = (rng.below(8) as usize, rng.below(8) as usize);
                // Anywhere the block's own footprint fits: for 4x4 blocks also at the end of
                // the source, where the 8x4 footprint does not.
                let row = 2 + rng.below(h as u64 - 8) as usize;
                let col = 2 + rng.below((w - bw - 4) as u64) as usize;
                let off = row * w + col;
                let (mut got, mut want) = (vec![7u8; 16 * 16], vec![7u8; 16 * 16]);
                filter_rect(&src, off, w, &mut got, 3, 16, bw, 4, fx, fy, filter);
                let (hx, vy) = (filter.taps(fx), filter.taps(fy));
                scalar::filter_block(&src, off, w, &mut want, 3, 16, bw, 4, hx, vy, fx, fy);
                assert_eq!(got, want, "round {round} {bw}x4 at {off} frac ({fx},{fy})");
                // The last position of the source, too.
                let end = (h - 7) * w + w - bw - 3;
                let (mut got, mut want) = (vec![7u8; 16 * 16], vec![7u8; 16 * 16]);
                filter_rect(&src, end, w, &mut got, 3, 16, bw, 4, fx, fy, filter);
                scalar::filter_block(&src, end, w, &mut want, 3, 16, bw, 4, hx, vy, fx, fy);
                assert_eq!(got, want, "round {round} {bw}x4 at the end, frac ({fx},{fy})");
                // Both x86_64 8x4 kernels, whichever the dispatch picks, at the last position
                // the 8x4 footprint allows.
                #[cfg(target_arch = "x86_64")]
                {
                    let end = (h - 7) * w + w - 8 - 3;
                    let mut want = vec![7u8; 16 * 16];
                    scalar::filter_block(&src, end, w, &mut want, 3, 16, 8, 4, hx, vy, fx, fy);
                    let mut k8x4: Vec<(&str, Kernel)> = vec![("sse2", sse2::filter_block::<8, 4>)];
                    if let Some(k) = avx2::kernels() {
                        k8x4.push(("avx2", k.block8x4));
                    }
                    for (name, k) in k8x4 {
                        let mut got = vec![7u8; 16 * 16];
                        k(&src, end, w, &mut got, 3, 16, hx, vy, fx, fy);
                        assert_eq!(got, want, "{name}: round {round} 8x4 frac ({fx},{fy})");
                    }
                    // The U+V pair kernels for 8x4 blocks: the second plane is the first
                    // reversed.
                    let src2: Vec<u8> = src.iter().rev().copied().collect();
                    let mut want2 = vec![7u8; 16 * 16];
                    scalar::filter_block(&src2, end, w, &mut want2, 3, 16, 8, 4, hx, vy, fx, fy);
                    let mut pairs: Vec<(&str, PairKernel)> = vec![("pair_of", pair_of::<4>)];
                    if let Some(k) = avx2::kernels() {
                        pairs.push(("avx2 pair", k.pair8x4));
                    }
                    for (name, k) in pairs {
                        let (mut o1, mut o2) = (vec![7u8; 16 * 16], vec![7u8; 16 * 16]);
                        k([&src, &src2], end, w, [&mut o1, &mut o2], 3, 16, hx, vy, fx, fy);
                        assert_eq!((&o1, &o2), (&want, &want2), "{name}: round {round} 8x4");
                    }
                }
            }
        }
    }

    #[test]
    fn split_chroma_mv_rounding() {
        let mut mvs = [Mv::default(); 16];
        // Block 0 <- luma 0, 1, 4, 5: rows 1, 1, 1, 0 -> doubled sum 6 -> (6 + 4) >> 3 = 1.
        // cols 3, 3, 3, 3 -> sum 24 -> 28 >> 3 = 3.
        for (b, (r, c)) in [(0, (1, 3)), (1, (1, 3)), (4, (1, 3)), (5, (0, 3))] {
            mvs[b] = Mv { row: r, col: c };
        }
        // Block 1 <- luma 2, 3, 6, 7: rows -1 x3, 0 -> sum -6 -> -((6 + 4) >> 3) = -1.
        // cols -3, -2, -2, -2 -> sum -18 -> -((18 + 4) >> 3) = -2.
        for (b, (r, c)) in [(2, (-1, -3)), (3, (-1, -2)), (6, (-1, -2)), (7, (0, -2))] {
            mvs[b] = Mv { row: r, col: c };
        }
        // Block 2 <- luma 8, 9, 12, 13: rows -1, 0, 0, 0 -> sum -2 -> -((2 + 4) >> 3) = 0.
        // cols -2, 0, 0, 0 -> sum -4 -> -((4 + 4) >> 3) = -1 (half rounds away from zero).
        mvs[8] = Mv { row: -1, col: -2 };
        // Block 3 <- luma 10, 11, 14, 15: cols 2, 0, 0, 0 -> sum 4 -> 8 >> 3 = 1;
        // rows -13 x4 -> sum -104 -> -(108 >> 3) = -13.
        mvs[10] = Mv { row: -13, col: 2 };
        mvs[11] = Mv { row: -13, col: 0 };
        mvs[14] = Mv { row: -13, col: 0 };
        mvs[15] = Mv { row: -13, col: 0 };
        assert_eq!(chroma_mv_split(&mvs, false), [(1, 3), (-1, -2), (0, -1), (-13, 1)]);
        // Full pixel: & !7 -> 1 -> 0, 3 -> 0, -1 -> -8, -2 -> -8, -13 -> -16, 1 -> 0.
        assert_eq!(chroma_mv_split(&mvs, true), [(0, 0), (-8, -8), (0, -8), (-16, 0)]);
        assert_eq!(chroma_mv_full(Mv { row: -3, col: 13 }, false), (-3, 13));
        assert_eq!(chroma_mv_full(Mv { row: -3, col: 13 }, true), (-8, 8));
    }
}
