//! How static a chunk's independent encode (pass 0) says the chunk is, read from its frames
//! alone: the pipeline decides per chunk whether its first frame is worth a boost.

use crate::bool_decoder::BoolDecoder;
use crate::header::{parse_frame_header, parse_uncompressed_chunk};
use crate::state::{EntropyProbs, LfAdjust, Segmentation};

/// The frame's base quantizer index (`y_ac_qi`), None if `data` is not a VP8 frame whose
/// header can be read. Segment deltas, when a stream uses them, are not applied: the base
/// index is what an encoder's rate control sets per frame.
pub fn frame_qindex(data: &[u8]) -> Option<u8> {
    let chunk = parse_uncompressed_chunk(data).ok()?;
    let rest = data.get(chunk.len..)?;
    if chunk.tag.first_part_size == 0 || chunk.tag.first_part_size > rest.len() {
        return None;
    }
    // Only the quantizer is wanted: the persistent values the header updates start at their
    // defaults, which changes nothing that comes before the quantizer fields.
    let (mut seg, mut lf) = (Segmentation::default(), LfAdjust::default());
    let (mut probs, mut saved) = (EntropyProbs::default(), None);
    let mut d = BoolDecoder::new(rest);
    let h =
        parse_frame_header(&mut d, chunk.tag.key_frame, &mut seg, &mut lf, &mut probs, &mut saved);
    Some(h.quant.y_ac_qi)
}

/// `ln(r / (r0 next_q))`: `r` is the chunk's first (key) frame's size over the mean size of
/// its other frames, `next_q` the second frame's quantizer index. `r` is large when the
/// chunk's later frames predict well from its first, and grows as the quantizer coarsens,
/// hence the normalisation; 0 means "as static as the reference ratio `r0`" (the same measure
/// `rebase::content_weight` turns into a first-frame weight). None for a chunk of one frame,
/// or frames whose headers cannot be read.
pub fn stillness(pred_frames: &[Vec<u8>], r0: f64) -> Option<f64> {
    let (key, rest) = pred_frames.split_first()?;
    let next_q = frame_qindex(rest.first()?)?;
    if key.is_empty() {
        return None;
    }
    let mean = rest.iter().map(Vec::len).sum::<usize>().max(1) as f64 / rest.len() as f64;
    Some((key.len() as f64 / mean / (r0 * next_q.max(1) as f64)).ln())
}

/// A batch-start chunk whose [`stillness`] is above this is static: its key frame will serve
/// many frames, so [`static_key_qindex`] codes it stronger. Measured on the pipeline's pass 0
/// (vpxenc, key frame floored, `r0` = `rebase::CONTENT_R0_FLOORED`) at cq levels 12..44:
/// bigbuckbunny's static opening reads -0.08..+0.70, the batch starts of carphone (-0.45 and
/// below), bus (-1.38 and below) and park_joy (-1.46 and below) stay under it.
pub const STATIC_KEY_GATE: f64 = -0.3;

/// The quantizer index of a static chunk's key frame: `(1 - weight)` times its next frame's
/// quantizer (the level's, in a constrained-quality pass 0), rounded; None when the chunk
/// is not static ([`STATIC_KEY_GATE`]), does not start with a key frame, or cannot be read.
pub fn static_key_qindex(pred_frames: &[Vec<u8>], r0: f64, weight: f64) -> Option<u8> {
    let first = parse_uncompressed_chunk(pred_frames.first()?).ok()?;
    if !first.tag.key_frame || stillness(pred_frames, r0)? <= STATIC_KEY_GATE {
        return None;
    }
    let next_q = frame_qindex(&pred_frames[1])? as f64;
    Some(((1.0 - weight.clamp(0.0, 1.0)) * next_q).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::{encode_frame, EncodeParams};
    use crate::frame::Frame;
    use crate::state::DecoderState;

    /// A 128x96 textured picture (a gradient with noise); `seed` picks the noise.
    fn picture(seed: u32) -> Frame {
        let (w, h) = (128, 96);
        let mut f = Frame::new(w, h, 128);
        let mut rng = 12345u32.wrapping_add(seed.wrapping_mul(7919));
        for y in 0..h {
            for x in 0..w {
                rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
                f.y.data[y * w + x] = (x + y + (rng >> 24) as usize % 64).min(255) as u8;
            }
        }
        f
    }

    /// Six frames (a key frame at `key_q`, then inter frames at `q`) of one picture
    /// (static) or of six different ones (busy).
    fn chunk(busy: bool, key_q: u8, q: u8) -> Vec<Vec<u8>> {
        let mut state = DecoderState::default();
        (0..6)
            .map(|i| {
                let params = if i == 0 { EncodeParams::key(key_q) } else { EncodeParams::inter(q) };
                let enc = encode_frame(&state, &picture(i * busy as u32), &params).unwrap();
                state = enc.state;
                enc.data
            })
            .collect()
    }

    #[test]
    fn frame_qindex_reads_the_header() {
        let frames = chunk(true, 9, 51);
        assert_eq!(frame_qindex(&frames[0]), Some(9));
        assert_eq!(frame_qindex(&frames[3]), Some(51));
        assert_eq!(frame_qindex(&frames[0][..2]), None);
    }

    #[test]
    fn only_a_static_chunk_gets_a_stronger_key_frame() {
        let (still, busy) = (chunk(false, 10, 51), chunk(true, 10, 51));
        let r0 = crate::encoder::rebase::CONTENT_R0_FLOORED;
        let (s_still, s_busy) = (stillness(&still, r0).unwrap(), stillness(&busy, r0).unwrap());
        assert!(s_busy <= STATIC_KEY_GATE && s_still > STATIC_KEY_GATE, "{s_still} {s_busy}");
        // (1 - 0.79) * 51 = 10.7
        assert_eq!(static_key_qindex(&still, r0, 0.79), Some(11));
        assert_eq!(static_key_qindex(&busy, r0, 0.79), None);
        // Not a key frame first: nothing to re-key.
        assert_eq!(static_key_qindex(&still[1..], r0, 0.79), None);
        assert_eq!(stillness(&still[..1], r0), None);
    }
}
