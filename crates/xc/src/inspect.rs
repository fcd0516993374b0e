//! What the decoder parses from a frame, without reconstructing it: the header, every
//! macroblock's record and its dequantized coefficients. Used to check that the encoder's
//! bitstream writer is the exact inverse of the parser, and handy for stream inspection.

use crate::bool_decoder::BoolDecoder;
use crate::decoder::reset_for_key_frame;
use crate::error::DecodeError;
use crate::header::{
    parse_frame_header, parse_uncompressed_chunk, split_token_partitions, FrameHeader,
};
use crate::mb::{MbInfo, MbMode};
use crate::modes::{parse_mb_header, ModeContext, Neighbours};
use crate::quant::{segment_qindex, Dequant};
use crate::state::{DecoderState, EntropyProbs, LfAdjust, Segmentation};
use crate::tokens::{decode_mb_tokens, skip_mb_tokens, MbCoeffs, NzContext};

/// Everything parsed from one frame.
#[derive(Clone, Debug)]
pub struct ParsedFrame {
    pub key_frame: bool,
    pub version: u8,
    pub show_frame: bool,
    pub width: u16,
    pub height: u16,
    pub header: FrameHeader,
    /// Segmentation and loop filter deltas in force for this frame (after its updates).
    pub segmentation: Segmentation,
    pub lf: LfAdjust,
    /// The probabilities the macroblocks were parsed with (after this frame's updates).
    pub probs: EntropyProbs,
    /// Dequantization factors per segment id.
    pub dequant: [Dequant; 4],
    /// Per macroblock, raster order: the parsed record and the dequantized coefficients
    /// (raster order within each block; blocks in `tokens::MbCoeffs` order).
    pub mbs: Vec<MbInfo>,
    pub coeffs: Vec<[[i16; 16]; 25]>,
    /// Bytes in the first partition and in each token partition.
    pub partition_sizes: Vec<usize>,
}

/// Parse `data` as the decoder does when decoding it from `state` (same header, mode and token
/// parsing, same handling of exhausted partitions), but skip prediction and the loop filter.
pub fn parse_frame(state: &DecoderState, data: &[u8]) -> Result<ParsedFrame, DecodeError> {
    let chunk = parse_uncompressed_chunk(data)?;
    let tag = chunk.tag;
    if tag.version > 3 {
        return Err(DecodeError::UnsupportedVersion(tag.version));
    }
    let mut next = state.clone();
    if let Some(dims) = chunk.dims {
        reset_for_key_frame(&mut next, dims.width, dims.height);
    } else if state.last.is_none() || state.golden.is_none() || state.altref.is_none() {
        return Err(DecodeError::NoReferenceFrame);
    }
    let rest = &data[chunk.len..];
    if tag.first_part_size == 0 || tag.first_part_size > rest.len() {
        return Err(DecodeError::FirstPartitionTooLong {
            size: tag.first_part_size,
            available: rest.len(),
        });
    }
    let mut d = BoolDecoder::new(rest);
    let mut saved = None;
    let hdr = parse_frame_header(
        &mut d,
        tag.key_frame,
        &mut next.segmentation,
        &mut next.lf,
        &mut next.probs,
        &mut saved,
    );
    if !tag.key_frame {
        next.sign_bias_golden = hdr.sign_bias_golden;
        next.sign_bias_altref = hdr.sign_bias_alternate;
    }
    let parts =
        split_token_partitions(&rest[tag.first_part_size..], 1 << hdr.log2_nbr_of_dct_partitions)?;
    let cols = (next.width as usize).div_ceil(16);
    let rows = (next.height as usize).div_ceil(16);
    let seg = &next.segmentation;
    let dequant: [Dequant; 4] = std::array::from_fn(|s| {
        Dequant::new(
            segment_qindex(hdr.quant.y_ac_qi, seg.enabled, seg.abs_delta, seg.quant[s]),
            &hdr.quant,
        )
    });
    let ctx = ModeContext {
        key_frame: tag.key_frame,
        header: &hdr,
        probs: &next.probs,
        mb_cols: cols,
        mb_rows: rows,
        sign_bias: [false, false, next.sign_bias_golden, next.sign_bias_altref],
    };
    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut coeffs = Vec::with_capacity(cols * rows);
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    let mut tds: Vec<BoolDecoder> = parts.iter().map(|p| BoolDecoder::new(p)).collect();
    let mut c = MbCoeffs::default();
    for mby in 0..rows {
        let mut left_nz: NzContext = [0; 9];
        let td = &mut tds[mby % parts.len()];
        for (mbx, above) in above_nz.iter_mut().enumerate() {
            let i = mby * cols + mbx;
            let nb = Neighbours {
                above: (mby > 0).then(|| &mbs[i - cols]),
                left: (mbx > 0).then(|| &mbs[i - 1]),
                above_left: (mby > 0 && mbx > 0).then(|| &mbs[i - cols - 1]),
            };
            let info = parse_mb_header(&mut d, &ctx, nb, mbx, mby, next.segment_map[i]);
            let has_y2 = info.y_mode != MbMode::BPred && info.y_mode != MbMode::Split;
            c.clear();
            if info.skip_coeff {
                skip_mb_tokens(above, &mut left_nz, has_y2);
            } else if !td.window_past_end() {
                let dq = &dequant[info.segment_id as usize & 3];
                decode_mb_tokens(td, &ctx.probs.coeff, above, &mut left_nz, has_y2, dq, &mut c);
            }
            coeffs.push(c.blocks);
            mbs.push(info);
        }
    }
    // As the decoder: only a stream's first key frame must be complete.
    let first_key_frame = tag.key_frame && state.last.is_none();
    if first_key_frame && (d.window_past_end() || tds.iter().any(BoolDecoder::window_past_end)) {
        return Err(DecodeError::IncompleteFirstKeyFrame);
    }
    let mut partition_sizes = vec![tag.first_part_size];
    partition_sizes.extend(parts.iter().map(|p| p.len()));
    Ok(ParsedFrame {
        key_frame: tag.key_frame,
        version: tag.version,
        show_frame: tag.show_frame,
        width: next.width,
        height: next.height,
        header: hdr,
        segmentation: next.segmentation.clone(),
        lf: next.lf.clone(),
        probs: next.probs.clone(),
        dequant,
        mbs,
        coeffs,
        partition_sizes,
    })
}
