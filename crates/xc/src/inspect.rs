//! What the decoder parses from a frame, without reconstructing it: the header, every
//! macroblock's record and its dequantized coefficients. Used to check that the encoder's
//! bitstream writer is the exact inverse of the parser, and handy for stream inspection.

use crate::bool_decoder::BoolDecoder;
use crate::decoder::{begin_frame, FrameStart};
use crate::error::DecodeError;
use crate::header::FrameHeader;
use crate::mb::{MbInfo, MbMode};
use crate::modes::{parse_mb_header, ModeContext, Neighbours};
use crate::quant::{segment_qindex, Dequant};
use crate::state::{DecoderState, EntropyProbs, LfAdjust, Segmentation};
use crate::tokens::{decode_mb_tokens, skip_mb_tokens, MbCoeffs, NzContext, TokenProbs};

/// Everything parsed from one frame.
///
/// Rebase reads the modes and headers; `probs`, `dequant`, `coeffs` and `partition_sizes` are
/// there for the tests (which check them against the decoder) and the `ivf_info` example.
#[derive(Clone, Debug)]
#[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
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
#[cfg(any(test, feature = "internals"))]
pub fn parse_frame(state: &DecoderState, data: &[u8]) -> Result<ParsedFrame, DecodeError> {
    let refs = RefsPresent {
        last: state.last.is_some(),
        all: state.last.is_some() && state.golden.is_some() && state.altref.is_some(),
    };
    let mut next = state.clone();
    parse_into(&mut next, refs, data, Tokens::All)
}

/// Which reference pictures a state has (parsing needs to know, not the pictures).
#[derive(Clone, Copy, Debug)]
struct RefsPresent {
    last: bool,
    all: bool,
}

/// How much of the token partitions to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tokens {
    /// Every macroblock's coefficients, into [`ParsedFrame::coeffs`].
    All,
    /// None, except where the decoder needs them to reject a frame (a stream's first key
    /// frame must be complete); [`ParsedFrame::coeffs`] stays empty.
    CheckOnly,
    /// None at all (see [`ModeParser::parse_modes_only`]).
    Skip,
}

/// Parse `data` from the state `next` holds on entry (its pictures are not used, only `refs`
/// says which exist), leaving in `next` what the decoder carries to the next frame besides
/// pictures: frame size, probabilities (saved ones restored), segmentation and segment map,
/// loop filter deltas, sign biases.
fn parse_into(
    next: &mut DecoderState,
    refs: RefsPresent,
    data: &[u8],
    tokens: Tokens,
) -> Result<ParsedFrame, DecodeError> {
    let FrameStart { tag, hdr, mut d, parts, saved_probs: saved } =
        begin_frame(next, refs.all, data)?;
    let cols = (next.width as usize).div_ceil(16);
    let rows = (next.height as usize).div_ceil(16);
    let seg = &next.segmentation;
    let dequant: [Dequant; 4] = std::array::from_fn(|s| {
        Dequant::new(
            segment_qindex(hdr.quant.y_ac_qi, seg.enabled, seg.abs_delta, seg.quant[s]),
            &hdr.quant,
        )
    });
    // As the decoder: only a stream's first key frame must be complete.
    let first_key_frame = tag.key_frame && !refs.last;
    let keep_coeffs = tokens == Tokens::All;
    let parse_tokens = keep_coeffs || (first_key_frame && tokens == Tokens::CheckOnly);
    let ctx = ModeContext {
        key_frame: tag.key_frame,
        header: &hdr,
        probs: &next.probs,
        mb_cols: cols,
        mb_rows: rows,
        sign_bias: [false, false, next.sign_bias_golden, next.sign_bias_altref],
    };
    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut coeffs = Vec::with_capacity(if keep_coeffs { cols * rows } else { 0 });
    let mut above_nz: Vec<NzContext> = vec![[0; 9]; cols];
    let mut tds: Vec<BoolDecoder> = parts.iter().map(|p| BoolDecoder::new(p)).collect();
    let mut c = MbCoeffs::default();
    let token_probs = TokenProbs::new(&ctx.probs.coeff);
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
            if parse_tokens {
                let has_y2 = info.y_mode != MbMode::BPred && info.y_mode != MbMode::Split;
                c.clear();
                if info.skip_coeff {
                    skip_mb_tokens(above, &mut left_nz, has_y2);
                } else if !td.window_past_end() {
                    let dq = &dequant[info.segment_id as usize & 3];
                    decode_mb_tokens(td, &token_probs, above, &mut left_nz, has_y2, dq, &mut c);
                }
                if keep_coeffs {
                    coeffs.push(c.blocks);
                }
            }
            mbs.push(info);
        }
    }
    if first_key_frame && (d.window_past_end() || tds.iter().any(BoolDecoder::window_past_end)) {
        return Err(DecodeError::IncompleteFirstKeyFrame);
    }
    if hdr.update_mb_segmentation_map {
        for (id, m) in next.segment_map.iter_mut().zip(&mbs) {
            *id = m.segment_id;
        }
    }
    let mut partition_sizes = vec![tag.first_part_size];
    partition_sizes.extend(parts.iter().map(|p| p.len()));
    let parsed = ParsedFrame {
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
    };
    if let Some(saved) = saved {
        next.probs = saved;
    }
    Ok(parsed)
}

/// Follows a stream frame by frame for its prediction decisions alone, without decoding it:
/// each [`ModeParser::parse`] returns what [`parse_frame`] would from the state the decoder
/// has reached, except the coefficients ([`ParsedFrame::coeffs`] is empty), and skips the
/// token partitions, prediction and loop filter.
///
/// Parsing a frame needs from earlier frames only the probabilities, segmentation, segment
/// map, loop filter deltas, sign biases and frame size, never their pictures, so this is all
/// the parser carries. It rejects what the decoder rejects before reconstruction (a stream's
/// first key frame is checked for completeness, which does parse its tokens).
#[derive(Clone, Debug)]
pub struct ModeParser {
    /// The decoder's state without pictures (its reference slots stay empty).
    state: DecoderState,
    refs: RefsPresent,
}

impl ModeParser {
    /// A parser for a stream that continues from `state`.
    pub fn new(state: &DecoderState) -> Self {
        let refs = RefsPresent {
            last: state.last.is_some(),
            all: state.last.is_some() && state.golden.is_some() && state.altref.is_some(),
        };
        let state = DecoderState { last: None, golden: None, altref: None, ..state.clone() };
        ModeParser { state, refs }
    }

    /// Parse the stream's next frame. On error the parser is left as it was.
    pub fn parse(&mut self, data: &[u8]) -> Result<ParsedFrame, DecodeError> {
        self.parse_with(data, Tokens::CheckOnly)
    }

    /// [`Self::parse`] without parsing any token, not even to check that a stream's first key
    /// frame is complete: for a caller that decodes the frame as well (the decoder makes that
    /// check) or never uses its residual. At a low quantizer a key frame's tokens are most of
    /// a chunk's bytes.
    pub fn parse_modes_only(&mut self, data: &[u8]) -> Result<ParsedFrame, DecodeError> {
        self.parse_with(data, Tokens::Skip)
    }

    fn parse_with(&mut self, data: &[u8], tokens: Tokens) -> Result<ParsedFrame, DecodeError> {
        let mut next = self.state.clone();
        let parsed = parse_into(&mut next, self.refs, data, tokens)?;
        let h = &parsed.header;
        // The decoder's checks between the header and the macroblocks.
        if h.copy_buffer_to_golden == 3 {
            return Err(DecodeError::InvalidCopyFlag { golden: true });
        }
        if h.copy_buffer_to_alternate == 3 {
            return Err(DecodeError::InvalidCopyFlag { golden: false });
        }
        if parsed.key_frame {
            // A key frame refreshes every reference.
            self.refs = RefsPresent { last: true, all: true };
        }
        self.state = next;
        Ok(parsed)
    }
}
