//! Decoder state: everything that persists from one frame to the next.
//!
//! A [`DecoderState`] is a plain value. [`crate::decoder::decode_frame`] takes one and returns the
//! next, so a state can be saved with [`DecoderState::serialize`], shipped elsewhere, restored with
//! [`DecoderState::deserialize`] and decoding continued there with identical output.
//!
//! # Serialized format, version 2 (all integers little-endian)
//!
//! ```text
//! offset size  field
//!      0    4  magic "XCST"
//!      4    2  version (u16) = 2
//!      6    2  width (u16, 0 = no key frame seen yet)
//!      8    2  height (u16)
//!     10    1  horizontal_scale (u8)
//!     11    1  vertical_scale (u8)
//!     12    1  flags: bit0 sign_bias_golden, bit1 sign_bias_altref, bit2 segmentation_enabled,
//!              bit3 segment abs (1) / delta (0) mode, bit4 loop_filter_adj_enable
//!     13    4  segment quantizer values [i8; 4]
//!     17    4  segment loop filter values [i8; 4]
//!     21    4  loop filter ref_frame deltas [i8; 4] (intra, last, golden, altref)
//!     25    4  loop filter mode deltas [i8; 4] (B_PRED, ZEROMV, NEAREST/NEAR/NEWMV, SPLITMV)
//!     29 1056  coefficient probabilities [4][8][3][11]
//!   1085   38  motion vector probabilities [2][19] (row, then column)
//!   1123    4  inter-frame y mode probabilities
//!   1127    3  inter-frame uv mode probabilities
//!   1130    4  segment map length N (u32): mb_cols * mb_rows, or 0
//!   1134    N  segment map, one segment id (0..=3) per macroblock in raster order
//!      then three reference frames, last, golden, altref, each as:
//!          1  tag: 0 = absent, 1 = stored here, 2 = same as last, 3 = same as golden
//!          if tag == 1: display width (u32), display height (u32), then the Y, U and V planes at
//!          macroblock-aligned size (Y: 16*ceil(w/16) x 16*ceil(h/16), U and V half that), row-major
//!   last    4  CRC-32 (u32) of every byte before it: IEEE 802.3, reflected, as zlib's crc32
//! ```
//! The total length must match exactly. Loading checks magic, version and the checksum, then
//! field ranges, sizes and length, and names what is wrong in one line. The checksum is what
//! catches damage that leaves a well-formed state (a flipped pixel would otherwise load
//! silently and every frame decoded from it would drift). Version 1 was the same without the
//! checksum; it is refused by version.

use std::sync::Arc;

use crate::error::DecodeError;
use crate::frame::Frame;
use crate::tables::{
    CoeffProbs, DEFAULT_COEFF_PROBS, DEFAULT_MV_PROBS, DEFAULT_UV_MODE_PROBS, DEFAULT_YMODE_PROBS,
};

/// Magic bytes of a serialized state.
pub const STATE_MAGIC: &[u8; 4] = b"XCST";
/// Current serialization version.
pub const STATE_VERSION: u16 = 2;
/// Size of the CRC-32 that ends a serialized state.
const CHECKSUM_LEN: usize = 4;

/// The probability tables that persist across frames (reset to these defaults on key frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntropyProbs {
    /// DCT token probabilities.
    pub coeff: CoeffProbs,
    /// Motion vector probabilities (row, then column).
    pub mv: [[u8; 19]; 2],
    /// Inter-frame luma mode probabilities.
    pub ymode: [u8; 4],
    /// Inter-frame chroma mode probabilities.
    pub uv_mode: [u8; 3],
}

impl Default for EntropyProbs {
    fn default() -> Self {
        EntropyProbs {
            coeff: DEFAULT_COEFF_PROBS,
            mv: DEFAULT_MV_PROBS,
            ymode: DEFAULT_YMODE_PROBS,
            uv_mode: DEFAULT_UV_MODE_PROBS,
        }
    }
}

/// Segment-based adjustments (spec 9.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segmentation {
    /// Whether segmentation is on.
    pub enabled: bool,
    /// `segment_feature_mode`: true = absolute values, false = deltas.
    pub abs_delta: bool,
    /// Per-segment quantizer values (deltas or absolute).
    pub quant: [i8; 4],
    /// Per-segment loop filter values (deltas or absolute).
    pub lf: [i8; 4],
}

/// Loop filter delta adjustments (spec 9.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LfAdjust {
    /// Whether loop filter level adjustments are on.
    pub enabled: bool,
    /// Level deltas per reference frame (intra, last, golden, alt-ref).
    pub ref_deltas: [i8; 4],
    /// Level deltas per mode class (B_PRED, ZEROMV, NEARESTMV..NEWMV, SPLITMV).
    pub mode_deltas: [i8; 4],
}

/// Everything a VP8 decoder carries from one frame to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecoderState {
    /// Frame size from the last key frame (0x0 before any key frame).
    pub width: u16,
    /// Frame height from the last key frame.
    pub height: u16,
    /// Upscaling bits from the last key frame (kept, not applied).
    pub horizontal_scale: u8,
    /// Vertical upscaling bits.
    pub vertical_scale: u8,
    /// The last-frame reference.
    pub last: Option<Arc<Frame>>,
    /// The golden reference.
    pub golden: Option<Arc<Frame>>,
    /// The alt-ref reference.
    pub altref: Option<Arc<Frame>>,
    /// The probability tables in force.
    pub probs: EntropyProbs,
    /// Segmentation parameters.
    pub segmentation: Segmentation,
    /// Persistent segment id of every macroblock (empty before any key frame).
    pub segment_map: Vec<u8>,
    /// Loop filter level adjustments.
    pub lf: LfAdjust,
    /// Sign bias of golden-frame motion vectors.
    pub sign_bias_golden: bool,
    /// Sign bias of alt-ref motion vectors.
    pub sign_bias_altref: bool,
}

fn same(a: &Option<Arc<Frame>>, b: &Option<Arc<Frame>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

impl DecoderState {
    /// Serialize to the versioned format documented at the top of this module.
    pub fn serialize(&self) -> Vec<u8> {
        let frame_bytes: usize = [&self.last, &self.golden, &self.altref]
            .iter()
            .filter_map(|f| f.as_ref())
            .map(|f| 8 + f.y.data.len() + f.u.data.len() + f.v.data.len())
            .sum();
        let mut out =
            Vec::with_capacity(1140 + self.segment_map.len() + frame_bytes + CHECKSUM_LEN);
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.push(self.horizontal_scale);
        out.push(self.vertical_scale);
        let flags = self.sign_bias_golden as u8
            | (self.sign_bias_altref as u8) << 1
            | (self.segmentation.enabled as u8) << 2
            | (self.segmentation.abs_delta as u8) << 3
            | (self.lf.enabled as u8) << 4;
        out.push(flags);
        for arr in [
            &self.segmentation.quant,
            &self.segmentation.lf,
            &self.lf.ref_deltas,
            &self.lf.mode_deltas,
        ] {
            out.extend(arr.iter().map(|&v| v as u8));
        }
        for plane in &self.probs.coeff {
            for band in plane {
                for ctx in band {
                    out.extend_from_slice(ctx);
                }
            }
        }
        out.extend_from_slice(&self.probs.mv[0]);
        out.extend_from_slice(&self.probs.mv[1]);
        out.extend_from_slice(&self.probs.ymode);
        out.extend_from_slice(&self.probs.uv_mode);
        out.extend_from_slice(&(self.segment_map.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.segment_map);
        let refs = [&self.last, &self.golden, &self.altref];
        for (i, r) in refs.iter().enumerate() {
            match r {
                None => out.push(0),
                Some(_) if i >= 1 && same(r, refs[0]) => out.push(2),
                Some(_) if i == 2 && same(r, refs[1]) => out.push(3),
                Some(f) => {
                    out.push(1);
                    out.extend_from_slice(&(f.display_width as u32).to_le_bytes());
                    out.extend_from_slice(&(f.display_height as u32).to_le_bytes());
                    out.extend_from_slice(&f.y.data);
                    out.extend_from_slice(&f.u.data);
                    out.extend_from_slice(&f.v.data);
                }
            }
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Load a state written by [`DecoderState::serialize`].
    pub fn deserialize(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { data, pos: 0 };
        if r.take(4, "magic")? != STATE_MAGIC {
            return Err(DecodeError::BadState("bad magic (expected \"XCST\")".into()));
        }
        let version = r.u16("version")?;
        if version != STATE_VERSION {
            return Err(DecodeError::BadState(format!(
                "unsupported version {version} (this build reads {STATE_VERSION})"
            )));
        }
        if data.len() < r.pos + CHECKSUM_LEN {
            r.take(CHECKSUM_LEN, "checksum")?;
        }
        let (content, tail) = data.split_at(data.len() - CHECKSUM_LEN);
        let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let computed = crc32(content);
        if stored != computed {
            return Err(DecodeError::BadState(format!(
                "checksum mismatch (stored {stored:08x}, computed {computed:08x} over {} bytes): \
                 the state is damaged or truncated",
                content.len()
            )));
        }
        // Everything below reads the checksummed content only.
        let data = content;
        let mut r = Reader { data, pos: r.pos };
        let mut s = DecoderState {
            width: r.u16("width")?,
            height: r.u16("height")?,
            horizontal_scale: r.u8("horizontal_scale")?,
            vertical_scale: r.u8("vertical_scale")?,
            ..Default::default()
        };
        if s.width > 0x3FFF || s.height > 0x3FFF || (s.width == 0) != (s.height == 0) {
            return Err(DecodeError::BadState(format!(
                "invalid frame size {}x{}",
                s.width, s.height
            )));
        }
        if s.horizontal_scale > 3 || s.vertical_scale > 3 {
            return Err(DecodeError::BadState("invalid scaling bits".into()));
        }
        let flags = r.u8("flags")?;
        if flags >> 5 != 0 {
            return Err(DecodeError::BadState(format!("unknown flag bits {flags:#04x}")));
        }
        s.sign_bias_golden = flags & 1 != 0;
        s.sign_bias_altref = flags & 2 != 0;
        s.segmentation.enabled = flags & 4 != 0;
        s.segmentation.abs_delta = flags & 8 != 0;
        s.lf.enabled = flags & 16 != 0;
        for arr in [
            &mut s.segmentation.quant,
            &mut s.segmentation.lf,
            &mut s.lf.ref_deltas,
            &mut s.lf.mode_deltas,
        ] {
            for (v, &b) in arr.iter_mut().zip(r.take(4, "segment/loop filter values")?) {
                *v = b as i8;
            }
        }
        for plane in s.probs.coeff.iter_mut() {
            for band in plane.iter_mut() {
                for ctx in band.iter_mut() {
                    ctx.copy_from_slice(r.take(11, "coefficient probabilities")?);
                }
            }
        }
        s.probs.mv[0].copy_from_slice(r.take(19, "mv probabilities")?);
        s.probs.mv[1].copy_from_slice(r.take(19, "mv probabilities")?);
        s.probs.ymode.copy_from_slice(r.take(4, "y mode probabilities")?);
        s.probs.uv_mode.copy_from_slice(r.take(3, "uv mode probabilities")?);
        let mbs = (s.width as usize).div_ceil(16) * (s.height as usize).div_ceil(16);
        let map_len = r.u32("segment map length")? as usize;
        // Every key frame sizes the map to the frame, so a sized state always has a full map
        // (and decoding indexes it per macroblock).
        if map_len != mbs {
            return Err(DecodeError::BadState(format!(
                "segment map has {map_len} entries, frame has {mbs} macroblocks"
            )));
        }
        s.segment_map = r.take(map_len, "segment map")?.to_vec();
        if s.segment_map.iter().any(|&v| v > 3) {
            return Err(DecodeError::BadState("segment id out of range".into()));
        }
        let mut refs: [Option<Arc<Frame>>; 3] = [None, None, None];
        for i in 0..3 {
            let name = ["last", "golden", "altref"][i];
            refs[i] = match r.u8("reference tag")? {
                0 => None,
                1 => {
                    let w = r.u32("frame width")? as usize;
                    let h = r.u32("frame height")? as usize;
                    if w == 0 || h == 0 {
                        return Err(DecodeError::BadState(format!(
                            "{name} frame has zero size {w}x{h}"
                        )));
                    }
                    if w != s.width as usize || h != s.height as usize {
                        return Err(DecodeError::BadState(format!(
                            "{name} frame is {w}x{h}, state size is {}x{}",
                            s.width, s.height
                        )));
                    }
                    let mut f = Frame::new(w, h, 0);
                    for p in [&mut f.y, &mut f.u, &mut f.v] {
                        let n = p.data.len();
                        p.data.copy_from_slice(r.take(n, "frame planes")?);
                    }
                    Some(Arc::new(f))
                }
                2 if i >= 1 && refs[0].is_some() => refs[0].clone(),
                3 if i == 2 && refs[1].is_some() => refs[1].clone(),
                t => {
                    return Err(DecodeError::BadState(format!("invalid {name} reference tag {t}")))
                }
            };
        }
        let [last, golden, altref] = refs;
        s.last = last;
        s.golden = golden;
        s.altref = altref;
        if r.pos != data.len() {
            return Err(DecodeError::BadState(format!("{} trailing bytes", data.len() - r.pos)));
        }
        Ok(s)
    }

    /// A stable 64-bit FNV-1a hash of the serialized state: equal states hash equally on every
    /// platform and build.
    pub fn content_hash(&self) -> u64 {
        fnv1a64(&self.serialize())
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// CRC-32 tables for slicing by 8: `CRC_TABLES[k][b]` is the CRC of byte `b` followed by `k`
/// zero bytes, so eight input bytes fold in with eight lookups (states are megabytes).
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// CRC-32 (IEEE 802.3, reflected, initial and final value all ones): what zlib's `crc32`
/// computes, so the checksum can be checked with any zlib.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut blocks = data.chunks_exact(8);
    for b in &mut blocks {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) ^ crc;
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in blocks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xFF) as usize];
    }
    !crc
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() - self.pos < n {
            return Err(DecodeError::BadState(format!(
                "truncated at {what} (offset {}, need {n} bytes, {} left)",
                self.pos,
                self.data.len() - self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DecoderState {
        let mut f = Frame::new(33, 17, 0);
        for (i, v) in f.y.data.iter_mut().enumerate() {
            *v = (i * 7) as u8;
        }
        let f = Arc::new(f);
        let mut g = (*f).clone();
        g.u.data[3] = 99;
        let mut s = DecoderState {
            width: 33,
            height: 17,
            last: Some(f.clone()),
            golden: Some(Arc::new(g)),
            altref: Some(f),
            segment_map: vec![1, 2, 3, 0, 1, 2],
            ..Default::default()
        };
        s.probs.coeff[3][7][2][10] = 5;
        s.segmentation.quant = [-3, 4, 0, 127];
        s.lf.enabled = true;
        s.sign_bias_altref = true;
        s
    }

    #[test]
    fn round_trip_and_hash() {
        let s = sample();
        let bytes = s.serialize();
        let t = DecoderState::deserialize(&bytes).unwrap();
        assert_eq!(s, t);
        assert!(Arc::ptr_eq(t.last.as_ref().unwrap(), t.altref.as_ref().unwrap()));
        assert_eq!(s.content_hash(), t.content_hash());
        let mut u = t.clone();
        u.probs.mv[1][3] ^= 1;
        assert_ne!(u.content_hash(), s.content_hash());
        let d = DecoderState::default();
        assert_eq!(DecoderState::deserialize(&d.serialize()).unwrap(), d);
    }

    #[test]
    fn rejects_corrupt_data() {
        let bytes = sample().serialize();
        for cut in [0, 3, 5, 100, 1133, bytes.len() - 1] {
            let e = DecoderState::deserialize(&bytes[..cut]).unwrap_err();
            assert!(e.to_string().contains("truncated") || e.to_string().contains("magic"), "{e}");
        }
        let mut b = bytes.clone();
        b[0] = b'Y';
        assert!(DecoderState::deserialize(&b).unwrap_err().to_string().contains("magic"));
        let mut b = bytes.clone();
        b[4] = 9;
        assert!(DecoderState::deserialize(&b).unwrap_err().to_string().contains("version"));
        // Damage past the header that keeps the checksum valid reaches the field checks.
        let mut b = bytes.clone();
        b.truncate(b.len() - CHECKSUM_LEN);
        b.push(0);
        reseal(&mut b);
        assert!(DecoderState::deserialize(&b).unwrap_err().to_string().contains("trailing"));
        let mut b = bytes.clone();
        b[6] = 200; // width no longer matches the frames / map
        reseal_in_place(&mut b);
        assert!(DecoderState::deserialize(&b).unwrap_err().to_string().contains("frame"));
    }

    /// Replace the last four bytes' checksum over the rest (after damaging the content).
    fn reseal_in_place(b: &mut [u8]) {
        let n = b.len() - CHECKSUM_LEN;
        let crc = crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Append a checksum to content without one.
    fn reseal(b: &mut Vec<u8>) {
        let crc = crc32(b);
        b.extend_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn crc32_known_answers() {
        // the CRC-32 check value (the catalogue's "123456789") and a few lengths around the
        // 8-byte blocks, against a bit-by-bit reference
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in [1, 7, 8, 9, 15, 16, 17, 100] {
            let mut slow = !0u32;
            for &byte in &data[..n] {
                slow ^= byte as u32;
                for _ in 0..8 {
                    slow = if slow & 1 != 0 { 0xEDB8_8320 ^ (slow >> 1) } else { slow >> 1 };
                }
            }
            assert_eq!(crc32(&data[..n]), !slow, "length {n}");
        }
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let bytes = sample().serialize();
        assert_eq!(DecoderState::deserialize(&bytes).unwrap(), sample());
        // every byte after the version, pixels and the checksum itself included; the magic and
        // version have their own messages
        for i in 6..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let e = DecoderState::deserialize(&b).unwrap_err().to_string();
            assert!(e.contains("checksum mismatch"), "byte {i}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
