//! Quantizer indices to dequantization factors (RFC 6386 sections 9.6 and 14.1).

use crate::tables::{AC_QLOOKUP, DC_QLOOKUP};

/// The frame header's quantizer indices: a base index and five signed deltas (spec 9.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuantIndices {
    pub y_ac_qi: u8,
    pub y_dc_delta: i8,
    pub y2_dc_delta: i8,
    pub y2_ac_delta: i8,
    pub uv_dc_delta: i8,
    pub uv_ac_delta: i8,
}

/// The six dequantization factors of one quantizer level: `[dc, ac]` for Y, Y2 and chroma.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dequant {
    pub y: [i16; 2],
    pub y2: [i16; 2],
    pub uv: [i16; 2],
}

fn dc_q(index: i32) -> i32 {
    DC_QLOOKUP[index.clamp(0, 127) as usize]
}

fn ac_q(index: i32) -> i32 {
    AC_QLOOKUP[index.clamp(0, 127) as usize]
}

impl Dequant {
    /// Factors for base index `q` (already segment-adjusted, clamped to 0..=127) and the frame's
    /// deltas. Y2 DC is doubled, Y2 AC scaled by 155/100 with a floor of 8, chroma DC capped at 132.
    pub fn new(q: i32, d: &QuantIndices) -> Self {
        let q = q.clamp(0, 127);
        let y2ac = (ac_q(q + d.y2_ac_delta as i32) * 155 / 100).max(8);
        Dequant {
            y: [dc_q(q + d.y_dc_delta as i32) as i16, ac_q(q) as i16],
            y2: [(dc_q(q + d.y2_dc_delta as i32) * 2) as i16, y2ac as i16],
            uv: [
                dc_q(q + d.uv_dc_delta as i32).min(132) as i16,
                ac_q(q + d.uv_ac_delta as i32) as i16,
            ],
        }
    }
}

/// The quantizer index of a macroblock in `segment` (spec 9.3, 9.6): the segment's value replaces
/// (absolute mode) or adjusts (delta mode) the frame's base index; the result is clamped.
pub fn segment_qindex(base: u8, seg_enabled: bool, abs: bool, seg_value: i8) -> i32 {
    let q = if !seg_enabled {
        base as i32
    } else if abs {
        seg_value as i32
    } else {
        base as i32 + seg_value as i32
    };
    q.clamp(0, 127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_rules() {
        let d = QuantIndices::default();
        let lo = Dequant::new(0, &d);
        assert_eq!(lo.y, [4, 4]);
        assert_eq!(lo.y2, [8, 8]); // 4*155/100 = 6 -> floor 8
        let hi = Dequant::new(127, &d);
        assert_eq!(hi.y, [157, 284]);
        assert_eq!(hi.y2, [314, 440]);
        assert_eq!(hi.uv, [132, 284]);
        let deltas = QuantIndices { y_ac_qi: 0, y_dc_delta: -15, uv_ac_delta: 15, ..d };
        let x = Dequant::new(5, &deltas);
        assert_eq!(x.y[0], 4); // index clamps at 0
        assert_eq!(x.uv[1], AC_QLOOKUP[20] as i16);
        assert_eq!(segment_qindex(100, true, false, 40), 127);
        assert_eq!(segment_qindex(100, true, true, 7), 7);
        assert_eq!(segment_qindex(100, false, true, 7), 100);
    }
}
