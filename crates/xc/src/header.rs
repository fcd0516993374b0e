//! Frame tag, key frame start code and dimensions, and the frame header in the first partition
//! (RFC 6386 sections 9 and 19.1-19.2).

use crate::bool_decoder::BoolDecoder;
use crate::error::DecodeError;
use crate::quant::QuantIndices;
use crate::state::{EntropyProbs, LfAdjust, Segmentation};
use crate::tables::{COEFF_UPDATE_PROBS, MV_UPDATE_PROBS};

/// The 3-byte frame tag (spec 9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTag {
    pub key_frame: bool,
    pub version: u8,
    pub show_frame: bool,
    pub first_part_size: usize,
}

/// Key frame dimensions and (unapplied) upscaling bits (spec 9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KeyFrameDims {
    pub width: u16,
    pub height: u16,
    pub horizontal_scale: u8,
    pub vertical_scale: u8,
}

/// The uncompressed data chunk: tag, plus start code and dimensions on key frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UncompressedChunk {
    pub tag: FrameTag,
    pub dims: Option<KeyFrameDims>,
    /// Bytes taken by the chunk (3 or 10): the first partition starts here.
    pub len: usize,
}

/// Parse the uncompressed data chunk at the start of a frame.
pub fn parse_uncompressed_chunk(data: &[u8]) -> Result<UncompressedChunk, DecodeError> {
    if data.len() < 3 {
        return Err(DecodeError::TruncatedHeader { needed: 3, got: data.len() });
    }
    let raw = data[0] as u32 | (data[1] as u32) << 8 | (data[2] as u32) << 16;
    let tag = FrameTag {
        key_frame: raw & 1 == 0,
        version: ((raw >> 1) & 7) as u8,
        show_frame: (raw >> 4) & 1 == 1,
        first_part_size: (raw >> 5) as usize & 0x7FFFF,
    };
    if !tag.key_frame {
        return Ok(UncompressedChunk { tag, dims: None, len: 3 });
    }
    if data.len() < 10 {
        return Err(DecodeError::TruncatedHeader { needed: 10, got: data.len() });
    }
    if data[3..6] != [0x9d, 0x01, 0x2a] {
        return Err(DecodeError::BadStartCode([data[3], data[4], data[5]]));
    }
    let w = data[6] as u16 | (data[7] as u16) << 8;
    let h = data[8] as u16 | (data[9] as u16) << 8;
    let dims = KeyFrameDims {
        width: w & 0x3FFF,
        height: h & 0x3FFF,
        horizontal_scale: (w >> 14) as u8,
        vertical_scale: (h >> 14) as u8,
    };
    if dims.width == 0 || dims.height == 0 {
        return Err(DecodeError::ZeroDimensions { width: dims.width, height: dims.height });
    }
    Ok(UncompressedChunk { tag, dims: Some(dims), len: 10 })
}

/// Everything in the first partition's frame header that applies to this frame only (the
/// persistent parts, segmentation/lf deltas/probabilities, are updated in place).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FrameHeader {
    pub color_space: u8,
    pub clamping_type: u8,
    pub update_mb_segmentation_map: bool,
    pub update_segment_feature_data: bool,
    pub segment_tree_probs: [u8; 3],
    /// `filter_type`: false = normal, true = simple.
    pub simple_filter: bool,
    pub loop_filter_level: u8,
    pub sharpness_level: u8,
    pub log2_nbr_of_dct_partitions: u8,
    pub quant: QuantIndices,
    pub refresh_golden_frame: bool,
    pub refresh_alternate_frame: bool,
    /// 0 = none, 1 = last frame, 2 = alt ref frame.
    pub copy_buffer_to_golden: u8,
    /// 0 = none, 1 = last frame, 2 = golden frame.
    pub copy_buffer_to_alternate: u8,
    pub sign_bias_golden: bool,
    pub sign_bias_alternate: bool,
    pub refresh_entropy_probs: bool,
    pub refresh_last: bool,
    pub mb_no_skip_coeff: bool,
    pub prob_skip_false: u8,
    pub prob_intra: u8,
    pub prob_last: u8,
    pub prob_gf: u8,
}

/// Parse the frame header from the first partition (spec 19.2). `seg`, `lf` and `probs` hold the
/// persistent values entering this frame (already reset to defaults on key frames) and receive
/// the updates. The caller saves `probs` beforehand if `refresh_entropy_probs` turns out 0: every
/// probability update is read after that flag.
pub fn parse_frame_header(
    d: &mut BoolDecoder,
    key_frame: bool,
    seg: &mut Segmentation,
    lf: &mut LfAdjust,
    probs: &mut EntropyProbs,
    saved_probs: &mut Option<EntropyProbs>,
) -> FrameHeader {
    let mut h = FrameHeader::default();
    if key_frame {
        h.color_space = d.read_flag() as u8;
        h.clamping_type = d.read_flag() as u8;
    }
    parse_segmentation(d, seg, &mut h);
    h.simple_filter = d.read_flag();
    h.loop_filter_level = d.read_literal(6) as u8;
    h.sharpness_level = d.read_literal(3) as u8;
    parse_lf_adjustments(d, lf);
    h.log2_nbr_of_dct_partitions = d.read_literal(2) as u8;
    h.quant = QuantIndices {
        y_ac_qi: d.read_literal(7) as u8,
        y_dc_delta: d.read_optional_signed(4) as i8,
        y2_dc_delta: d.read_optional_signed(4) as i8,
        y2_ac_delta: d.read_optional_signed(4) as i8,
        uv_dc_delta: d.read_optional_signed(4) as i8,
        uv_ac_delta: d.read_optional_signed(4) as i8,
    };
    if key_frame {
        h.refresh_golden_frame = true;
        h.refresh_alternate_frame = true;
        h.refresh_entropy_probs = d.read_flag();
        h.refresh_last = true;
    } else {
        h.refresh_golden_frame = d.read_flag();
        h.refresh_alternate_frame = d.read_flag();
        if !h.refresh_golden_frame {
            h.copy_buffer_to_golden = d.read_literal(2) as u8;
        }
        if !h.refresh_alternate_frame {
            h.copy_buffer_to_alternate = d.read_literal(2) as u8;
        }
        h.sign_bias_golden = d.read_flag();
        h.sign_bias_alternate = d.read_flag();
        h.refresh_entropy_probs = d.read_flag();
        h.refresh_last = d.read_flag();
    }
    *saved_probs = if h.refresh_entropy_probs { None } else { Some(probs.clone()) };
    parse_token_prob_updates(d, probs);
    h.mb_no_skip_coeff = d.read_flag();
    if h.mb_no_skip_coeff {
        h.prob_skip_false = d.read_literal(8) as u8;
    }
    if !key_frame {
        h.prob_intra = d.read_literal(8) as u8;
        h.prob_last = d.read_literal(8) as u8;
        h.prob_gf = d.read_literal(8) as u8;
        if d.read_flag() {
            for p in probs.ymode.iter_mut() {
                *p = d.read_literal(8) as u8;
            }
        }
        if d.read_flag() {
            for p in probs.uv_mode.iter_mut() {
                *p = d.read_literal(8) as u8;
            }
        }
        parse_mv_prob_updates(d, probs);
    }
    h
}

/// `update_segmentation()` (spec 9.3). Feature data not sent in an update becomes 0.
fn parse_segmentation(d: &mut BoolDecoder, seg: &mut Segmentation, h: &mut FrameHeader) {
    seg.enabled = d.read_flag();
    if !seg.enabled {
        return;
    }
    h.update_mb_segmentation_map = d.read_flag();
    h.update_segment_feature_data = d.read_flag();
    if h.update_segment_feature_data {
        seg.abs_delta = d.read_flag();
        for q in seg.quant.iter_mut() {
            *q = d.read_optional_signed(7) as i8;
        }
        for l in seg.lf.iter_mut() {
            *l = d.read_optional_signed(6) as i8;
        }
    }
    if h.update_mb_segmentation_map {
        for p in h.segment_tree_probs.iter_mut() {
            *p = if d.read_flag() { d.read_literal(8) as u8 } else { 255 };
        }
    }
}

/// `mb_lf_adjustments()` (spec 9.4): updated deltas replace the previous values.
fn parse_lf_adjustments(d: &mut BoolDecoder, lf: &mut LfAdjust) {
    lf.enabled = d.read_flag();
    if lf.enabled && d.read_flag() {
        for v in lf.ref_deltas.iter_mut().chain(lf.mode_deltas.iter_mut()) {
            if d.read_flag() {
                *v = d.read_signed(6) as i8;
            }
        }
    }
}

/// `token_prob_update()` (spec 13.4).
fn parse_token_prob_updates(d: &mut BoolDecoder, probs: &mut EntropyProbs) {
    for (i, plane) in probs.coeff.iter_mut().enumerate() {
        for (j, band) in plane.iter_mut().enumerate() {
            for (k, ctx) in band.iter_mut().enumerate() {
                for (l, p) in ctx.iter_mut().enumerate() {
                    if d.read_bool(COEFF_UPDATE_PROBS[i][j][k][l]) {
                        *p = d.read_literal(8) as u8;
                    }
                }
            }
        }
    }
}

/// `mv_prob_update()` (spec 17.2): 7-bit values, stored as `x << 1` (or 1 for 0).
fn parse_mv_prob_updates(d: &mut BoolDecoder, probs: &mut EntropyProbs) {
    for (comp, update) in probs.mv.iter_mut().zip(MV_UPDATE_PROBS.iter()) {
        for (p, &up) in comp.iter_mut().zip(update.iter()) {
            if d.read_bool(up) {
                let x = d.read_literal(7) as u8;
                *p = if x == 0 { 1 } else { x << 1 };
            }
        }
    }
}

/// Split the data after the first partition into the DCT token partitions (spec 9.5): a table
/// of 3-byte little-endian sizes for all but the last, then the partitions back to back.
///
/// Damaged frames are split as libvpx splits them (checked against vpxdec): a truncated size
/// table, a partition that does not fit in the data left, or a declared size of 0 while data is
/// left, is an error; but partitions that start exactly at the end of the frame are empty (they
/// decode as all zeros, with no residue), so a frame cut right after a partition boundary, or
/// right after the size table, still decodes.
pub fn split_token_partitions(data: &[u8], count: usize) -> Result<Vec<&[u8]>, DecodeError> {
    let table = 3 * (count - 1);
    if data.len() < table {
        return Err(DecodeError::PartitionPastEnd { partition: 1 });
    }
    let mut parts = Vec::with_capacity(count);
    let mut pos = table;
    for i in 0..count {
        let remaining = data.len() - pos;
        if remaining == 0 {
            parts.push(&data[pos..]);
            continue;
        }
        let size = if i + 1 < count {
            let s = &data[3 * i..3 * i + 3];
            s[0] as usize | (s[1] as usize) << 8 | (s[2] as usize) << 16
        } else {
            remaining
        };
        if size == 0 || size > remaining {
            return Err(DecodeError::PartitionPastEnd { partition: i + 1 });
        }
        parts.push(&data[pos..pos + size]);
        pos += size;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frame_chunk() {
        // tag: key frame, version 0, show, first_part_size 0x123
        let raw: u32 = (0x123 << 5) | (1 << 4);
        let mut f = vec![raw as u8, (raw >> 8) as u8, (raw >> 16) as u8, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&[0xb0, 0x40, 0x90, 0x80]);
        let c = parse_uncompressed_chunk(&f).unwrap();
        assert!(c.tag.key_frame && c.tag.show_frame);
        assert_eq!(c.tag.first_part_size, 0x123);
        let d = c.dims.unwrap();
        assert_eq!((d.width, d.height, d.horizontal_scale, d.vertical_scale), (176, 144, 1, 2));
        assert_eq!(c.len, 10);
        let mut bad = f.clone();
        bad[4] = 0;
        assert!(matches!(parse_uncompressed_chunk(&bad), Err(DecodeError::BadStartCode(_))));
        assert!(matches!(
            parse_uncompressed_chunk(&f[..7]),
            Err(DecodeError::TruncatedHeader { needed: 10, got: 7 })
        ));
        assert!(parse_uncompressed_chunk(&f[..2]).is_err());
        let inter = [0x01 | (3 << 1), 0, 0];
        let c = parse_uncompressed_chunk(&inter).unwrap();
        assert!(!c.tag.key_frame && !c.tag.show_frame);
        assert_eq!((c.tag.version, c.len), (3, 3));
    }

    #[test]
    fn token_partitions() {
        let data = [2, 0, 0, 9, 9, 7, 7, 7];
        let p = split_token_partitions(&data, 2).unwrap();
        assert_eq!(p, vec![&[9u8, 9][..], &[7, 7, 7][..]]);
        assert!(split_token_partitions(&[9, 0, 0, 1, 2], 2).is_err());
        assert!(split_token_partitions(&[1, 0], 2).is_err());
        assert_eq!(split_token_partitions(&[5], 1).unwrap().len(), 1);
        // Partitions starting at the end of the data are empty (as in libvpx)...
        let empty: &[u8] = &[];
        assert_eq!(split_token_partitions(&[], 1).unwrap(), vec![empty]);
        assert_eq!(split_token_partitions(&[2, 0, 0, 4, 0, 0], 3).unwrap(), vec![empty; 3]);
        assert_eq!(split_token_partitions(&data[..5], 2).unwrap(), vec![&[9u8, 9][..], empty]);
        // ...but a zero size, or one past the end, while data is left is an error.
        assert!(split_token_partitions(&[0, 0, 0, 9, 9], 2).is_err());
        assert!(split_token_partitions(&[1, 0, 0, 4, 0, 0, 9, 9], 3).is_err());
    }
}
