//! How static a chunk's independent encode (pass 0) says the chunk is, read from its frames
//! alone: the pipeline decides per chunk whether its first frame is worth a boost.

/// `ln(r / (r0 next_q))`: `r` is the chunk's first (key) frame's size over the mean size of
/// its other frames (`sizes`, the prediction frames' byte lengths in order), `next_q` the
/// second frame's quantizer index. `r` is large when the chunk's later frames predict well
/// from its first, and grows as the quantizer coarsens, hence the normalisation; 0 means "as
/// static as the reference ratio `r0`" (`rebase::CONTENT_R0`, `rebase::CONTENT_R0_FLOORED`).
/// None for a chunk of one frame or an empty first frame.
pub(crate) fn stillness(sizes: &[usize], next_q: u8, r0: f64) -> Option<f64> {
    let (&key, rest) = sizes.split_first()?;
    if rest.is_empty() || key == 0 {
        return None;
    }
    let mean = rest.iter().sum::<usize>().max(1) as f64 / rest.len() as f64;
    Some((key as f64 / mean / (r0 * next_q.max(1) as f64)).ln())
}

/// A batch-start chunk whose [`stillness`] is above this is static: its key frame will serve
/// many frames, so [`static_key_qindex`] codes it stronger. Measured on the pipeline's pass 0
/// (vpxenc, key frame floored, `r0` = `rebase::CONTENT_R0_FLOORED`) at cq levels 12..44:
/// bigbuckbunny's static opening reads -0.08..+0.70, the batch starts of carphone (-0.45 and
/// below), bus (-1.38 and below) and park_joy (-1.46 and below) stay under it.
pub(crate) const STATIC_KEY_GATE: f64 = -0.3;

/// The quantizer index of a static chunk's key frame: `(1 - weight)` times its next frame's
/// quantizer `next_q` (the level's, in a constrained-quality pass 0), rounded; None when the
/// chunk is not static ([`STATIC_KEY_GATE`]). The caller knows the first frame is a key frame
/// that stays one.
pub(crate) fn static_key_qindex(sizes: &[usize], next_q: u8, r0: f64, weight: f64) -> Option<u8> {
    if stillness(sizes, next_q, r0)? <= STATIC_KEY_GATE {
        return None;
    }
    Some(((1.0 - weight.clamp(0.0, 1.0)) * next_q as f64).round() as u8)
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
    fn only_a_static_chunk_gets_a_stronger_key_frame() {
        let sizes = |frames: Vec<Vec<u8>>| frames.iter().map(Vec::len).collect::<Vec<_>>();
        let (still, busy) = (sizes(chunk(false, 10, 51)), sizes(chunk(true, 10, 51)));
        let r0 = crate::encoder::rebase::CONTENT_R0_FLOORED;
        let (s_still, s_busy) =
            (stillness(&still, 51, r0).unwrap(), stillness(&busy, 51, r0).unwrap());
        assert!(s_busy <= STATIC_KEY_GATE && s_still > STATIC_KEY_GATE, "{s_still} {s_busy}");
        // (1 - 0.79) * 51 = 10.7
        assert_eq!(static_key_qindex(&still, 51, r0, 0.79), Some(11));
        assert_eq!(static_key_qindex(&busy, 51, r0, 0.79), None);
        // Nothing to go by: one frame, or an empty first one.
        assert_eq!(stillness(&still[..1], 51, r0), None);
        assert_eq!(stillness(&[0, 100, 100], 51, r0), None);
    }
}
