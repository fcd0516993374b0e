//! The decoder state after an encoded frame, built from what the encoder decided instead of by
//! decoding the frame it wrote.
//!
//! Everything a [`DecoderState`] carries to the next frame is either chosen by the encoder
//! before any bit is written (frame size, segmentation, segment map, loop filter deltas, sign
//! biases, reference buffer refresh and copy flags), chosen by the bitstream writer (the
//! coefficient, MV and intra mode probability updates, returned by
//! [`write_frame_coded`]), or is the reconstruction the encoder computed with the decoder's
//! own prediction, dequantization, inverse transforms and loop filter. So the next state can
//! be assembled from those directly, at the cost of one picture copy, where decoding the frame
//! again costs about a quarter of a rebase.
//!
//! The rules are the decoder's (spec 9.3-9.11, 19.2): a key frame resets probabilities,
//! segmentation, loop filter deltas, sign biases and the segment map, and refreshes all three
//! references; segment feature data and map change only when segmentation is enabled and the
//! header says they are updated; loop filter deltas are replaced only when enabled (the writer
//! sends exactly the changed ones); probabilities persist only with `refresh_entropy_probs`.
//! [`finish_frame`] can still decode the written frame and compare (`verify`), which tests use
//! to hold this module to the decoder.

use std::sync::Arc;

use crate::decoder::{decode_frame, reset_for_key_frame, update_references};
use crate::encoder::bitstream::{write_frame_coded, WriteOptions};
use crate::encoder::{EncodeError, EncodedFrame, FrameDecisions};
use crate::frame::Frame;
use crate::state::{DecoderState, EntropyProbs};

/// The state a decoder reaches after decoding the frame `d` describes from `state`, when the
/// writer coded it with `coded_probs` ([`crate::encoder::bitstream::WrittenFrame::probs`]) and
/// its reconstruction (loop filtered, macroblock-aligned as the decoder keeps references) is
/// `picture`. `d` must be a frame the writer accepted for `state`.
pub fn next_state(
    state: &DecoderState,
    d: &FrameDecisions,
    coded_probs: &EntropyProbs,
    picture: Arc<Frame>,
) -> DecoderState {
    let h = &d.header;
    let mut next = state.clone();
    if d.key_frame {
        // The writer refuses key frame sizes with scaling bits, so they are 0.
        reset_for_key_frame(&mut next, d.width, d.height);
        next.horizontal_scale = 0;
        next.vertical_scale = 0;
    }

    let seg = &d.segmentation;
    next.segmentation.enabled = seg.enabled;
    if seg.enabled && h.update_segment_feature_data {
        next.segmentation.abs_delta = seg.abs_delta;
        next.segmentation.quant = seg.quant;
        next.segmentation.lf = seg.lf;
    }
    if seg.enabled && h.update_mb_segmentation_map {
        for (id, mb) in next.segment_map.iter_mut().zip(&d.mbs) {
            *id = mb.segment_id;
        }
    }

    next.lf.enabled = d.lf_adjust.enabled;
    if d.lf_adjust.enabled {
        next.lf.ref_deltas = d.lf_adjust.ref_deltas;
        next.lf.mode_deltas = d.lf_adjust.mode_deltas;
    }

    if h.refresh_entropy_probs {
        next.probs.clone_from(coded_probs);
    }

    if d.key_frame {
        next.last = Some(picture.clone());
        next.golden = Some(picture.clone());
        next.altref = Some(picture);
    } else {
        next.sign_bias_golden = h.sign_bias_golden;
        next.sign_bias_altref = h.sign_bias_alternate;
        // A copy flag is written (and so acts) only when its buffer is not refreshed.
        let mut flags = h.clone();
        if h.refresh_golden_frame {
            flags.copy_buffer_to_golden = 0;
        }
        if h.refresh_alternate_frame {
            flags.copy_buffer_to_alternate = 0;
        }
        update_references(&mut next, &flags, picture);
    }
    next
}

/// Write the frame `d` (reconstructed as `recon`) for `state` and build the state after it.
/// With `verify`, and always in debug builds, the written frame is also decoded from `state`:
/// the decoder must reach the same state and show (or store) `recon`, else the frame is
/// refused as an encoder bug.
pub fn finish_frame(
    state: &DecoderState,
    d: &FrameDecisions,
    recon: Frame,
    opts: &WriteOptions,
    verify: bool,
) -> Result<EncodedFrame, EncodeError> {
    let (w, h) = (d.width as usize, d.height as usize);
    if (recon.display_width, recon.display_height) != (w, h)
        || recon.y.width != w.div_ceil(16) * 16
        || recon.y.height != h.div_ceil(16) * 16
    {
        return Err(EncodeError::Mismatch(format!(
            "reconstruction is {}x{} but the frame is {w}x{h}",
            recon.display_width, recon.display_height
        )));
    }
    let written = write_frame_coded(state, d, opts).map_err(EncodeError::Write)?;
    let recon = Arc::new(recon);
    let next = next_state(state, d, &written.probs, recon.clone());
    if verify || cfg!(debug_assertions) {
        verify_by_decoding(state, &written.data, d, &next, &recon)?;
    }
    Ok(EncodedFrame { data: written.data, state: next, recon })
}

/// Decode `data` from `state` and check that the decoder reaches `expected` and that its
/// picture (shown, or else the buffer the frame refreshes) is `recon`.
pub fn verify_by_decoding(
    state: &DecoderState,
    data: &[u8],
    d: &FrameDecisions,
    expected: &DecoderState,
    recon: &Frame,
) -> Result<(), EncodeError> {
    let (decoded, shown) = decode_frame(state, data).map_err(EncodeError::Decode)?;
    check_decoded_picture(d, &decoded, shown, recon)?;
    match state_difference(&decoded, expected) {
        Some(what) => Err(EncodeError::StateMismatch(what)),
        None => Ok(()),
    }
}

/// The decoder's picture of a written frame must be the encoder's reconstruction: the shown
/// frame, or for a hidden frame the buffer it refreshes.
pub(crate) fn check_decoded_picture(
    d: &FrameDecisions,
    next: &DecoderState,
    shown: Option<Frame>,
    recon: &Frame,
) -> Result<(), EncodeError> {
    let h = &d.header;
    let decoded = match shown {
        Some(f) => Some(f),
        None if d.key_frame || h.refresh_last => next.last.as_deref().cloned(),
        None if h.refresh_golden_frame => next.golden.as_deref().cloned(),
        None if h.refresh_alternate_frame => next.altref.as_deref().cloned(),
        None => None,
    };
    if decoded.as_ref().is_some_and(|f| f != recon) {
        return Err(EncodeError::ReconstructionMismatch);
    }
    Ok(())
}

/// The first part of the state in which `decoded` and `built` differ, or `None` when they are
/// equal (and so serialize to the same bytes).
pub fn state_difference(decoded: &DecoderState, built: &DecoderState) -> Option<String> {
    let (a, b) = (decoded, built);
    let differs = [
        ("frame size", (a.width, a.height) != (b.width, b.height)),
        (
            "scaling bits",
            (a.horizontal_scale, a.vertical_scale) != (b.horizontal_scale, b.vertical_scale),
        ),
        ("coefficient probabilities", a.probs.coeff != b.probs.coeff),
        ("mv probabilities", a.probs.mv != b.probs.mv),
        (
            "intra mode probabilities",
            (a.probs.ymode, a.probs.uv_mode) != (b.probs.ymode, b.probs.uv_mode),
        ),
        ("segmentation", a.segmentation != b.segmentation),
        ("segment map", a.segment_map != b.segment_map),
        ("loop filter deltas", a.lf != b.lf),
        (
            "sign biases",
            (a.sign_bias_golden, a.sign_bias_altref) != (b.sign_bias_golden, b.sign_bias_altref),
        ),
        ("last frame", a.last != b.last),
        ("golden frame", a.golden != b.golden),
        ("altref frame", a.altref != b.altref),
    ];
    let what: Vec<&str> = differs.iter().filter(|d| d.1).map(|d| d.0).collect();
    if what.is_empty() {
        debug_assert_eq!(a, b);
        None
    } else {
        Some(format!("the decoder's state differs from the encoder's in: {}", what.join(", ")))
    }
}
