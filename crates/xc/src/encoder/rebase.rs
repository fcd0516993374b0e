//! Rebase: re-encode a frame of another stream (the *prediction stream*) against a different
//! entering decoder state, keeping every prediction decision and recomputing only residuals.
//!
//! This is ExCamera's step that joins independently encoded chunks into one stream: chunk k's
//! frames were encoded by vpxenc starting from a key frame; rebasing them onto the state chunk
//! k-1 ends in gives frames that decode correctly after chunk k-1 with no key frame between.
//!
//! Kept from the prediction frame: every macroblock's modes (y, uv, subblock), reference frame,
//! motion vectors (SPLITMV included), segment ids, and the header's buffer refresh/copy flags,
//! sign biases, filter type and sharpness, quantizer deltas, segmentation and loop filter
//! deltas. Near/nearest MVs derive from neighbours' MVs, which are unchanged, so every inter
//! mode stays codable with the same vector. Recomputed: the prediction from the new references
//! (with the decoder's kernels), the residual against the source, its quantized levels, the
//! reconstruction, skip flags, and the probability updates the writer chooses. A macroblock the
//! prediction stream skipped may now carry residual and vice versa.
//!
//! [`reencode_chunk`] applies this to a whole chunk the way xc-enc's re-encode does.

use std::sync::Arc;

use crate::decoder::Decoder;
use crate::encoder::analysis::analyze_frame_seeded;
use crate::encoder::bitstream::WriteOptions;
use crate::encoder::block::{read_block, write_block};
use crate::encoder::distortion::{psnr, sse};
use crate::encoder::filter_level::{apply_loop_filter, choose_filter_level};
use crate::encoder::next_state::finish_frame;
use crate::encoder::quantize::{MbQuant, QuantMode, Quantizer};
use crate::encoder::rdo::{activity_weights, bit_cost, trellis_lambda, TokenCosts};
use crate::encoder::residual::MbCoder;
use crate::encoder::stillness::{static_key_qindex, stillness};
use crate::encoder::{
    encode_frame, EncodeError, EncodeParams, EncodedFrame, FrameDecisions, MbLevels, Speed,
};
use crate::frame::{Frame, Plane};
use crate::header::parse_uncompressed_chunk;
use crate::inspect::{ModeParser, ParsedFrame};
use crate::mb::{MbInfo, MbMode, Mv, RefFrame};
use crate::predict::inter::{
    chroma_mv_full, chroma_mv_split, predict_block, predict_inter_mb, InterFilter,
};
use crate::predict::intra::{predict_chroma8, predict_luma16, predict_luma4};
use crate::state::{DecoderState, EntropyProbs, Segmentation};
use crate::tokens::{skip_mb_tokens, NzContext};

/// How a rebased frame's loop filter level is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LoopFilterChoice {
    /// The prediction frame's level.
    #[default]
    Keep,
    /// Search for the level that minimizes the filtered frame's error against the source.
    Search,
    /// This level (0..=63).
    Level(u8),
}

/// Options of one [`rebase_frame`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct RebaseParams {
    /// Base quantizer index; `None` keeps the prediction frame's `y_ac_qi`.
    pub qindex: Option<u8>,
    /// How the loop filter level is chosen.
    pub loop_filter: LoopFilterChoice,
    /// Refresh last, golden and alt-ref with this frame (whatever the prediction frame did).
    pub refresh_all: bool,
    /// Write no probability updates: code the frame with the probabilities in force.
    pub fix_prob_tables: bool,
    /// How residual levels are chosen (default: rate-distortion optimized).
    pub quant: QuantMode,
    /// Let each inter macroblock switch to whichever reference (last, golden, alt-ref) predicts
    /// it best with its kept motion vectors, among those with the same sign bias as its own.
    /// Near/nearest vectors only depend on neighbours' vectors and sign biases, so every mode
    /// stays codable with the same vector. Used when the references differ from the ones the
    /// prediction stream was decided against (see [`ReencodeOpts::choose_refs`]).
    pub choose_refs: bool,
    /// Weight each macroblock's lambda by its activity (`rdo::activity_weights`): flat
    /// macroblocks keep more of their residual, busy ones less, for SSIM's sake.
    pub activity_rd: bool,
    /// Also decode the written frame and check that our decoder reaches the state built from
    /// the decisions and the reconstruction (slower: for tests; always on in debug builds).
    pub verify: bool,
}

/// Inter prediction filter of a bitstream version (spec 9.1).
fn version_filter(version: u8) -> (InterFilter, bool) {
    let filter = if version == 0 { InterFilter::SixTap } else { InterFilter::Bilinear };
    (filter, version == 3)
}

/// Code macroblock (mbx, mby) with `info`'s prediction into `recon`, returning its levels and
/// updating the non-zero contexts. With `skip_lambda`, a macroblock whose residual does not
/// pay for itself (`SSE + lambda * bits`, the bits priced by `coder`) is coded with no
/// residual (B_PRED excepted: its subblocks predict from each other's reconstruction).
#[allow(clippy::too_many_arguments)]
fn rebase_mb(
    recon: &mut Frame,
    src: &Frame,
    refs: &[Option<&Frame>; 4],
    info: &mut MbInfo,
    coder: &mut MbCoder,
    skip_lambda: Option<f64>,
    choose_refs: Option<[bool; 4]>,
    mbx: usize,
    mby: usize,
    filter: (InterFilter, bool),
) -> Result<MbLevels, EncodeError> {
    let mut lv = MbLevels::default();
    let (entry_above, entry_left) = (coder.above, coder.left);
    let (lx, ly, cx, cy) = (mbx * 16, mby * 16, mbx * 8, mby * 8);
    let src_y = read_block::<16, 256>(&src.y, lx, ly);
    let mut pred_y = None;
    if info.ref_frame == RefFrame::Intra {
        if info.y_mode == MbMode::BPred {
            // Subblocks in order: each is predicted from the reconstruction of the previous.
            for b in 0..16 {
                let (x0, y0) = (lx + (b & 3) * 4, ly + (b >> 2) * 4);
                predict_luma4(&mut recon.y, mbx, mby, b, info.b_modes[b]);
                let mut rec = read_block::<4, 16>(&recon.y, x0, y0);
                let s = read_block::<4, 16>(&src.y, x0, y0);
                coder.subblock(b, &s, &mut rec, &mut lv.blocks[b]);
                write_block::<4>(&mut recon.y, x0, y0, &rec);
            }
        } else {
            predict_luma16(&mut recon.y, mbx, mby, info.y_mode);
            let mut y = read_block::<16, 256>(&recon.y, lx, ly);
            pred_y = Some(y);
            coder.luma_y2(&src_y, &mut y, &mut lv);
            write_block::<16>(&mut recon.y, lx, ly, &y);
        }
        predict_chroma8(&mut recon.u, mbx, mby, info.uv_mode);
        predict_chroma8(&mut recon.v, mbx, mby, info.uv_mode);
    } else {
        let Some(reference) = refs[info.ref_frame as usize] else {
            return Err(EncodeError::NoReference);
        };
        let mut predicted = None;
        if let Some(sign_bias) = choose_refs {
            let at = (mbx, mby);
            (info.ref_frame, predicted) =
                best_reference(recon, &src_y, refs, info, sign_bias, at, filter.0);
            let chosen = refs[info.ref_frame as usize].unwrap_or(reference);
            predict_inter_chroma(chosen, recon, mbx, mby, info, filter);
        } else {
            predict_inter_mb(reference, recon, mbx, mby, info, filter.0, filter.1);
        }
        let mut y = predicted.unwrap_or_else(|| read_block::<16, 256>(&recon.y, lx, ly));
        pred_y = Some(y);
        if info.y_mode == MbMode::Split {
            coder.luma_nodc(&src_y, &mut y, &mut lv);
        } else {
            coder.luma_y2(&src_y, &mut y, &mut lv);
        }
        write_block::<16>(&mut recon.y, lx, ly, &y);
    }
    let mut pred_c = [[0u8; 64]; 2];
    let mut src_c = [[0u8; 64]; 2];
    let mut rec_c = [[0u8; 64]; 2];
    for (plane, (dst, s)) in
        [(&mut recon.u, &src.u), (&mut recon.v, &src.v)].into_iter().enumerate()
    {
        let mut c = read_block::<8, 64>(dst, cx, cy);
        pred_c[plane] = c;
        src_c[plane] = read_block::<8, 64>(s, cx, cy);
        coder.chroma(&src_c[plane], &mut c, plane, &mut lv);
        rec_c[plane] = c;
        write_block::<8>(dst, cx, cy, &c);
    }
    if let (Some(lambda), Some(py)) = (skip_lambda, pred_y) {
        if !lv.is_zero() {
            let has_y2 = info.y_mode != MbMode::Split;
            let tokens = coder.rate;
            let rec_y = read_block::<16, 256>(&recon.y, lx, ly);
            let d1 = sse(&src_y, &rec_y) + sse(&src_c[0], &rec_c[0]) + sse(&src_c[1], &rec_c[1]);
            let d0 = sse(&src_y, &py) + sse(&src_c[0], &pred_c[0]) + sse(&src_c[1], &pred_c[1]);
            let j1 = d1 as f64 + lambda * (tokens + bit_cost(SKIP_PROB, false)) as f64 / 256.0;
            let j0 = d0 as f64 + lambda * bit_cost(SKIP_PROB, true) as f64 / 256.0;
            if j0 < j1 {
                write_block::<16>(&mut recon.y, lx, ly, &py);
                write_block::<8>(&mut recon.u, cx, cy, &pred_c[0]);
                write_block::<8>(&mut recon.v, cx, cy, &pred_c[1]);
                lv = MbLevels::default();
                coder.above = entry_above;
                coder.left = entry_left;
                skip_mb_tokens(&mut coder.above, &mut coder.left, has_y2);
            }
        }
    }
    Ok(lv)
}

/// The reference among `refs` whose luma prediction of macroblock `at` with `info`'s motion
/// vectors has the least error against `src_y`, among those with the sign bias of `info`'s
/// own (so the near/nearest vectors, and with them the coded modes, are unchanged). Ties keep
/// the macroblock's reference. Returns it and its luma prediction, which `recon`'s luma holds
/// on return (`None` when the macroblock's own reference is missing); its chroma is not
/// touched.
fn best_reference(
    recon: &mut Frame,
    src_y: &[u8; 256],
    refs: &[Option<&Frame>; 4],
    info: &MbInfo,
    sign_bias: [bool; 4],
    (mbx, mby): (usize, usize),
    filter: InterFilter,
) -> (RefFrame, Option<[u8; 256]>) {
    let own = info.ref_frame;
    let Some(own_pic) = refs[own as usize] else { return (own, None) };
    let luma = |recon: &mut Frame, pic: &Frame| {
        predict_inter_luma(&pic.y, &mut recon.y, mbx, mby, info, filter);
        read_block::<16, 256>(&recon.y, mbx * 16, mby * 16)
    };
    let px = luma(recon, own_pic);
    // The own prediction's error is found only if another reference is tried.
    let mut best: (Option<u32>, RefFrame, [u8; 256]) = (None, own, px);
    let mut current = own;
    // Pictures already predicted from: two references often hold the same picture (a frame
    // that refreshes golden and alt-ref both), whose prediction would only tie.
    let mut tried: [&Frame; 3] = [own_pic; 3];
    let mut n_tried = 1;
    for cand in [RefFrame::Last, RefFrame::Golden, RefFrame::AltRef] {
        let Some(pic) = refs[cand as usize] else { continue };
        if cand == own
            || sign_bias[cand as usize] != sign_bias[own as usize]
            || tried[..n_tried].iter().any(|&t| std::ptr::eq(pic, t))
        {
            continue;
        }
        tried[n_tried] = pic;
        n_tried += 1;
        let best_e = best.0.unwrap_or_else(|| sse(src_y, &best.2));
        best.0 = Some(best_e);
        let px = luma(recon, pic);
        current = cand;
        let e = sse(src_y, &px);
        if e < best_e {
            best = (Some(e), cand, px);
        }
    }
    if current != best.1 {
        write_block::<16>(&mut recon.y, mbx * 16, mby * 16, &best.2);
    }
    (best.1, Some(best.2))
}

/// The luma part of `predict::inter::predict_inter_mb`: one 16x16 block, or for SPLITMV each
/// 8x8 quadrant whose vectors agree at once and the others per 4x4 subblock.
fn predict_inter_luma(
    reference: &Plane,
    dst: &mut Plane,
    mbx: usize,
    mby: usize,
    info: &MbInfo,
    filter: InterFilter,
) {
    let (lx, ly) = (mbx * 16, mby * 16);
    let mut block = |x: usize, y: usize, size: usize, mv: Mv| {
        let (row, col) = (2 * mv.row as i32, 2 * mv.col as i32);
        predict_block(reference, dst, lx + x, ly + y, size, row, col, filter);
    };
    if info.y_mode != MbMode::Split {
        block(0, 0, 16, info.mv);
        return;
    }
    let mvs = &info.mvs;
    for q in 0..4 {
        let first = (q / 2) * 8 + (q % 2) * 2;
        let quad = [first, first + 1, first + 4, first + 5];
        if quad.iter().all(|&b| mvs[b] == mvs[first]) {
            block((q % 2) * 8, (q / 2) * 8, 8, mvs[first]);
        } else {
            for b in quad {
                block((b % 4) * 4, (b / 4) * 4, 4, mvs[b]);
            }
        }
    }
}

/// The chroma part of `predict::inter::predict_inter_mb`: one 8x8 block per plane, or four
/// 4x4 blocks per plane for SPLITMV.
fn predict_inter_chroma(
    reference: &Frame,
    dst: &mut Frame,
    mbx: usize,
    mby: usize,
    info: &MbInfo,
    (filter, full_pixel): (InterFilter, bool),
) {
    let (cx, cy) = (mbx * 8, mby * 8);
    let mut block = |x: usize, y: usize, size: usize, (row, col): (i32, i32)| {
        predict_block(&reference.u, &mut dst.u, cx + x, cy + y, size, row, col, filter);
        predict_block(&reference.v, &mut dst.v, cx + x, cy + y, size, row, col, filter);
    };
    if info.y_mode == MbMode::Split {
        for (k, &mv) in chroma_mv_split(&info.mvs, full_pixel).iter().enumerate() {
            block((k % 2) * 4, (k / 2) * 4, 4, mv);
        }
    } else {
        block(0, 0, 8, chroma_mv_full(info.mv, full_pixel));
    }
}

/// Rebased frames use 0.6 of the RD quantizer's lambda. Their prediction decisions were made
/// for the prediction stream's quality, and a re-encoded chunk must stay within 0.5 dB of it
/// frame by frame. Measured on the chain tests (carphone, bus, bigbuckbunny, park_joy): at 0.5
/// the rebased frames land 0.0..+0.3 dB above the prediction stream's and the chunks are
/// 11-50% smaller; at 1.0 they are 0.2-0.6 dB below it on average and a few frames break the
/// 0.5 dB bound (plain quantizer: +0.6 dB, 40-80% larger frames than vpxenc's). Since the
/// excamera chain decides every frame with xc (`ReencodeOpts::redecide_later_frames`), 0.6
/// is its best (SSIM / PSNR-Y BD-rate, 0.4..1.0 measured: bigbuckbunny +7.6% / +1.0% ->
/// +7.1% / +0.7%, carphone -3.8% / -3.7% -> -4.3% / -3.6%; `bench/compression-ideas.md`).
pub(crate) const REBASE_LAMBDA_SCALE: f64 = 0.6;

/// The skip probability assumed when pricing the skip flag (the writer picks the real one).
const SKIP_PROB: u8 = 100;

fn mismatch(msg: String) -> EncodeError {
    EncodeError::Mismatch(msg)
}

/// The segmentation header flags and per-macroblock segment ids to write so the decoder,
/// starting from `state`, uses `pred`'s segmentation and segment ids.
fn plan_segmentation(state: &DecoderState, pred: &ParsedFrame) -> (bool, bool, Vec<u8>) {
    let seg = &pred.segmentation;
    let n = pred.mbs.len();
    let entering_map: Vec<u8> = if pred.key_frame || state.segment_map.len() != n {
        vec![0; n]
    } else {
        state.segment_map.clone()
    };
    if !seg.enabled {
        return (false, false, entering_map);
    }
    let entering =
        if pred.key_frame { Segmentation::default() } else { state.segmentation.clone() };
    let same_data =
        entering.abs_delta == seg.abs_delta && entering.quant == seg.quant && entering.lf == seg.lf;
    let ids: Vec<u8> = pred.mbs.iter().map(|m| m.segment_id & 3).collect();
    let update_map = pred.header.update_mb_segmentation_map || ids != entering_map;
    let update_data = pred.header.update_segment_feature_data || !same_data;
    (update_map, update_data, if update_map { ids } else { entering_map })
}

/// Rebase one frame of a prediction stream onto `state`: keep `pred`'s prediction decisions,
/// recompute the residuals against `state`'s references and `source`, write the frame and
/// build the state after it from the decisions (with `params.verify`, and in debug builds,
/// also decode it and check that the decoder reaches that state and the reconstruction).
pub(crate) fn rebase_frame(
    state: &DecoderState,
    pred: &ParsedFrame,
    source: &Frame,
    params: &RebaseParams,
) -> Result<EncodedFrame, EncodeError> {
    let (d, recon) = plan_rebase(state, pred, source, params)?;
    let opts = WriteOptions::prob_updates(!params.fix_prob_tables);
    finish_frame(state, &d, recon, &opts, params.verify)
}

/// [`rebase_frame`] up to writing: the frame's decisions and its (loop filtered)
/// reconstruction.
fn plan_rebase(
    state: &DecoderState,
    pred: &ParsedFrame,
    source: &Frame,
    params: &RebaseParams,
) -> Result<(FrameDecisions, Frame), EncodeError> {
    let (w, h) = (pred.width as usize, pred.height as usize);
    if (source.display_width, source.display_height) != (w, h)
        || source.y.width != w.div_ceil(16) * 16
        || source.y.height != h.div_ceil(16) * 16
    {
        return Err(mismatch(format!(
            "prediction frame is {w}x{h} but the source picture is {}x{}",
            source.display_width, source.display_height
        )));
    }
    if !pred.key_frame {
        if (state.width as usize, state.height as usize) != (w, h) {
            return Err(EncodeError::SizeMismatch {
                state: (state.width as usize, state.height as usize),
                source: (w, h),
            });
        }
        if state.last.is_none() || state.golden.is_none() || state.altref.is_none() {
            return Err(EncodeError::NoReference);
        }
    }
    let cols = w.div_ceil(16);
    if pred.mbs.len() != cols * h.div_ceil(16) {
        return Err(mismatch(format!(
            "prediction frame has {} macroblocks, {w}x{h} needs {}",
            pred.mbs.len(),
            cols * h.div_ceil(16)
        )));
    }
    if let Some(q) = params.qindex.filter(|&q| q > 127) {
        return Err(EncodeError::BadParam(format!("qindex {q} > 127")));
    }
    if let LoopFilterChoice::Level(l) = params.loop_filter {
        if l > 63 {
            return Err(EncodeError::BadParam(format!("loop filter level {l} > 63")));
        }
    }

    let mut header = pred.header.clone();
    if let Some(q) = params.qindex {
        header.quant.y_ac_qi = q;
    }
    header.mb_no_skip_coeff = true;
    let (update_map, update_data, seg_ids) = plan_segmentation(state, pred);
    header.update_mb_segmentation_map = update_map;
    header.update_segment_feature_data = update_data;
    if params.refresh_all && !pred.key_frame {
        header.refresh_last = true;
        header.refresh_golden_frame = true;
        header.refresh_alternate_frame = true;
        header.copy_buffer_to_golden = 0;
        header.copy_buffer_to_alternate = 0;
    }
    let segmentation = pred.segmentation.clone();
    let mq = MbQuant::per_segment(&header.quant, &segmentation, pred.key_frame);
    let refs: [Option<&Frame>; 4] = if pred.key_frame {
        [None; 4]
    } else {
        [None, state.last.as_deref(), state.golden.as_deref(), state.altref.as_deref()]
    };
    let filter = version_filter(pred.version);
    let sign_bias = [false, false, pred.header.sign_bias_golden, pred.header.sign_bias_alternate];

    // Token costs under the probabilities the frame starts from (the writer may improve on
    // them with updates), and the same lambda as the analysis.
    let default_probs = EntropyProbs::default();
    let probs = if pred.key_frame { &default_probs.coeff } else { &state.probs.coeff };
    let costs = TokenCosts::new(probs);
    let lambdas: [f64; 4] = std::array::from_fn(|s| {
        trellis_lambda(mq[s].dq.y[1] as i32, pred.key_frame) * REBASE_LAMBDA_SCALE
    });
    let weights = if params.activity_rd { activity_weights(source) } else { Vec::new() };

    let mut recon = Frame::new(w, h, 0);
    let mut mbs = Vec::with_capacity(pred.mbs.len());
    let mut levels = Vec::with_capacity(pred.mbs.len());
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    let mut left_nz: NzContext = [0; 9];
    for (i, m) in pred.mbs.iter().enumerate() {
        let mut info = m.clone();
        info.segment_id = seg_ids[i];
        let (mbx, mby) = (i % cols, i / cols);
        if mbx == 0 {
            left_nz = [0; 9];
        }
        let seg = info.segment_id as usize & 3;
        let lambda = lambdas[seg] * weights.get(i).copied().unwrap_or(1.0);
        // The RD quantizer prices its levels as it chooses them: the skip decision's rate.
        let (qz, rate_costs) = match params.quant {
            QuantMode::Plain => (Quantizer::Plain, None),
            QuantMode::Rd => (Quantizer::Rd { costs: &costs, lambda }, Some(&costs)),
        };
        let mut coder = MbCoder::new(&mq[seg], qz, rate_costs, above_nz[mbx], left_nz);
        let lv = rebase_mb(
            &mut recon,
            source,
            &refs,
            &mut info,
            &mut coder,
            (params.quant == QuantMode::Rd).then_some(lambda),
            params.choose_refs.then_some(sign_bias),
            mbx,
            mby,
            filter,
        )?;
        above_nz[mbx] = coder.above;
        left_nz = coder.left;
        info.skip_coeff = lv.is_zero();
        mbs.push(info);
        levels.push(lv);
    }
    let mut d = FrameDecisions {
        key_frame: pred.key_frame,
        version: pred.version,
        show_frame: pred.show_frame,
        width: pred.width,
        height: pred.height,
        header,
        segmentation,
        lf_adjust: pred.lf.clone(),
        mbs,
        levels,
    };
    let level = match params.loop_filter {
        LoopFilterChoice::Keep => pred.header.loop_filter_level,
        LoopFilterChoice::Level(l) => l,
        LoopFilterChoice::Search => {
            choose_filter_level(&recon, source, &d, Speed::Good, d.header.quant.y_ac_qi)
        }
    };
    d.header.loop_filter_level = level;
    apply_loop_filter(&mut recon, &d, level);
    Ok((d, recon))
}

/// How the quantizer of a chunk's converted first frame (a key frame in the prediction stream,
/// coded as an inter frame against the input state) is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FirstFrameQuality {
    /// mu / alfalfa's `-w`: qindex `round(w * kf_q + (1 - w) * next_frame_q)` with
    /// `w = ReencodeOpts::kf_q_weight`.
    Weighted,
    /// The largest qindex between the key frame's and the next frame's whose picture is
    /// within `tolerance_db` of the prediction stream's own first picture (PSNR against the
    /// source), found by bisection (about six trial encodes); the key frame's qindex, or a
    /// smaller one, when none is. The chunk's later frames are rebased onto this picture, so
    /// matching its quality keeps the whole chunk at the independently encoded quality while
    /// the inter frame costs less than the key frame it replaces.
    MatchPrediction {
        /// How far below the prediction picture's PSNR the first frame may be, in dB.
        tolerance_db: f64,
    },
}

impl Default for FirstFrameQuality {
    fn default() -> Self {
        FirstFrameQuality::MatchPrediction { tolerance_db: 0.25 }
    }
}

/// Options of [`reencode_chunk`] (xc-enc's re-encode flags).
#[derive(Clone, Debug, PartialEq)]
pub struct ReencodeOpts {
    /// Turn a first key frame into an inter frame even when the input state is fresh (then an
    /// error: there is nothing to predict from). A first key frame is turned into an inter
    /// frame anyway when the input state is not fresh.
    pub reencode_first_frame: bool,
    /// xc-enc's `-w`: the converted first frame's qindex is
    /// `round(w * kf_q + (1 - w) * next_frame_q)` (used when `first_frame_quality` is
    /// [`FirstFrameQuality::Weighted`]).
    pub kf_q_weight: f64,
    /// How the converted first frame's quantizer is chosen (`s_ac_qi` overrides it).
    pub first_frame_quality: FirstFrameQuality,
    /// How residual levels of rebased frames are chosen.
    pub quant: QuantMode,
    /// mu's S phase (`--s-ac-qi`): the first frame, when a key frame in the prediction
    /// stream, uses this qindex instead.
    pub s_ac_qi: Option<u8>,
    /// `--fix-prob-tables`: rebased frames write no probability updates.
    pub fix_prob_tables: bool,
    /// Loop filter level of rebased frames.
    pub loop_filter: LoopFilterChoice,
    /// Effort of the first frame's full inter encode. Realtime by default: on carphone and bus
    /// chunks (vpxenc pass 0, cq 20) its first frames are as close to the prediction's picture
    /// (the quality search's floor) and smaller than at Good, and Good's mode search with RD
    /// quantization costs as much as ten to twenty rebased frames per first frame, which alone
    /// would put the rebase over a quarter of vpxenc's time with six-frame chunks.
    pub first_frame_speed: Speed,
    /// The converted first frame refreshes last and alt-ref but leaves golden as the input
    /// state has it, so a boosted golden picture from an earlier chunk stays available to this
    /// chunk (with [`Self::choose_refs`]) and the next ones. The chunk's later frames were
    /// decided against a golden and alt-ref that both held the key frame; the alt-ref still
    /// does. Default false: refresh all three, as alfalfa's xc-enc does.
    pub first_frame_keeps_golden: bool,
    /// The chunk's last frame refreshes last, golden and alt-ref (alfalfa's behaviour, and the
    /// default). Without it the last frame keeps the prediction frame's refresh flags, so the
    /// golden picture survives into the next chunk.
    pub last_frame_refresh_all: bool,
    /// Rebased macroblocks may switch reference (`RebaseParams::choose_refs`).
    pub choose_refs: bool,
    /// With [`FirstFrameQuality::Weighted`], move the weight by how static the chunk is
    /// ([`content_weight`]) instead of using `kf_q_weight` as it is.
    pub kf_weight_by_content: bool,
    /// Pass 0 floored its key frame's quantizer near the boost a converted first frame gets
    /// (vpxenc `--min-q`), so that its later frames were decided against a reference of about
    /// the final stream's quality. The weighted quantizer then runs from 0, not from the
    /// floored key frame's quantizer, to the next frame's, and [`content_weight`] reads the
    /// (smaller) key frame against [`CONTENT_R0_FLOORED`].
    pub key_floored: bool,
    /// Rebased frames weight each macroblock's lambda by its activity
    /// (`RebaseParams::activity_rd`), as libvpx's SSIM tuning does: the rebase recomputes every
    /// residual, so vpxenc's own tuning of pass 0 does not survive it. The first frame's full
    /// encodes (a converted first frame, `redecide_first_frame`) also decide at the SSIM
    /// tuning's lower lambda (`EncodeParams::ssim_decisions`).
    pub activity_rd: bool,
    /// A first key frame that stays a key frame (the input state is fresh and
    /// `reencode_first_frame` is not set) is encoded in full by xc's key-frame analysis at its
    /// quantizer (`s_ac_qi`, or the prediction frame's), with `activity_rd`'s weights, instead
    /// of re-quantizing the prediction stream's intra modes. The pipeline's batch-start
    /// re-key moves vpxenc's key frame from quantizer 0 to about 13-20, and modes chosen for
    /// quantizer 0 (fine B_PRED everywhere) cost too much there: on bigbuckbunny's first
    /// frame the full encode is 5-8% smaller at equal SSIM (`bench/encoder_frames.py`), and
    /// ExCamera\[6,16\]'s SSIM BD-rate moves -0.9% (bigbuckbunny) and -3.1% (carphone)
    /// (`bench/compression-ideas.md`).
    pub key_frame_in_full: bool,
    /// xc-enc's `--static-key W`: a first key frame that stays a key frame (as for
    /// `key_frame_in_full`), of a chunk whose prediction stream reads static
    /// (`stillness::STATIC_KEY_GATE`, against [`content_weight`]'s reference ratio), is coded
    /// at `(1 - W)` times the next frame's quantizer instead of `s_ac_qi`: its picture will
    /// serve more than its chunk. The pipeline's batch-start re-key: bigbuckbunny's SSIM
    /// BD-rate +16.4% -> +15.6%, the other clips unchanged (`bench/compression-ideas.md`).
    pub static_key_weight: Option<f64>,
    /// A first frame that is an inter frame in the prediction stream (a chunk's converted
    /// first frame, rebased again) gets its modes and motion vectors decided anew against
    /// `input_state` by a full encode at `first_frame_speed` (its quantizer and reference
    /// refreshes kept), then rebased onto it like any frame. The converted first frame's
    /// decisions were made against the predecessor's pass-0 state; re-deciding them on a
    /// state nearer the chain's (the predecessor's pass-1 output) is the excamera chain's
    /// re-decide pass (`bench/compression-ideas.md`, sixth session).
    pub redecide_first_frame: bool,
    /// The converted first frame copies the input state's golden picture to alt-ref (before
    /// refreshing golden with itself) instead of refreshing alt-ref: with
    /// `last_frame_refresh_all` off the chunk then hands on three distinct references, its
    /// own boosted first frame as golden and the previous chunk's as alt-ref, as vpxenc's
    /// golden frames copy the old golden to alt-ref. It pays only with
    /// `redecide_first_frame`, whose decisions are made against those references.
    pub first_frame_golden_to_altref: bool,
    /// Every inter frame after the first (the frames a chunk's pass 0 decided) gets its modes
    /// and motion vectors decided anew by a full encode at this speed onto the state the
    /// frames before it reach, then rebased onto that state like any frame (`None`: they keep
    /// the prediction stream's decisions). Pass 0 decided them against its own chunk's key
    /// frame; on the excamera chain's states xc's GoodRefs decisions (mode lambda at the SSIM
    /// tuning's, activity weights left to the rebase's residuals) are better: SSIM BD-rate
    /// bigbuckbunny -3.6 points, carphone +0.8 (`bench/compression-ideas.md`, eighth
    /// session). Pays only on a state near the chain's: the re-decide pass, or a pass whose
    /// input state is final.
    pub redecide_later_frames: Option<Speed>,
    /// A first frame that is an inter frame in the prediction stream gets its modes and
    /// motion vectors decided anew against `input_state`, cheaply: each macroblock among a few
    /// candidates built around the prediction frame's own decision (its vector and a
    /// quarter-pel step around it, ZERO / NEAREST / NEAR on every reference, an 8x8 SPLITMV
    /// from a narrow search where a split can pay), the best few coded in full
    /// (`encoder::seed_search`), and the frame written as decided (its residuals at the
    /// rebase's lambda). The excamera chain's serial step: the re-decide pass decided against
    /// a proxy of the state this pass has exactly. SSIM / PSNR-Y BD-rate bigbuckbunny +6.7% /
    /// +0.3% -> +4.6% / -1.3%, carphone -4.3% / -3.7% -> -6.9% / -5.6%
    /// (`bench/compression-ideas.md`, ninth and tenth sessions), where a full re-decision
    /// (`redecide_first_frame`) gave +4.1% / -1.7% and -9.6% / -7.5% for several times the
    /// serial step's CPU; this one costs it about 45% more (0.099 -> 0.142 of vpxenc's pass 0
    /// on bigbuckbunny at 1280x720, 0.101 -> 0.148 at 640x272). `redecide_first_frame` takes
    /// precedence.
    pub seeded_first_frame: bool,
    /// Decode every written frame too and check that our decoder reaches the state the encoder
    /// built from its decisions (slower: for tests; always on in debug builds).
    pub verify: bool,
}

impl Default for ReencodeOpts {
    fn default() -> Self {
        ReencodeOpts {
            reencode_first_frame: false,
            kf_q_weight: 1.0,
            first_frame_quality: FirstFrameQuality::default(),
            quant: QuantMode::default(),
            s_ac_qi: None,
            fix_prob_tables: false,
            loop_filter: LoopFilterChoice::Keep,
            first_frame_speed: Speed::Realtime,
            first_frame_keeps_golden: false,
            last_frame_refresh_all: true,
            choose_refs: false,
            kf_weight_by_content: false,
            key_floored: false,
            activity_rd: false,
            key_frame_in_full: false,
            static_key_weight: None,
            redecide_first_frame: false,
            first_frame_golden_to_altref: false,
            redecide_later_frames: None,
            seeded_first_frame: false,
            verify: false,
        }
    }
}

/// [`content_weight`]'s reference ratio per unit of `next_q`, for pass-0 key frames at about
/// quantizer 0 (vpxenc's two-pass key frames).
pub const CONTENT_R0: f64 = 1.5;
/// The same for key frames floored at a fraction of the plain quantizer
/// ([`ReencodeOpts::key_floored`]): they are smaller, so the ratio that means "as static as
/// the reference" is too. `1.5 / e^0.2`: the weight of [`CONTENT_R0`] raised by 0.02, the
/// optimum measured with a floor of 0.15 (`bench/compression-ideas.md`).
pub const CONTENT_R0_FLOORED: f64 = 1.228;

/// The first-frame weight `w` moved by the chunk's own statistics from pass 0: `r`, its key
/// frame's size over its other frames' mean size, is large when the chunk is static (its
/// later frames predict well from the first) and grows as the quantizer coarsens, so it is
/// taken relative to `r0 * next_q` (`r0` is [`CONTENT_R0`] or [`CONTENT_R0_FLOORED`]). The
/// weight is `w + 0.1 ln(r / (r0 next_q))`, within 0.5..0.95: a static chunk's first frame
/// gets a lower quantizer, a busy one's a higher.
///
/// Measured on ExCamera\[6,16\] with `--activity-rd` (`bench/compression-ideas.md`): against
/// the plain `-w 0.75`, SSIM BD-rate bigbuckbunny +18.3% -> +17.7% and carphone +2.4% ->
/// +1.4%, PSNR-Y +8.9% -> +7.5% and +4.7% -> +2.0%; a plain `-w 0.72` gives +19.4% and +2.1%
/// (SSIM), a slope of 0.2 +20.4% on bigbuckbunny.
pub fn content_weight(w: f64, pred_sizes: &[usize], next_q: u8, r0: f64) -> f64 {
    stillness(pred_sizes, next_q, r0).map_or(w, |s| (w + 0.1 * s).clamp(0.5, 0.95))
}

/// [`content_weight`]'s reference ratio for this chunk's pass 0 ([`ReencodeOpts::key_floored`]).
fn content_r0(opts: &ReencodeOpts) -> f64 {
    if opts.key_floored {
        CONTENT_R0_FLOORED
    } else {
        CONTENT_R0
    }
}

/// The converted first frame's quantizer: `w` of the way from the next frame's quantizer
/// (`next_q`) to the prediction's key frame's (`kf_q`, or 0 when [`ReencodeOpts::key_floored`]),
/// `w` being `-w` or, with `kf_weight_by_content`, [`content_weight`]'s.
fn weighted_first_q(opts: &ReencodeOpts, pred_frames: &[Vec<u8>], kf_q: u8, next_q: u8) -> u8 {
    let kf_q = if opts.key_floored { 0 } else { kf_q };
    let w = if opts.kf_weight_by_content {
        let sizes: Vec<usize> = pred_frames.iter().map(Vec::len).collect();
        content_weight(opts.kf_q_weight, &sizes, next_q, content_r0(opts))
    } else {
        opts.kf_q_weight
    };
    let (kf_q, next_q) = (kf_q as f64, next_q as f64);
    (w * kf_q + (1.0 - w) * next_q).round().clamp(0.0, 127.0) as u8
}

/// A re-encoded chunk: its frames, the state a decoder reaches after them, and the
/// [`DecoderState::content_hash`] of the state it must be decoded from.
#[derive(Clone, Debug)]
pub struct ReencodedChunk {
    /// The encoded frames, in order.
    pub frames: Vec<Vec<u8>>,
    /// The state a decoder reaches after the last frame.
    pub state: DecoderState,
    /// The `content_hash` of the state the chunk must be decoded from.
    pub input_state_hash: u64,
}

/// One prediction frame, parsed, with the picture to code it toward when it is hidden.
struct PredFrame {
    parsed: ParsedFrame,
    hidden_target: Option<Arc<Frame>>,
    /// The decoded picture (kept for the first frame only).
    picture: Option<Arc<Frame>>,
}

/// Parse the prediction stream's frames and, for hidden frames and (with
/// `need_first_picture`) the first frame, find the picture the prediction stream itself
/// reconstructed. Pictures are needed for nothing else, so the stream is decoded only up to
/// its last hidden frame (or its first frame, if needed), and merely parsed (modes, no
/// tokens) after it. With `first_residual_unused` (the first frame is re-encoded from its
/// source, so only its header matters) the first frame's tokens are not parsed even to check
/// that a first key frame is complete.
fn decode_prediction(
    frames: &[Vec<u8>],
    initial: Option<&DecoderState>,
    need_first_picture: bool,
    first_residual_unused: bool,
) -> Result<Vec<PredFrame>, EncodeError> {
    let mut decode_until = usize::from(need_first_picture);
    for (k, data) in frames.iter().enumerate() {
        let c = parse_uncompressed_chunk(data)
            .map_err(|error| EncodeError::Prediction { frame: k, error })?;
        if !c.tag.show_frame {
            decode_until = k + 1;
        }
    }
    let initial = initial.cloned().unwrap_or_default();
    let mut parser = ModeParser::new(&initial);
    let mut decoder = Decoder::new(initial);
    let mut out = Vec::with_capacity(frames.len());
    for (k, data) in frames.iter().enumerate() {
        let perr = |error| EncodeError::Prediction { frame: k, error };
        let parsed = if k < decode_until || (k == 0 && first_residual_unused) {
            parser.parse_modes_only(data)
        } else {
            parser.parse(data)
        }
        .map_err(perr)?;
        let (mut hidden_target, mut picture) = (None, None);
        if k < decode_until {
            let shown = decoder.decode(data).map_err(perr)?;
            if k == 0 {
                picture = shown.clone();
            }
            if shown.is_none() {
                let (h, next) = (&parsed.header, decoder.state());
                let buf = if h.refresh_alternate_frame {
                    &next.altref
                } else if h.refresh_golden_frame {
                    &next.golden
                } else {
                    &next.last
                };
                hidden_target = buf.clone();
            }
        }
        out.push(PredFrame { parsed, hidden_target, picture });
    }
    Ok(out)
}

/// Re-encode a chunk's prediction stream (`pred_frames`, decoded from `pred_initial_state`, by
/// default a fresh state) onto `input_state`, with `sources` the chunk's shown pictures.
///
/// A first key frame becomes an inter frame that refreshes all references, fully encoded
/// against `input_state` (unless the input state is fresh and `reencode_first_frame` is not
/// set: then it stays a key frame, re-quantized). Every other frame is rebased
/// (`rebase_frame`); hidden frames (alt-refs) take the prediction stream's own
/// reconstruction as their target. The last frame also refreshes last, golden and alt-ref.
pub fn reencode_chunk(
    input_state: &DecoderState,
    pred_frames: &[Vec<u8>],
    pred_initial_state: Option<&DecoderState>,
    sources: &[Frame],
    opts: &ReencodeOpts,
) -> Result<ReencodedChunk, EncodeError> {
    if pred_frames.is_empty() {
        return Err(mismatch("prediction stream has no frames".into()));
    }
    if !(0.0..=1.0).contains(&opts.kf_q_weight) {
        return Err(EncodeError::BadParam(format!(
            "key frame quantizer weight {} is outside 0..=1",
            opts.kf_q_weight
        )));
    }
    if let FirstFrameQuality::MatchPrediction { tolerance_db } = opts.first_frame_quality {
        if !(tolerance_db >= 0.0 && tolerance_db.is_finite()) {
            return Err(EncodeError::BadParam(format!(
                "first frame PSNR tolerance {tolerance_db} dB is not a finite value >= 0"
            )));
        }
    }
    if let Some(s) = opts.s_ac_qi.filter(|&s| s > 127) {
        return Err(EncodeError::BadParam(format!("s_ac_qi {s} > 127")));
    }
    // Count shown frames from the frame tags before any decoding work.
    let (mut shown, mut first_key) = (0, false);
    for (k, data) in pred_frames.iter().enumerate() {
        let c = parse_uncompressed_chunk(data)
            .map_err(|error| EncodeError::Prediction { frame: k, error })?;
        shown += c.tag.show_frame as usize;
        first_key |= k == 0 && c.tag.key_frame;
    }
    if shown != sources.len() {
        return Err(mismatch(format!(
            "prediction stream has {shown} shown frames, input has {}",
            sources.len()
        )));
    }
    let fresh = input_state.last.is_none();
    let convert_first = first_key && (opts.reencode_first_frame || !fresh);
    // The prediction's own first picture is only the quality search's reference.
    let need_first_picture = convert_first
        && opts.s_ac_qi.is_none()
        && matches!(opts.first_frame_quality, FirstFrameQuality::MatchPrediction { .. });
    let pred =
        decode_prediction(pred_frames, pred_initial_state, need_first_picture, convert_first)?;
    let (w, h) = (pred[0].parsed.width as usize, pred[0].parsed.height as usize);
    if let Some((i, s)) =
        sources.iter().enumerate().find(|(_, s)| (s.display_width, s.display_height) != (w, h))
    {
        return Err(mismatch(format!(
            "prediction stream is {w}x{h} but input picture {i} is {}x{}",
            s.display_width, s.display_height
        )));
    }
    if convert_first && fresh {
        return Err(EncodeError::NoReference);
    }
    if !first_key && fresh {
        return Err(EncodeError::NoReference);
    }
    if !fresh && (input_state.width as usize, input_state.height as usize) != (w, h) {
        return Err(mismatch(format!(
            "prediction stream is {w}x{h} but the input state's pictures are {}x{}",
            input_state.width, input_state.height
        )));
    }

    // A first key frame that stays one: its quantizer (`s_ac_qi`, or `static_key_weight`'s
    // when the chunk reads static; None keeps the prediction frame's).
    let key_qi = match opts.static_key_weight {
        Some(weight) if first_key && !convert_first => {
            let sizes: Vec<usize> = pred_frames.iter().map(Vec::len).collect();
            pred.get(1)
                .and_then(|n| {
                    let next_q = n.parsed.header.quant.y_ac_qi;
                    static_key_qindex(&sizes, next_q, content_r0(opts), weight)
                })
                .or(opts.s_ac_qi)
        }
        _ => opts.s_ac_qi,
    };
    let mut state = input_state.clone();
    let mut frames = Vec::with_capacity(pred.len());
    let mut next_source = sources.iter();
    let last = pred.len() - 1;
    for (k, p) in pred.iter().enumerate() {
        let target = match &p.hidden_target {
            Some(t) => &**t,
            None => next_source
                .next()
                .ok_or_else(|| mismatch("more shown frames than input pictures".into()))?,
        };
        let enc = if k == 0 && convert_first {
            let kf_q = p.parsed.header.quant.y_ac_qi;
            let next_q = pred.get(1).map_or(kf_q, |n| n.parsed.header.quant.y_ac_qi);
            let encode_with = |q: u8, quant: QuantMode| {
                let params = EncodeParams {
                    quant,
                    speed: opts.first_frame_speed,
                    refresh_golden: !opts.first_frame_keeps_golden,
                    // Alt-ref takes the input state's golden picture (copied before golden is
                    // refreshed) or this frame.
                    refresh_altref: !opts.first_frame_golden_to_altref,
                    copy_to_altref: if opts.first_frame_golden_to_altref { 2 } else { 0 },
                    sharpness: p.parsed.header.sharpness_level,
                    show_frame: p.parsed.show_frame,
                    ssim_decisions: opts.activity_rd,
                    verify: opts.verify,
                    ..EncodeParams::inter(q)
                };
                encode_frame(&state, target, &params)
            };
            let encode_at = |q: u8| encode_with(q, QuantMode::Rd);
            match (opts.s_ac_qi, opts.first_frame_quality, &p.picture) {
                (Some(s), _, _) => encode_at(s)?,
                (None, FirstFrameQuality::MatchPrediction { tolerance_db }, Some(pic)) => {
                    let floor = psnr(target, pic) - tolerance_db;
                    let requantize_first = opts.first_frame_speed == Speed::Realtime;
                    match_quality_requantizing(
                        &state,
                        target,
                        (kf_q, next_q),
                        floor,
                        requantize_first,
                        opts.verify,
                        encode_with,
                    )?
                }
                _ => encode_at(weighted_first_q(opts, pred_frames, kf_q, next_q))?,
            }
        } else if k == 0 && first_key && opts.key_frame_in_full {
            // A key frame that stays one: xc's own analysis at its quantizer, not the
            // prediction stream's modes re-quantized (`ReencodeOpts::key_frame_in_full`).
            let q = key_qi.unwrap_or(p.parsed.header.quant.y_ac_qi);
            let params = EncodeParams {
                sharpness: p.parsed.header.sharpness_level,
                show_frame: p.parsed.show_frame,
                activity_rd: opts.activity_rd,
                verify: opts.verify,
                ..EncodeParams::key(q)
            };
            encode_frame(&state, target, &params)?
        } else if k == 0 && !first_key && opts.redecide_first_frame {
            let how = Redecide {
                speed: opts.first_frame_speed,
                activity_rd: opts.activity_rd,
                ssim_decisions: opts.activity_rd,
            };
            redecide_frame(&state, &p.parsed, target, opts, how, k == last)?
        } else if k == 0 && !first_key && opts.seeded_first_frame {
            seeded_frame(&state, &p.parsed, target, opts, k == last)?
        } else if let (true, Some(speed)) = (k > 0, opts.redecide_later_frames) {
            // Activity weights stay out of these decisions (the rebase's residuals still get
            // them): with them, carphone's SSIM BD-rate was 0.7 points worse, bigbuckbunny's
            // the same.
            let how = Redecide { speed, activity_rd: false, ssim_decisions: opts.activity_rd };
            redecide_frame(&state, &p.parsed, target, opts, how, k == last)?
        } else {
            let qindex = (k == 0 && first_key).then_some(key_qi).flatten();
            let params = RebaseParams {
                quant: opts.quant,
                qindex,
                loop_filter: opts.loop_filter,
                refresh_all: k == last && opts.last_frame_refresh_all,
                fix_prob_tables: opts.fix_prob_tables,
                choose_refs: opts.choose_refs,
                activity_rd: opts.activity_rd,
                verify: opts.verify,
            };
            rebase_frame(&state, &p.parsed, target, &params)?
        };
        frames.push(enc.data);
        state = enc.state;
    }
    Ok(ReencodedChunk { frames, state, input_state_hash: input_state.content_hash() })
}

/// [`match_quality`] for the first frame with one full encode: the first trial (at `kf_q`)
/// is encoded by `encode`, and every later trial keeps that encode's decisions (modes, motion
/// vectors) and only re-quantizes its residuals at the trial's qindex (a [`rebase_frame`] of
/// the frame onto the same state, loop filter level searched again). A full encode costs
/// about as much as ten to twenty rebases, and the trials' qindexes lie between the key
/// frame's and the next frame's, close enough for the decisions to carry over. Each trial is
/// judged on its own reconstruction, so the chosen frame meets `floor` as before; only the
/// chosen re-quantized trial is written and given a next state. With `requantize_first` the
/// first trial is re-quantized too (for an `encode` that does not quantize as the trial asks:
/// the realtime encoder's levels are not RD-optimized).
fn match_quality_requantizing(
    state: &DecoderState,
    target: &Frame,
    (kf_q, next_q): (u8, u8),
    floor: f64,
    requantize_first: bool,
    verify: bool,
    encode: impl Fn(u8, QuantMode) -> Result<EncodedFrame, EncodeError>,
) -> Result<EncodedFrame, EncodeError> {
    /// A judged trial: the full encode, or a re-quantization not yet written.
    enum Trial {
        Encoded(Box<EncodedFrame>),
        Planned(Box<(FrameDecisions, Frame)>),
    }
    let mut decisions: Option<ParsedFrame> = None;
    let chosen = match_quality(kf_q, next_q, |q, quant| {
        let mut full = None;
        if decisions.is_none() {
            let e = encode(q, quant)?;
            // Modes only: re-quantizing needs the decisions, not the coefficients.
            let parsed = ModeParser::new(state).parse(&e.data).map_err(EncodeError::Decode)?;
            decisions = Some(parsed);
            full = (!requantize_first).then_some(e);
        }
        let trial = match (full, &decisions) {
            (Some(e), _) => Trial::Encoded(Box::new(e)),
            (None, Some(d)) => {
                let params = RebaseParams {
                    qindex: Some(q),
                    loop_filter: LoopFilterChoice::Search,
                    // The full encode's refresh flags, kept.
                    refresh_all: false,
                    fix_prob_tables: false,
                    quant,
                    choose_refs: false,
                    activity_rd: false,
                    verify,
                };
                Trial::Planned(Box::new(plan_rebase(state, d, target, &params)?))
            }
            (None, None) => unreachable!("decisions are set by the first trial"),
        };
        let recon = match &trial {
            Trial::Encoded(e) => &*e.recon,
            Trial::Planned(p) => &p.1,
        };
        let ok = psnr(target, recon) >= floor;
        Ok((trial, ok))
    })?;
    match chosen {
        Trial::Encoded(e) => Ok(*e),
        Trial::Planned(p) => {
            let (d, recon) = *p;
            finish_frame(state, &d, recon, &WriteOptions::default(), verify)
        }
    }
}

/// The encode at the largest qindex in `kf_q..=next_q` that `try_q` accepts with the RD
/// quantizer, by bisection (acceptance is assumed to shrink as the qindex grows). When `kf_q`
/// is rejected, the plain quantizer (finer: it keeps the small levels the RD one drops) is
/// tried at `kf_q`, then at qindex 0, which is used if nothing passes.
fn match_quality<T>(
    kf_q: u8,
    next_q: u8,
    mut try_q: impl FnMut(u8, QuantMode) -> Result<(T, bool), EncodeError>,
) -> Result<T, EncodeError> {
    let hi = next_q.max(kf_q);
    let (mut good, ok) = try_q(kf_q, QuantMode::Rd)?;
    if !ok {
        let (e, ok) = try_q(kf_q, QuantMode::Plain)?;
        if ok || kf_q == 0 {
            return Ok(e);
        }
        return Ok(try_q(0, QuantMode::Plain)?.0);
    }
    // Invariant: `good` is an accepted encode at qindex `lo`; qindex `bad` > lo is rejected.
    let (mut lo, mut bad) = (kf_q as u16, hi as u16 + 1);
    while lo + 1 < bad {
        let mid = (lo + bad) / 2;
        let (e, ok) = try_q(mid as u8, QuantMode::Rd)?;
        if ok {
            lo = mid;
            good = e;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

/// An inter frame's encode parameters that keep what `pred`'s header says of the frame: its
/// quantizer, reference refreshes and copies, sign biases, sharpness and visibility (how it
/// is decided is the caller's to set).
fn params_keeping(pred: &ParsedFrame) -> EncodeParams {
    let h = &pred.header;
    EncodeParams {
        refresh_last: h.refresh_last,
        refresh_golden: h.refresh_golden_frame,
        refresh_altref: h.refresh_alternate_frame,
        copy_to_golden: h.copy_buffer_to_golden,
        copy_to_altref: h.copy_buffer_to_alternate,
        sign_bias_golden: h.sign_bias_golden,
        sign_bias_altref: h.sign_bias_alternate,
        sharpness: h.sharpness_level,
        show_frame: pred.show_frame,
        ..EncodeParams::inter(h.quant.y_ac_qi)
    }
}

/// [`ReencodeOpts::seeded_first_frame`]: the frame decided by [`analyze_frame_seeded`]
/// around `pred`'s decisions onto `state` (at `pred`'s quantizer, loop filter level and
/// reference refreshes, with a first frame's activity weights and SSIM decision lambda under
/// `activity_rd`) and written as that analysis coded it: its residuals are quantized at the
/// rebase's lambda, so no rebase follows.
fn seeded_frame(
    state: &DecoderState,
    pred: &ParsedFrame,
    target: &Frame,
    opts: &ReencodeOpts,
    is_last: bool,
) -> Result<EncodedFrame, EncodeError> {
    let refresh_all = is_last && opts.last_frame_refresh_all;
    let keep = params_keeping(pred);
    let params = EncodeParams {
        speed: Speed::GoodRefs,
        refresh_last: keep.refresh_last || refresh_all,
        refresh_golden: keep.refresh_golden || refresh_all,
        refresh_altref: keep.refresh_altref || refresh_all,
        loop_filter_level: Some(pred.header.loop_filter_level),
        quant: opts.quant,
        activity_rd: opts.activity_rd,
        ssim_decisions: opts.activity_rd,
        verify: opts.verify,
        ..keep
    };
    let (d, recon) = analyze_frame_seeded(state, target, &params, Some(&pred.mbs))?;
    let wo = WriteOptions::prob_updates(!opts.fix_prob_tables);
    finish_frame(state, &d, recon, &wo, opts.verify)
}

/// How [`redecide_frame`]'s full encode decides.
#[derive(Clone, Copy)]
struct Redecide {
    speed: Speed,
    activity_rd: bool,
    ssim_decisions: bool,
}

/// [`ReencodeOpts::redecide_first_frame`] and [`ReencodeOpts::redecide_later_frames`]: the
/// prediction frame's modes and motion vectors are decided again by a full encode onto
/// `state` as `how` says (at the frame's own quantizer and with its reference refreshes; for
/// a first frame, lambda weighted by activity with `activity_rd`: SSIM BD-rate -0.2 / -0.3
/// points on bigbuckbunny / carphone, PSNR-Y -0.1 / +0.1), and those decisions are rebased
/// onto the same state, so the residuals are the rebase's (activity-weighted RD quantizer) as
/// every other frame's are.
fn redecide_frame(
    state: &DecoderState,
    pred: &ParsedFrame,
    target: &Frame,
    opts: &ReencodeOpts,
    how: Redecide,
    is_last: bool,
) -> Result<EncodedFrame, EncodeError> {
    let params = EncodeParams {
        speed: how.speed,
        activity_rd: how.activity_rd,
        ssim_decisions: how.ssim_decisions,
        verify: opts.verify,
        ..params_keeping(pred)
    };
    let full = encode_frame(state, target, &params)?;
    let decided = ModeParser::new(state).parse(&full.data).map_err(EncodeError::Decode)?;
    let params = RebaseParams {
        quant: opts.quant,
        qindex: None,
        loop_filter: opts.loop_filter,
        refresh_all: is_last && opts.last_frame_refresh_all,
        fix_prob_tables: opts.fix_prob_tables,
        // The decisions were made against these very references.
        choose_refs: false,
        activity_rd: opts.activity_rd,
        verify: opts.verify,
    };
    rebase_frame(state, &decided, target, &params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `match_quality` against a model where qindex `q` passes when `q <= limit` (RD) or
    /// `q <= plain_limit` (plain), recording the trials; returns the chosen (q, mode) and the
    /// number of trial encodes.
    fn search(kf_q: u8, next_q: u8, limit: i32, plain_limit: i32) -> ((u8, QuantMode), usize) {
        let mut trials = Vec::new();
        let e = match_quality(kf_q, next_q, |q, mode| {
            trials.push((q, mode));
            let ok = q as i32 <= if mode == QuantMode::Rd { limit } else { plain_limit };
            let data = vec![q, (mode == QuantMode::Plain) as u8];
            Ok((
                EncodedFrame {
                    data,
                    state: DecoderState::default(),
                    recon: Arc::new(Frame::new(1, 1, 0)),
                },
                ok,
            ))
        })
        .unwrap();
        let mode = if e.data[1] == 1 { QuantMode::Plain } else { QuantMode::Rd };
        ((e.data[0], mode), trials.len())
    }

    #[test]
    fn content_weight_boosts_static_chunks() {
        // At the reference ratio (1.5 * next_q = 60) the weight is unchanged.
        let w = |sizes: &[usize]| content_weight(0.75, sizes, 40, CONTENT_R0);
        assert!((w(&[6000, 100, 100]) - 0.75).abs() < 1e-9);
        // Static (r = 150) moves towards the key frame's quantizer, busy (r = 20) away.
        assert!((w(&[15000, 100, 100]) - (0.75 + 0.1 * 2.5f64.ln())).abs() < 1e-9);
        assert!(w(&[2000, 100, 100]) < 0.75);
        // Clamped to 0.5..0.95; nothing to go by leaves w as it is.
        assert_eq!(w(&[10_000_000, 1, 1]), 0.95);
        assert_eq!(w(&[10, 1000, 1000]), 0.5);
        assert_eq!(w(&[6000]), 0.75);
        assert_eq!(w(&[]), 0.75);
        assert_eq!(content_weight(0.75, &[6000, 0, 0], 0, CONTENT_R0), 0.95);
        // A floored key frame's ratio is read against a smaller reference: the weight of
        // CONTENT_R0 plus 0.1 ln(1.5 / 1.228) = 0.02.
        let floored = content_weight(0.75, &[6000, 100, 100], 40, CONTENT_R0_FLOORED);
        assert!((floored - 0.77).abs() < 1e-3, "{floored}");
    }

    #[test]
    fn floored_key_weights_from_zero() {
        let opts =
            |key_floored| ReencodeOpts { kf_q_weight: 0.75, key_floored, ..Default::default() };
        let frames = vec![vec![0u8; 6000], vec![0u8; 100]];
        // From the key frame's quantizer (8) to the next (52): 0.75 * 8 + 0.25 * 52 = 19.
        assert_eq!(weighted_first_q(&opts(false), &frames, 8, 52), 19);
        // Floored: from 0, 0.25 * 52 = 13.
        assert_eq!(weighted_first_q(&opts(true), &frames, 8, 52), 13);
    }

    #[test]
    fn first_frame_search_finds_the_largest_passing_qindex() {
        for limit in 0..=40 {
            let ((q, mode), n) = search(0, 40, limit, 0);
            assert_eq!((q, mode), (limit as u8, QuantMode::Rd));
            assert!(n <= 7, "{n} trials");
        }
        // Everything up to next_q passes: next_q.
        assert_eq!(search(4, 30, 127, 127).0, (30, QuantMode::Rd));
        // The RD quantizer misses even at kf_q: the plain one at kf_q, else plain at 0.
        assert_eq!(search(5, 30, -1, 5).0, (5, QuantMode::Plain));
        assert_eq!(search(5, 30, -1, -1).0, (0, QuantMode::Plain));
        assert_eq!(search(0, 30, -1, -1), ((0, QuantMode::Plain), 2));
    }
}
