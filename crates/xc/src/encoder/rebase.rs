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

use crate::decoder::{decode_frame, Decoder};
use crate::encoder::analysis::{
    apply_loop_filter, choose_filter_level, read_block, residual4, write_block,
};
use crate::encoder::bitstream::write_frame_opts;
use crate::encoder::fdct::{fdct4x4, fwht4x4};
use crate::encoder::quantize::{dequantize_block, quantize_block, MbQuant};
use crate::encoder::{
    encode_frame, EncodeError, EncodeParams, EncodedFrame, FrameDecisions, MbLevels, Speed,
};
use crate::frame::Frame;
use crate::header::parse_uncompressed_chunk;
use crate::inspect::{ModeParser, ParsedFrame};
use crate::mb::{MbInfo, MbMode, RefFrame};
use crate::predict::inter::{predict_inter_mb, InterFilter};
use crate::predict::intra::{predict_chroma8, predict_luma16, predict_luma4};
use crate::state::{DecoderState, Segmentation};
use crate::tokens::Y2_BLOCK;
use crate::transform::{idct4x4_add, iwht4x4};

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
pub struct RebaseParams {
    /// Base quantizer index; `None` keeps the prediction frame's `y_ac_qi`.
    pub qindex: Option<u8>,
    pub loop_filter: LoopFilterChoice,
    /// Refresh last, golden and alt-ref with this frame (whatever the prediction frame did).
    pub refresh_all: bool,
    /// Write no probability updates: code the frame with the probabilities in force.
    pub fix_prob_tables: bool,
}

/// Inter prediction filter of a bitstream version (spec 9.1).
fn version_filter(version: u8) -> (InterFilter, bool) {
    let filter = if version == 0 { InterFilter::SixTap } else { InterFilter::Bilinear };
    (filter, version == 3)
}

/// Quantize and reconstruct a 16x16 luma residual with a Y2 block (all modes but B_PRED and
/// SPLITMV). `recon` holds the prediction on entry and the reconstruction on return.
fn code_luma_y2(src: &[u8; 256], recon: &mut [u8; 256], mq: &MbQuant, lv: &mut MbLevels) {
    let mut coeffs = [[0i16; 16]; 16];
    let mut dcs = [0i16; 16];
    for (b, c) in coeffs.iter_mut().enumerate() {
        *c = fdct4x4(&residual4(src, recon, 16, b & 3, b >> 2));
        dcs[b] = c[0];
    }
    quantize_block(&fwht4x4(&dcs), 0, &mq.y2, &mut lv.blocks[Y2_BLOCK]);
    let dc_out = iwht4x4(&dequantize_block(&lv.blocks[Y2_BLOCK], mq.dq.y2));
    for b in 0..16 {
        quantize_block(&coeffs[b], 1, &mq.y, &mut lv.blocks[b]);
        let mut dq = dequantize_block(&lv.blocks[b], mq.dq.y);
        dq[0] = dc_out[b];
        idct4x4_add(&dq, recon, (b >> 2) * 64 + (b & 3) * 4, 16);
    }
}

/// Sixteen luma blocks with their own DCs (SPLITMV), all against one prediction.
fn code_luma_nodc(src: &[u8; 256], recon: &mut [u8; 256], mq: &MbQuant, lv: &mut MbLevels) {
    let pred = *recon;
    for b in 0..16 {
        let c = fdct4x4(&residual4(src, &pred, 16, b & 3, b >> 2));
        quantize_block(&c, 0, &mq.y, &mut lv.blocks[b]);
        idct4x4_add(
            &dequantize_block(&lv.blocks[b], mq.dq.y),
            recon,
            (b >> 2) * 64 + (b & 3) * 4,
            16,
        );
    }
}

/// One 8x8 chroma plane (`plane` 0 = U, 1 = V).
fn code_chroma(
    src: &[u8; 64],
    recon: &mut [u8; 64],
    plane: usize,
    mq: &MbQuant,
    lv: &mut MbLevels,
) {
    let pred = *recon;
    for b in 0..4 {
        let blk = 16 + plane * 4 + b;
        let c = fdct4x4(&residual4(src, &pred, 8, b & 1, b >> 1));
        quantize_block(&c, 0, &mq.uv, &mut lv.blocks[blk]);
        idct4x4_add(
            &dequantize_block(&lv.blocks[blk], mq.dq.uv),
            recon,
            (b >> 1) * 32 + (b & 1) * 4,
            8,
        );
    }
}

/// Code macroblock (mbx, mby) with `info`'s prediction into `recon`, returning its levels.
#[allow(clippy::too_many_arguments)]
fn rebase_mb(
    recon: &mut Frame,
    src: &Frame,
    refs: &[Option<&Frame>; 4],
    info: &MbInfo,
    mq: &MbQuant,
    mbx: usize,
    mby: usize,
    filter: (InterFilter, bool),
) -> Result<MbLevels, EncodeError> {
    let mut lv = MbLevels::default();
    let (lx, ly, cx, cy) = (mbx * 16, mby * 16, mbx * 8, mby * 8);
    let src_y = read_block::<16, 256>(&src.y, lx, ly);
    if info.ref_frame == RefFrame::Intra {
        if info.y_mode == MbMode::BPred {
            // Subblocks in order: each is predicted from the reconstruction of the previous.
            for b in 0..16 {
                let (x0, y0) = (lx + (b & 3) * 4, ly + (b >> 2) * 4);
                predict_luma4(&mut recon.y, mbx, mby, b, info.b_modes[b]);
                let mut rec = read_block::<4, 16>(&recon.y, x0, y0);
                let s = read_block::<4, 16>(&src.y, x0, y0);
                let res = residual4(&s, &rec, 4, 0, 0);
                quantize_block(&fdct4x4(&res), 0, &mq.y, &mut lv.blocks[b]);
                idct4x4_add(&dequantize_block(&lv.blocks[b], mq.dq.y), &mut rec, 0, 4);
                write_block::<4>(&mut recon.y, x0, y0, &rec);
            }
        } else {
            predict_luma16(&mut recon.y, mbx, mby, info.y_mode);
            let mut y = read_block::<16, 256>(&recon.y, lx, ly);
            code_luma_y2(&src_y, &mut y, mq, &mut lv);
            write_block::<16>(&mut recon.y, lx, ly, &y);
        }
        predict_chroma8(&mut recon.u, mbx, mby, info.uv_mode);
        predict_chroma8(&mut recon.v, mbx, mby, info.uv_mode);
    } else {
        let Some(reference) = refs[info.ref_frame as usize] else {
            return Err(EncodeError::NoReference);
        };
        predict_inter_mb(reference, recon, mbx, mby, info, filter.0, filter.1);
        let mut y = read_block::<16, 256>(&recon.y, lx, ly);
        if info.y_mode == MbMode::Split {
            code_luma_nodc(&src_y, &mut y, mq, &mut lv);
        } else {
            code_luma_y2(&src_y, &mut y, mq, &mut lv);
        }
        write_block::<16>(&mut recon.y, lx, ly, &y);
    }
    for (plane, (dst, s)) in
        [(&mut recon.u, &src.u), (&mut recon.v, &src.v)].into_iter().enumerate()
    {
        let mut c = read_block::<8, 64>(dst, cx, cy);
        let sc = read_block::<8, 64>(s, cx, cy);
        code_chroma(&sc, &mut c, plane, mq, &mut lv);
        write_block::<8>(dst, cx, cy, &c);
    }
    Ok(lv)
}

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
/// decode it, checking that the decoder reproduces the reconstruction.
pub fn rebase_frame(
    state: &DecoderState,
    pred: &ParsedFrame,
    source: &Frame,
    params: &RebaseParams,
) -> Result<EncodedFrame, EncodeError> {
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

    let mut recon = Frame::new(w, h, 0);
    let mut mbs = Vec::with_capacity(pred.mbs.len());
    let mut levels = Vec::with_capacity(pred.mbs.len());
    for (i, m) in pred.mbs.iter().enumerate() {
        let mut info = m.clone();
        info.segment_id = seg_ids[i];
        let lv = rebase_mb(
            &mut recon,
            source,
            &refs,
            &info,
            &mq[info.segment_id as usize & 3],
            i % cols,
            i / cols,
            filter,
        )?;
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

    let data = write_frame_opts(state, &d, params.fix_prob_tables).map_err(EncodeError::Write)?;
    let (next, shown) = decode_frame(state, &data).map_err(EncodeError::Decode)?;
    check_decoded(&d, &next, shown, &recon)?;
    Ok(EncodedFrame { data, state: next, recon })
}

/// The decoder's picture of a written frame must be the encoder's reconstruction.
fn check_decoded(
    d: &FrameDecisions,
    next: &DecoderState,
    shown: Option<Frame>,
    recon: &Frame,
) -> Result<(), EncodeError> {
    let h = &d.header;
    let decoded = match shown {
        Some(f) => Some(f),
        None if h.refresh_last => next.last.as_deref().cloned(),
        None if h.refresh_golden_frame => next.golden.as_deref().cloned(),
        None if h.refresh_alternate_frame => next.altref.as_deref().cloned(),
        None => None,
    };
    if decoded.as_ref().is_some_and(|f| f != recon) {
        return Err(EncodeError::ReconstructionMismatch);
    }
    Ok(())
}

/// Options of [`reencode_chunk`] (xc-enc's re-encode flags).
#[derive(Clone, Debug, PartialEq)]
pub struct ReencodeOpts {
    /// Turn a first key frame into an inter frame even when the input state is fresh (then an
    /// error: there is nothing to predict from). A first key frame is turned into an inter
    /// frame anyway when the input state is not fresh.
    pub reencode_first_frame: bool,
    /// xc-enc's `-w`: the converted first frame's qindex is
    /// `round(w * kf_q + (1 - w) * next_frame_q)`.
    pub kf_q_weight: f64,
    /// mu's S phase (`--s-ac-qi`): the first frame, when a key frame in the prediction
    /// stream, uses this qindex instead.
    pub s_ac_qi: Option<u8>,
    /// `--refine-sw`: accepted, currently a no-op (motion vectors are kept exactly; changing a
    /// vector changes its neighbours' near/nearest derivation).
    pub refine_sw: bool,
    /// `--fix-prob-tables`: rebased frames write no probability updates.
    pub fix_prob_tables: bool,
    /// Loop filter level of rebased frames.
    pub loop_filter: LoopFilterChoice,
    /// Effort of the first frame's full inter encode.
    pub first_frame_speed: Speed,
}

impl Default for ReencodeOpts {
    fn default() -> Self {
        ReencodeOpts {
            reencode_first_frame: false,
            kf_q_weight: 1.0,
            s_ac_qi: None,
            refine_sw: false,
            fix_prob_tables: false,
            loop_filter: LoopFilterChoice::Keep,
            first_frame_speed: Speed::Good,
        }
    }
}

/// A re-encoded chunk: its frames, the state a decoder reaches after them, and the
/// [`DecoderState::content_hash`] of the state it must be decoded from.
#[derive(Clone, Debug)]
pub struct ReencodedChunk {
    pub frames: Vec<Vec<u8>>,
    pub state: DecoderState,
    pub input_state_hash: u64,
}

/// One prediction frame, parsed, with the picture to code it toward when it is hidden.
struct PredFrame {
    parsed: ParsedFrame,
    hidden_target: Option<Arc<Frame>>,
}

/// Parse the prediction stream's frames and, for hidden frames, find the picture the
/// prediction stream itself reconstructed. Pictures are needed for nothing else, so the
/// stream is decoded only up to its last hidden frame and merely parsed (modes, no tokens)
/// after it.
fn decode_prediction(
    frames: &[Vec<u8>],
    initial: Option<&DecoderState>,
) -> Result<Vec<PredFrame>, EncodeError> {
    let mut decode_until = 0;
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
        let parsed = parser.parse(data).map_err(perr)?;
        let mut hidden_target = None;
        if k < decode_until && decoder.decode(data).map_err(perr)?.is_none() {
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
        out.push(PredFrame { parsed, hidden_target });
    }
    Ok(out)
}

/// Re-encode a chunk's prediction stream (`pred_frames`, decoded from `pred_initial_state`, by
/// default a fresh state) onto `input_state`, with `sources` the chunk's shown pictures.
///
/// A first key frame becomes an inter frame that refreshes all references, fully encoded
/// against `input_state` (unless the input state is fresh and `reencode_first_frame` is not
/// set: then it stays a key frame, re-quantized). Every other frame is rebased
/// ([`rebase_frame`]); hidden frames (alt-refs) take the prediction stream's own
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
    if let Some(s) = opts.s_ac_qi.filter(|&s| s > 127) {
        return Err(EncodeError::BadParam(format!("s_ac_qi {s} > 127")));
    }
    // Count shown frames from the frame tags before any decoding work.
    let mut shown = 0;
    for (k, data) in pred_frames.iter().enumerate() {
        let c = parse_uncompressed_chunk(data)
            .map_err(|error| EncodeError::Prediction { frame: k, error })?;
        shown += c.tag.show_frame as usize;
    }
    if shown != sources.len() {
        return Err(mismatch(format!(
            "prediction stream has {shown} shown frames, input has {}",
            sources.len()
        )));
    }
    let pred = decode_prediction(pred_frames, pred_initial_state)?;
    let (w, h) = (pred[0].parsed.width as usize, pred[0].parsed.height as usize);
    if let Some((i, s)) =
        sources.iter().enumerate().find(|(_, s)| (s.display_width, s.display_height) != (w, h))
    {
        return Err(mismatch(format!(
            "prediction stream is {w}x{h} but input picture {i} is {}x{}",
            s.display_width, s.display_height
        )));
    }
    let fresh = input_state.last.is_none();
    let first_key = pred[0].parsed.key_frame;
    let convert_first = first_key && (opts.reencode_first_frame || !fresh);
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
            let kf_q = p.parsed.header.quant.y_ac_qi as f64;
            let next_q = pred.get(1).map_or(kf_q, |n| n.parsed.header.quant.y_ac_qi as f64);
            let w = opts.kf_q_weight;
            let q = match opts.s_ac_qi {
                Some(s) => s,
                None => (w * kf_q + (1.0 - w) * next_q).round().clamp(0.0, 127.0) as u8,
            };
            let params = EncodeParams {
                speed: opts.first_frame_speed,
                refresh_golden: true,
                refresh_altref: true,
                sharpness: p.parsed.header.sharpness_level,
                show_frame: p.parsed.show_frame,
                ..EncodeParams::inter(q)
            };
            encode_frame(&state, target, &params)?
        } else {
            let qindex = (k == 0 && first_key).then_some(opts.s_ac_qi).flatten();
            let params = RebaseParams {
                qindex,
                loop_filter: opts.loop_filter,
                refresh_all: k == last,
                fix_prob_tables: opts.fix_prob_tables,
            };
            rebase_frame(&state, &p.parsed, target, &params)?
        };
        frames.push(enc.data);
        state = enc.state;
    }
    Ok(ReencodedChunk { frames, state, input_state_hash: input_state.content_hash() })
}
