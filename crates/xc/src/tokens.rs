//! DCT/WHT coefficient token decoding and dequantization (RFC 6386 section 13, 14.1).

use crate::bool_decoder::BoolDecoder;
use crate::quant::Dequant;
use crate::tables::{CoeffProbs, COEFF_BANDS, DCT_CAT_BASE, PCAT3, PCAT4, PCAT5, PCAT6, ZIGZAG};

/// Block types indexing the first dimension of the token probabilities (spec 13.3).
pub const TYPE_Y_AFTER_Y2: usize = 0;
pub const TYPE_Y2: usize = 1;
pub const TYPE_CHROMA: usize = 2;
pub const TYPE_Y_WITH_DC: usize = 3;

/// Index of the Y2 block in [`MbCoeffs::blocks`]; 0..16 are Y, 16..20 U, 20..24 V.
pub const Y2_BLOCK: usize = 24;

/// "Has non-zero coefficients" flags of one side of a macroblock: 4 Y, 2 U, 2 V, 1 Y2 (spec 13.3).
pub type NzContext = [u8; 9];

/// The dequantized coefficients of one macroblock, in raster order within each block.
#[derive(Clone, Debug, Default)]
pub struct MbCoeffs {
    pub blocks: [[i16; 16]; 25],
    /// Bit b set when block b had at least one token before end-of-block.
    pub nonzero: u32,
    /// Bit b set when block b had a token past its first scan position (an AC coefficient,
    /// possibly zero): the others need only the DC-only inverse transform.
    pub ac: u32,
}

impl MbCoeffs {
    /// Zero the blocks that were written (cheap reset between macroblocks).
    ///
    /// Four blocks at a time (a luma row, or a chroma plane): one test and 128 bytes of stores
    /// per group instead of a loop iteration per block.
    pub fn clear(&mut self) {
        for g in 0..6 {
            if (self.nonzero >> (4 * g)) & 0xF != 0 {
                self.blocks[4 * g..4 * g + 4].fill([0; 16]);
            }
        }
        if self.nonzero & (1 << Y2_BLOCK) != 0 {
            self.blocks[Y2_BLOCK] = [0; 16];
        }
        self.nonzero = 0;
        self.ac = 0;
    }
}

/// Read the extra bits of a large-value category, most significant first.
#[inline]
fn read_extra(d: &mut BoolDecoder, probs: &[u8]) -> i32 {
    let mut v = 0;
    for &p in probs {
        v = (v << 1) | d.read_bool(p) as i32;
    }
    v
}

/// Decode one block's tokens into `out` (dequantized, de-zigzagged). Returns the scan position
/// after the last decoded token, or `first` when the block ends immediately.
///
/// Inlined into each of its three loops in [`decode_mb_tokens`]: most blocks end at once, and
/// the call around them cost 6% of the token decoding's instructions (462 M -> 435 M in a
/// 640x272 decode, callgrind; one loop over all blocks with one call site cost more).
#[inline(always)]
fn decode_block(
    d: &mut BoolDecoder,
    probs: &[[[u8; 11]; 3]; 8],
    ctx: usize,
    first: usize,
    dq: [i16; 2],
    out: &mut [i16; 16],
) -> usize {
    let mut i = first;
    let mut p = &probs[COEFF_BANDS[i]][ctx];
    if !d.read_bool(p[0]) {
        return first;
    }
    loop {
        if !d.read_bool(p[1]) {
            // DCT_0: the next token cannot be end-of-block.
            i += 1;
            if i == 16 {
                return 16;
            }
            p = &probs[COEFF_BANDS[i]][0];
            continue;
        }
        let (v, next_ctx) = if !d.read_bool(p[2]) {
            (1, 1)
        } else {
            let v = if !d.read_bool(p[3]) {
                if !d.read_bool(p[4]) {
                    2
                } else {
                    3 + d.read_bool(p[5]) as i32
                }
            } else if !d.read_bool(p[6]) {
                if !d.read_bool(p[7]) {
                    DCT_CAT_BASE[0] + d.read_bool(159) as i32
                } else {
                    DCT_CAT_BASE[1] + read_extra(d, &[165, 145])
                }
            } else if !d.read_bool(p[8]) {
                if !d.read_bool(p[9]) {
                    DCT_CAT_BASE[2] + read_extra(d, &PCAT3)
                } else {
                    DCT_CAT_BASE[3] + read_extra(d, &PCAT4)
                }
            } else if !d.read_bool(p[10]) {
                DCT_CAT_BASE[4] + read_extra(d, &PCAT5)
            } else {
                DCT_CAT_BASE[5] + read_extra(d, &PCAT6)
            };
            (v, 2)
        };
        let v = if d.read_flag() { -v } else { v };
        // Products are stored as 16-bit values, as the spec's 16-bit arithmetic does.
        out[ZIGZAG[i]] = (v * dq[(i > 0) as usize] as i32) as i16;
        i += 1;
        if i == 16 {
            return 16;
        }
        p = &probs[COEFF_BANDS[i]][next_ctx];
        if !d.read_bool(p[0]) {
            return i;
        }
    }
}

/// Decode all coefficient tokens of a macroblock that is not skipped. `above`/`left` are the
/// neighbouring "has coefficients" flags, updated for the next macroblocks. Returns true when
/// any block had a token before its end-of-block.
pub fn decode_mb_tokens(
    reader: &mut BoolDecoder,
    probs: &CoeffProbs,
    above: &mut NzContext,
    left: &mut NzContext,
    has_y2: bool,
    dq: &Dequant,
    out: &mut MbCoeffs,
) -> bool {
    // A local copy, written back at the end: its state can stay in registers from one read
    // to the next (through `reader` it was stored and reloaded around every read).
    let mut local = reader.clone();
    let d = &mut local;
    let mut nonzero = 0u32;
    let mut ac = 0u32;
    let (y_type, y_first) = if has_y2 {
        let ctx = (above[8] + left[8]) as usize;
        let eob = decode_block(d, &probs[TYPE_Y2], ctx, 0, dq.y2, &mut out.blocks[Y2_BLOCK]);
        let nz = (eob > 0) as u8;
        above[8] = nz;
        left[8] = nz;
        nonzero |= (nz as u32) << Y2_BLOCK;
        (TYPE_Y_AFTER_Y2, 1)
    } else {
        (TYPE_Y_WITH_DC, 0)
    };
    for b in 0..16 {
        let (x, y) = (b & 3, b >> 2);
        let ctx = (above[x] + left[y]) as usize;
        let eob = decode_block(d, &probs[y_type], ctx, y_first, dq.y, &mut out.blocks[b]);
        let nz = (eob > y_first) as u8;
        above[x] = nz;
        left[y] = nz;
        nonzero |= (nz as u32) << b;
        ac |= ((eob > 1) as u32) << b;
    }
    for plane in 0..2 {
        for b in 0..4 {
            let (x, y) = (4 + plane * 2 + (b & 1), 4 + plane * 2 + (b >> 1));
            let ctx = (above[x] + left[y]) as usize;
            let blk = 16 + plane * 4 + b;
            let eob = decode_block(d, &probs[TYPE_CHROMA], ctx, 0, dq.uv, &mut out.blocks[blk]);
            let nz = (eob > 0) as u8;
            above[x] = nz;
            left[y] = nz;
            nonzero |= (nz as u32) << blk;
            ac |= ((eob > 1) as u32) << blk;
        }
    }
    out.nonzero = nonzero;
    out.ac = ac;
    *reader = local;
    nonzero != 0
}

/// Context reset for a macroblock with `mb_skip_coeff` set: its blocks count as empty; the Y2
/// context is touched only by macroblocks that have a Y2 block.
pub fn skip_mb_tokens(above: &mut NzContext, left: &mut NzContext, has_y2: bool) {
    let n = if has_y2 { 9 } else { 8 };
    above[..n].fill(0);
    left[..n].fill(0);
}
