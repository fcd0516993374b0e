//! Per-macroblock prediction records in the first partition (RFC 6386 sections 11, 16, 17),
//! the inverse of [`crate::modes::parse_mb_header`]: intra modes (key-frame subblock contexts or
//! the inter-frame tables), reference frame, inter mode with the near-MV contexts, split MVs
//! and MV components. Also the matching rate estimates.

use crate::encoder::bool_encoder::{cost_bits, tree_cost, BoolEncoder};
use crate::mb::{BMode, MbInfo, MbMode, Mv, RefFrame};
use crate::modes::{find_near_mvs, implied_bmode, sub_mv_context, MvBounds, Neighbours};
use crate::state::EntropyProbs;
use crate::tables::*;

/// The largest MV component delta (quarter pixels) the long MV form can code (10 bits).
pub const MAX_MV_DELTA: i32 = 1023;

const IS_SHORT: usize = 0;
const SIGN: usize = 1;
const SHORT: usize = 2;
const BITS: usize = 9;

/// Receives the decisions of MV component coding: `comp` 0 = row, 1 = column; `idx` indexes the
/// component's 19 probabilities.
pub trait MvSink {
    fn mv_bit(&mut self, comp: usize, idx: usize, prob: u8, bit: bool);
}

impl MvSink for BoolEncoder {
    #[inline]
    fn mv_bit(&mut self, _comp: usize, _idx: usize, prob: u8, bit: bool) {
        self.write_bool(prob, bit);
    }
}

/// Branch counts `[comp][idx][bit]` of MV coding, for probability updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MvCounts(pub [[[u32; 2]; 19]; 2]);

impl MvSink for MvCounts {
    fn mv_bit(&mut self, comp: usize, idx: usize, _prob: u8, bit: bool) {
        self.0[comp][idx][bit as usize] += 1;
    }
}

struct MvCost(u32);

impl MvSink for MvCost {
    fn mv_bit(&mut self, _comp: usize, _idx: usize, prob: u8, bit: bool) {
        self.0 += cost_bits(prob, bit);
    }
}

/// One MV component (|v| <= [`MAX_MV_DELTA`]), inverse of the spec's `read_mvcomponent`:
/// magnitudes 0..=7 use the short tree, larger ones the long bit form (bits 0-2, 9-4, then bit 3
/// only when it is not implied); the sign follows non-zero magnitudes.
pub fn code_mv_component<S: MvSink>(s: &mut S, comp: usize, p: &[u8; 19], v: i16) {
    let a = v.unsigned_abs() as u32;
    if a < 8 {
        s.mv_bit(comp, IS_SHORT, p[IS_SHORT], false);
        for (node, bit) in short_mv_path(a) {
            let idx = SHORT + (node >> 1);
            s.mv_bit(comp, idx, p[idx], bit);
        }
    } else {
        s.mv_bit(comp, IS_SHORT, p[IS_SHORT], true);
        for i in (0..3).chain((4..10).rev()) {
            s.mv_bit(comp, BITS + i, p[BITS + i], (a >> i) & 1 == 1);
        }
        if a & 0xFFF0 != 0 {
            s.mv_bit(comp, BITS + 3, p[BITS + 3], (a >> 3) & 1 == 1);
        }
    }
    if a != 0 {
        s.mv_bit(comp, SIGN, p[SIGN], v < 0);
    }
}

/// The path of magnitude `a` (0..=7) in `SMALL_MV_TREE`, a balanced three-level tree whose
/// leaves are in order: its bits, high first, at node 0, then at the left (2) or right (8)
/// subtree's root, then at that one's child.
#[inline]
fn short_mv_path(a: u32) -> [(usize, bool); 3] {
    let (b2, b1, b0) = (a & 4 != 0, a & 2 != 0, a & 1 != 0);
    let n1 = if b2 { 8 } else { 2 };
    [(0, b2), (n1, b1), (n1 + 2 + 2 * b1 as usize, b0)]
}

/// A motion vector delta: row, then column.
pub fn code_mv<S: MvSink>(s: &mut S, probs: &[[u8; 19]; 2], delta: Mv) {
    code_mv_component(s, 0, &probs[0], delta.row);
    code_mv_component(s, 1, &probs[1], delta.col);
}

/// Rate of coding the MV `delta` (from the clamped best MV) with `probs` (1/256 bit).
pub fn mv_cost(probs: &[[u8; 19]; 2], delta: Mv) -> u32 {
    let mut c = MvCost(0);
    code_mv(&mut c, probs, delta);
    c.0
}

/// Leaf of a 16x16 intra luma mode in the y mode trees (None for inter modes).
pub fn ymode_leaf(m: MbMode) -> Option<u8> {
    match m {
        MbMode::Dc => Some(0),
        MbMode::V => Some(1),
        MbMode::H => Some(2),
        MbMode::Tm => Some(3),
        MbMode::BPred => Some(4),
        _ => None,
    }
}

/// Leaf of an inter mode in `MV_REF_TREE` (None for intra modes).
pub fn mv_ref_leaf(m: MbMode) -> Option<u8> {
    match m {
        MbMode::Zero => Some(0),
        MbMode::Nearest => Some(1),
        MbMode::Near => Some(2),
        MbMode::New => Some(3),
        MbMode::Split => Some(4),
        _ => None,
    }
}

/// The record the decoder will parse for `mb`: derived fields filled in as the parser does
/// (implied subblock modes, zero MVs for intra, per-subblock MVs, the split MB's MV).
/// `segment_id` and `skip_coeff` are left as given.
pub fn as_decoded(mb: &MbInfo) -> MbInfo {
    let mut out =
        MbInfo { segment_id: mb.segment_id, skip_coeff: mb.skip_coeff, ..MbInfo::default() };
    out.y_mode = mb.y_mode;
    if mb.y_mode.is_inter() {
        out.ref_frame = mb.ref_frame;
        if mb.y_mode == MbMode::Split {
            out.mvs = mb.mvs;
            out.mv = mb.mvs[15];
        } else {
            out.mv = if mb.y_mode == MbMode::Zero { Mv::default() } else { mb.mv };
            out.mvs = [out.mv; 16];
        }
    } else {
        out.uv_mode = mb.uv_mode;
        out.b_modes =
            if mb.y_mode == MbMode::BPred { mb.b_modes } else { [implied_bmode(mb.y_mode); 16] };
    }
    out
}

/// Key-frame subblock mode contexts of subblock `b` (spec 11.3).
fn kf_bmode_context(nb: &Neighbours, mb: &MbInfo, b: usize) -> (BMode, BMode) {
    let above =
        if b >= 4 { mb.b_modes[b - 4] } else { nb.above.map_or(BMode::Dc, |a| a.b_modes[b + 12]) };
    let left = if b & 3 != 0 {
        mb.b_modes[b - 1]
    } else {
        nb.left.map_or(BMode::Dc, |l| l.b_modes[b + 3])
    };
    (above, left)
}

/// Key-frame intra modes (fixed probabilities, subblock contexts). `mb` is an intra record in
/// [`as_decoded`] form; `nb` are decoded neighbours.
pub fn write_kf_intra(e: &mut BoolEncoder, nb: &Neighbours, mb: &MbInfo) {
    let leaf = ymode_leaf(mb.y_mode).unwrap_or(0);
    e.write_tree(&KF_YMODE_TREE, &KF_YMODE_PROBS, leaf);
    if mb.y_mode == MbMode::BPred {
        for b in 0..16 {
            let (above, left) = kf_bmode_context(nb, mb, b);
            let probs = &KF_BMODE_PROBS[above as usize][left as usize];
            e.write_tree(&BMODE_TREE, probs, mb.b_modes[b] as u8);
        }
    }
    e.write_tree(&UV_MODE_TREE, &KF_UV_MODE_PROBS, mb.uv_mode as u8);
}

/// Intra modes in an inter frame (after the "intra" reference bit): dynamic y/uv probabilities,
/// context-free subblock modes.
pub fn write_intra(e: &mut BoolEncoder, probs: &EntropyProbs, mb: &MbInfo) {
    let leaf = ymode_leaf(mb.y_mode).unwrap_or(0);
    e.write_tree(&YMODE_TREE, &probs.ymode, leaf);
    if mb.y_mode == MbMode::BPred {
        for &m in &mb.b_modes {
            e.write_tree(&BMODE_TREE, &BMODE_PROBS, m as u8);
        }
    }
    e.write_tree(&UV_MODE_TREE, &probs.uv_mode, mb.uv_mode as u8);
}

/// Rate of a key-frame macroblock's intra modes (1/256 bit), with subblock contexts from `nb`.
pub fn kf_intra_cost(nb: &Neighbours, mb: &MbInfo) -> u32 {
    let mb = as_decoded(mb);
    let mut c = tree_cost(&KF_YMODE_TREE, &KF_YMODE_PROBS, ymode_leaf(mb.y_mode).unwrap_or(0));
    if mb.y_mode == MbMode::BPred {
        for b in 0..16 {
            let (above, left) = kf_bmode_context(nb, &mb, b);
            c += kf_bmode_cost(above, left, mb.b_modes[b]);
        }
    }
    c + tree_cost(&UV_MODE_TREE, &KF_UV_MODE_PROBS, mb.uv_mode as u8)
}

/// Rate of one key-frame subblock mode given its above and left subblock modes.
pub fn kf_bmode_cost(above: BMode, left: BMode, mode: BMode) -> u32 {
    tree_cost(&BMODE_TREE, &KF_BMODE_PROBS[above as usize][left as usize], mode as u8)
}

/// Rate of one subblock mode in an inter frame.
pub fn bmode_cost(mode: BMode) -> u32 {
    tree_cost(&BMODE_TREE, &BMODE_PROBS, mode as u8)
}

/// Rate of an intra macroblock's modes in an inter frame (excluding the reference frame bit).
pub fn intra_cost(probs: &EntropyProbs, mb: &MbInfo) -> u32 {
    let leaf = ymode_leaf(mb.y_mode).unwrap_or(0);
    let mut c = tree_cost(&YMODE_TREE, &probs.ymode, leaf);
    if mb.y_mode == MbMode::BPred {
        c += mb.b_modes.iter().map(|&m| bmode_cost(m)).sum::<u32>();
    }
    c + tree_cost(&UV_MODE_TREE, &probs.uv_mode, mb.uv_mode as u8)
}

/// Rate of the reference frame choice in an inter frame (the intra/inter bit included).
pub fn ref_frame_cost(prob_intra: u8, prob_last: u8, prob_gf: u8, r: RefFrame) -> u32 {
    match r {
        RefFrame::Intra => cost_bits(prob_intra, false),
        RefFrame::Last => cost_bits(prob_intra, true) + cost_bits(prob_last, false),
        RefFrame::Golden => {
            cost_bits(prob_intra, true) + cost_bits(prob_last, true) + cost_bits(prob_gf, false)
        }
        RefFrame::AltRef => {
            cost_bits(prob_intra, true) + cost_bits(prob_last, true) + cost_bits(prob_gf, true)
        }
    }
}

/// The inter mode tree probabilities for a near-MV census (spec 16.3 `vp8_mode_contexts`).
pub fn mode_probs(cnt: &[u8; 4]) -> [u8; 4] {
    std::array::from_fn(|i| MODE_CONTEXTS[cnt[i] as usize][i])
}

/// Rate of an inter mode (`MV_REF_TREE` leaf) given the near-MV census `cnt`.
pub fn mv_ref_cost(cnt: &[u8; 4], mode: MbMode) -> u32 {
    tree_cost(&MV_REF_TREE, &mode_probs(cnt), mv_ref_leaf(mode).unwrap_or(0))
}

/// How one split partition's MV is coded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubMvCode {
    /// `sub_mv_context` (0..=4) and `SUB_MV_REF_TREE` leaf (LEFT, ABOVE, ZERO, NEW).
    pub ctx: u8,
    pub leaf: u8,
    /// NEW4x4: the delta from the clamped best MV.
    pub delta: Mv,
}

/// How a SPLITMV macroblock is coded: the partitioning and one code per partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitCode {
    pub partitioning: u8,
    pub subs: [SubMvCode; 16],
    pub cost: u32,
}

/// How an inter macroblock's mode and MVs are coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterCode {
    pub mode_probs: [u8; 4],
    pub leaf: u8,
    /// NEWMV: the delta from the clamped best MV.
    pub delta: Mv,
    pub split: Option<SplitCode>,
}

fn mv_delta(mv: Mv, best: Mv) -> Result<Mv, String> {
    let row = mv.row as i32 - best.row as i32;
    let col = mv.col as i32 - best.col as i32;
    if row.abs() > MAX_MV_DELTA || col.abs() > MAX_MV_DELTA {
        return Err(format!(
            "motion vector ({}, {}) is more than {MAX_MV_DELTA} quarter pixels from the best \
             vector ({}, {})",
            mv.row, mv.col, best.row, best.col
        ));
    }
    Ok(Mv { row: row as i16, col: col as i16 })
}

/// For each partitioning, the first subblock of each partition (the rest unused).
const PARTITION_FIRSTS: [[usize; 16]; 4] = {
    let mut out = [[0; 16]; 4];
    let mut part = 0;
    while part < 4 {
        let mut b = 16;
        while b > 0 {
            b -= 1;
            out[part][MV_PARTITIONS[part][b] as usize] = b;
        }
        part += 1;
    }
    out
};

/// The fixed-probability costs of SPLITMV's codes (1/256 bit).
struct SplitCosts {
    /// Per partitioning (`MV_PARTITION_TREE` leaf).
    partitioning: [u32; 4],
    /// `[context][leaf]` of `SUB_MV_REF_TREE`: LEFT, ABOVE, ZERO, NEW.
    sub_mv_ref: [[u32; 4]; 5],
}

fn split_costs() -> &'static SplitCosts {
    static COSTS: std::sync::OnceLock<SplitCosts> = std::sync::OnceLock::new();
    COSTS.get_or_init(|| SplitCosts {
        partitioning: std::array::from_fn(|p| {
            tree_cost(&MV_PARTITION_TREE, &MV_PARTITION_PROBS, p as u8)
        }),
        sub_mv_ref: std::array::from_fn(|c| {
            std::array::from_fn(|l| tree_cost(&SUB_MV_REF_TREE, &SUB_MV_REF_PROBS[c], l as u8))
        }),
    })
}

/// Choose how to code a SPLITMV macroblock whose per-subblock MVs are `mb.mvs`: the cheapest
/// partitioning consistent with them and, per partition, the cheapest sub-MV reference that
/// reproduces its MV.
fn plan_split(
    nb: &Neighbours,
    mb: &MbInfo,
    best: Mv,
    mv_probs: &[[u8; 19]; 2],
) -> Result<SplitCode, String> {
    let mut chosen: Option<SplitCode> = None;
    let mut last_err = String::new();
    let costs = split_costs();
    // The NEW cost of each distinct vector, computed once: the partitionings code the same few
    // vectors again and again (16 times over in 4x4), and coding a vector's bits is the cost.
    // (None: too far from `best` to code.)
    let mut priced = [(Mv::default(), None::<(Mv, u32)>); 16];
    let mut n_priced = 0;
    'parts: for part in 0..4usize {
        let map = &MV_PARTITIONS[part];
        let firsts = &PARTITION_FIRSTS[part];
        if (0..16).any(|b| mb.mvs[b] != mb.mvs[firsts[map[b] as usize]]) {
            continue;
        }
        let mut code = SplitCode {
            partitioning: part as u8,
            subs: [SubMvCode::default(); 16],
            cost: costs.partitioning[part],
        };
        for (j, &k) in firsts.iter().enumerate().take(MV_PARTITION_COUNTS[part]) {
            let mv = mb.mvs[k];
            let left = if k & 3 != 0 {
                mb.mvs[k - 1]
            } else {
                nb.left.map_or(Mv::default(), |l| l.mvs[k + 3])
            };
            let above = if k >= 4 {
                mb.mvs[k - 4]
            } else {
                nb.above.map_or(Mv::default(), |a| a.mvs[k + 12])
            };
            let ctx = sub_mv_context(left, above);
            let mut best_sub: Option<(u32, SubMvCode)> = None;
            for (leaf, ok) in [(0u8, mv == left), (1, mv == above), (2, mv == Mv::default())] {
                if ok {
                    let c = costs.sub_mv_ref[ctx][leaf as usize];
                    if best_sub.is_none_or(|(bc, _)| c < bc) {
                        best_sub =
                            Some((c, SubMvCode { ctx: ctx as u8, leaf, delta: Mv::default() }));
                    }
                }
            }
            let new = match priced[..n_priced].iter().find(|(v, _)| *v == mv) {
                Some(&(_, r)) => r,
                None => {
                    let r = mv_delta(mv, best).ok().map(|d| (d, mv_cost(mv_probs, d)));
                    // Distinct vectors are at most the 16 blocks'.
                    priced[n_priced] = (mv, r);
                    n_priced += 1;
                    r
                }
            };
            match new {
                Some((delta, mv_rate)) => {
                    let c = costs.sub_mv_ref[ctx][3] + mv_rate;
                    if best_sub.is_none_or(|(bc, _)| c < bc) {
                        best_sub = Some((c, SubMvCode { ctx: ctx as u8, leaf: 3, delta }));
                    }
                }
                None => {
                    if let Err(e) = mv_delta(mv, best) {
                        last_err = e;
                    }
                }
            }
            let Some((c, sub)) = best_sub else { continue 'parts };
            code.subs[j] = sub;
            code.cost += c;
        }
        if chosen.is_none_or(|c| code.cost < c.cost) {
            chosen = Some(code);
        }
    }
    chosen.ok_or_else(|| format!("split MV cannot be coded: {last_err}"))
}

/// Decide how to code an inter macroblock (`mb` in [`as_decoded`] form) at (mbx, mby), checking
/// that its mode and MVs are what the decoder will derive from the neighbours' MVs.
#[allow(clippy::too_many_arguments)]
pub fn plan_inter(
    nb: &Neighbours,
    mb: &MbInfo,
    mbx: usize,
    mby: usize,
    mb_cols: usize,
    mb_rows: usize,
    sign_bias: &[bool; 4],
    mv_probs: &[[u8; 19]; 2],
) -> Result<InterCode, String> {
    let near = find_near_mvs(*nb, mb.ref_frame, sign_bias);
    let bounds = MvBounds::new(mbx, mby, mb_cols, mb_rows);
    let best = bounds.clamp(near.best);
    let mut code = InterCode {
        mode_probs: mode_probs(&near.cnt),
        leaf: mv_ref_leaf(mb.y_mode).ok_or("not an inter mode")?,
        delta: Mv::default(),
        split: None,
    };
    let expect = |what: &str, v: Mv| {
        if mb.mv == v {
            Ok(())
        } else {
            Err(format!(
                "{what} macroblock has MV ({}, {}) but the decoder derives ({}, {})",
                mb.mv.row, mb.mv.col, v.row, v.col
            ))
        }
    };
    match mb.y_mode {
        MbMode::Zero => {}
        MbMode::Nearest => expect("NEARESTMV", bounds.clamp(near.nearest))?,
        MbMode::Near => expect("NEARMV", bounds.clamp(near.near))?,
        MbMode::New => code.delta = mv_delta(mb.mv, best)?,
        _ => code.split = Some(plan_split(nb, mb, best, mv_probs)?),
    }
    Ok(code)
}

/// Rate of an inter macroblock's mode and MVs as [`plan_inter`] would code them (excluding the
/// reference frame bits). Errors when the decoder cannot reproduce the MVs.
#[allow(clippy::too_many_arguments)]
pub fn inter_mode_cost(
    nb: &Neighbours,
    mb: &MbInfo,
    mbx: usize,
    mby: usize,
    mb_cols: usize,
    mb_rows: usize,
    sign_bias: &[bool; 4],
    mv_probs: &[[u8; 19]; 2],
) -> Result<u32, String> {
    let mb = as_decoded(mb);
    let code = plan_inter(nb, &mb, mbx, mby, mb_cols, mb_rows, sign_bias, mv_probs)?;
    let mut c = tree_cost(&MV_REF_TREE, &code.mode_probs, code.leaf);
    match (code.leaf, code.split) {
        (3, _) => c += mv_cost(mv_probs, code.delta),
        (_, Some(s)) => c += s.cost,
        _ => {}
    }
    Ok(c)
}

/// Visit the MV deltas an inter code will send (for MV statistics).
pub fn code_inter_mvs<S: MvSink>(s: &mut S, code: &InterCode, mv_probs: &[[u8; 19]; 2]) {
    if code.leaf == 3 {
        code_mv(s, mv_probs, code.delta);
    }
    if let Some(split) = &code.split {
        for sub in &split.subs[..MV_PARTITION_COUNTS[split.partitioning as usize]] {
            if sub.leaf == 3 {
                code_mv(s, mv_probs, sub.delta);
            }
        }
    }
}

/// Write an inter macroblock's reference frame (after the "inter" bit), mode and MVs.
pub fn write_inter(
    e: &mut BoolEncoder,
    prob_last: u8,
    prob_gf: u8,
    mv_probs: &[[u8; 19]; 2],
    r: RefFrame,
    code: &InterCode,
) {
    e.write_bool(prob_last, r != RefFrame::Last);
    if r != RefFrame::Last {
        e.write_bool(prob_gf, r == RefFrame::AltRef);
    }
    e.write_tree(&MV_REF_TREE, &code.mode_probs, code.leaf);
    if code.leaf == 3 {
        code_mv(e, mv_probs, code.delta);
    }
    if let Some(split) = &code.split {
        let part = split.partitioning as usize;
        e.write_tree(&MV_PARTITION_TREE, &MV_PARTITION_PROBS, part as u8);
        for sub in &split.subs[..MV_PARTITION_COUNTS[part]] {
            e.write_tree(&SUB_MV_REF_TREE, &SUB_MV_REF_PROBS[sub.ctx as usize], sub.leaf);
            if sub.leaf == 3 {
                code_mv(e, mv_probs, sub.delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bool_decoder::BoolDecoder;

    /// The short MV paths and the split tables are the spec trees' (read by `tree_path` and
    /// by scanning the partition maps).
    #[test]
    fn short_mv_paths_and_split_tables_follow_the_trees() {
        use crate::encoder::bool_encoder::tree_path;
        for a in 0..8u32 {
            let (path, n) = tree_path(&SMALL_MV_TREE, a as u8);
            let want: Vec<(usize, bool)> =
                path[..n].iter().map(|&(i, b)| (i as usize, b)).collect();
            assert_eq!(short_mv_path(a).to_vec(), want, "{a}");
        }
        for (part, map) in MV_PARTITIONS.iter().enumerate() {
            for (j, &got) in PARTITION_FIRSTS[part].iter().enumerate() {
                let first = map.iter().position(|&p| p as usize == j).unwrap_or(0);
                assert_eq!(got, first, "{part} {j}");
            }
        }
        let c = split_costs();
        for leaf in 0..4u8 {
            assert_eq!(
                c.partitioning[leaf as usize],
                tree_cost(&MV_PARTITION_TREE, &MV_PARTITION_PROBS, leaf)
            );
            for (ctx, probs) in SUB_MV_REF_PROBS.iter().enumerate() {
                assert_eq!(
                    c.sub_mv_ref[ctx][leaf as usize],
                    tree_cost(&SUB_MV_REF_TREE, probs, leaf)
                );
            }
        }
    }

    #[test]
    fn mv_components_round_trip_through_the_parser() {
        // The parser's MV reader is reached through NEWMV; check components via a split of the
        // same coding: write then read with the decoder's tree/bit layout.
        let probs = DEFAULT_MV_PROBS;
        let values: Vec<i16> = (-1023..=1023).step_by(7).chain([0, 7, 8, 15, 16, -8]).collect();
        let mut e = BoolEncoder::new();
        for &v in &values {
            code_mv(&mut e, &probs, Mv { row: v, col: -v });
        }
        let data = e.finish();
        let mut d = BoolDecoder::new(&data);
        for &v in &values {
            for (comp, want) in [(0, v), (1, -v)] {
                let p = &probs[comp];
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
                    a = d.read_tree(&SMALL_MV_TREE, &p[SHORT..SHORT + 7]) as i16;
                }
                let got = if a != 0 && d.read_bool(p[SIGN]) { -a } else { a };
                assert_eq!(got, want);
            }
        }
        assert!(mv_cost(&probs, Mv { row: 500, col: 0 }) > mv_cost(&probs, Mv::default()));
    }
}
