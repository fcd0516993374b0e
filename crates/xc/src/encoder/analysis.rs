//! Frame analysis: every macroblock's prediction (intra modes, or reference frame and motion
//! vectors) and quantized residual, chosen by rate-distortion cost `SSE + lambda * bits`.
//!
//! Macroblocks are visited in raster order on an in-progress reconstruction. Every candidate
//! is predicted with the decoder's own kernels into that reconstruction, its residual is
//! transformed, quantized, dequantized and inverse-transformed with the decoder's functions,
//! so the winning candidate's pixels are exactly what a decoder rebuilds. After the last
//! macroblock the loop filter level is chosen on the finished reconstruction and applied the
//! way `decoder.rs` applies it.

use std::sync::Arc;

use crate::encoder::fdct::{fdct4x4, fwht4x4};
use crate::encoder::quantize::{dequantize_block, MbQuant, QuantMode, Quantizer};
use crate::encoder::rdo::{
    inter_mode_costs, lambda, sad, sse, tree_cost, trellis_lambda, ModeCosts, TokenCosts, BIT,
};
use crate::encoder::{EncodeError, FrameDecisions, MbLevels};
use crate::frame::{Frame, Plane};
use crate::header::FrameHeader;
use crate::loopfilter::{filter_frame, mb_filter_level, FilterType, LfDeltas, MbEdgeInfo};
use crate::mb::{BMode, MbInfo, MbMode, Mv, RefFrame, UvMode};
use crate::modes::{find_near_mvs, sub_mv_context, MvBounds, Neighbours};
use crate::predict::inter::{predict_block, predict_inter_mb, InterFilter};
use crate::predict::intra::{predict_chroma8, predict_luma16, predict_luma4};
use crate::quant::QuantIndices;
use crate::state::{DecoderState, EntropyProbs, LfAdjust, Segmentation};
use crate::tables::{
    MV_PARTITIONS, MV_PARTITION_COUNTS, MV_PARTITION_PROBS, MV_PARTITION_TREE, SUB_MV_REF_PROBS,
    SUB_MV_REF_TREE,
};
use crate::tokens::{NzContext, TYPE_CHROMA, TYPE_Y2, TYPE_Y_AFTER_Y2, TYPE_Y_WITH_DC, Y2_BLOCK};
use crate::transform::{idct4x4_add, iwht4x4};

/// Effort level: how widely modes and motion vectors are searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Speed {
    /// Every mode, SPLITMV on every reference with all four partitionings.
    Best,
    /// Wide motion search; intra modes of inter frames screened by prediction; SPLITMV on
    /// the last frame when the macroblock has a residual (4x4 only where 8x8 wins).
    #[default]
    Good,
    /// Small motion search, 16x16 intra modes only in inter frames.
    Realtime,
}

/// What to encode and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeParams {
    pub key_frame: bool,
    /// Base quantizer index (`y_ac_qi`, 0..=127).
    pub qindex: u8,
    pub speed: Speed,
    pub refresh_last: bool,
    pub refresh_golden: bool,
    pub refresh_altref: bool,
    /// 0 none, 1 last, 2 altref (as the frame header's `copy_buffer_to_golden`).
    pub copy_to_golden: u8,
    /// 0 none, 1 last, 2 golden.
    pub copy_to_altref: u8,
    pub sign_bias_golden: bool,
    pub sign_bias_altref: bool,
    /// Loop filter level; `None` chooses one by trying levels on the reconstruction.
    pub loop_filter_level: Option<u8>,
    pub sharpness: u8,
    pub log2_partitions: u8,
    pub show_frame: bool,
    /// How residual levels are chosen: RD-optimized (the default; `Speed::Realtime` always
    /// uses the plain quantizer) or plain dead-zone rounding.
    pub quant: QuantMode,
    /// Also decode the written frame and check that our decoder reaches the state the encoder
    /// built and its picture (slower: for tests; always on in debug builds).
    pub verify: bool,
}

impl EncodeParams {
    /// A key frame at `qindex`.
    pub fn key(qindex: u8) -> Self {
        EncodeParams {
            key_frame: true,
            qindex,
            speed: Speed::Good,
            refresh_last: true,
            refresh_golden: true,
            refresh_altref: true,
            copy_to_golden: 0,
            copy_to_altref: 0,
            sign_bias_golden: false,
            sign_bias_altref: false,
            loop_filter_level: None,
            sharpness: 0,
            log2_partitions: 0,
            show_frame: true,
            quant: QuantMode::Rd,
            verify: false,
        }
    }

    /// An inter frame at `qindex` that replaces only the last frame.
    pub fn inter(qindex: u8) -> Self {
        EncodeParams {
            key_frame: false,
            refresh_golden: false,
            refresh_altref: false,
            ..EncodeParams::key(qindex)
        }
    }
}

/// The pixels of one macroblock: 16x16 luma and two 8x8 chroma blocks, row-major.
#[derive(Clone, Copy)]
struct MbPixels {
    y: [u8; 256],
    u: [u8; 64],
    v: [u8; 64],
}

impl Default for MbPixels {
    fn default() -> Self {
        MbPixels { y: [0; 256], u: [0; 64], v: [0; 64] }
    }
}

pub(crate) fn read_block<const N: usize, const S: usize>(
    p: &Plane,
    x0: usize,
    y0: usize,
) -> [u8; S] {
    let mut out = [0u8; S];
    for r in 0..N {
        let o = (y0 + r) * p.stride + x0;
        out[r * N..r * N + N].copy_from_slice(&p.data[o..o + N]);
    }
    out
}

pub(crate) fn write_block<const N: usize>(p: &mut Plane, x0: usize, y0: usize, px: &[u8]) {
    for r in 0..N {
        let o = (y0 + r) * p.stride + x0;
        p.data[o..o + N].copy_from_slice(&px[r * N..r * N + N]);
    }
}

fn read_luma(f: &Frame, mbx: usize, mby: usize) -> [u8; 256] {
    read_block::<16, 256>(&f.y, mbx * 16, mby * 16)
}

fn read_chroma(f: &Frame, mbx: usize, mby: usize) -> ([u8; 64], [u8; 64]) {
    (read_block::<8, 64>(&f.u, mbx * 8, mby * 8), read_block::<8, 64>(&f.v, mbx * 8, mby * 8))
}

fn read_mb(f: &Frame, mbx: usize, mby: usize) -> MbPixels {
    let (u, v) = read_chroma(f, mbx, mby);
    MbPixels { y: read_luma(f, mbx, mby), u, v }
}

fn write_mb(f: &mut Frame, mbx: usize, mby: usize, px: &MbPixels) {
    write_block::<16>(&mut f.y, mbx * 16, mby * 16, &px.y);
    write_block::<8>(&mut f.u, mbx * 8, mby * 8, &px.u);
    write_block::<8>(&mut f.v, mbx * 8, mby * 8, &px.v);
}

/// A 4x4 block `(bx, by)` of an `n`-wide pixel array as i16.
pub(crate) fn sub4(px: &[u8], n: usize, bx: usize, by: usize) -> [i16; 16] {
    std::array::from_fn(|i| px[(by * 4 + i / 4) * n + bx * 4 + i % 4] as i16)
}

pub(crate) fn residual4(src: &[u8], pred: &[u8], n: usize, bx: usize, by: usize) -> [i16; 16] {
    let s = sub4(src, n, bx, by);
    let p = sub4(pred, n, bx, by);
    std::array::from_fn(|i| s[i] - p[i])
}

/// Result of coding one plane's residual against a prediction.
struct Coded<const S: usize> {
    recon: [u8; S],
    rate: u32,
    sse: u32,
}

/// Luma 16x16 with the Y2 block (all modes but B_PRED and SPLITMV). Writes levels of blocks
/// 0..16 and 24 and updates the non-zero contexts.
#[allow(clippy::too_many_arguments)]
fn code_luma_y2(
    src: &[u8; 256],
    pred: &[u8; 256],
    mq: &MbQuant,
    tc: &TokenCosts,
    qz: Quantizer,
    above: &mut NzContext,
    left: &mut NzContext,
    levels: &mut MbLevels,
) -> Coded<256> {
    let mut coeffs = [[0i16; 16]; 16];
    let mut dcs = [0i16; 16];
    for (b, c) in coeffs.iter_mut().enumerate() {
        *c = fdct4x4(&residual4(src, pred, 16, b & 3, b >> 2));
        dcs[b] = c[0];
    }
    let mut rate = 0;
    let ctx = (above[8] + left[8]) as usize;
    qz.block(&fwht4x4(&dcs), 0, &mq.y2, TYPE_Y2, ctx, &mut levels.blocks[Y2_BLOCK]);
    rate += tc.block_cost(&levels.blocks[Y2_BLOCK], TYPE_Y2, ctx, 0);
    let nz = levels.blocks[Y2_BLOCK].iter().any(|&v| v != 0) as u8;
    above[8] = nz;
    left[8] = nz;
    let dc_out = iwht4x4(&dequantize_block(&levels.blocks[Y2_BLOCK], mq.dq.y2));
    let mut recon = *pred;
    for b in 0..16 {
        let (x, y) = (b & 3, b >> 2);
        let ctx = (above[x] + left[y]) as usize;
        qz.block(&coeffs[b], 1, &mq.y, TYPE_Y_AFTER_Y2, ctx, &mut levels.blocks[b]);
        rate += tc.block_cost(&levels.blocks[b], TYPE_Y_AFTER_Y2, ctx, 1);
        let nz = levels.blocks[b][1..].iter().any(|&v| v != 0) as u8;
        above[x] = nz;
        left[y] = nz;
        let mut dq = dequantize_block(&levels.blocks[b], mq.dq.y);
        dq[0] = dc_out[b];
        idct4x4_add(&dq, &mut recon, y * 64 + x * 4, 16);
    }
    let s = sse(src, &recon);
    Coded { recon, rate, sse: s }
}

/// Luma 16x16 as sixteen blocks with their own DCs (SPLITMV; B_PRED codes per subblock).
#[allow(clippy::too_many_arguments)]
fn code_luma_nodc(
    src: &[u8; 256],
    pred: &[u8; 256],
    mq: &MbQuant,
    tc: &TokenCosts,
    qz: Quantizer,
    above: &mut NzContext,
    left: &mut NzContext,
    levels: &mut MbLevels,
) -> Coded<256> {
    let mut recon = *pred;
    let mut rate = 0;
    for b in 0..16 {
        let (x, y) = (b & 3, b >> 2);
        let c = fdct4x4(&residual4(src, pred, 16, x, y));
        let ctx = (above[x] + left[y]) as usize;
        qz.block(&c, 0, &mq.y, TYPE_Y_WITH_DC, ctx, &mut levels.blocks[b]);
        rate += tc.block_cost(&levels.blocks[b], TYPE_Y_WITH_DC, ctx, 0);
        let nz = levels.blocks[b].iter().any(|&v| v != 0) as u8;
        above[x] = nz;
        left[y] = nz;
        idct4x4_add(&dequantize_block(&levels.blocks[b], mq.dq.y), &mut recon, y * 64 + x * 4, 16);
    }
    let s = sse(src, &recon);
    Coded { recon, rate, sse: s }
}

/// Both chroma planes (blocks 16..24).
#[allow(clippy::too_many_arguments)]
fn code_chroma(
    src: (&[u8; 64], &[u8; 64]),
    pred: (&[u8; 64], &[u8; 64]),
    mq: &MbQuant,
    tc: &TokenCosts,
    qz: Quantizer,
    above: &mut NzContext,
    left: &mut NzContext,
    levels: &mut MbLevels,
) -> (Coded<64>, Coded<64>) {
    let mut one = |plane: usize, s: &[u8; 64], p: &[u8; 64]| {
        let mut recon = *p;
        let mut rate = 0;
        for b in 0..4 {
            let (bx, by) = (b & 1, b >> 1);
            let (x, y) = (4 + plane * 2 + bx, 4 + plane * 2 + by);
            let blk = 16 + plane * 4 + b;
            let c = fdct4x4(&residual4(s, p, 8, bx, by));
            let ctx = (above[x] + left[y]) as usize;
            qz.block(&c, 0, &mq.uv, TYPE_CHROMA, ctx, &mut levels.blocks[blk]);
            rate += tc.block_cost(&levels.blocks[blk], TYPE_CHROMA, ctx, 0);
            let nz = levels.blocks[blk].iter().any(|&v| v != 0) as u8;
            above[x] = nz;
            left[y] = nz;
            let dq = dequantize_block(&levels.blocks[blk], mq.dq.uv);
            idct4x4_add(&dq, &mut recon, by * 32 + bx * 4, 8);
        }
        let e = sse(s, &recon);
        Coded { recon, rate, sse: e }
    };
    let u = one(0, src.0, pred.0);
    let v = one(1, src.1, pred.1);
    (u, v)
}

/// A reference luma plane with a replicated border, for fast full-pel block matching.
struct Padded {
    data: Vec<u8>,
    stride: usize,
}

const PAD: usize = 48;

impl Padded {
    fn new(p: &Plane) -> Self {
        let stride = p.width + 2 * PAD;
        let mut data = vec![0u8; stride * (p.height + 2 * PAD)];
        for (y, row) in data.chunks_exact_mut(stride).enumerate() {
            let sy = y as isize - PAD as isize;
            for (x, px) in row.iter_mut().enumerate() {
                *px = p.at_clamped(x as isize - PAD as isize, sy);
            }
        }
        Padded { data, stride }
    }

    /// SAD of the `w` x `h` block of `src` (row stride `sstride`) against the block whose
    /// top-left is at plane coordinates (x, y) (may be up to PAD outside the plane).
    fn sad(&self, src: &[u8], sstride: usize, x: isize, y: isize, w: usize, h: usize) -> u32 {
        let base = ((y + PAD as isize) as usize) * self.stride + (x + PAD as isize) as usize;
        let mut s = 0;
        for r in 0..h {
            let o = base + r * self.stride;
            s += sad(&src[r * sstride..r * sstride + w], &self.data[o..o + w]);
        }
        s
    }
}

/// A reference frame usable in this frame.
struct RefPic<'a> {
    which: RefFrame,
    frame: &'a Frame,
    luma: Padded,
}

/// Frame-wide inputs to macroblock decisions.
struct FrameCtx<'a> {
    src: &'a Frame,
    key_frame: bool,
    speed: Speed,
    quant_mode: QuantMode,
    quant: [MbQuant; 4],
    tc: TokenCosts,
    mc: ModeCosts,
    lambda: f64,
    /// The RD quantizer's multiplier (`rdo::trellis_lambda`).
    trellis_lambda: f64,
    refs: Vec<RefPic<'a>>,
    sign_bias: [bool; 4],
    cols: usize,
    rows: usize,
}

impl FrameCtx<'_> {
    /// The quantizer of this frame's effort level: RD-optimized except at Realtime.
    fn qz(&self) -> Quantizer<'_> {
        if self.speed == Speed::Realtime || self.quant_mode == QuantMode::Plain {
            Quantizer::Plain
        } else {
            Quantizer::Rd { costs: &self.tc, lambda: self.trellis_lambda }
        }
    }

    /// Whether intra modes in this inter frame are screened by their prediction alone before
    /// coding (Good: the best 2 of the 16x16 and chroma modes, 3 of the subblock modes; 25%
    /// faster for 0.2-0.5% larger clips, time spent on SPLITMV instead).
    fn screens_intra(&self) -> bool {
        !self.key_frame && self.speed == Speed::Good
    }

    fn cost(&self, sse: u64, rate: u32) -> f64 {
        sse as f64 + self.lambda * rate as f64 / BIT as f64
    }
}

/// One fully evaluated macroblock coding.
#[derive(Clone)]
struct Choice {
    info: MbInfo,
    levels: MbLevels,
    px: MbPixels,
    rate: u32,
    sse: u64,
    cost: f64,
    above: NzContext,
    left: NzContext,
}

/// Add the skip flag's rate (and drop token rates of an all-zero macroblock, which is coded
/// with `mb_skip_coeff` instead), then the RD cost.
fn finish(fc: &FrameCtx, mut c: Choice, mode_rate: u32, token_rate: u32) -> Choice {
    let zero = c.levels.is_zero();
    c.rate = mode_rate + if zero { fc.mc.skip[1] } else { fc.mc.skip[0] + token_rate };
    c.cost = fc.cost(c.sse, c.rate);
    c
}

fn better(a: Option<Choice>, b: Choice) -> Option<Choice> {
    match a {
        Some(a) if a.cost <= b.cost => Some(a),
        _ => Some(b),
    }
}

/// Per-macroblock working state.
struct MbCtx<'a> {
    mbx: usize,
    mby: usize,
    src: MbPixels,
    above: NzContext,
    left: NzContext,
    nb: Neighbours<'a>,
    segment: u8,
}

/// The best chroma intra coding of a macroblock.
struct ChromaChoice {
    cost: f64,
    mode: UvMode,
    levels: MbLevels,
    u: [u8; 64],
    v: [u8; 64],
    /// Token rate plus mode rate.
    rate: u32,
    sse: u64,
    above: NzContext,
    left: NzContext,
}

/// Best chroma intra mode for the macroblock (coded against the reconstruction).
fn best_chroma(
    fc: &FrameCtx,
    m: &MbCtx,
    recon: &mut Frame,
    above: &NzContext,
    left: &NzContext,
) -> ChromaChoice {
    let mq = &fc.quant[m.segment as usize & 3];
    let mut best: Option<ChromaChoice> = None;
    let all = [UvMode::Dc, UvMode::V, UvMode::H, UvMode::Tm];
    let modes = intra_candidates(fc, &all, 2, |mode| {
        predict_chroma8(&mut recon.u, m.mbx, m.mby, mode);
        predict_chroma8(&mut recon.v, m.mbx, m.mby, mode);
        let (pu, pv) = read_chroma(recon, m.mbx, m.mby);
        (sse(&m.src.u, &pu) as u64 + sse(&m.src.v, &pv) as u64, fc.mc.uv(mode))
    });
    for mode in modes {
        predict_chroma8(&mut recon.u, m.mbx, m.mby, mode);
        predict_chroma8(&mut recon.v, m.mbx, m.mby, mode);
        let (pu, pv) = read_chroma(recon, m.mbx, m.mby);
        let (mut a, mut l) = (*above, *left);
        let mut lv = MbLevels::default();
        let (u, v) = code_chroma(
            (&m.src.u, &m.src.v),
            (&pu, &pv),
            mq,
            &fc.tc,
            fc.qz(),
            &mut a,
            &mut l,
            &mut lv,
        );
        let rate = u.rate + v.rate + fc.mc.uv(mode);
        let d = u.sse as u64 + v.sse as u64;
        let j = fc.cost(d, rate);
        if best.as_ref().is_none_or(|b| j < b.cost) {
            best = Some(ChromaChoice {
                cost: j,
                mode,
                levels: lv,
                u: u.recon,
                v: v.recon,
                rate,
                sse: d,
                above: a,
                left: l,
            });
        }
    }
    best.expect("four chroma modes tried")
}

/// Realtime's mode choice: the mode whose prediction alone (`eval` gives its SSE and mode
/// rate) has the lowest RD cost, so that only that one is transformed and quantized.
fn pick_by_prediction<T: Copy>(
    fc: &FrameCtx,
    modes: &[T],
    mut eval: impl FnMut(T) -> (u64, u32),
) -> T {
    let mut best = (f64::MAX, modes[0]);
    for &mode in modes {
        let (d, r) = eval(mode);
        let j = fc.cost(d, r);
        if j < best.0 {
            best = (j, mode);
        }
    }
    best.1
}

/// The intra modes (of `all`) worth coding in full at this speed: at Realtime the one whose
/// prediction alone (`eval` gives its SSE and mode rate) costs least, where intra modes are
/// screened ([`FrameCtx::screens_intra`]) the `keep` cheapest, else all of them.
fn intra_candidates<T: Copy>(
    fc: &FrameCtx,
    all: &[T],
    keep: usize,
    eval: impl FnMut(T) -> (u64, u32),
) -> Vec<T> {
    if fc.speed == Speed::Realtime {
        vec![pick_by_prediction(fc, all, eval)]
    } else if fc.screens_intra() {
        top_by_prediction(fc, all, keep, eval)
    } else {
        all.to_vec()
    }
}

/// The `k` modes whose prediction alone (`eval` gives its SSE and mode rate) has the lowest
/// RD cost, best first (stable among equal costs).
fn top_by_prediction<T: Copy>(
    fc: &FrameCtx,
    modes: &[T],
    k: usize,
    mut eval: impl FnMut(T) -> (u64, u32),
) -> Vec<T> {
    let mut scored: Vec<(f64, T)> = modes
        .iter()
        .map(|&mode| {
            let (d, r) = eval(mode);
            (fc.cost(d, r), mode)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().take(k).map(|x| x.1).collect()
}

fn implied_bmode(mode: MbMode) -> BMode {
    match mode {
        MbMode::V => BMode::Ve,
        MbMode::H => BMode::He,
        MbMode::Tm => BMode::Tm,
        _ => BMode::Dc,
    }
}

/// The best intra coding of the macroblock: 16x16 modes and B_PRED, with the best chroma mode.
fn best_intra(fc: &FrameCtx, m: &MbCtx, recon: &mut Frame, bound: f64) -> Option<Choice> {
    let mq = &fc.quant[m.segment as usize & 3];
    let ch = best_chroma(fc, m, recon, &m.above, &m.left);
    let (uv_mode, uv_levels, ur, vr) = (ch.mode, ch.levels, ch.u, ch.v);
    let (uv_rate, uv_sse, ca, cl) = (ch.rate, ch.sse, ch.above, ch.left);
    let uv_mode_rate = fc.mc.uv(uv_mode);
    let uv_tok = uv_rate - uv_mode_rate;
    let base_rate = fc.mc.intra + uv_mode_rate;
    let mut best: Option<Choice> = None;
    let mut px = MbPixels { y: [0; 256], u: ur, v: vr };
    let all = [MbMode::Dc, MbMode::V, MbMode::H, MbMode::Tm];
    let modes = intra_candidates(fc, &all, 2, |mode| {
        predict_luma16(&mut recon.y, m.mbx, m.mby, mode);
        (sse(&m.src.y, &read_luma(recon, m.mbx, m.mby)) as u64, fc.mc.y_mode(mode))
    });
    for mode in modes {
        predict_luma16(&mut recon.y, m.mbx, m.mby, mode);
        let pred = read_luma(recon, m.mbx, m.mby);
        let (mut a, mut l) = (ca, cl);
        let mut levels = uv_levels.clone();
        let y = code_luma_y2(&m.src.y, &pred, mq, &fc.tc, fc.qz(), &mut a, &mut l, &mut levels);
        px.y = y.recon;
        let info = MbInfo {
            y_mode: mode,
            uv_mode,
            b_modes: [implied_bmode(mode); 16],
            segment_id: m.segment,
            ..Default::default()
        };
        let c = Choice {
            info,
            levels,
            px,
            rate: 0,
            sse: y.sse as u64 + uv_sse,
            cost: 0.0,
            above: a,
            left: l,
        };
        let c = finish(fc, c, base_rate + fc.mc.y_mode(mode), y.rate + uv_tok);
        best = better(best, c);
    }
    let best16 = best.as_ref().map_or(f64::MAX, |b| b.cost).min(bound);
    // B_PRED: subblocks in order, each predicted from the reconstruction of the previous ones.
    if fc.key_frame || fc.speed != Speed::Realtime {
        let above_modes = m.nb.above.map(|a| a.b_modes);
        let left_modes = m.nb.left.map(|l| l.b_modes);
        let (mut a, mut l) = (ca, cl);
        let mut levels = uv_levels.clone();
        let mut modes = [BMode::Dc; 16];
        let mut rate = base_rate + fc.mc.y_mode(MbMode::BPred);
        let mut tok_rate = uv_tok;
        let mut dist = uv_sse;
        let mut ok = true;
        for b in 0..16 {
            let (bx, by) = (b & 3, b >> 2);
            let am =
                if by > 0 { modes[b - 4] } else { above_modes.map_or(BMode::Dc, |x| x[b + 12]) };
            let lm = if bx > 0 { modes[b - 1] } else { left_modes.map_or(BMode::Dc, |x| x[b + 3]) };
            let ctx = (a[bx] + l[by]) as usize;
            let src4 = sub4(&m.src.y, 16, bx, by);
            let (x0, y0) = (m.mbx * 16 + bx * 4, m.mby * 16 + by * 4);
            #[allow(clippy::type_complexity)]
            let mut bb: Option<(f64, BMode, [i16; 16], [u8; 16], u32, u32)> = None;
            let bmodes = intra_candidates(fc, &BMode::ALL, 3, |mode| {
                predict_luma4(&mut recon.y, m.mbx, m.mby, b, mode);
                let p = read_block::<4, 16>(&recon.y, x0, y0);
                let d: u32 =
                    src4.iter().zip(&p).map(|(&s, &q)| (s as i32 - q as i32).pow(2) as u32).sum();
                (d as u64, fc.mc.b_mode(mode, am, lm))
            });
            for mode in bmodes {
                predict_luma4(&mut recon.y, m.mbx, m.mby, b, mode);
                let mut rec = read_block::<4, 16>(&recon.y, x0, y0);
                let res: [i16; 16] = std::array::from_fn(|i| src4[i] - rec[i] as i16);
                let mut lv = [0i16; 16];
                fc.qz().block(&fdct4x4(&res), 0, &mq.y, TYPE_Y_WITH_DC, ctx, &mut lv);
                let r = fc.tc.block_cost(&lv, TYPE_Y_WITH_DC, ctx, 0) + fc.mc.b_mode(mode, am, lm);
                idct4x4_add(&dequantize_block(&lv, mq.dq.y), &mut rec, 0, 4);
                let d: u32 =
                    src4.iter().zip(&rec).map(|(&s, &p)| (s as i32 - p as i32).pow(2) as u32).sum();
                let j = fc.cost(d as u64, r);
                if bb.as_ref().is_none_or(|x| j < x.0) {
                    bb = Some((j, mode, lv, rec, r, d));
                }
            }
            let (_, mode, lv, rec, r, d) = bb.expect("ten subblock modes tried");
            write_block::<4>(&mut recon.y, x0, y0, &rec);
            modes[b] = mode;
            let nz = lv.iter().any(|&v| v != 0) as u8;
            a[bx] = nz;
            l[by] = nz;
            levels.blocks[b] = lv;
            rate += r - fc.tc.block_cost(&lv, TYPE_Y_WITH_DC, ctx, 0);
            tok_rate += fc.tc.block_cost(&lv, TYPE_Y_WITH_DC, ctx, 0);
            dist += d as u64;
            if fc.cost(dist, rate + tok_rate) > best16 {
                ok = false;
                break;
            }
        }
        if ok {
            px.y = read_luma(recon, m.mbx, m.mby);
            let info = MbInfo {
                y_mode: MbMode::BPred,
                uv_mode,
                b_modes: modes,
                segment_id: m.segment,
                ..Default::default()
            };
            let c = Choice { info, levels, px, rate: 0, sse: dist, cost: 0.0, above: a, left: l };
            let c = finish(fc, c, rate, tok_rate);
            best = better(best, c);
        }
    }
    best
}

/// Round a quarter-pel component to the nearest full pixel.
fn to_full(v: i16) -> i32 {
    (v as i32 + 2).div_euclid(4)
}

/// Search limits for a vector of the macroblock, in quarter pels: inside the spec's clamping
/// bounds (so every reference read stays within libvpx's extended border) and codable as a
/// difference from `best`.
#[derive(Clone, Copy)]
struct Limits {
    min_col: i32,
    max_col: i32,
    min_row: i32,
    max_row: i32,
}

impl Limits {
    fn new(b: &MvBounds, best: Mv) -> Self {
        let m = 1020;
        Limits {
            min_col: b.min_col.max(best.col as i32 - m),
            max_col: b.max_col.min(best.col as i32 + m),
            min_row: b.min_row.max(best.row as i32 - m),
            max_row: b.max_row.min(best.row as i32 + m),
        }
    }

    fn ok(&self, row: i32, col: i32) -> bool {
        (self.min_row..=self.max_row).contains(&row) && (self.min_col..=self.max_col).contains(&col)
    }
}

/// A rectangle of the macroblock's luma (pixels), for motion search of a partition.
#[derive(Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

const WHOLE: Rect = Rect { x: 0, y: 0, w: 16, h: 16 };

/// Motion search for one rectangle of the macroblock against `r`: full-pel diamond search
/// from the best of `starts`, then half- and quarter-pel refinement with the decoder's
/// six-tap prediction. Costs include the NEWMV rate relative to `best`.
#[allow(clippy::too_many_arguments)]
fn motion_search(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    rect: Rect,
    starts: &[Mv],
    best: Mv,
    lim: &Limits,
) -> Mv {
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
    // Best searched (16, 64) once: 0.4% larger than (8, 32) on carphone, bus and bbb (the
    // first wide steps settle in worse local minima), and slower.
    let (mut step, range) = match fc.speed {
        // Good's 4x4 partitions start from the 8x8 vectors and only refine them (a full
        // search found 0.15% more bytes, more slowly).
        Speed::Good if rect.w == 4 && rect.h == 4 => (2, 4),
        Speed::Best | Speed::Good => (8, 32),
        Speed::Realtime => (4, 16),
    };
    let origin = c;
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
            if (p.0 - origin.0).abs() > range || (p.1 - origin.1).abs() > range {
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
    let sub_cost = |recon: &mut Frame, row: i32, col: i32| -> f64 {
        if !lim.ok(row, col) {
            return f64::MAX;
        }
        let mut d = 0u32;
        for (ox, oy, size) in rect_blocks(rect) {
            let (x, y) = (m.mbx * 16 + ox, m.mby * 16 + oy);
            predict_block(
                &r.frame.y,
                &mut recon.y,
                x,
                y,
                size,
                2 * row,
                2 * col,
                InterFilter::SixTap,
            );
            for rr in 0..size {
                let o = (y + rr) * recon.y.stride + x;
                let so = (oy + rr) * 16 + ox;
                d += sse(&recon.y.data[o..o + size], &m.src.y[so..so + size]);
            }
        }
        d as f64 + fc.lambda * mv_bits(row, col)
    };
    let mut mj = sub_cost(recon, mv.0, mv.1);
    for s in [2, 1] {
        if s == 1 && fc.speed == Speed::Realtime && mv == (c.1 * 4, c.0 * 4) {
            break;
        }
        let center = mv;
        for (dr, dc) in [(-s, 0), (s, 0), (0, -s), (0, s), (-s, -s), (-s, s), (s, -s), (s, s)] {
            let (row, col) = (center.0 + dr, center.1 + dc);
            let j = sub_cost(recon, row, col);
            if j < mj {
                mj = j;
                mv = (row, col);
            }
        }
    }
    Mv { row: mv.0 as i16, col: mv.1 as i16 }
}

/// Prediction blocks covering a rectangle: (x, y, size) in pixels within the macroblock.
fn rect_blocks(r: Rect) -> impl Iterator<Item = (usize, usize, usize)> {
    let size = if r.w.is_multiple_of(8) && r.h.is_multiple_of(8) { 8 } else { 4 };
    let size = if r.w == 16 && r.h == 16 { 16 } else { size };
    (0..r.h)
        .step_by(size)
        .flat_map(move |y| (0..r.w).step_by(size).map(move |x| (r.x + x, r.y + y, size)))
}

/// Code an inter candidate (prediction already described by `info`) and return its choice;
/// also the zero-residual variant when that is cheaper.
fn code_inter(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    info: MbInfo,
    mode_rate: u32,
) -> Choice {
    let mq = &fc.quant[m.segment as usize & 3];
    predict_inter_mb(r.frame, recon, m.mbx, m.mby, &info, InterFilter::SixTap, false);
    let pred = read_mb(recon, m.mbx, m.mby);
    let (mut a, mut l) = (m.above, m.left);
    let mut levels = MbLevels::default();
    let y = if info.y_mode == MbMode::Split {
        code_luma_nodc(&m.src.y, &pred.y, mq, &fc.tc, fc.qz(), &mut a, &mut l, &mut levels)
    } else {
        code_luma_y2(&m.src.y, &pred.y, mq, &fc.tc, fc.qz(), &mut a, &mut l, &mut levels)
    };
    let (u, v) = code_chroma(
        (&m.src.u, &m.src.v),
        (&pred.u, &pred.v),
        mq,
        &fc.tc,
        fc.qz(),
        &mut a,
        &mut l,
        &mut levels,
    );
    let px = MbPixels { y: y.recon, u: u.recon, v: v.recon };
    let d = y.sse as u64 + u.sse as u64 + v.sse as u64;
    let coded =
        Choice { info: info.clone(), levels, px, rate: 0, sse: d, cost: 0.0, above: a, left: l };
    let coded = finish(fc, coded, mode_rate, y.rate + u.rate + v.rate);
    // The same prediction with no residual at all.
    let d0 = sse(&m.src.y, &pred.y) as u64
        + sse(&m.src.u, &pred.u) as u64
        + sse(&m.src.v, &pred.v) as u64;
    let mut a0 = m.above;
    let mut l0 = m.left;
    let n = if info.y_mode == MbMode::Split { 8 } else { 9 };
    a0[..n].fill(0);
    l0[..n].fill(0);
    let skip = Choice {
        info,
        levels: MbLevels::default(),
        px: pred,
        rate: 0,
        sse: d0,
        cost: 0.0,
        above: a0,
        left: l0,
    };
    let skip = finish(fc, skip, mode_rate, 0);
    if skip.cost < coded.cost {
        skip
    } else {
        coded
    }
}

/// SPLITMV with the 16x8, 8x16 and 8x8 partitionings, and 4x4 (at Good only where 8x8 won).
#[allow(clippy::too_many_arguments)]
fn best_split(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    best_mv: Mv,
    new16: Mv,
    lim: &Limits,
    mode_cost: u32,
) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    // 4x4 (sixteen vectors): 1-3% smaller clips at Best for 40% more time.
    let mut best_part = 0;
    let mut mvs8 = [Mv::default(); 16];
    for part in 0..4 {
        // Good tries 4x4 only where 8x8 was the best partitioning (1.3% smaller clips on
        // carphone, bus and bbb; about 5% slower).
        if part == 3 && fc.speed != Speed::Best && best_part != 2 {
            break;
        }
        let map = &MV_PARTITIONS[part];
        let mut mvs = [Mv::default(); 16];
        let mut rate = fc.mc.inter_ref[r.which as usize]
            + mode_cost
            + tree_cost(&MV_PARTITION_TREE, &MV_PARTITION_PROBS, part as u8);
        for j in 0..MV_PARTITION_COUNTS[part] {
            let blocks: Vec<usize> = (0..16).filter(|&b| map[b] as usize == j).collect();
            let k = blocks[0];
            let left = if k & 3 != 0 {
                mvs[k - 1]
            } else {
                m.nb.left.map_or(Mv::default(), |l| l.mvs[k + 3])
            };
            let above = if k >= 4 {
                mvs[k - 4]
            } else {
                m.nb.above.map_or(Mv::default(), |a| a.mvs[k + 12])
            };
            let (x0, y0) = ((k & 3) * 4, (k >> 2) * 4);
            let (x1, y1) = blocks
                .iter()
                .fold((0, 0), |acc, &b| (acc.0.max((b & 3) * 4 + 4), acc.1.max((b >> 2) * 4 + 4)));
            let rect = Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
            // 4x4 partitions also start from the 8x8 vector covering them.
            let starts = [mvs8[k], new16, left, above];
            let starts = if part == 3 { &starts[..] } else { &starts[1..] };
            let found = motion_search(fc, m, r, recon, rect, starts, best_mv, lim);
            let probs = &SUB_MV_REF_PROBS[sub_mv_context(left, above)];
            let sub_rate = |mv: Mv| -> u32 {
                let mut c = tree_cost(&SUB_MV_REF_TREE, probs, 3)
                    + fc.mc.mv_cost(mv, best_mv).unwrap_or(1 << 24);
                if mv == left {
                    c = c.min(tree_cost(&SUB_MV_REF_TREE, probs, 0));
                }
                if mv == above {
                    c = c.min(tree_cost(&SUB_MV_REF_TREE, probs, 1));
                }
                if mv == Mv::default() {
                    c = c.min(tree_cost(&SUB_MV_REF_TREE, probs, 2));
                }
                c
            };
            // Prefer a free neighbour vector when its prediction is nearly as good.
            let dist = |recon: &mut Frame, mv: Mv| -> u64 {
                let mut d = 0u64;
                for (ox, oy, size) in rect_blocks(rect) {
                    let (x, y) = (m.mbx * 16 + ox, m.mby * 16 + oy);
                    predict_block(
                        &r.frame.y,
                        &mut recon.y,
                        x,
                        y,
                        size,
                        2 * mv.row as i32,
                        2 * mv.col as i32,
                        InterFilter::SixTap,
                    );
                    for rr in 0..size {
                        let o = (y + rr) * recon.y.stride + x;
                        let so = (oy + rr) * 16 + ox;
                        d += sse(&recon.y.data[o..o + size], &m.src.y[so..so + size]) as u64;
                    }
                }
                d
            };
            let mut pick = (found, fc.cost(dist(recon, found), sub_rate(found)));
            for cand in [left, above, Mv::default()] {
                if cand != found && lim.ok(cand.row as i32, cand.col as i32) {
                    let j = fc.cost(dist(recon, cand), sub_rate(cand));
                    if j < pick.1 {
                        pick = (cand, j);
                    }
                }
            }
            rate += sub_rate(pick.0);
            for &b in &blocks {
                mvs[b] = pick.0;
            }
        }
        let info = MbInfo {
            y_mode: MbMode::Split,
            ref_frame: r.which,
            mv: mvs[15],
            mvs,
            segment_id: m.segment,
            ..Default::default()
        };
        if part == 2 {
            mvs8 = mvs;
        }
        let c = code_inter(fc, m, r, recon, info, rate);
        if best.as_ref().is_none_or(|b| c.cost < b.cost) {
            best_part = part;
        }
        best = better(best, c);
    }
    best
}

/// The best inter coding of the macroblock over all usable references.
fn best_inter(fc: &FrameCtx, m: &MbCtx, recon: &mut Frame) -> Option<Choice> {
    if fc.speed == Speed::Realtime {
        return best_inter_fast(fc, m, recon);
    }
    let mut best: Option<Choice> = None;
    let bounds = MvBounds::new(m.mbx, m.mby, fc.cols, fc.rows);
    for r in &fc.refs {
        let near = find_near_mvs(m.nb, r.which, &fc.sign_bias);
        let best_mv = bounds.clamp(near.best);
        let nearest = bounds.clamp(near.nearest);
        let nearv = bounds.clamp(near.near);
        let mode_costs = inter_mode_costs(&near.cnt);
        let lim = Limits::new(&bounds, best_mv);
        let new_mv =
            motion_search(fc, m, r, recon, WHOLE, &[nearest, nearv, best_mv], best_mv, &lim);
        let ref_rate = fc.mc.inter_ref[r.which as usize];
        let mut tried: Vec<Mv> = Vec::new();
        for (mode, mv, mcost) in [
            (MbMode::Zero, Mv::default(), mode_costs[0]),
            (MbMode::Nearest, nearest, mode_costs[1]),
            (MbMode::Near, nearv, mode_costs[2]),
            (
                MbMode::New,
                new_mv,
                mode_costs[3] + fc.mc.mv_cost(new_mv, best_mv).unwrap_or(1 << 24),
            ),
        ] {
            if tried.contains(&mv) {
                continue;
            }
            tried.push(mv);
            let info = MbInfo {
                y_mode: mode,
                ref_frame: r.which,
                mv,
                mvs: [mv; 16],
                segment_id: m.segment,
                ..Default::default()
            };
            let c = code_inter(fc, m, r, recon, info, ref_rate + mcost);
            best = better(best, c);
        }
        // Good tries SPLITMV on the last frame only, and only when the best coding so far
        // has a residual (carphone, bus, bbb: 9-15% smaller than without SPLITMV, about as
        // fast as before with intra screening; on every reference always: 0.7% smaller
        // still, 60% slower).
        let split_here = match fc.speed {
            Speed::Best => true,
            Speed::Good => {
                r.which == RefFrame::Last && best.as_ref().is_none_or(|b| !b.levels.is_zero())
            }
            Speed::Realtime => false,
        };
        if split_here {
            if let Some(c) = best_split(fc, m, r, recon, best_mv, new_mv, &lim, mode_costs[4]) {
                best = better(best, c);
            }
        }
    }
    best
}

/// SSE of the 16x16 luma prediction of `r` displaced by `mv` (predicted into `recon`).
fn luma_pred_sse(m: &MbCtx, r: &RefPic, recon: &mut Frame, mv: Mv) -> u64 {
    let (x, y) = (m.mbx * 16, m.mby * 16);
    let (row, col) = (2 * mv.row as i32, 2 * mv.col as i32);
    predict_block(&r.frame.y, &mut recon.y, x, y, 16, row, col, InterFilter::SixTap);
    let mut d = 0u64;
    for rr in 0..16 {
        let o = (y + rr) * recon.y.stride + x;
        d += sse(&recon.y.data[o..o + 16], &m.src.y[rr * 16..rr * 16 + 16]) as u64;
    }
    d
}

/// How many of Realtime's best-predicting inter candidates are transformed and quantized.
const FAST_INTER_CODED: usize = 2;

/// Realtime's inter choice: ZERO, NEAREST and NEAR (and NEWMV, searched only when none of
/// them predicts the luma well) are ranked by the RD cost of their prediction alone, and only
/// the best [`FAST_INTER_CODED`] are transformed and quantized.
fn best_inter_fast(fc: &FrameCtx, m: &MbCtx, recon: &mut Frame) -> Option<Choice> {
    let bounds = MvBounds::new(m.mbx, m.mby, fc.cols, fc.rows);
    let q = fc.quant[m.segment as usize & 3].dq.y[1] as f64;
    // Below a mean squared error of (q / 16)^2 per pixel a search rarely pays (tried: (q / 4)^2
    // and (q / 8)^2 cost 25% and 0.5% more inter-frame bytes on bus).
    let good_enough = q * q;
    #[allow(clippy::type_complexity)]
    let mut picks: Vec<(f64, &RefPic, MbMode, Mv, u32)> = Vec::with_capacity(12);
    for r in &fc.refs {
        let near = find_near_mvs(m.nb, r.which, &fc.sign_bias);
        let best_mv = bounds.clamp(near.best);
        let nearest = bounds.clamp(near.nearest);
        let nearv = bounds.clamp(near.near);
        let mode_costs = inter_mode_costs(&near.cnt);
        let ref_rate = fc.mc.inter_ref[r.which as usize];
        let mut tried: [Option<Mv>; 3] = [None; 3];
        let mut local = f64::MAX;
        for (k, (mode, mv, mcost)) in [
            (MbMode::Zero, Mv::default(), mode_costs[0]),
            (MbMode::Nearest, nearest, mode_costs[1]),
            (MbMode::Near, nearv, mode_costs[2]),
        ]
        .into_iter()
        .enumerate()
        {
            if tried.contains(&Some(mv)) {
                continue;
            }
            tried[k] = Some(mv);
            let rate = ref_rate + mcost;
            let j = fc.cost(luma_pred_sse(m, r, recon, mv), rate);
            local = local.min(j);
            picks.push((j, r, mode, mv, rate));
        }
        if local > good_enough {
            let lim = Limits::new(&bounds, best_mv);
            let new_mv =
                motion_search(fc, m, r, recon, WHOLE, &[nearest, nearv, best_mv], best_mv, &lim);
            if !tried.contains(&Some(new_mv)) {
                if let Some(mvc) = fc.mc.mv_cost(new_mv, best_mv) {
                    let rate = ref_rate + mode_costs[3] + mvc;
                    let j = fc.cost(luma_pred_sse(m, r, recon, new_mv), rate);
                    picks.push((j, r, MbMode::New, new_mv, rate));
                }
            }
        }
    }
    // Stable: among equal prediction costs the earlier (cheaper to signal) candidate first.
    picks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = None;
    for &(_, r, mode, mv, rate) in picks.iter().take(FAST_INTER_CODED) {
        let info = MbInfo {
            y_mode: mode,
            ref_frame: r.which,
            mv,
            mvs: [mv; 16],
            segment_id: m.segment,
            ..Default::default()
        };
        best = better(best, code_inter(fc, m, r, recon, info, rate));
    }
    best
}

/// Sum of squared errors between two frames over the display area of all three planes.
pub fn frame_sse(a: &Frame, b: &Frame) -> u64 {
    let (w, h) = (a.display_width, a.display_height);
    let mut total = 0u64;
    for (pa, pb, pw, ph) in [
        (&a.y, &b.y, w, h),
        (&a.u, &b.u, w.div_ceil(2), h.div_ceil(2)),
        (&a.v, &b.v, w.div_ceil(2), h.div_ceil(2)),
    ] {
        for r in 0..ph {
            let (oa, ob) = (r * pa.stride, r * pb.stride);
            total += sse(&pa.data[oa..oa + pw], &pb.data[ob..ob + pw]) as u64;
        }
    }
    total
}

/// PSNR of `b` against `a` over the display area (all planes together).
pub fn psnr(a: &Frame, b: &Frame) -> f64 {
    let (w, h) = (a.display_width, a.display_height);
    let n = (w * h + 2 * w.div_ceil(2) * h.div_ceil(2)) as f64;
    let mse = frame_sse(a, b) as f64 / n;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// Loop filter inputs of every macroblock for frame level `level`, as decoder.rs computes them.
fn edge_infos(
    mbs: &[MbInfo],
    levels: &[MbLevels],
    level: u8,
    seg: &Segmentation,
    lf: &LfAdjust,
) -> Vec<MbEdgeInfo> {
    let deltas = LfDeltas { ref_deltas: lf.ref_deltas, mode_deltas: lf.mode_deltas };
    let deltas = lf.enabled.then_some(&deltas);
    mbs.iter()
        .zip(levels)
        .map(|(info, lv)| {
            let s = info.segment_id as usize & 3;
            let base = match (seg.enabled, seg.abs_delta) {
                (false, _) => level as i32,
                (true, true) => seg.lf[s] as i32,
                (true, false) => level as i32 + seg.lf[s] as i32,
            }
            .clamp(0, 63) as u8;
            let has_y2 = info.y_mode != MbMode::BPred && info.y_mode != MbMode::Split;
            MbEdgeInfo {
                level: mb_filter_level(base, deltas, info.ref_frame, info.y_mode),
                filter_inner: !has_y2 || !lv.is_zero(),
            }
        })
        .collect()
}

/// Apply the loop filter at frame level `level` exactly as the decoder does.
pub(crate) fn apply_loop_filter(frame: &mut Frame, d: &FrameDecisions, level: u8) {
    if level == 0 {
        return;
    }
    let edges = edge_infos(&d.mbs, &d.levels, level, &d.segmentation, &d.lf_adjust);
    let ft = if d.header.simple_filter { FilterType::Simple } else { FilterType::Normal };
    filter_frame(frame, &edges, ft, d.header.sharpness_level, d.key_frame);
}

/// Choose the loop filter level minimizing the filtered frame's SSE against the source.
pub(crate) fn choose_filter_level(
    recon: &Frame,
    src: &Frame,
    d: &FrameDecisions,
    speed: Speed,
    q: u8,
) -> u8 {
    let mut cache: Vec<Option<u64>> = vec![None; 64];
    let mut eval = |level: u8| -> u64 {
        if let Some(v) = cache[level as usize] {
            return v;
        }
        let mut f = recon.clone();
        apply_loop_filter(&mut f, d, level);
        let e = frame_sse(src, &f);
        cache[level as usize] = Some(e);
        e
    };
    // Start from a guess that grows with the quantizer, then walk with shrinking steps.
    let mut best = ((q as u32 * 40) / 127) as u8;
    // Realtime takes the guess as it is, as fast encoders derive the level from the quantizer
    // (tried on bus and carphone: 0.02-0.09 dB below the searched level, 5-8% faster).
    if speed == Speed::Realtime {
        return best;
    }
    let mut be = eval(best);
    let mut step: i32 = 8;
    while step > 0 {
        let mut moved = false;
        for dir in [-1, 1] {
            let l = best as i32 + dir * step;
            if !(0..=63).contains(&l) {
                continue;
            }
            let e = eval(l as u8);
            if e < be {
                be = e;
                best = l as u8;
                moved = true;
            }
        }
        if !moved {
            step /= 2;
        }
    }
    best
}

/// Every macroblock's coding in raster order: the decisions, the levels and the
/// reconstruction before the loop filter.
#[allow(clippy::needless_range_loop)]
fn analyze_mbs(fc: &FrameCtx, state: &DecoderState) -> (Vec<MbInfo>, Vec<MbLevels>, Frame) {
    let key = fc.key_frame;
    let (w, h) = (fc.src.display_width, fc.src.display_height);
    let mut recon = Frame::new(w, h, 0);
    let (cols, rows) = (fc.cols, fc.rows);
    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut all_levels = Vec::with_capacity(cols * rows);
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    for mby in 0..rows {
        let mut left_nz: NzContext = [0; 9];
        for mbx in 0..cols {
            let i = mby * cols + mbx;
            let segment = if key { 0 } else { state.segment_map.get(i).copied().unwrap_or(0) };
            let m = MbCtx {
                mbx,
                mby,
                src: read_mb(fc.src, mbx, mby),
                above: above_nz[mbx],
                left: left_nz,
                nb: Neighbours {
                    above: (mby > 0).then(|| &mbs[i - cols]),
                    left: (mbx > 0).then(|| &mbs[i - 1]),
                    above_left: (mby > 0 && mbx > 0).then(|| &mbs[i - cols - 1]),
                },
                segment,
            };
            let inter = if key { None } else { best_inter(fc, &m, &mut recon) };
            let bound = inter.as_ref().map_or(f64::MAX, |c| c.cost);
            let intra = best_intra(fc, &m, &mut recon, bound);
            let choice = match (inter, intra) {
                (Some(a), Some(b)) => {
                    if a.cost <= b.cost {
                        a
                    } else {
                        b
                    }
                }
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => unreachable!("intra coding always yields a choice"),
            };
            write_mb(&mut recon, mbx, mby, &choice.px);
            above_nz[mbx] = choice.above;
            left_nz = choice.left;
            let mut info = choice.info;
            info.skip_coeff = choice.levels.is_zero();
            mbs.push(info);
            all_levels.push(choice.levels);
        }
    }

    (mbs, all_levels, recon)
}

/// Analyze one frame: choose every macroblock's coding and compute the reconstruction
/// (including the loop filter) a decoder will produce from the written frame.
///
/// `source` must have the state's picture size on inter frames; its padding (macroblock
/// alignment) should hold replicated edge pixels, as [`crate::encoder::source_from_i420`]
/// builds it.
pub fn analyze_frame(
    state: &DecoderState,
    source: &Frame,
    params: &EncodeParams,
) -> Result<(FrameDecisions, Frame), EncodeError> {
    let (w, h) = (source.display_width, source.display_height);
    if w == 0 || h == 0 || w > 16383 || h > 16383 {
        return Err(EncodeError::BadSize { width: w, height: h });
    }
    if source.y.width != w.div_ceil(16) * 16 || source.y.height != h.div_ceil(16) * 16 {
        return Err(EncodeError::BadSize { width: w, height: h });
    }
    if params.qindex > 127 {
        return Err(EncodeError::BadParam(format!("qindex {} > 127", params.qindex)));
    }
    if params.sharpness > 7 || params.log2_partitions > 3 {
        return Err(EncodeError::BadParam("sharpness > 7 or log2_partitions > 3".into()));
    }
    if params.copy_to_golden > 2 || params.copy_to_altref > 2 {
        return Err(EncodeError::BadParam("buffer copy flag > 2".into()));
    }
    if params.loop_filter_level.is_some_and(|l| l > 63) {
        return Err(EncodeError::BadParam("loop filter level > 63".into()));
    }
    let key = params.key_frame;
    if !key {
        if state.width as usize != w || state.height as usize != h {
            return Err(EncodeError::SizeMismatch {
                state: (state.width as usize, state.height as usize),
                source: (w, h),
            });
        }
        if state.last.is_none() || state.golden.is_none() || state.altref.is_none() {
            return Err(EncodeError::NoReference);
        }
    }
    let default_probs = EntropyProbs::default();
    let probs = if key { &default_probs } else { &state.probs };
    let quant = QuantIndices { y_ac_qi: params.qindex, ..Default::default() };
    let segmentation = Segmentation::default();
    let lf_adjust = if key { LfAdjust::default() } else { state.lf.clone() };
    let mq = MbQuant::per_segment(&quant, &segmentation, key);

    let mut refs = Vec::new();
    if !key {
        let cands = [
            (RefFrame::Last, &state.last),
            (RefFrame::Golden, &state.golden),
            (RefFrame::AltRef, &state.altref),
        ];
        let mut seen: Vec<&Arc<Frame>> = Vec::new();
        for (which, f) in cands {
            let Some(f) = f else { continue };
            if seen.iter().any(|s| Arc::ptr_eq(s, f) || ***s == **f) {
                continue;
            }
            seen.push(f);
            refs.push(RefPic { which, frame: f, luma: Padded::new(&f.y) });
        }
    }
    let fc = FrameCtx {
        src: source,
        key_frame: key,
        speed: params.speed,
        quant_mode: params.quant,
        quant: mq,
        tc: TokenCosts::new(&probs.coeff),
        mc: ModeCosts::new(probs, key),
        lambda: lambda(mq[0].dq.y[1] as i32, key),
        trellis_lambda: trellis_lambda(mq[0].dq.y[1] as i32, key),
        refs,
        sign_bias: [false, false, !key && params.sign_bias_golden, !key && params.sign_bias_altref],
        cols: source.mb_cols(),
        rows: source.mb_rows(),
    };

    let (mbs, all_levels, mut recon) = analyze_mbs(&fc, state);
    let header = FrameHeader {
        segment_tree_probs: [255; 3],
        sharpness_level: params.sharpness,
        log2_nbr_of_dct_partitions: params.log2_partitions,
        quant,
        refresh_golden_frame: key || params.refresh_golden,
        refresh_alternate_frame: key || params.refresh_altref,
        copy_buffer_to_golden: if key || params.refresh_golden { 0 } else { params.copy_to_golden },
        copy_buffer_to_alternate: if key || params.refresh_altref {
            0
        } else {
            params.copy_to_altref
        },
        sign_bias_golden: !key && params.sign_bias_golden,
        sign_bias_alternate: !key && params.sign_bias_altref,
        refresh_entropy_probs: true,
        refresh_last: key || params.refresh_last,
        mb_no_skip_coeff: true,
        ..Default::default()
    };
    let mut d = FrameDecisions {
        key_frame: key,
        version: 0,
        show_frame: params.show_frame,
        width: w as u16,
        height: h as u16,
        header,
        segmentation,
        lf_adjust,
        mbs,
        levels: all_levels,
    };
    let level = match params.loop_filter_level {
        Some(l) => l,
        None => choose_filter_level(&recon, source, &d, params.speed, params.qindex),
    };
    d.header.loop_filter_level = level;
    apply_loop_filter(&mut recon, &d, level);
    Ok((d, recon))
}
