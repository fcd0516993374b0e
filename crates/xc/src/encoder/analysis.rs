//! Frame analysis: every macroblock's prediction (intra modes, or reference frame and motion
//! vectors) and quantized residual, chosen by rate-distortion cost `SSE + lambda * bits`.
//!
//! Macroblocks are visited in raster order on an in-progress reconstruction. Every candidate
//! is predicted with the decoder's own kernels into that reconstruction, and its residual is
//! coded by `residual` (transform, quantization, and the decoder's dequantization and inverse
//! transforms), so the winning candidate's pixels are exactly what a decoder rebuilds. After
//! the last macroblock the loop filter level is chosen on the finished reconstruction
//! (`filter_level`) and applied the way `decoder.rs` applies it.
//!
//! The stages, one module each: `intra_search` (16x16, B_PRED, chroma), `inter_search` (the
//! inter modes of each reference), `motion_search` (full-pel, then half- and quarter-pel),
//! `split_search` (SPLITMV), `residual` and `filter_level`. This module holds what they share:
//! the frame's and the macroblock's context and a fully evaluated candidate ([`Choice`]).

use std::sync::Arc;

use crate::encoder::block::{read_mb, write_mb, MbPixels};
use crate::encoder::filter_level::{apply_loop_filter, choose_and_apply_filter_level};
use crate::encoder::inter_search::best_inter;
use crate::encoder::intra_search::best_intra;
use crate::encoder::motion_search::Padded;
use crate::encoder::quantize::{MbQuant, QuantMode, Quantizer};
use crate::encoder::rdo::{activity_weights, lambda, trellis_lambda, ModeCosts, TokenCosts, BIT};
use crate::encoder::rebase::REBASE_LAMBDA_SCALE;
use crate::encoder::residual::MbCoder;
use crate::encoder::seed_search::seeded_inter;
use crate::encoder::{EncodeError, FrameDecisions, MbLevels};
use crate::frame::Frame;
use crate::header::FrameHeader;
use crate::mb::{MbInfo, RefFrame};
use crate::modes::Neighbours;
use crate::quant::QuantIndices;
use crate::state::{DecoderState, EntropyProbs, LfAdjust, Segmentation};
use crate::tokens::NzContext;

/// Effort level: how widely modes and motion vectors are searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Speed {
    /// Every mode, SPLITMV on every reference with all four partitionings.
    Best,
    /// Wide motion search; intra modes of inter frames screened by prediction; SPLITMV on
    /// the last frame when the macroblock has a residual (4x4 only where 8x8 wins).
    #[default]
    Good,
    /// Good, with Best's SPLITMV search: every reference, all four partitionings, and the
    /// full motion search for 4x4 partitions.
    GoodSplit,
    /// Good, with SPLITMV tried on every reference (golden and alt-ref too) by Good's own
    /// rule: when the best coding so far has a residual, 4x4 only where 8x8 wins. The ExCamera
    /// chain's boosted frames predict from a golden and an alt-ref nearly as good as their last
    /// frame, and vpxenc's golden frames split against them: on bigbuckbunny's boosted frames
    /// (`bench/encoder_frames.py`) SSIM / PSNR-Y BD-rate -2.4..-7.8% / -1.7..-7.1% against
    /// Good, nearly GoodSplit's gain, for 1.36x Good's CPU where Best takes 2.6x.
    GoodRefs,
    /// Small motion search, 16x16 intra modes only in inter frames.
    Realtime,
}

impl Speed {
    /// Whether SPLITMV is searched as Best searches it.
    pub(crate) fn full_split(self) -> bool {
        matches!(self, Speed::Best | Speed::GoodSplit)
    }
}

/// What to encode and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeParams {
    /// Encode a key frame (intra only, resets the state) rather than an inter frame.
    pub key_frame: bool,
    /// Base quantizer index (`y_ac_qi`, 0..=127).
    pub qindex: u8,
    /// How hard the analysis searches (modes, motion, filter level).
    pub speed: Speed,
    /// Refresh the last-frame reference with this frame (inter frames; key frames refresh all).
    pub refresh_last: bool,
    /// Refresh the golden reference with this frame.
    pub refresh_golden: bool,
    /// Refresh the alt-ref reference with this frame.
    pub refresh_altref: bool,
    /// 0 none, 1 last, 2 altref (as the frame header's `copy_buffer_to_golden`).
    pub copy_to_golden: u8,
    /// 0 none, 1 last, 2 golden.
    pub copy_to_altref: u8,
    /// Sign bias of golden-frame motion vectors (as the frame header's flag).
    pub sign_bias_golden: bool,
    /// Sign bias of alt-ref motion vectors.
    pub sign_bias_altref: bool,
    /// Loop filter level; `None` chooses one by trying levels on the reconstruction.
    pub loop_filter_level: Option<u8>,
    /// Loop filter sharpness (0..=7).
    pub sharpness: u8,
    /// log2 of the number of DCT token partitions (0..=3).
    pub log2_partitions: u8,
    /// Whether a decoder displays the frame.
    pub show_frame: bool,
    /// How residual levels are chosen: RD-optimized (the default; `Speed::Realtime` always
    /// uses the plain quantizer) or plain dead-zone rounding.
    pub quant: QuantMode,
    /// Weight each macroblock's lambda (mode decision and RD quantizer) by its activity
    /// (`rdo::activity_weights`): flat macroblocks keep more residual, busy ones less, for
    /// SSIM's sake, as libvpx's `--tune=ssim` does.
    pub activity_rd: bool,
    /// Inter frames' mode decisions at `SSIM_MODE_LAMBDA` (0.7; 0.4 at Realtime) times the
    /// lambda (the RD quantizer's unchanged): finer vectors and partitions, more modes' bits.
    /// The ExCamera chain decides its boosted frames this way (`ReencodeOpts::activity_rd`).
    pub ssim_decisions: bool,
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
            activity_rd: false,
            ssim_decisions: false,
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

/// The multiplier of inter frames' mode-decision lambda with [`EncodeParams::ssim_decisions`].
///
/// libvpx's `--tune=ssim` weighs a macroblock's lambda against a fixed activity (its
/// `activity_avg`), under which a typical macroblock's weight is below 1; `rdo::activity_weights`
/// keeps the frame's mean at 1. Measured on ExCamera[6,16] (`bench/compression-ideas.md`,
/// seventh session), the chain's first-frame decisions (pass 1 and the re-decide pass) at 0.5,
/// 0.6, 0.7, 0.8 and 1.4: SSIM / PSNR-Y BD-rate on bigbuckbunny -0.05% / +0.18%, -0.24% /
/// -0.12%, -0.44% / -0.28%, -0.38% / -0.24%, +1.16% / +1.15% against 1; in the re-decide pass
/// alone (not in pass 1, whose output its successor decides against) half the gain.
pub const SSIM_MODE_LAMBDA: f64 = 0.7;

/// [`SSIM_MODE_LAMBDA`] at Realtime, whose candidates are ranked by their prediction's cost
/// before any is coded. The chain's Realtime encodes are the pass 1 of re-decided chunks,
/// whose output only seeds the successor's re-decide pass; 0.85 / 0.7 / 0.5 / 0.4 / 0.3 there
/// (Good's 0.7 elsewhere): bigbuckbunny's SSIM / PSNR-Y BD-rate +0.48% / +0.42%, 0, -0.09% /
/// -0.23%, -0.21% / -0.33%, +0.01% / -0.11%; carphone at 0.5 / 0.4 -0.25% / -0.21%, -0.41% /
/// -0.29% (`bench/compression-ideas.md`, seventh session).
pub const SSIM_MODE_LAMBDA_REALTIME: f64 = 0.4;

/// The mode-decision lambda's multiplier with [`EncodeParams::ssim_decisions`] at `speed`.
pub(crate) fn ssim_mode_lambda(speed: Speed) -> f64 {
    if speed == Speed::Realtime {
        SSIM_MODE_LAMBDA_REALTIME
    } else {
        SSIM_MODE_LAMBDA
    }
}

/// A reference frame usable in this frame.
pub(crate) struct RefPic<'a> {
    pub(crate) which: RefFrame,
    pub(crate) frame: &'a Frame,
    pub(crate) luma: Padded,
}

/// Frame-wide inputs to macroblock decisions.
pub(crate) struct FrameCtx<'a> {
    pub(crate) src: &'a Frame,
    pub(crate) key_frame: bool,
    pub(crate) speed: Speed,
    pub(crate) quant_mode: QuantMode,
    pub(crate) quant: [MbQuant; 4],
    pub(crate) tc: TokenCosts,
    pub(crate) mc: ModeCosts,
    pub(crate) lambda: f64,
    /// The RD quantizer's multiplier (`rdo::trellis_lambda`).
    pub(crate) trellis_lambda: f64,
    /// The current macroblock's multiplier of both lambdas (its activity weight with
    /// `EncodeParams::activity_rd`, else 1).
    pub(crate) mb_scale: std::cell::Cell<f64>,
    pub(crate) refs: Vec<RefPic<'a>>,
    /// Per `RefFrame` index, the index in `refs` of the reference holding its picture (the
    /// references of equal pictures are searched once).
    pub(crate) ref_index: [usize; 4],
    /// The motion vector probabilities in force (for SPLITMV rates of given vectors).
    pub(crate) mv_probs: [[u8; 19]; 2],
    pub(crate) sign_bias: [bool; 4],
    pub(crate) cols: usize,
    pub(crate) rows: usize,
}

impl FrameCtx<'_> {
    /// The quantizer of this frame's effort level: RD-optimized except at Realtime.
    pub(crate) fn qz(&self) -> Quantizer<'_> {
        if self.speed == Speed::Realtime || self.quant_mode == QuantMode::Plain {
            Quantizer::Plain
        } else {
            Quantizer::Rd { costs: &self.tc, lambda: self.trellis_lambda * self.mb_scale.get() }
        }
    }

    /// A residual coder for macroblock `m` starting from the non-zero contexts `above` and
    /// `left`, pricing the levels with the frame's token costs.
    pub(crate) fn coder(&self, m: &MbCtx, above: NzContext, left: NzContext) -> MbCoder<'_> {
        MbCoder::new(&self.quant[m.segment as usize & 3], self.qz(), Some(&self.tc), above, left)
    }

    /// Whether intra modes in this inter frame are screened by their prediction alone before
    /// coding (Good: the best 2 of the 16x16 and chroma modes, 3 of the subblock modes; 25%
    /// faster for 0.2-0.5% larger clips, time spent on SPLITMV instead).
    pub(crate) fn screens_intra(&self) -> bool {
        !self.key_frame && matches!(self.speed, Speed::Good | Speed::GoodSplit | Speed::GoodRefs)
    }

    pub(crate) fn cost(&self, sse: u64, rate: u32) -> f64 {
        sse as f64 + self.lambda * self.mb_scale.get() * rate as f64 / BIT as f64
    }
}

/// One fully evaluated macroblock coding.
#[derive(Clone)]
pub(crate) struct Choice {
    pub(crate) info: MbInfo,
    pub(crate) levels: MbLevels,
    pub(crate) px: MbPixels,
    pub(crate) rate: u32,
    pub(crate) sse: u64,
    pub(crate) cost: f64,
    pub(crate) above: NzContext,
    pub(crate) left: NzContext,
}

/// Add the skip flag's rate (and drop token rates of an all-zero macroblock, which is coded
/// with `mb_skip_coeff` instead), then the RD cost.
pub(crate) fn finish(fc: &FrameCtx, mut c: Choice, mode_rate: u32, token_rate: u32) -> Choice {
    let zero = c.levels.is_zero();
    c.rate = mode_rate + if zero { fc.mc.skip[1] } else { fc.mc.skip[0] + token_rate };
    c.cost = fc.cost(c.sse, c.rate);
    c
}

pub(crate) fn better(a: Option<Choice>, b: Choice) -> Option<Choice> {
    match a {
        Some(a) if a.cost <= b.cost => Some(a),
        _ => Some(b),
    }
}

/// Per-macroblock working state.
pub(crate) struct MbCtx<'a> {
    pub(crate) mbx: usize,
    pub(crate) mby: usize,
    pub(crate) src: MbPixels,
    pub(crate) above: NzContext,
    pub(crate) left: NzContext,
    pub(crate) nb: Neighbours<'a>,
    pub(crate) segment: u8,
}

/// Every macroblock's coding in raster order: the decisions, the levels and the
/// reconstruction before the loop filter.
#[allow(clippy::needless_range_loop)]
fn analyze_mbs(
    fc: &FrameCtx,
    state: &DecoderState,
    activity_rd: bool,
    seed: Option<&[MbInfo]>,
) -> (Vec<MbInfo>, Vec<MbLevels>, Frame) {
    let key = fc.key_frame;
    let (w, h) = (fc.src.display_width, fc.src.display_height);
    let mut recon = Frame::new(w, h, 0);
    let (cols, rows) = (fc.cols, fc.rows);
    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut all_levels = Vec::with_capacity(cols * rows);
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    let weights = if activity_rd { activity_weights(fc.src) } else { Vec::new() };
    for mby in 0..rows {
        let mut left_nz: NzContext = [0; 9];
        for mbx in 0..cols {
            let i = mby * cols + mbx;
            fc.mb_scale.set(weights.get(i).copied().unwrap_or(1.0));
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
            let (inter, try_intra) = match seed {
                _ if key => (None, true),
                // Intra codings only where the seed has one (trying them everywhere gained
                // nothing on bigbuckbunny).
                Some(seed_mbs) => {
                    let s = &seed_mbs[i];
                    (seeded_inter(fc, &m, &mut recon, s), s.ref_frame == RefFrame::Intra)
                }
                None => (best_inter(fc, &m, &mut recon), true),
            };
            let bound = inter.as_ref().map_or(f64::MAX, |c| c.cost);
            let intra = if try_intra || inter.is_none() {
                best_intra(fc, &m, &mut recon, bound)
            } else {
                None
            };
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
    analyze_frame_seeded(state, source, params, None)
}

/// [`analyze_frame`], with `seed` (the macroblock records of the same frame decided
/// elsewhere, one per macroblock): each macroblock is decided by
/// `seed_search::seeded_inter` around its seed instead of the full inter search, with intra
/// codings tried only where the seed is intra, and every residual is quantized at the
/// rebase's lambda (`rebase::REBASE_LAMBDA_SCALE`), so the frame can be written as it is
/// instead of being rebased.
pub(crate) fn analyze_frame_seeded(
    state: &DecoderState,
    source: &Frame,
    params: &EncodeParams,
    seed: Option<&[MbInfo]>,
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
    if let Some(s) = seed {
        let n = source.mb_cols() * source.mb_rows();
        if key || s.len() != n {
            return Err(EncodeError::BadParam(format!(
                "a seed of {} macroblock records for an inter frame of {n}",
                s.len()
            )));
        }
    }
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
    let mut ref_index = [0usize; 4];
    if !key {
        let cands = [
            (RefFrame::Last, &state.last),
            (RefFrame::Golden, &state.golden),
            (RefFrame::AltRef, &state.altref),
        ];
        let mut seen: Vec<&Arc<Frame>> = Vec::new();
        for (which, f) in cands {
            let Some(f) = f else { continue };
            if let Some(k) = seen.iter().position(|s| Arc::ptr_eq(s, f) || ***s == **f) {
                ref_index[which as usize] = k;
                continue;
            }
            ref_index[which as usize] = seen.len();
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
        lambda: lambda(mq[0].dq.y[1] as i32, key)
            * if params.ssim_decisions && !key { ssim_mode_lambda(params.speed) } else { 1.0 },
        trellis_lambda: trellis_lambda(mq[0].dq.y[1] as i32, key)
            * if seed.is_some() { REBASE_LAMBDA_SCALE } else { 1.0 },
        mb_scale: std::cell::Cell::new(1.0),
        refs,
        ref_index,
        mv_probs: probs.mv,
        sign_bias: [false, false, !key && params.sign_bias_golden, !key && params.sign_bias_altref],
        cols: source.mb_cols(),
        rows: source.mb_rows(),
    };

    let (mbs, all_levels, mut recon) = analyze_mbs(&fc, state, params.activity_rd, seed);
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
    let (level, recon) = match params.loop_filter_level {
        Some(l) => {
            apply_loop_filter(&mut recon, &d, l);
            (l, recon)
        }
        None => choose_and_apply_filter_level(recon, source, &d, params.speed, params.qindex),
    };
    d.header.loop_filter_level = level;
    Ok((d, recon))
}
