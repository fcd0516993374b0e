//! Per-macroblock prediction records from the first partition (RFC 6386 sections 10, 11, 16, 17):
//! segment id, skip flag, intra modes (with key-frame subblock contexts), reference frame,
//! near/nearest/best motion vector search, inter modes, split MVs and MV decoding.

use crate::bool_decoder::BoolDecoder;
use crate::header::FrameHeader;
use crate::mb::{BMode, MbInfo, MbMode, Mv, RefFrame, UvMode};
use crate::state::EntropyProbs;
use crate::tables::*;

/// Frame-wide inputs to mode parsing.
pub struct ModeContext<'a> {
    pub key_frame: bool,
    pub header: &'a FrameHeader,
    pub probs: &'a EntropyProbs,
    pub mb_cols: usize,
    pub mb_rows: usize,
    /// Sign bias per `RefFrame` index (intra, last, golden, altref).
    pub sign_bias: [bool; 4],
}

/// Already-decoded neighbours of a macroblock (None outside the frame).
#[derive(Clone, Copy)]
pub struct Neighbours<'a> {
    pub above: Option<&'a MbInfo>,
    pub left: Option<&'a MbInfo>,
    pub above_left: Option<&'a MbInfo>,
}

/// The subblock mode implied by a 16x16 luma mode, for key-frame subblock contexts (spec 11.3).
pub fn implied_bmode(mode: MbMode) -> BMode {
    match mode {
        MbMode::V => BMode::Ve,
        MbMode::H => BMode::He,
        MbMode::Tm => BMode::Tm,
        _ => BMode::Dc,
    }
}

/// Parse one macroblock header. `segment_id` is the persistent map's value, replaced when the
/// frame updates the map.
pub fn parse_mb_header(
    d: &mut BoolDecoder,
    ctx: &ModeContext,
    nb: Neighbours,
    mbx: usize,
    mby: usize,
    segment_id: u8,
) -> MbInfo {
    let mut mb = MbInfo { segment_id, ..Default::default() };
    parse_mb_header_into(d, ctx, nb, mbx, mby, &mut mb);
    mb
}

/// [`parse_mb_header`] into `mb`, which holds the defaults and the persistent segment id.
///
/// The decoder parses straight into the frame's record: returned by value, the record was
/// built on the stack with narrow stores and copied out with wide loads over them, a
/// store-forwarding stall (the parser's hottest instruction in `perf annotate`).
#[inline]
pub(crate) fn parse_mb_header_into(
    d: &mut BoolDecoder,
    ctx: &ModeContext,
    nb: Neighbours,
    mbx: usize,
    mby: usize,
    mb: &mut MbInfo,
) {
    let h = ctx.header;
    if h.update_mb_segmentation_map {
        mb.segment_id = d.read_tree(&SEGMENT_TREE, &h.segment_tree_probs);
    }
    if h.mb_no_skip_coeff {
        mb.skip_coeff = d.read_bool(h.prob_skip_false);
    }
    if ctx.key_frame {
        parse_kf_intra_modes(d, nb, mb);
    } else if d.read_bool(h.prob_intra) {
        parse_inter_modes(d, ctx, nb, mbx, mby, mb);
    } else {
        parse_intra_modes(d, ctx.probs, mb);
    }
}

/// Key-frame intra modes with the fixed probabilities and subblock contexts (spec 11).
fn parse_kf_intra_modes(d: &mut BoolDecoder, nb: Neighbours, mb: &mut MbInfo) {
    mb.y_mode = MbMode::INTRA[d.read_tree(&KF_YMODE_TREE, &KF_YMODE_PROBS) as usize];
    if mb.y_mode == MbMode::BPred {
        for b in 0..16 {
            let above = if b >= 4 {
                mb.b_modes[b - 4]
            } else {
                nb.above.map_or(BMode::Dc, |a| a.b_modes[b + 12])
            };
            let left = if b & 3 != 0 {
                mb.b_modes[b - 1]
            } else {
                nb.left.map_or(BMode::Dc, |l| l.b_modes[b + 3])
            };
            let probs = &KF_BMODE_PROBS[above as usize][left as usize];
            mb.b_modes[b] = BMode::ALL[d.read_tree(&BMODE_TREE, probs) as usize];
        }
    } else {
        mb.b_modes = [implied_bmode(mb.y_mode); 16];
    }
    mb.uv_mode = UvMode::ALL[d.read_tree(&UV_MODE_TREE, &KF_UV_MODE_PROBS) as usize];
}

/// Intra modes in an inter frame: dynamic y/uv probabilities, context-free subblock modes (16.1).
fn parse_intra_modes(d: &mut BoolDecoder, probs: &EntropyProbs, mb: &mut MbInfo) {
    mb.y_mode = MbMode::INTRA[d.read_tree(&YMODE_TREE, &probs.ymode) as usize];
    if mb.y_mode == MbMode::BPred {
        for b in 0..16 {
            mb.b_modes[b] = BMode::ALL[d.read_tree(&BMODE_TREE, &BMODE_PROBS) as usize];
        }
    } else {
        mb.b_modes = [implied_bmode(mb.y_mode); 16];
    }
    mb.uv_mode = UvMode::ALL[read_chain(d, &probs.uv_mode) as usize];
}

/// Clamping bounds for motion vectors of the macroblock at (mbx, mby), in quarter pixels: the
/// vector may point at most 16 pixels beyond the frame's macroblock-aligned edges (spec 16.3).
#[derive(Clone, Copy, Debug)]
pub struct MvBounds {
    pub min_col: i32,
    pub max_col: i32,
    pub min_row: i32,
    pub max_row: i32,
}

impl MvBounds {
    pub fn new(mbx: usize, mby: usize, mb_cols: usize, mb_rows: usize) -> Self {
        let (x, y) = (mbx as i32, mby as i32);
        MvBounds {
            min_col: -(x * 16 + 16) * 4,
            max_col: ((mb_cols as i32 - 1 - x) * 16 + 16) * 4,
            min_row: -(y * 16 + 16) * 4,
            max_row: ((mb_rows as i32 - 1 - y) * 16 + 16) * 4,
        }
    }

    /// `vp8_clamp_mv` (spec 16.3).
    pub fn clamp(&self, mv: Mv) -> Mv {
        Mv {
            col: (mv.col as i32).clamp(self.min_col, self.max_col) as i16,
            row: (mv.row as i32).clamp(self.min_row, self.max_row) as i16,
        }
    }
}

/// Result of the near MV survey (spec 16.3 `vp8_find_near_mvs`), before clamping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NearMvs {
    pub best: Mv,
    pub nearest: Mv,
    pub near: Mv,
    /// Weighted census: zero, nearest, near, split.
    pub cnt: [u8; 4],
}

/// Survey the above, left and above-left macroblocks for motion vectors (spec 16.3).
///
/// The spec's vector list and census are arrays indexed by how many distinct vectors were
/// seen so far; here they are separate values, and the few cases of that index are written
/// out: as arrays on the stack, the census was built with byte stores at a computed index and
/// read back as one word, a store-forwarding stall that took a quarter of the function's
/// samples (`perf annotate`).
#[inline]
pub fn find_near_mvs(nb: Neighbours, ref_frame: RefFrame, sign_bias: &[bool; 4]) -> NearMvs {
    let zero = Mv::default();
    let (mut near1, mut near2) = (zero, zero);
    let (mut cnt0, mut cnt1, mut cnt2, mut cnt3) = (0u8, 0u8, 0u8, 0u8);
    // How many distinct vectors were seen (the spec's index into its list).
    let mut seen = 0;
    let mut last = zero;
    let bias = sign_bias[ref_frame as usize];
    for (n, weight) in [(nb.above, 2u8), (nb.left, 2), (nb.above_left, 1)] {
        let Some(n) = n else { continue };
        if n.ref_frame == RefFrame::Intra {
            continue;
        }
        if n.mv == zero {
            cnt0 += weight;
            continue;
        }
        let this = if sign_bias[n.ref_frame as usize] != bias {
            Mv { row: n.mv.row.wrapping_neg(), col: n.mv.col.wrapping_neg() }
        } else {
            n.mv
        };
        if seen > 0 && this == last {
            match seen {
                1 => cnt1 += weight,
                2 => cnt2 += weight,
                _ => cnt3 += weight,
            }
            continue;
        }
        seen += 1;
        last = this;
        match seen {
            1 => {
                near1 = this;
                cnt1 += weight;
            }
            2 => {
                near2 = this;
                cnt2 += weight;
            }
            _ => cnt3 += weight,
        }
    }
    // Three distinct MVs: merge above-left with nearest if equal.
    if cnt3 > 0 && last == near1 {
        cnt1 += 1;
    }
    let is_split = |n: Option<&MbInfo>| n.is_some_and(|n| n.y_mode == MbMode::Split) as u8;
    cnt3 = (is_split(nb.above) + is_split(nb.left)) * 2 + is_split(nb.above_left);
    if cnt2 > cnt1 {
        std::mem::swap(&mut cnt1, &mut cnt2);
        std::mem::swap(&mut near1, &mut near2);
    }
    let best = if cnt1 >= cnt0 { near1 } else { zero };
    NearMvs { best, nearest: near1, near: near2, cnt: [cnt0, cnt1, cnt2, cnt3] }
}

/// A tree that is a chain, each node's first branch a leaf (`MV_REF_TREE`, `SUB_MV_REF_TREE`,
/// `UV_MODE_TREE`, and `MV_PARTITION_TREE` with its leaves renumbered): the position of the
/// first false bool among `probs`, or `N` when all are true. [`BoolDecoder::read_tree`] loads
/// each next node, and the probability it names, from the bit just decoded, on the reader's
/// dependency chain; here each probability's position is fixed and the branches predicted.
#[inline(always)]
fn read_chain<const N: usize>(d: &mut BoolDecoder, probs: &[u8; N]) -> u8 {
    for (k, &p) in probs.iter().enumerate() {
        if !d.read_bool(p) {
            return k as u8;
        }
    }
    N as u8
}

/// `SMALL_MV_TREE` (spec 17.1), three bools written out as [`read_chain`] does for chains.
#[inline(always)]
fn read_small_mv(d: &mut BoolDecoder, p: &[u8]) -> i16 {
    let p: &[u8; 7] = p.try_into().expect("seven probabilities");
    if !d.read_bool(p[0]) {
        if !d.read_bool(p[1]) {
            d.read_bool(p[2]) as i16
        } else {
            2 + d.read_bool(p[3]) as i16
        }
    } else if !d.read_bool(p[4]) {
        4 + d.read_bool(p[5]) as i16
    } else {
        6 + d.read_bool(p[6]) as i16
    }
}

/// `read_mvcomponent` (spec 17.1).
#[inline(always)]
fn read_mv_component(d: &mut BoolDecoder, p: &[u8; 19]) -> i16 {
    const IS_SHORT: usize = 0;
    const SIGN: usize = 1;
    const SHORT: usize = 2;
    const BITS: usize = 9;
    let mut a: i16 = 0;
    if d.read_bool(p[IS_SHORT]) {
        for i in 0..3 {
            a += (d.read_bool(p[BITS + i]) as i16) << i;
        }
        for i in (4..10).rev() {
            a += (d.read_bool(p[BITS + i]) as i16) << i;
        }
        if a & 0x7FF0 == 0 || d.read_bool(p[BITS + 3]) {
            a += 8;
        }
    } else {
        a = read_small_mv(d, &p[SHORT..SHORT + 7]);
    }
    if a != 0 && d.read_bool(p[SIGN]) {
        -a
    } else {
        a
    }
}

/// `read_mv` (spec 17.2): row then column, in quarter pixels.
fn read_mv(d: &mut BoolDecoder, probs: &[[u8; 19]; 2]) -> Mv {
    let row = read_mv_component(d, &probs[0]);
    let col = read_mv_component(d, &probs[1]);
    Mv { row, col }
}

fn add_mv(a: Mv, b: Mv) -> Mv {
    Mv { row: a.row.wrapping_add(b.row), col: a.col.wrapping_add(b.col) }
}

/// `vp8_mvCont` (spec 16.4).
pub fn sub_mv_context(left: Mv, above: Mv) -> usize {
    let lez = left == Mv::default();
    let aez = above == Mv::default();
    let lea = left == above;
    if lea && lez {
        4
    } else if lea {
        3
    } else if aez {
        2
    } else if lez {
        1
    } else {
        0
    }
}

/// Reference frame, inter mode and motion vectors (spec 16.2-16.4).
fn parse_inter_modes(
    d: &mut BoolDecoder,
    ctx: &ModeContext,
    nb: Neighbours,
    mbx: usize,
    mby: usize,
    mb: &mut MbInfo,
) {
    let h = ctx.header;
    mb.ref_frame = if !d.read_bool(h.prob_last) {
        RefFrame::Last
    } else if !d.read_bool(h.prob_gf) {
        RefFrame::Golden
    } else {
        RefFrame::AltRef
    };
    mb.uv_mode = UvMode::Dc;
    let near = find_near_mvs(nb, mb.ref_frame, &ctx.sign_bias);
    let probs = [
        MODE_CONTEXTS[near.cnt[0] as usize][0],
        MODE_CONTEXTS[near.cnt[1] as usize][1],
        MODE_CONTEXTS[near.cnt[2] as usize][2],
        MODE_CONTEXTS[near.cnt[3] as usize][3],
    ];
    let bounds = MvBounds::new(mbx, mby, ctx.mb_cols, ctx.mb_rows);
    match read_chain(d, &probs) {
        0 => {
            mb.y_mode = MbMode::Zero;
            mb.mv = Mv::default();
        }
        1 => {
            mb.y_mode = MbMode::Nearest;
            mb.mv = bounds.clamp(near.nearest);
        }
        2 => {
            mb.y_mode = MbMode::Near;
            mb.mv = bounds.clamp(near.near);
        }
        3 => {
            mb.y_mode = MbMode::New;
            mb.mv = add_mv(read_mv(d, &ctx.probs.mv), bounds.clamp(near.best));
        }
        _ => {
            mb.y_mode = MbMode::Split;
            parse_split_mvs(d, ctx, nb, bounds.clamp(near.best), mb);
            mb.mv = mb.mvs[15];
            return;
        }
    }
    mb.mvs = [mb.mv; 16];
}

/// The first subblock (in raster order) of each partition of each `MV_PARTITIONS` layout.
const PARTITION_FIRSTS: [[u8; 16]; 4] = {
    let mut firsts = [[0u8; 16]; 4];
    let mut part = 0;
    while part < 4 {
        let mut b = 16;
        while b > 0 {
            b -= 1;
            firsts[part][MV_PARTITIONS[part][b] as usize] = b as u8;
        }
        part += 1;
    }
    firsts
};

/// SPLITMV: partitioning, then one sub-MV reference per partition (spec 16.4).
fn parse_split_mvs(
    d: &mut BoolDecoder,
    ctx: &ModeContext,
    nb: Neighbours,
    best: Mv,
    mb: &mut MbInfo,
) {
    // MV_PARTITION_TREE as a chain: quarters last but one, 16 subblocks first.
    let part = [3, 2, 0, 1][read_chain(d, &MV_PARTITION_PROBS) as usize];
    let map = &MV_PARTITIONS[part];
    // Partitions come in the raster order of their first subblocks, so the subblocks left of
    // and above a partition's first are in partitions already read: one vector a partition
    // here, spread over the subblocks once at the end.
    let mut vectors = [Mv::default(); 16];
    for j in 0..MV_PARTITION_COUNTS[part] {
        let k = PARTITION_FIRSTS[part][j] as usize;
        let left = if k & 3 != 0 {
            vectors[map[k - 1] as usize]
        } else {
            nb.left.map_or(Mv::default(), |l| l.mvs[k + 3])
        };
        let above = if k >= 4 {
            vectors[map[k - 4] as usize]
        } else {
            nb.above.map_or(Mv::default(), |a| a.mvs[k + 12])
        };
        let probs = &SUB_MV_REF_PROBS[sub_mv_context(left, above)];
        vectors[j] = match read_chain(d, probs) {
            0 => left,
            1 => above,
            2 => Mv::default(),
            _ => add_mv(read_mv(d, &ctx.probs.mv), best),
        };
    }
    mb.mvs = std::array::from_fn(|b| vectors[map[b] as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain and short-vector readers against the generic tree walk, over random data and
    /// probabilities: the same values, and the decoder left in the same place.
    #[test]
    fn unrolled_trees_match_tree_walk() {
        let mut seed = 0x7ee5u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        };
        let mut seen = [[false; 8]; 5];
        for _ in 0..4000 {
            let data: Vec<u8> = (0..16).map(|_| next()).collect();
            let probs: [u8; 7] = std::array::from_fn(|_| next().max(1));
            let (mut a, mut b) = (BoolDecoder::new(&data), BoolDecoder::new(&data));
            let p4: &[u8; 4] = probs[..4].try_into().unwrap();
            let p3: &[u8; 3] = probs[..3].try_into().unwrap();
            let got = [
                read_chain(&mut a, p4),
                read_chain(&mut a, p3),
                [3, 2, 0, 1][read_chain(&mut a, p3) as usize],
                read_chain(&mut a, p3),
                read_small_mv(&mut a, &probs) as u8,
            ];
            let want = [
                b.read_tree(&MV_REF_TREE, p4),
                b.read_tree(&SUB_MV_REF_TREE, p3),
                b.read_tree(&MV_PARTITION_TREE, p3),
                b.read_tree(&UV_MODE_TREE, p3),
                b.read_tree(&SMALL_MV_TREE, &probs),
            ];
            assert_eq!(got, want, "data {data:?} probs {probs:?}");
            assert_eq!(a.read_literal(16), b.read_literal(16), "decoders out of step");
            for (k, &v) in want.iter().enumerate() {
                seen[k][v as usize] = true;
            }
        }
        // Every leaf of every tree occurred.
        assert_eq!(seen.map(|s| s.iter().filter(|&&x| x).count()), [5, 4, 4, 4, 8]);
    }

    fn inter(mv: (i16, i16), r: RefFrame) -> MbInfo {
        let mv = Mv { row: mv.0, col: mv.1 };
        MbInfo { y_mode: MbMode::New, ref_frame: r, mv, mvs: [mv; 16], ..Default::default() }
    }

    #[test]
    fn near_mv_census() {
        let bias = [false; 4];
        let a = inter((4, 8), RefFrame::Last);
        let l = inter((4, 8), RefFrame::Last);
        let al = inter((0, 0), RefFrame::Last);
        let n = find_near_mvs(
            Neighbours { above: Some(&a), left: Some(&l), above_left: Some(&al) },
            RefFrame::Last,
            &bias,
        );
        assert_eq!(n.cnt, [1, 4, 0, 0]);
        assert_eq!(n.nearest, Mv { row: 4, col: 8 });
        assert_eq!(n.best, n.nearest);
        // Distinct vectors; sign bias flips golden neighbours.
        let l2 = inter((-2, 6), RefFrame::Golden);
        let bias = [false, false, true, false];
        let n = find_near_mvs(
            Neighbours { above: Some(&a), left: Some(&l2), above_left: None },
            RefFrame::Last,
            &bias,
        );
        assert_eq!(n.near, Mv { row: 2, col: -6 });
        assert_eq!(n.cnt, [0, 2, 2, 0]);
        // Nothing around: all zero.
        let n = find_near_mvs(
            Neighbours { above: None, left: None, above_left: None },
            RefFrame::Last,
            &bias,
        );
        assert_eq!(
            n,
            NearMvs {
                best: Mv::default(),
                nearest: Mv::default(),
                near: Mv::default(),
                cnt: [0; 4]
            }
        );
    }

    /// The census as the spec writes it (lists indexed by the count of distinct vectors).
    fn find_near_mvs_reference(nb: Neighbours, ref_frame: RefFrame, sign_bias: &[bool; 4]) -> NearMvs {
        let mut mvs = [Mv::default(); 4];
        let mut cnt = [0u8; 4];
        let mut idx = 0usize;
        let bias = |n: &MbInfo| {
            if sign_bias[n.ref_frame as usize] != sign_bias[ref_frame as usize] {
                Mv { row: n.mv.row.wrapping_neg(), col: n.mv.col.wrapping_neg() }
            } else {
                n.mv
            }
        };
        for (n, weight) in [(nb.above, 2u8), (nb.left, 2), (nb.above_left, 1)] {
            let Some(n) = n else { continue };
            if n.ref_frame == RefFrame::Intra {
                continue;
            }
            if n.mv == Mv::default() {
                cnt[0] += weight;
                continue;
            }
            let this = bias(n);
            if idx == 0 || this != mvs[idx] {
                idx += 1;
                mvs[idx] = this;
            }
            cnt[idx] += weight;
        }
        // Three distinct MVs: merge above-left with nearest if equal.
        if cnt[3] > 0 && mvs[idx] == mvs[1] {
            cnt[1] += 1;
        }
        let is_split = |n: Option<&MbInfo>| n.is_some_and(|n| n.y_mode == MbMode::Split) as u8;
        cnt[3] = (is_split(nb.above) + is_split(nb.left)) * 2 + is_split(nb.above_left);
        if cnt[2] > cnt[1] {
            cnt.swap(1, 2);
            mvs.swap(1, 2);
        }
        if cnt[1] >= cnt[0] {
            mvs[0] = mvs[1];
        }
        NearMvs { best: mvs[0], nearest: mvs[1], near: mvs[2], cnt }
    }

    /// Random neighbourhoods (missing, intra, zero, repeated and negated vectors, sign
    /// biases, split neighbours): the census equals the spec's list-indexed one.
    #[test]
    fn near_mvs_match_list_census() {
        let mut seed = 0x5eedu64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let pool = [(0, 0), (4, 8), (-4, -8), (2, -6), (4, 8), (-2, 6), (0, 2)];
        let modes = [MbMode::Zero, MbMode::New, MbMode::Split, MbMode::Nearest];
        let refs = [RefFrame::Intra, RefFrame::Last, RefFrame::Golden, RefFrame::AltRef];
        let mut census = std::collections::HashSet::new();
        for _ in 0..20000 {
            let mut mb = || {
                let mut m = inter(pool[next() as usize % pool.len()], refs[next() as usize % 4]);
                m.y_mode = modes[next() as usize % 4];
                m
            };
            let (a, l, al) = (mb(), mb(), mb());
            let present = next();
            let nb = Neighbours {
                above: (present & 1 != 0).then_some(&a),
                left: (present & 2 != 0).then_some(&l),
                above_left: (present & 4 != 0).then_some(&al),
            };
            let bias = [false, false, next() & 1 != 0, next() & 1 != 0];
            let r = refs[1 + next() as usize % 3];
            let want = find_near_mvs_reference(nb, r, &bias);
            assert_eq!(find_near_mvs(nb, r, &bias), want);
            census.insert(want.cnt);
        }
        assert!(census.len() > 40, "{}", census.len());
    }

    #[test]
    fn clamp_bounds() {
        let b = MvBounds::new(0, 0, 2, 2);
        assert_eq!(b.clamp(Mv { row: -1000, col: 1000 }), Mv { row: -64, col: 128 });
        assert_eq!(sub_mv_context(Mv::default(), Mv::default()), 4);
        assert_eq!(sub_mv_context(Mv { row: 1, col: 0 }, Mv::default()), 2);
    }
}
