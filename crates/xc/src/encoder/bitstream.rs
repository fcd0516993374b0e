//! Writing a whole VP8 frame (RFC 6386 sections 9, 19): the uncompressed chunk, the frame
//! header and per-macroblock modes in the first partition, and the DCT tokens in 1, 2, 4 or 8
//! partitions. This is the inverse of [`crate::decoder::decode_frame`]'s parsing.
//!
//! Probabilities are chosen from the frame's own statistics before any bit is written: the
//! writer first plans every macroblock's mode and MV coding and counts every token and MV
//! branch, then sends each coefficient and MV probability update whose saving on this frame
//! exceeds its own cost, and derives `prob_skip_false`, `prob_intra`, `prob_last`, `prob_gf`
//! and the segment map tree probabilities from the counts.

use std::fmt;

use crate::encoder::bool_encoder::{
    cost_bits, cost_counts, prob_from_counts, tree_path, BoolEncoder,
};
use crate::encoder::modes::{
    as_decoded, code_inter_mvs, plan_inter, write_inter, write_intra, write_kf_intra, ymode_leaf,
    InterCode, MvCounts,
};
use crate::encoder::tokens::{code_or_skip_mb, TokenCounts, TokenSink, TokenWriter, MAX_LEVEL};
use crate::encoder::{FrameDecisions, MbLevels};
use crate::header::FrameHeader;
use crate::mb::{MbInfo, MbMode, RefFrame};
use crate::modes::Neighbours;
use crate::state::{DecoderState, EntropyProbs, LfAdjust};
use crate::tables::{
    CoeffProbs, COEFF_UPDATE_PROBS, MV_UPDATE_PROBS, SEGMENT_TREE, UV_MODE_TREE, YMODE_TREE,
};
use crate::tokens::{NzContext, Y2_BLOCK};

/// Why a [`FrameDecisions`] could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A header field is out of range or inconsistent with the state.
    Header(String),
    /// A macroblock's record cannot be coded as given.
    Macroblock { index: usize, reason: String },
    /// A partition exceeds what the frame format can describe.
    TooLarge(String),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Header(m) => write!(f, "cannot write frame header: {m}"),
            EncodeError::Macroblock { index, reason } => {
                write!(f, "cannot write macroblock {index}: {reason}")
            }
            EncodeError::TooLarge(m) => write!(f, "frame too large: {m}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The probabilities in force at the start of a frame, before its updates: the state's, or
/// the defaults on a key frame (which resets them).
pub fn base_probs(state: &DecoderState, key_frame: bool) -> EntropyProbs {
    if key_frame {
        EntropyProbs::default()
    } else {
        state.probs.clone()
    }
}

/// Which probability updates the writer may send (all by default; turning them off is for
/// measurements and tests: the frame then codes with the probabilities in force).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    pub coeff_prob_updates: bool,
    pub mv_prob_updates: bool,
    pub mode_prob_updates: bool,
}

impl WriteOptions {
    /// All probability updates allowed (`true`) or none.
    pub fn prob_updates(on: bool) -> Self {
        WriteOptions { coeff_prob_updates: on, mv_prob_updates: on, mode_prob_updates: on }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { coeff_prob_updates: true, mv_prob_updates: true, mode_prob_updates: true }
    }
}

/// Write one frame. `state` is the decoder state the frame will be decoded from.
pub fn write_frame(state: &DecoderState, d: &FrameDecisions) -> Result<Vec<u8>, EncodeError> {
    write_frame_with(state, d, &WriteOptions::default())
}

/// Write one frame; with `fixed_probs` no persistent probability (coefficient, MV, intra mode)
/// is updated: the frame is coded with the probabilities in force when it starts.
pub fn write_frame_opts(
    state: &DecoderState,
    d: &FrameDecisions,
    fixed_probs: bool,
) -> Result<Vec<u8>, EncodeError> {
    write_frame_with(state, d, &WriteOptions::prob_updates(!fixed_probs))
}

/// [`write_frame`] with a choice of which probability updates may be sent.
pub fn write_frame_with(
    state: &DecoderState,
    d: &FrameDecisions,
    opts: &WriteOptions,
) -> Result<Vec<u8>, EncodeError> {
    write_frame_coded(state, d, opts).map(|w| w.data)
}

/// A written frame and the persistent probabilities it was coded with.
#[derive(Clone, Debug)]
pub struct WrittenFrame {
    pub data: Vec<u8>,
    /// Coefficient, MV and intra mode probabilities after this frame's updates: what the
    /// decoder's state holds after the header (before a `refresh_entropy_probs` of 0 restores
    /// the entering ones). The encoder builds the next state from them instead of decoding.
    pub probs: EntropyProbs,
}

/// [`write_frame_with`], also returning the probabilities the frame was coded with.
pub fn write_frame_coded(
    state: &DecoderState,
    d: &FrameDecisions,
    opts: &WriteOptions,
) -> Result<WrittenFrame, EncodeError> {
    validate_header(state, d)?;
    let h = &d.header;
    let key = d.key_frame;
    let (cols, rows) = ((d.width as usize).div_ceil(16), (d.height as usize).div_ceil(16));
    let n = cols * rows;
    if d.mbs.len() != n || d.levels.len() != n {
        return Err(EncodeError::Header(format!(
            "{}x{} needs {n} macroblocks, got {} records and {} level sets",
            d.width,
            d.height,
            d.mbs.len(),
            d.levels.len()
        )));
    }
    let map_update = d.segmentation.enabled && h.update_mb_segmentation_map;
    let sign_bias =
        if key { [false; 4] } else { [false, false, h.sign_bias_golden, h.sign_bias_alternate] };
    let base = base_probs(state, key);

    // What the decoder will parse, and how each inter macroblock's mode and MVs are coded.
    let mut mbs = Vec::with_capacity(n);
    for (i, (mb, lv)) in d.mbs.iter().zip(&d.levels).enumerate() {
        validate_mb(mb, lv, key, map_update).map_err(|reason| mb_err(i, reason))?;
        let mut m = as_decoded(mb);
        m.segment_id = if map_update {
            mb.segment_id
        } else if key {
            0
        } else {
            state.segment_map.get(i).copied().unwrap_or(0)
        };
        m.skip_coeff = h.mb_no_skip_coeff && lv.is_zero();
        mbs.push(m);
    }
    let mut codes: Vec<Option<InterCode>> = Vec::with_capacity(n);
    let mut mv_counts = MvCounts::default();
    for i in 0..n {
        let (mbx, mby) = (i % cols, i / cols);
        if !mbs[i].y_mode.is_inter() {
            codes.push(None);
            continue;
        }
        let nb = neighbours(&mbs, cols, mbx, mby);
        let code = plan_inter(&nb, &mbs[i], mbx, mby, cols, rows, &sign_bias, &base.mv)
            .map_err(|r| mb_err(i, r))?;
        code_inter_mvs(&mut mv_counts, &code, &base.mv);
        codes.push(Some(code));
    }

    // Probabilities from the frame's statistics.
    let mut probs = base.clone();
    if opts.coeff_prob_updates {
        let mut token_counts = TokenCounts::default();
        walk_tokens(&mbs, &d.levels, cols, std::slice::from_mut(&mut token_counts));
        probs.coeff = choose_coeff_probs(&base.coeff, &token_counts);
    }
    let hp = choose_frame_probs(&mbs, h, d.segmentation.enabled);
    if !key && opts.mv_prob_updates {
        probs.mv = choose_mv_probs(&base.mv, &mv_counts);
    }
    if !key && opts.mode_prob_updates {
        (probs.ymode, probs.uv_mode) = choose_intra_mode_probs(&base, &mbs);
    }

    // First partition: header, then the macroblock records.
    let mut e = BoolEncoder::with_capacity(256 + n * 4);
    write_header(&mut e, state, d, &hp, &base, &probs);
    for i in 0..n {
        let (mbx, mby) = (i % cols, i / cols);
        let mb = &mbs[i];
        if map_update {
            e.write_tree(&SEGMENT_TREE, &hp.segment_tree_probs, mb.segment_id);
        }
        if h.mb_no_skip_coeff {
            e.write_bool(hp.prob_skip_false, mb.skip_coeff);
        }
        let nb = neighbours(&mbs, cols, mbx, mby);
        if key {
            write_kf_intra(&mut e, &nb, mb);
        } else if let Some(code) = &codes[i] {
            e.write_bool(hp.prob_intra, true);
            write_inter(&mut e, hp.prob_last, hp.prob_gf, &probs.mv, mb.ref_frame, code);
        } else {
            e.write_bool(hp.prob_intra, false);
            write_intra(&mut e, &probs, mb);
        }
    }
    let first = e.finish();

    // Token partitions, by macroblock row.
    let count = 1usize << h.log2_nbr_of_dct_partitions;
    let mut parts: Vec<BoolEncoder> =
        (0..count).map(|_| BoolEncoder::with_capacity(4096)).collect();
    let mut writers: Vec<TokenWriter> =
        parts.iter_mut().map(|enc| TokenWriter { enc, probs: &probs.coeff }).collect();
    walk_tokens(&mbs, &d.levels, cols, &mut writers);
    drop(writers);
    let parts: Vec<Vec<u8>> = parts.into_iter().map(BoolEncoder::finish).collect();
    Ok(WrittenFrame { data: assemble(d, &first, &parts)?, probs })
}

fn mb_err(index: usize, reason: impl Into<String>) -> EncodeError {
    EncodeError::Macroblock { index, reason: reason.into() }
}

fn neighbours(mbs: &[MbInfo], cols: usize, mbx: usize, mby: usize) -> Neighbours<'_> {
    let i = mby * cols + mbx;
    Neighbours {
        above: (mby > 0).then(|| &mbs[i - cols]),
        left: (mbx > 0).then(|| &mbs[i - 1]),
        above_left: (mby > 0 && mbx > 0).then(|| &mbs[i - cols - 1]),
    }
}

fn check_range(what: &str, v: i32, lo: i32, hi: i32) -> Result<(), EncodeError> {
    if v < lo || v > hi {
        return Err(EncodeError::Header(format!("{what} = {v} is outside {lo}..={hi}")));
    }
    Ok(())
}

fn validate_header(state: &DecoderState, d: &FrameDecisions) -> Result<(), EncodeError> {
    let h = &d.header;
    check_range("version", d.version as i32, 0, 3)?;
    if d.key_frame {
        check_range("width", d.width as i32, 1, 0x3FFF)?;
        check_range("height", d.height as i32, 1, 0x3FFF)?;
        check_range("color_space", h.color_space as i32, 0, 1)?;
        check_range("clamping_type", h.clamping_type as i32, 0, 1)?;
    } else {
        if state.last.is_none() || state.golden.is_none() || state.altref.is_none() {
            return Err(EncodeError::Header("inter frame for a state without references".into()));
        }
        if (d.width, d.height) != (state.width, state.height) {
            return Err(EncodeError::Header(format!(
                "inter frame size {}x{} differs from the state's {}x{}",
                d.width, d.height, state.width, state.height
            )));
        }
        check_range("copy_buffer_to_golden", h.copy_buffer_to_golden as i32, 0, 2)?;
        check_range("copy_buffer_to_alternate", h.copy_buffer_to_alternate as i32, 0, 2)?;
    }
    check_range("loop_filter_level", h.loop_filter_level as i32, 0, 63)?;
    check_range("sharpness_level", h.sharpness_level as i32, 0, 7)?;
    check_range("log2_nbr_of_dct_partitions", h.log2_nbr_of_dct_partitions as i32, 0, 3)?;
    let q = &h.quant;
    check_range("y_ac_qi", q.y_ac_qi as i32, 0, 127)?;
    for (name, v) in [
        ("y_dc_delta", q.y_dc_delta),
        ("y2_dc_delta", q.y2_dc_delta),
        ("y2_ac_delta", q.y2_ac_delta),
        ("uv_dc_delta", q.uv_dc_delta),
        ("uv_ac_delta", q.uv_ac_delta),
    ] {
        check_range(name, v as i32, -15, 15)?;
    }
    if d.segmentation.enabled && h.update_segment_feature_data {
        for &v in &d.segmentation.quant {
            check_range("segment quantizer value", v as i32, -127, 127)?;
        }
        for &v in &d.segmentation.lf {
            check_range("segment loop filter value", v as i32, -63, 63)?;
        }
    }
    if d.lf_adjust.enabled {
        for &v in d.lf_adjust.ref_deltas.iter().chain(&d.lf_adjust.mode_deltas) {
            check_range("loop filter delta", v as i32, -63, 63)?;
        }
    }
    Ok(())
}

/// Check what the writer cannot code (or would code differently from what is asked).
fn validate_mb(mb: &MbInfo, lv: &MbLevels, key: bool, map_update: bool) -> Result<(), String> {
    if map_update && mb.segment_id > 3 {
        return Err(format!("segment id {} is not 0..=3", mb.segment_id));
    }
    let inter = mb.y_mode.is_inter();
    if key && inter {
        return Err(format!("inter mode {:?} in a key frame", mb.y_mode));
    }
    if inter == (mb.ref_frame == RefFrame::Intra) {
        return Err(format!("mode {:?} with reference {:?}", mb.y_mode, mb.ref_frame));
    }
    let has_y2 = mb.y_mode != MbMode::BPred && mb.y_mode != MbMode::Split;
    // One branch-free maximum over the 400 levels (the compiler vectorizes it; a search with
    // an early exit per level was 7% of a 720p rebase's instructions), then the search only
    // to name the offender.
    let largest = lv.blocks.as_flattened().iter().fold(0, |m, &v| m.max(v.unsigned_abs()));
    if largest as i32 > MAX_LEVEL {
        for (b, blk) in lv.blocks.iter().enumerate() {
            if let Some(v) = blk.iter().find(|&&v| (v as i32).abs() > MAX_LEVEL) {
                return Err(format!("level {v} in block {b} exceeds {MAX_LEVEL}"));
            }
        }
    }
    if has_y2 {
        if let Some(b) = (0..16).find(|&b| lv.blocks[b][0] != 0) {
            return Err(format!("luma block {b} has a DC level but the macroblock has Y2"));
        }
    } else if lv.blocks[Y2_BLOCK].iter().any(|&v| v != 0) {
        return Err(format!("Y2 levels in a {:?} macroblock (it has no Y2 block)", mb.y_mode));
    }
    Ok(())
}

/// Code every macroblock's tokens in raster order, row `r` into `sinks[r % sinks.len()]`, with
/// the above/left contexts as the decoder keeps them (contexts span partitions).
fn walk_tokens<S: TokenSink>(mbs: &[MbInfo], levels: &[MbLevels], cols: usize, sinks: &mut [S]) {
    let mut above: Vec<NzContext> = vec![[0; 9]; cols];
    for (row, (mrow, lrow)) in mbs.chunks(cols).zip(levels.chunks(cols)).enumerate() {
        let s = &mut sinks[row % sinks.len()];
        let mut left: NzContext = [0; 9];
        for ((mb, lv), a) in mrow.iter().zip(lrow).zip(above.iter_mut()) {
            let has_y2 = mb.y_mode != MbMode::BPred && mb.y_mode != MbMode::Split;
            code_or_skip_mb(s, a, &mut left, has_y2, mb.skip_coeff, lv);
        }
    }
}

/// Whether replacing `old` by `new` for a branch seen `n0`/`n1` times pays for an update that
/// costs `value_bits` bits plus its flag (coded with `update_prob`).
fn update_pays(old: u8, new: u8, n: [u32; 2], update_prob: u8, value_bits: u32) -> bool {
    if old == new || n[0] + n[1] == 0 {
        return false;
    }
    let keep = cost_counts(old, n[0], n[1]) + cost_bits(update_prob, false) as u64;
    let change = cost_counts(new, n[0], n[1])
        + cost_bits(update_prob, true) as u64
        + value_bits as u64 * 256;
    change < keep
}

/// Coefficient probabilities for the frame: each updated when that saves bits (spec 13.4).
fn choose_coeff_probs(base: &CoeffProbs, counts: &TokenCounts) -> CoeffProbs {
    let mut out = *base;
    for (i, plane) in out.iter_mut().enumerate() {
        for (j, band) in plane.iter_mut().enumerate() {
            for (k, ctx) in band.iter_mut().enumerate() {
                for (l, p) in ctx.iter_mut().enumerate() {
                    let n = counts.0[i][j][k][l];
                    let new = prob_from_counts(n[0], n[1]);
                    if update_pays(*p, new, n, COEFF_UPDATE_PROBS[i][j][k][l], 8) {
                        *p = new;
                    }
                }
            }
        }
    }
    out
}

/// The probability a 7-bit MV probability update `x` stands for (spec 17.2).
fn mv_prob_value(x: u8) -> u8 {
    if x == 0 {
        1
    } else {
        x << 1
    }
}

/// MV probabilities for the frame: each updated (to a 7-bit value) when that saves bits.
#[allow(clippy::needless_range_loop)] // three tables indexed in parallel
fn choose_mv_probs(base: &[[u8; 19]; 2], counts: &MvCounts) -> [[u8; 19]; 2] {
    let mut out = *base;
    for c in 0..2 {
        for i in 0..19 {
            let n = counts.0[c][i];
            let ideal = prob_from_counts(n[0], n[1]);
            let best = [ideal >> 1, (ideal >> 1).saturating_add(1).min(127)]
                .into_iter()
                .map(mv_prob_value)
                .min_by_key(|&p| cost_counts(p, n[0], n[1]))
                .unwrap_or(base[c][i]);
            if update_pays(base[c][i], best, n, MV_UPDATE_PROBS[c][i], 7) {
                out[c][i] = best;
            }
        }
    }
    out
}

/// Per-node branch counts of a tree from leaf counts.
fn tree_node_counts<const N: usize>(tree: &[i8], leaf_counts: &[u32]) -> [[u32; 2]; N] {
    let mut out = [[0; 2]; N];
    for (leaf, &c) in leaf_counts.iter().enumerate() {
        let (path, n) = tree_path(tree, leaf as u8);
        for &(node, bit) in &path[..n] {
            out[node as usize >> 1][bit as usize] += c;
        }
    }
    out
}

/// Inter-frame y and uv mode probabilities: a full new set of either is sent when it saves
/// more than its 8 bits per probability.
fn choose_intra_mode_probs(base: &EntropyProbs, mbs: &[MbInfo]) -> ([u8; 4], [u8; 3]) {
    let (mut y, mut uv) = ([0u32; 5], [0u32; 4]);
    for mb in mbs.iter().filter(|m| !m.y_mode.is_inter()) {
        y[ymode_leaf(mb.y_mode).unwrap_or(0) as usize] += 1;
        uv[mb.uv_mode as usize] += 1;
    }
    fn pick<const N: usize>(old: &[u8; N], nodes: &[[u32; 2]; N]) -> [u8; N] {
        let new: [u8; N] = std::array::from_fn(|i| {
            if nodes[i][0] + nodes[i][1] == 0 {
                old[i]
            } else {
                prob_from_counts(nodes[i][0], nodes[i][1])
            }
        });
        let cost = |p: &[u8; N]| -> u64 {
            p.iter().zip(nodes).map(|(&p, n)| cost_counts(p, n[0], n[1])).sum()
        };
        if cost(&new) + (N as u64) * 8 * 256 < cost(old) {
            new
        } else {
            *old
        }
    }
    (
        pick(&base.ymode, &tree_node_counts::<4>(&YMODE_TREE, &y)),
        pick(&base.uv_mode, &tree_node_counts::<3>(&UV_MODE_TREE, &uv)),
    )
}

/// Frame-level probabilities derived from the macroblock records.
struct HeaderProbs {
    prob_skip_false: u8,
    prob_intra: u8,
    prob_last: u8,
    prob_gf: u8,
    segment_tree_probs: [u8; 3],
}

fn choose_frame_probs(mbs: &[MbInfo], h: &FrameHeader, seg_enabled: bool) -> HeaderProbs {
    let mut skip = [0u32; 2];
    let mut refs = [0u32; 4];
    let mut segs = [0u32; 4];
    for mb in mbs {
        skip[mb.skip_coeff as usize] += 1;
        refs[mb.ref_frame as usize] += 1;
        segs[mb.segment_id as usize & 3] += 1;
    }
    let segment_tree_probs = if seg_enabled && h.update_mb_segmentation_map {
        let nodes = tree_node_counts::<3>(&SEGMENT_TREE, &segs);
        nodes.map(|n| if n[0] + n[1] == 0 { 255 } else { prob_from_counts(n[0], n[1]) })
    } else {
        [255; 3]
    };
    HeaderProbs {
        prob_skip_false: prob_from_counts(skip[0], skip[1]),
        prob_intra: prob_from_counts(refs[0], refs[1] + refs[2] + refs[3]),
        prob_last: prob_from_counts(refs[1], refs[2] + refs[3]),
        prob_gf: prob_from_counts(refs[2], refs[3]),
        segment_tree_probs,
    }
}

/// The frame header (spec 19.2), in the order `parse_frame_header` reads it.
#[allow(clippy::needless_range_loop)] // three tables indexed in parallel
fn write_header(
    e: &mut BoolEncoder,
    state: &DecoderState,
    d: &FrameDecisions,
    hp: &HeaderProbs,
    base: &EntropyProbs,
    probs: &EntropyProbs,
) {
    let h = &d.header;
    let key = d.key_frame;
    if key {
        e.write_flag(h.color_space != 0);
        e.write_flag(h.clamping_type != 0);
    }
    let seg = &d.segmentation;
    e.write_flag(seg.enabled);
    if seg.enabled {
        e.write_flag(h.update_mb_segmentation_map);
        e.write_flag(h.update_segment_feature_data);
        if h.update_segment_feature_data {
            e.write_flag(seg.abs_delta);
            for &q in &seg.quant {
                e.write_optional_signed(7, q as i32);
            }
            for &l in &seg.lf {
                e.write_optional_signed(6, l as i32);
            }
        }
        if h.update_mb_segmentation_map {
            for &p in &hp.segment_tree_probs {
                e.write_flag(p != 255);
                if p != 255 {
                    e.write_literal(8, p as u32);
                }
            }
        }
    }
    e.write_flag(h.simple_filter);
    e.write_literal(6, h.loop_filter_level as u32);
    e.write_literal(3, h.sharpness_level as u32);
    let reset = LfAdjust::default();
    write_lf_adjustments(e, if key { &reset } else { &state.lf }, &d.lf_adjust);
    e.write_literal(2, h.log2_nbr_of_dct_partitions as u32);
    let q = &h.quant;
    e.write_literal(7, q.y_ac_qi as u32);
    for v in [q.y_dc_delta, q.y2_dc_delta, q.y2_ac_delta, q.uv_dc_delta, q.uv_ac_delta] {
        e.write_optional_signed(4, v as i32);
    }
    if key {
        e.write_flag(h.refresh_entropy_probs);
    } else {
        e.write_flag(h.refresh_golden_frame);
        e.write_flag(h.refresh_alternate_frame);
        if !h.refresh_golden_frame {
            e.write_literal(2, h.copy_buffer_to_golden as u32);
        }
        if !h.refresh_alternate_frame {
            e.write_literal(2, h.copy_buffer_to_alternate as u32);
        }
        e.write_flag(h.sign_bias_golden);
        e.write_flag(h.sign_bias_alternate);
        e.write_flag(h.refresh_entropy_probs);
        e.write_flag(h.refresh_last);
    }
    for i in 0..4 {
        for j in 0..8 {
            for k in 0..3 {
                for l in 0..11 {
                    let p = probs.coeff[i][j][k][l];
                    let update = p != base.coeff[i][j][k][l];
                    e.write_bool(COEFF_UPDATE_PROBS[i][j][k][l], update);
                    if update {
                        e.write_literal(8, p as u32);
                    }
                }
            }
        }
    }
    e.write_flag(h.mb_no_skip_coeff);
    if h.mb_no_skip_coeff {
        e.write_literal(8, hp.prob_skip_false as u32);
    }
    if !key {
        e.write_literal(8, hp.prob_intra as u32);
        e.write_literal(8, hp.prob_last as u32);
        e.write_literal(8, hp.prob_gf as u32);
        e.write_flag(probs.ymode != base.ymode);
        if probs.ymode != base.ymode {
            for &p in &probs.ymode {
                e.write_literal(8, p as u32);
            }
        }
        e.write_flag(probs.uv_mode != base.uv_mode);
        if probs.uv_mode != base.uv_mode {
            for &p in &probs.uv_mode {
                e.write_literal(8, p as u32);
            }
        }
        for c in 0..2 {
            for i in 0..19 {
                let p = probs.mv[c][i];
                let update = p != base.mv[c][i];
                e.write_bool(MV_UPDATE_PROBS[c][i], update);
                if update {
                    e.write_literal(7, (p >> 1) as u32);
                }
            }
        }
    }
}

/// `mb_lf_adjustments()` (spec 9.4): only values that differ from those in force are sent.
fn write_lf_adjustments(e: &mut BoolEncoder, old: &LfAdjust, new: &LfAdjust) {
    e.write_flag(new.enabled);
    if !new.enabled {
        return;
    }
    let olds = old.ref_deltas.iter().chain(&old.mode_deltas);
    let news = new.ref_deltas.iter().chain(&new.mode_deltas);
    let changed: Vec<(bool, i8)> = olds.zip(news).map(|(&o, &n)| (o != n, n)).collect();
    let any = changed.iter().any(|c| c.0);
    e.write_flag(any);
    if any {
        for (c, v) in changed {
            e.write_flag(c);
            if c {
                e.write_signed(6, v as i32);
            }
        }
    }
}

/// Frame tag, key frame start code and size, first partition, partition size table and the
/// token partitions (spec 9.1, 9.5).
fn assemble(d: &FrameDecisions, first: &[u8], parts: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
    if first.len() > 0x7FFFF {
        return Err(EncodeError::TooLarge(format!(
            "first partition is {} bytes (at most 524287)",
            first.len()
        )));
    }
    if let Some((i, p)) = parts.iter().enumerate().find(|(_, p)| p.len() > 0xFF_FFFF) {
        return Err(EncodeError::TooLarge(format!("token partition {i} is {} bytes", p.len())));
    }
    let total = 10 + first.len() + 3 * parts.len() + parts.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    let tag = (!d.key_frame) as u32
        | (d.version as u32) << 1
        | (d.show_frame as u32) << 4
        | (first.len() as u32) << 5;
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if d.key_frame {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&d.width.to_le_bytes());
        out.extend_from_slice(&d.height.to_le_bytes());
    }
    out.extend_from_slice(first);
    for p in &parts[..parts.len() - 1] {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}
