//! Quantization: coefficient levels from transform coefficients, using the decoder's own
//! dequantization factors (`quant::Dequant`) so that `level * factor` is exactly what the
//! decoder multiplies back.
//!
//! A level is `sign(c) * floor((|c| + round) / q)`: `round` below `q / 2` gives the usual
//! dead zone around zero (small coefficients, which cost many bits for little distortion,
//! become 0) and biases the other levels toward zero. Levels are capped at the largest value
//! the token alphabet codes (`DCT_CAT6` base 67 plus 11 extra bits) and so that the
//! dequantized product fits the 16 bits the decoder stores it in.

use crate::quant::{segment_qindex, Dequant, QuantIndices};
use crate::state::Segmentation;

/// Largest codable coefficient magnitude: `dct_cat6` covers 67..=67 + 2^11 - 1.
pub const MAX_LEVEL: i32 = 67 + 2047;

/// Quantizer of one block type: step and rounding offset for position 0 (DC) and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQuant {
    pub q: [i32; 2],
    pub round: [i32; 2],
}

impl BlockQuant {
    /// Rounding offsets are `round_num / 128` of the step.
    pub fn new(dq: [i16; 2], round_num: [i32; 2]) -> Self {
        let q = [dq[0].max(1) as i32, dq[1].max(1) as i32];
        BlockQuant { q, round: [(q[0] * round_num[0]) >> 7, (q[1] * round_num[1]) >> 7] }
    }
}

/// The three block quantizers of a macroblock plus the decoder's factors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbQuant {
    pub dq: Dequant,
    pub y: BlockQuant,
    pub y2: BlockQuant,
    pub uv: BlockQuant,
}

impl MbQuant {
    /// Quantizers for the decoder's factors `dq`: rounding offsets of 0.44 (DC) and 0.375
    /// (AC) of the step (tried: a wider inter-frame dead zone lost more quality than rate).
    pub fn new(dq: Dequant, _key_frame: bool) -> Self {
        let (dc, ac) = (56, 48);
        MbQuant {
            dq,
            y: BlockQuant::new(dq.y, [dc, ac]),
            y2: BlockQuant::new(dq.y2, [dc, ac]),
            uv: BlockQuant::new(dq.uv, [dc, ac]),
        }
    }

    /// One quantizer per segment, as the decoder derives the factors (spec 9.3, 9.6).
    pub fn per_segment(quant: &QuantIndices, seg: &Segmentation, key_frame: bool) -> [MbQuant; 4] {
        std::array::from_fn(|s| {
            let q = segment_qindex(quant.y_ac_qi, seg.enabled, seg.abs_delta, seg.quant[s]);
            MbQuant::new(Dequant::new(q, quant), key_frame)
        })
    }
}

/// Quantize `coeffs` (raster order) from position `first` (1 for luma blocks whose DC goes
/// to Y2) into `levels`; positions before `first` are set to 0. Returns true when any level
/// is non-zero.
pub fn quantize_block(
    coeffs: &[i16; 16],
    first: usize,
    bq: &BlockQuant,
    levels: &mut [i16; 16],
) -> bool {
    let mut any = false;
    for (i, (&c, l)) in coeffs.iter().zip(levels.iter_mut()).enumerate() {
        if i < first {
            *l = 0;
            continue;
        }
        let k = (i > 0) as usize;
        let q = bq.q[k];
        let a = c.unsigned_abs() as i32;
        let cap = MAX_LEVEL.min(i16::MAX as i32 / q);
        let m = ((a + bq.round[k]) / q).min(cap);
        *l = if c < 0 { -m as i16 } else { m as i16 };
        any |= m != 0;
    }
    any
}

/// The decoder's dequantization: `level * factor` stored as 16 bits (tokens.rs).
pub fn dequantize_block(levels: &[i16; 16], dq: [i16; 2]) -> [i16; 16] {
    std::array::from_fn(|i| (levels[i] as i32 * dq[(i > 0) as usize] as i32) as i16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::fdct::fdct4x4;
    use crate::transform::idct4x4;

    #[test]
    fn dead_zone_and_rounding() {
        let bq = BlockQuant::new([10, 20], [64, 40]);
        assert_eq!(bq.round, [5, 6]);
        let mut c = [0i16; 16];
        c[0] = 14; // (14 + 5) / 10 = 1
        c[1] = 13; // (13 + 6) / 20 = 0: inside the dead zone
        c[2] = -35; // (35 + 6) / 20 = 2
        c[3] = 200;
        let mut l = [0i16; 16];
        assert!(quantize_block(&c, 0, &bq, &mut l));
        assert_eq!(&l[..4], &[1, 0, -2, 10]);
        // Skipping the DC position leaves it 0.
        assert!(quantize_block(&c, 1, &bq, &mut l));
        assert_eq!(l[0], 0);
        assert!(!quantize_block(&[3; 16], 0, &bq, &mut l));
        assert_eq!(
            dequantize_block(&[1, -2, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [10, 20])[..4],
            [10, -40, 0, 200]
        );
    }

    #[test]
    fn levels_capped_so_products_fit() {
        let bq = BlockQuant::new([1, 1], [64, 64]);
        let mut l = [0i16; 16];
        quantize_block(&[32000; 16], 0, &bq, &mut l);
        assert!(l.iter().all(|&v| v as i32 == MAX_LEVEL));
        let bq = BlockQuant::new([157, 284], [64, 64]);
        quantize_block(&[i16::MIN; 16], 0, &bq, &mut l);
        let d = dequantize_block(&l, [157, 284]);
        assert!(d.iter().all(|&v| v < 0), "{d:?}");
    }

    #[test]
    fn error_grows_with_the_quantizer() {
        let d = QuantIndices::default();
        let mut errs = Vec::new();
        for qi in [0, 40, 80, 127] {
            let mq = MbQuant::new(Dequant::new(qi, &d), true);
            let mut seed = 5u64;
            let mut err = 0i64;
            for _ in 0..2000 {
                let x: [i16; 16] = std::array::from_fn(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 33) % 201) as i16 - 100
                });
                let mut l = [0i16; 16];
                quantize_block(&fdct4x4(&x), 0, &mq.y, &mut l);
                let y = idct4x4(&dequantize_block(&l, mq.dq.y));
                err += x.iter().zip(&y).map(|(a, b)| ((a - b) as i64).pow(2)).sum::<i64>();
            }
            errs.push(err);
        }
        assert!(errs.windows(2).all(|w| w[0] < w[1]), "{errs:?}");
        assert!(errs[0] < 2000 * 16 * 2, "{errs:?}");
    }
}
