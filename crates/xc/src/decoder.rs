//! Frame decoding glue (RFC 6386 sections 5, 9-15): header, per-macroblock modes and tokens,
//! prediction plus residue, loop filter, reference buffer updates and probability persistence.

use std::sync::Arc;

use crate::bool_decoder::BoolDecoder;
use crate::error::DecodeError;
use crate::frame::Frame;
use crate::header::{
    parse_frame_header, parse_uncompressed_chunk, split_token_partitions, FrameHeader, FrameTag,
};
use crate::loopfilter::{mb_filter_level, FilterType, FrameFilter, LfDeltas, MbEdgeInfo};
use crate::mb::{MbInfo, MbMode, RefFrame};
use crate::modes::{parse_mb_header_into, ModeContext, Neighbours};
use crate::predict::inter::{predict_inter_mb, FootprintPrefetch, InterFilter};
use crate::predict::intra::{predict_chroma8, predict_luma16, predict_luma4};
use crate::quant::{segment_qindex, Dequant};
use crate::state::{DecoderState, EntropyProbs, LfAdjust, Segmentation};
use crate::tokens::{decode_mb_tokens, skip_mb_tokens, MbCoeffs, NzContext, TokenProbs, Y2_BLOCK};
use crate::transform::{add_dc_row, add_dc_row_uv, idct4x4_add_known, iwht4x4};

/// Decode one compressed frame. The input state is not modified; the returned state is the
/// one to decode the next frame with. The frame is returned when `show_frame` is set.
///
/// For decoding a sequence, [`Decoder`] is faster: it reuses frame buffers and does not copy
/// shown frames.
pub fn decode_frame(
    state: &DecoderState,
    data: &[u8],
) -> Result<(DecoderState, Option<Frame>), DecodeError> {
    let (next, shown) = decode_frame_with_buffer(state, data, None)?;
    // The shown frame is usually also a reference frame of `next`, so it is copied out.
    let shown = shown.map(|f| Arc::try_unwrap(f).unwrap_or_else(|f| Frame::clone(&f)));
    Ok((next, shown))
}

/// A decoder that owns its state, for decoding a sequence of frames.
///
/// It returns the same frames and states as [`decode_frame`], but recycles the pixel buffers
/// of reference frames that drop out of use (instead of allocating and zero-filling a new
/// frame per decoded frame) and returns shown frames as shared references instead of copies.
/// A buffer is recycled only when nothing else holds it, so callers may keep frames and
/// states for as long as they like.
#[derive(Debug, Default)]
pub struct Decoder {
    state: DecoderState,
    /// Buffers of frames that dropped out of use. A frame can release up to three (a key
    /// frame, or golden and altref replaced along with last), and a frame that replaces only
    /// buffers still referenced elsewhere releases none: with one spare, the next frame after
    /// such a pair allocated a new (zero-filled) frame, about a third of the frames of a
    /// stream with golden and altref updates.
    spares: Vec<Frame>,
}

impl Decoder {
    /// A decoder that continues from `state`.
    pub fn new(state: DecoderState) -> Self {
        Decoder { state, spares: Vec::new() }
    }

    /// The state to decode the next frame with.
    pub fn state(&self) -> &DecoderState {
        &self.state
    }

    /// The state after the last decoded frame, giving up the decoder.
    pub fn into_state(self) -> DecoderState {
        self.state
    }

    /// Decode one compressed frame; returns it when `show_frame` is set. On error the state
    /// is left as it was, as with [`decode_frame`].
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<Arc<Frame>>, DecodeError> {
        // A spare of another size (after a key frame changed it) is dropped there.
        let (next, shown) = decode_frame_with_buffer(&self.state, data, self.spares.pop())?;
        let old = std::mem::replace(&mut self.state, next);
        for frame in [old.last, old.golden, old.altref].into_iter().flatten() {
            // Some for the last holder of a frame that the new state no longer references.
            if let Some(f) = Arc::into_inner(frame) {
                if self.spares.len() < 3 {
                    self.spares.push(f);
                }
            }
        }
        Ok(shown)
    }
}

/// What every frame starts with, before its macroblocks: the tag, the frame header (whose
/// updates are already applied to the entering state) and the partitions.
pub(crate) struct FrameStart<'a> {
    pub tag: FrameTag,
    pub hdr: FrameHeader,
    /// The first partition's decoder, positioned at the first macroblock record.
    pub d: BoolDecoder<'a>,
    pub parts: Vec<&'a [u8]>,
    /// The probabilities to restore after the frame when `refresh_entropy_probs` is 0.
    pub saved_probs: Option<EntropyProbs>,
}

/// Parse a frame up to its macroblocks into `next` (the entering state, which receives the
/// key-frame reset and the header's updates). Shared by the decoder and [`crate::inspect`], so
/// both accept and refuse exactly the same frames. `has_refs`: all three references exist.
pub(crate) fn begin_frame<'a>(
    next: &mut DecoderState,
    has_refs: bool,
    data: &'a [u8],
) -> Result<FrameStart<'a>, DecodeError> {
    let chunk = parse_uncompressed_chunk(data)?;
    let tag = chunk.tag;
    if tag.version > 3 {
        return Err(DecodeError::UnsupportedVersion(tag.version));
    }
    if let Some(dims) = chunk.dims {
        reset_for_key_frame(next, dims.width, dims.height);
        next.horizontal_scale = dims.horizontal_scale;
        next.vertical_scale = dims.vertical_scale;
    } else if !has_refs {
        return Err(DecodeError::NoReferenceFrame);
    }
    let rest = &data[chunk.len..];
    if tag.first_part_size == 0 || tag.first_part_size > rest.len() {
        return Err(DecodeError::FirstPartitionTooLong {
            size: tag.first_part_size,
            available: rest.len(),
        });
    }
    // As in libvpx, the first partition's decoder is given all the remaining data: a damaged
    // first partition that runs past its declared size reads on into the token partitions.
    let mut d = BoolDecoder::new(rest);
    let mut saved_probs = None;
    let hdr = parse_frame_header(
        &mut d,
        tag.key_frame,
        &mut next.segmentation,
        &mut next.lf,
        &mut next.probs,
        &mut saved_probs,
    );
    if hdr.copy_buffer_to_golden == 3 {
        return Err(DecodeError::InvalidCopyFlag { golden: true });
    }
    if hdr.copy_buffer_to_alternate == 3 {
        return Err(DecodeError::InvalidCopyFlag { golden: false });
    }
    if !tag.key_frame {
        next.sign_bias_golden = hdr.sign_bias_golden;
        next.sign_bias_altref = hdr.sign_bias_alternate;
    }
    let parts =
        split_token_partitions(&rest[tag.first_part_size..], 1 << hdr.log2_nbr_of_dct_partitions)?;
    Ok(FrameStart { tag, hdr, d, parts, saved_probs })
}

/// [`decode_frame`], reconstructing into `spare` when it has the frame's size. Every pixel of
/// a frame is written by reconstruction, so a recycled buffer's old contents do not matter.
fn decode_frame_with_buffer(
    state: &DecoderState,
    data: &[u8],
    spare: Option<Frame>,
) -> Result<(DecoderState, Option<Arc<Frame>>), DecodeError> {
    let mut next = state.clone();
    let has_refs = state.last.is_some() && state.golden.is_some() && state.altref.is_some();
    let FrameStart { tag, hdr, mut d, parts, saved_probs } =
        begin_frame(&mut next, has_refs, data)?;

    let (w, h) = (next.width as usize, next.height as usize);
    let mut frame = match spare {
        Some(f) if (f.display_width, f.display_height) == (w, h) => f,
        _ => Frame::try_new(w, h, 0).ok_or(DecodeError::OutOfMemory {
            width: w,
            height: h,
            bytes: Frame::bytes_for(w, h),
        })?,
    };
    let setup = FrameSetup {
        key_frame: tag.key_frame,
        must_be_complete: tag.key_frame && state.last.is_none(),
        filter: if tag.version == 0 { InterFilter::SixTap } else { InterFilter::Bilinear },
        full_pixel: tag.version == 3,
    };
    let loop_filter = (hdr.loop_filter_level != 0).then(|| {
        let ft = if hdr.simple_filter { FilterType::Simple } else { FilterType::Normal };
        FrameFilter::new(ft, hdr.sharpness_level, tag.key_frame)
    });
    decode_macroblocks(&mut next, &hdr, &setup, &mut d, &parts, loop_filter.as_ref(), &mut frame)?;

    let frame = Arc::new(frame);
    let shown = tag.show_frame.then(|| frame.clone());
    update_references(&mut next, &hdr, frame);
    if let Some(saved) = saved_probs {
        next.probs = saved;
    }
    Ok((next, shown))
}

/// What a key frame resets (spec 9.3-9.7, 9.11): probabilities to their defaults, segment
/// feature data to zero deltas, the segment map to 0, loop filter deltas to 0, sign biases off.
pub(crate) fn reset_for_key_frame(s: &mut DecoderState, width: u16, height: u16) {
    s.width = width;
    s.height = height;
    s.probs = EntropyProbs::default();
    s.segmentation = Segmentation::default();
    s.lf = LfAdjust::default();
    s.sign_bias_golden = false;
    s.sign_bias_altref = false;
    let mbs = (width as usize).div_ceil(16) * (height as usize).div_ceil(16);
    s.segment_map.clear();
    s.segment_map.resize(mbs, 0);
}

struct FrameSetup {
    key_frame: bool,
    /// As in libvpx, a damaged frame (a partition read past its end) is decoded with zeros for
    /// the missing data, except the stream's first key frame: until one key frame has decoded
    /// complete, there is nothing sound to decode from, and the frame is an error.
    must_be_complete: bool,
    filter: InterFilter,
    full_pixel: bool,
}

/// Parse and reconstruct every macroblock, and run the loop filter (when given) one
/// macroblock row behind reconstruction, while the rows are still in cache: intra prediction
/// of row `r` needs the unfiltered bottom pixel row of row `r - 1`, and filtering row `r - 1`
/// after row `r` is reconstructed touches only rows `r - 2` and `r - 1`.
fn decode_macroblocks(
    st: &mut DecoderState,
    hdr: &FrameHeader,
    setup: &FrameSetup,
    d: &mut BoolDecoder,
    parts: &[&[u8]],
    loop_filter: Option<&FrameFilter>,
    frame: &mut Frame,
) -> Result<(), DecodeError> {
    let (cols, rows) = (frame.mb_cols(), frame.mb_rows());
    let seg = &st.segmentation;
    let dequant: [Dequant; 4] = std::array::from_fn(|s| {
        Dequant::new(
            segment_qindex(hdr.quant.y_ac_qi, seg.enabled, seg.abs_delta, seg.quant[s]),
            &hdr.quant,
        )
    });
    let seg_levels: [u8; 4] = std::array::from_fn(|s| {
        let l = hdr.loop_filter_level as i32;
        let l = match (seg.enabled, seg.abs_delta) {
            (false, _) => l,
            (true, true) => seg.lf[s] as i32,
            (true, false) => l + seg.lf[s] as i32,
        };
        l.clamp(0, 63) as u8
    });
    let deltas = LfDeltas { ref_deltas: st.lf.ref_deltas, mode_deltas: st.lf.mode_deltas };
    let deltas = st.lf.enabled.then_some(&deltas);
    let ctx = ModeContext {
        key_frame: setup.key_frame,
        header: hdr,
        probs: &st.probs,
        mb_cols: cols,
        mb_rows: rows,
        sign_bias: [false, false, st.sign_bias_golden, st.sign_bias_altref],
    };
    let refs = [None, st.last.as_deref(), st.golden.as_deref(), st.altref.as_deref()];

    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut edges = Vec::with_capacity(2 * cols);
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    let mut tds: Vec<BoolDecoder> = parts.iter().map(|p| BoolDecoder::new(p)).collect();
    let mut coeffs = MbCoeffs::default();
    let token_probs = TokenProbs::new(&ctx.probs.coeff);
    let mut prefetch = (Frame::bytes_for(frame.display_width, frame.display_height)
        >= PREFETCH_MIN_FRAME_BYTES)
        .then(FootprintPrefetch::new);
    for mby in 0..rows {
        // The row's modes first (the first partition), then its residue and reconstruction:
        // knowing the next macroblock's vector, the loop below starts loading its reference
        // pixels (and its own, about to be written) while the current one is decoded.
        for mbx in 0..cols {
            let i = mby * cols + mbx;
            mbs.push(MbInfo { segment_id: st.segment_map[i], ..Default::default() });
            let (done, this) = mbs.split_at_mut(i);
            let nb = Neighbours {
                above: (mby > 0).then(|| &done[i - cols]),
                left: (mbx > 0).then(|| &done[i - 1]),
                above_left: (mby > 0 && mbx > 0).then(|| &done[i - cols - 1]),
            };
            parse_mb_header_into(d, &ctx, nb, mbx, mby, &mut this[0]);
            if hdr.update_mb_segmentation_map {
                st.segment_map[i] = this[0].segment_id;
            }
        }
        let row = &mbs[mby * cols..];
        if let Some(p) = prefetch.as_mut() {
            for (mbx, info) in row.iter().enumerate().take(PREFETCH_AHEAD) {
                prefetch_mb(p, &refs, frame, mbx, mby, info);
            }
        }
        let mut left_nz: NzContext = [0; 9];
        let td = &mut tds[mby % parts.len()];
        for (mbx, above) in above_nz.iter_mut().enumerate() {
            if let (Some(p), Some(ahead)) = (prefetch.as_mut(), row.get(mbx + PREFETCH_AHEAD)) {
                prefetch_mb(p, &refs, frame, mbx + PREFETCH_AHEAD, mby, ahead);
            }
            let info = &row[mbx];
            let has_y2 = info.y_mode != MbMode::BPred && info.y_mode != MbMode::Split;
            // As in libvpx: a partition already read past its end yields no residue (and leaves
            // the contexts alone), and such a macroblock is not treated as coefficient-free. One
            // whose tokens run past the end while being read is coefficient-free if they all came
            // out empty (libvpx 1.12 sets mb_skip_coeff = eobtotal == 0 with no error check).
            let no_coeffs = if info.skip_coeff {
                skip_mb_tokens(above, &mut left_nz, has_y2);
                true
            } else if td.window_past_end() {
                false
            } else {
                let dq = &dequant[info.segment_id as usize & 3];
                let any = decode_mb_tokens(
                    td,
                    &token_probs,
                    above,
                    &mut left_nz,
                    has_y2,
                    dq,
                    &mut coeffs,
                );
                !any
            };
            let reference = refs[info.ref_frame as usize];
            reconstruct_mb(frame, reference, info, &mut coeffs, has_y2, mbx, mby, setup);
            coeffs.clear();
            edges.push(MbEdgeInfo {
                level: mb_filter_level(
                    seg_levels[info.segment_id as usize & 3],
                    deltas,
                    info.ref_frame,
                    info.y_mode,
                ),
                filter_inner: !has_y2 || !no_coeffs,
            });
        }
        // The stream's first key frame must be complete (see `FrameSetup::must_be_complete`).
        // A decoder past the end stays past it, so stopping at the first such row gives the
        // verdict a check after the last row would, without first decoding up to a million
        // macroblocks of zeros (a few bytes claiming a 16383x16383 key frame).
        if setup.must_be_complete && (d.window_past_end() || td.window_past_end()) {
            return Err(DecodeError::IncompleteFirstKeyFrame);
        }
        if let Some(lf) = loop_filter {
            if mby > 0 {
                lf.filter_row(frame, mby - 1, &edges[..cols]);
                edges.drain(..cols);
            }
            if mby + 1 == rows {
                lf.filter_row(frame, mby, &edges);
            }
        } else {
            edges.clear();
        }
    }
    if setup.must_be_complete && tds.iter().any(BoolDecoder::window_past_end) {
        return Err(DecodeError::IncompleteFirstKeyFrame);
    }
    Ok(())
}

/// How many macroblocks ahead of reconstruction their pixels are prefetched.
const PREFETCH_AHEAD: usize = 1;

/// Frames smaller than this are decoded without prefetch hints. At 640x272 (0.26 MB a frame)
/// the references and the frame being decoded stay in the L2 cache, and the hints only cost
/// (CPU time +1% for the reference footprints, +4% with the destinations, paired runs); at
/// 1280x720 (1.38 MB) they saved 7% and 2% more at load 5-7, less on a quiet machine
/// (`bench/decode-speed.md`).
const PREFETCH_MIN_FRAME_BYTES: usize = 1 << 20;

/// Prefetch what reconstructing macroblock (mbx, mby) with `info` into `frame` will touch:
/// its reference footprint (an inter macroblock whose reference exists) and its pixels.
#[inline(always)]
fn prefetch_mb(
    p: &mut FootprintPrefetch,
    refs: &[Option<&Frame>; 4],
    frame: &Frame,
    mbx: usize,
    mby: usize,
    info: &MbInfo,
) {
    if let Some(r) = refs[info.ref_frame as usize] {
        p.macroblock(r, mbx, mby, info);
    }
    p.destination(frame, mbx, mby);
}

/// Predict one macroblock and add its residue (spec 12, 14, 18).
#[allow(clippy::too_many_arguments)]
fn reconstruct_mb(
    frame: &mut Frame,
    reference: Option<&Frame>,
    info: &MbInfo,
    coeffs: &mut MbCoeffs,
    has_y2: bool,
    mbx: usize,
    mby: usize,
    setup: &FrameSetup,
) {
    // Second-order luma DCs: the inverse WHT yields each Y block's (dequantized) DC.
    let mut y_mask = coeffs.nonzero & 0xFFFF;
    if has_y2 && coeffs.nonzero & (1 << Y2_BLOCK) != 0 {
        let dcs = iwht4x4(&coeffs.blocks[Y2_BLOCK]);
        for (b, &dc) in dcs.iter().enumerate() {
            coeffs.blocks[b][0] = dc;
            if dc != 0 {
                y_mask |= 1 << b;
            }
        }
        // Make sure `clear` resets the DCs written here.
        coeffs.nonzero |= y_mask;
    }
    let stride = frame.y.stride;
    let ac = coeffs.ac;
    match (info.ref_frame, reference) {
        (RefFrame::Intra, _) | (_, None) => {
            if info.y_mode == MbMode::BPred {
                for b in 0..16 {
                    predict_luma4(&mut frame.y, mbx, mby, b, info.b_modes[b]);
                    if y_mask & (1 << b) != 0 {
                        let off = (mby * 16 + (b >> 2) * 4) * stride + mbx * 16 + (b & 3) * 4;
                        idct4x4_add_known(
                            &coeffs.blocks[b],
                            ac & (1 << b) != 0,
                            &mut frame.y.data,
                            off,
                            stride,
                        );
                    }
                }
                y_mask = 0;
            } else {
                predict_luma16(&mut frame.y, mbx, mby, info.y_mode);
            }
            predict_chroma8(&mut frame.u, mbx, mby, info.uv_mode);
            predict_chroma8(&mut frame.v, mbx, mby, info.uv_mode);
        }
        (_, Some(r)) => predict_inter_mb(r, frame, mbx, mby, info, setup.filter, setup.full_pixel),
    }
    add_luma_residue(coeffs, y_mask, &mut frame.y.data, mby * 16 * stride + mbx * 16, stride);
    let uv_mask = (coeffs.nonzero >> 16) & 0xFF;
    if uv_mask != 0 {
        let cstride = frame.u.stride;
        let off = mby * 8 * cstride + mbx * 8;
        add_chroma_residue(coeffs, uv_mask, &mut frame.u.data, &mut frame.v.data, off, cstride);
    }
}

/// Add the residue of the luma blocks in `mask` to the macroblock at `data[off..]`, a row of
/// four blocks at a time: the DC-only blocks of a row with one [`add_dc_row`] (most blocks
/// of an inter macroblock with a Y2 block have a DC from it and nothing else), then the
/// others one by one.
fn add_luma_residue(coeffs: &MbCoeffs, mask: u32, data: &mut [u8], off: usize, stride: usize) {
    for r in 0..4 {
        let bits = (mask >> (4 * r)) & 0xF;
        if bits == 0 {
            continue;
        }
        let row = &coeffs.blocks[4 * r..4 * r + 4];
        let off = off + 4 * r * stride;
        let with_ac = (coeffs.ac >> (4 * r)) & bits;
        let dc_only = bits & !with_ac;
        if dc_only != 0 {
            add_dc_row(dc_residues(row, dc_only), data, off, stride);
        }
        let mut m = with_ac;
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            m &= m - 1;
            idct4x4_add_known(&row[k], true, data, off + 4 * k, stride);
        }
    }
}

/// [`add_luma_residue`] for the chroma blocks in `mask` (bit `b` for block `16 + b`): a row
/// of two U blocks and the two V blocks beside it at once.
fn add_chroma_residue(
    coeffs: &MbCoeffs,
    mask: u32,
    u: &mut [u8],
    v: &mut [u8],
    off: usize,
    stride: usize,
) {
    for r in 0..2 {
        // Bits 0, 1: the U blocks of this row; 2, 3: the V blocks.
        let bits = ((mask >> (2 * r)) & 3) | (((mask >> (4 + 2 * r)) & 3) << 2);
        if bits == 0 {
            continue;
        }
        let first = [16 + 2 * r, 20 + 2 * r];
        let row: [&[i16; 16]; 4] = std::array::from_fn(|k| &coeffs.blocks[first[k >> 1] + (k & 1)]);
        let off = off + 4 * r * stride;
        let ac = coeffs.ac >> 16;
        let ac = ((ac >> (2 * r)) & 3) | (((ac >> (4 + 2 * r)) & 3) << 2);
        let with_ac = ac & bits;
        let dc_only = bits & !with_ac;
        if dc_only != 0 {
            let dc = std::array::from_fn(|k| dc_residue(row[k], dc_only >> k & 1 != 0));
            add_dc_row_uv(dc, u, v, off, stride);
        }
        let mut m = with_ac;
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            m &= m - 1;
            let plane = if k < 2 { &mut *u } else { &mut *v };
            idct4x4_add_known(row[k], true, plane, off + 4 * (k & 1), stride);
        }
    }
}

/// The residue of a DC-only block (the inverse DCT's rounding), or 0 when `used` is false.
#[inline(always)]
fn dc_residue(block: &[i16; 16], used: bool) -> i16 {
    if used {
        ((block[0] as i32 + 4) >> 3) as i16
    } else {
        0
    }
}

/// [`dc_residue`] of the four blocks of a luma row, those in `mask`.
#[inline(always)]
fn dc_residues(row: &[[i16; 16]], mask: u32) -> [i16; 4] {
    std::array::from_fn(|k| dc_residue(&row[k], mask >> k & 1 != 0))
}

/// Reference buffer updates (spec 9.7, 9.8). As libvpx does it (the de-facto reference for
/// this corner), the altref copy happens first and the golden copy then reads the altref
/// buffer as already updated: with both copy flags 2, golden keeps its picture and altref gets
/// golden's (no swap). Then the refresh flags replace buffers with the new frame.
pub(crate) fn update_references(s: &mut DecoderState, hdr: &FrameHeader, new: Arc<Frame>) {
    match hdr.copy_buffer_to_alternate {
        1 => s.altref = s.last.clone(),
        2 => s.altref = s.golden.clone(),
        _ => {}
    }
    match hdr.copy_buffer_to_golden {
        1 => s.golden = s.last.clone(),
        2 => s.golden = s.altref.clone(),
        _ => {}
    }
    if hdr.refresh_golden_frame {
        s.golden = Some(new.clone());
    }
    if hdr.refresh_alternate_frame {
        s.altref = Some(new.clone());
    }
    if hdr.refresh_last {
        s.last = Some(new);
    }
}
