//! Motion search of one rectangle of a macroblock against one reference: a full-pel diamond
//! search on a padded copy of the reference's luma (SAD plus the vector's rate), then half- and
//! quarter-pel refinement on the SSE of the decoder's own six-tap prediction.

use crate::encoder::analysis::{FrameCtx, MbCtx, RefPic, Speed};
use crate::encoder::distortion::BlockPair;
use crate::encoder::rdo::BIT;
use crate::frame::{Frame, Plane};
use crate::mb::Mv;
use crate::modes::MvBounds;
use crate::predict::inter::{predict_block, InterFilter};

/// A reference luma plane with a replicated border, for fast full-pel block matching.
pub(crate) struct Padded {
    data: Vec<u8>,
    stride: usize,
}

const PAD: usize = 48;

impl Padded {
    /// The plane with its edge pixels repeated `PAD` times on every side (`Plane::at_clamped`
    /// at every position), built a row at a time: the row's first pixel, the row, its last
    /// pixel (a pixel at a time, it was 4% of a GoodRefs inter frame's instructions).
    pub(crate) fn new(p: &Plane) -> Self {
        let stride = p.width + 2 * PAD;
        let mut data = Vec::with_capacity(stride * (p.height + 2 * PAD));
        for y in 0..p.height + 2 * PAD {
            let sy = y.saturating_sub(PAD).min(p.height - 1);
            let row = &p.data[sy * p.stride..][..p.width];
            data.resize(data.len() + PAD, row[0]);
            data.extend_from_slice(row);
            data.resize(data.len() + PAD, row[p.width - 1]);
        }
        Padded { data, stride }
    }

    /// SAD of the `w` x `h` block of `src` (row stride `sstride`) against the block whose
    /// top-left is at plane coordinates (x, y) (may be up to PAD outside the plane).
    fn sad(&self, src: &[u8], sstride: usize, x: isize, y: isize, w: usize, h: usize) -> u32 {
        let base = ((y + PAD as isize) as usize) * self.stride + (x + PAD as isize) as usize;
        BlockPair::new(src, sstride, &self.data[base..], self.stride, w, h).sad()
    }
}

/// Round a quarter-pel component to the nearest full pixel.
fn to_full(v: i16) -> i32 {
    (v as i32 + 2).div_euclid(4)
}

/// Search limits for a vector of the macroblock, in quarter pels: inside the spec's clamping
/// bounds (so every reference read stays within libvpx's extended border) and codable as a
/// difference from `best`.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    min_col: i32,
    max_col: i32,
    min_row: i32,
    max_row: i32,
}

impl Limits {
    pub(crate) fn new(b: &MvBounds, best: Mv) -> Self {
        let m = 1020;
        Limits {
            min_col: b.min_col.max(best.col as i32 - m),
            max_col: b.max_col.min(best.col as i32 + m),
            min_row: b.min_row.max(best.row as i32 - m),
            max_row: b.max_row.min(best.row as i32 + m),
        }
    }

    pub(crate) fn ok(&self, row: i32, col: i32) -> bool {
        (self.min_row..=self.max_row).contains(&row) && (self.min_col..=self.max_col).contains(&col)
    }
}

/// A rectangle of the macroblock's luma (pixels), for motion search of a partition.
#[derive(Clone, Copy)]
pub(crate) struct Rect {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) w: usize,
    pub(crate) h: usize,
}

pub(crate) const WHOLE: Rect = Rect { x: 0, y: 0, w: 16, h: 16 };

/// Motion search for one rectangle of the macroblock against `r`: full-pel diamond search
/// from the best of `starts`, then half- and quarter-pel refinement with the decoder's
/// six-tap prediction. Costs include the NEWMV rate relative to `best`. Returns the vector and
/// its prediction's SSE ([`pred_sse`], which the refinement found on the way).
#[allow(clippy::too_many_arguments)]
pub(crate) fn motion_search(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    rect: Rect,
    starts: &[Mv],
    best: Mv,
    lim: &Limits,
) -> (Mv, u64) {
    // Best searched (16, 64) once: 0.4% larger than (8, 32) on carphone, bus and bbb (the
    // first wide steps settle in worse local minima), and slower.
    let (step, range) = match fc.speed {
        // Good's 4x4 partitions start from the 8x8 vectors and only refine them (a full
        // search found 0.15% more bytes, more slowly).
        Speed::Good | Speed::GoodRefs if rect.w == 4 && rect.h == 4 => (2, 4),
        Speed::Best | Speed::Good | Speed::GoodSplit | Speed::GoodRefs => (8, 32),
        Speed::Realtime => (4, 16),
    };
    motion_search_within(fc, m, r, recon, rect, starts, best, lim, (step, range), 2)
}

/// [`motion_search`] with its full-pel diamond's first step and range (pixels) given, and
/// `subpel` sub-pel refinement steps (0 none, 1 quarter pel, 2 half then quarter pel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn motion_search_within(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    rect: Rect,
    starts: &[Mv],
    best: Mv,
    lim: &Limits,
    (mut step, range): (i32, i32),
    subpel: u8,
) -> (Mv, u64) {
    let lambda_sad = fc.lambda.sqrt();
    let (bx, by) = ((m.mbx * 16 + rect.x) as isize, (m.mby * 16 + rect.y) as isize);
    let src = &m.src.y[rect.y * 16 + rect.x..];
    let mv_bits = |row: i32, col: i32| {
        fc.mc.mv_cost(Mv { row: row as i16, col: col as i16 }, best).unwrap_or(1 << 20) as f64
            / BIT as f64
    };
    let full_cost = |dx: i32, dy: i32| -> f64 {
        if !lim.ok(dy * 4, dx * 4) {
            return f64::MAX;
        }
        let s = r.luma.sad(src, 16, bx + dx as isize, by + dy as isize, rect.w, rect.h);
        s as f64 + lambda_sad * mv_bits(dy * 4, dx * 4)
    };
    let mut c = (0i32, 0i32);
    let mut cj = full_cost(0, 0);
    for s in starts {
        let p = (to_full(s.col), to_full(s.row));
        let j = full_cost(p.0, p.1);
        if j < cj {
            c = p;
            cj = j;
        }
    }
    let origin = c;
    // Points of the descent already evaluated. Each cost is compared with the running minimum
    // of every cost evaluated so far, so a point seen before can never be a move: skipping it
    // changes nothing but the work.
    let mut seen = Visited::new(range);
    seen.test_and_set(0, 0);
    while step > 0 {
        let mut moved = false;
        let pts: [(i32, i32); 8] = [
            (step, 0),
            (-step, 0),
            (0, step),
            (0, -step),
            (step, step),
            (-step, -step),
            (step, -step),
            (-step, step),
        ];
        let n = if fc.speed == Speed::Realtime { 4 } else { 8 };
        for &(dx, dy) in &pts[..n] {
            let p = (c.0 + dx, c.1 + dy);
            if (p.0 - origin.0).abs() > range
                || (p.1 - origin.1).abs() > range
                || seen.test_and_set(p.0 - origin.0, p.1 - origin.1)
            {
                continue;
            }
            let j = full_cost(p.0, p.1);
            if j < cj {
                cj = j;
                c = p;
                moved = true;
            }
        }
        if !moved {
            step /= 2;
        }
    }
    // Sub-pixel refinement on SSE of the real prediction.
    let mut mv = (c.1 * 4, c.0 * 4);
    // The cost and the SSE (none outside the limits).
    let sub_cost = |recon: &mut Frame, row: i32, col: i32| -> (f64, Option<u64>) {
        if !lim.ok(row, col) {
            return (f64::MAX, None);
        }
        let d = pred_sse(m, r, recon, rect, Mv { row: row as i16, col: col as i16 });
        (d as f64 + fc.lambda * mv_bits(row, col), Some(d))
    };
    let (mut mj, mut md) = sub_cost(recon, mv.0, mv.1);
    let steps: &[i32] = match subpel {
        0 => &[],
        1 => &[1],
        _ => &[2, 1],
    };
    for &s in steps {
        if s == 1 && fc.speed == Speed::Realtime && mv == (c.1 * 4, c.0 * 4) {
            break;
        }
        let center = mv;
        for (dr, dc) in [(-s, 0), (s, 0), (0, -s), (0, s), (-s, -s), (-s, s), (s, -s), (s, s)] {
            let (row, col) = (center.0 + dr, center.1 + dc);
            let (j, d) = sub_cost(recon, row, col);
            if j < mj {
                (mj, md) = (j, d);
                mv = (row, col);
            }
        }
    }
    let mv = Mv { row: mv.0 as i16, col: mv.1 as i16 };
    (mv, md.unwrap_or_else(|| pred_sse(m, r, recon, rect, mv)))
}

/// A set of full-pel offsets within `range` of a search's origin (every range the searches use
/// fits: at most [`Visited::MAX_RANGE`]).
struct Visited {
    bits: [u64; Visited::WORDS],
    side: i32,
    range: i32,
}

impl Visited {
    const MAX_RANGE: i32 = 32;
    const WORDS: usize = ((2 * Self::MAX_RANGE + 1) * (2 * Self::MAX_RANGE + 1)) as usize / 64 + 1;

    fn new(range: i32) -> Self {
        assert!((0..=Self::MAX_RANGE).contains(&range), "search range {range}");
        Visited { bits: [0; Self::WORDS], side: 2 * range + 1, range }
    }

    /// Whether offset (dx, dy) (each within the range) was in the set; it is afterwards.
    fn test_and_set(&mut self, dx: i32, dy: i32) -> bool {
        let i = ((dy + self.range) * self.side + dx + self.range) as usize;
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was = self.bits[w] & b != 0;
        self.bits[w] |= b;
        was
    }
}

/// Prediction blocks covering a rectangle: (x, y, size) in pixels within the macroblock.
pub(crate) fn rect_blocks(r: Rect) -> impl Iterator<Item = (usize, usize, usize)> {
    let size = if r.w.is_multiple_of(8) && r.h.is_multiple_of(8) { 8 } else { 4 };
    let size = if r.w == 16 && r.h == 16 { 16 } else { size };
    (0..r.h)
        .step_by(size)
        .flat_map(move |y| (0..r.w).step_by(size).map(move |x| (r.x + x, r.y + y, size)))
}

/// SSE of the luma prediction of rectangle `rect` from `r` displaced by `mv` (quarter pels),
/// predicted into `recon` with the decoder's six-tap filter.
pub(crate) fn pred_sse(m: &MbCtx, r: &RefPic, recon: &mut Frame, rect: Rect, mv: Mv) -> u64 {
    let mut d = 0u64;
    for (ox, oy, size) in rect_blocks(rect) {
        let (x, y) = (m.mbx * 16 + ox, m.mby * 16 + oy);
        let (row, col) = (2 * mv.row as i32, 2 * mv.col as i32);
        predict_block(&r.frame.y, &mut recon.y, x, y, size, row, col, InterFilter::SixTap);
        let (stride, o) = (recon.y.stride, y * recon.y.stride + x);
        let pair =
            BlockPair::new(&recon.y.data[o..], stride, &m.src.y[oy * 16 + ox..], 16, size, size);
        d += pair.sse() as u64;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset of a range has a bit of its own: each is new once, then seen.
    #[test]
    fn visited_holds_each_offset_of_its_range_apart() {
        for range in [0, 1, 4, 16, Visited::MAX_RANGE] {
            let mut seen = Visited::new(range);
            let offsets: Vec<(i32, i32)> =
                (-range..=range).flat_map(|y| (-range..=range).map(move |x| (x, y))).collect();
            for &(x, y) in &offsets {
                assert!(!seen.test_and_set(x, y), "({x}, {y}) of range {range} seen too early");
            }
            for &(x, y) in &offsets {
                assert!(seen.test_and_set(x, y), "({x}, {y}) of range {range} forgotten");
            }
        }
    }

    /// The padded copy is the plane read with clamped coordinates, everywhere (a plane whose
    /// stride exceeds its width, so the rows' ends are not the next rows' starts).
    #[test]
    fn padded_is_the_clamped_plane() {
        let (width, height, stride) = (24, 7, 29);
        let data = (0..stride * height).map(|i| (i * 37 % 251) as u8).collect();
        let p = Plane { width, height, stride, data };
        let padded = Padded::new(&p);
        assert_eq!(padded.stride, width + 2 * PAD);
        assert_eq!(padded.data.len(), padded.stride * (height + 2 * PAD));
        for (y, row) in padded.data.chunks_exact(padded.stride).enumerate() {
            for (x, &v) in row.iter().enumerate() {
                let at = p.at_clamped(x as isize - PAD as isize, y as isize - PAD as isize);
                assert_eq!(v, at, "({x}, {y})");
            }
        }
    }
}
