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

/// The magnitude of a token past `ONE` (2 and up), from its tree's node 3 on (spec 13.2).
#[inline(always)]
fn read_large_value(d: &mut BoolDecoder, p: &[u8; 11]) -> i32 {
    if !d.read_bool(p[3]) {
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
    }
}

/// Token probabilities of one block type by scan position: `[position][context][node]`, the
/// band of each position resolved once per frame (spec 13.3 indexes them by band).
type PosProbs = [[[u8; 11]; 3]; 16];

/// A frame's token probabilities as the token reader indexes them: each scan position's row
/// directly, where the bands made every token load its band from `COEFF_BANDS` first and
/// compute the row from it.
#[derive(Clone, Debug)]
pub struct TokenProbs {
    by_pos: [PosProbs; 4],
}

impl TokenProbs {
    /// Resolve the bands of `probs`.
    pub fn new(probs: &CoeffProbs) -> Self {
        TokenProbs {
            by_pos: std::array::from_fn(|t| std::array::from_fn(|i| probs[t][COEFF_BANDS[i]])),
        }
    }
}

/// Decode one block's tokens into `out` (dequantized, de-zigzagged). Returns the scan position
/// after the last decoded token, or `FIRST` when the block ends immediately.
///
/// Inlined into each of its loops in [`decode_mb_tokens`]: most blocks end at once, and
/// the call around them cost 6% of the token decoding's instructions (462 M -> 435 M in a
/// 640x272 decode, callgrind; one loop over all blocks with one call site cost more). `FIRST`
/// is a constant, so that the luma blocks after a Y2 block know that they have no DC.
#[inline(always)]
fn decode_block<const FIRST: usize>(
    d: &mut BoolDecoder,
    probs: &PosProbs,
    ctx: usize,
    dq: [i16; 2],
    out: &mut [i16; 16],
) -> usize {
    let mut i = FIRST;
    let mut p = &probs[i][ctx];
    if !d.read_bool(p[0]) {
        return FIRST;
    }
    loop {
        if !d.read_bool(p[1]) {
            // DCT_0: the next token cannot be end-of-block.
            i += 1;
            if i >= 16 {
                return 16;
            }
            p = &probs[i][0];
            continue;
        }
        let (v, next_ctx) = if !d.read_bool(p[2]) {
            (1, 1)
        } else {
            (read_large_value(d, p), 2)
        };
        let v = if d.read_flag() { -v } else { v };
        // Products are stored as 16-bit values, as the spec's 16-bit arithmetic does.
        out[ZIGZAG[i]] = (v * dq[(i > 0) as usize] as i32) as i16;
        i += 1;
        if i >= 16 {
            return 16;
        }
        p = &probs[i][next_ctx];
        if !d.read_bool(p[0]) {
            return i;
        }
    }
}

/// Decode the `W` x `W` blocks of one plane (luma: 4, chroma: 2), in raster order, with the
/// plane's `above` and `left` "has coefficients" flags, updated for the next macroblocks.
/// Returns the masks of the blocks with a token before end-of-block and with a token past
/// the first position, bit `b` for block `b`.
///
/// The flags of the blocks inside the plane are bits of the returned mask, kept in a register
/// while the blocks are read: one block's context is two bits of it, where reading and writing
/// the flag arrays kept their addresses and the block's column and row live (spilled, and
/// reloaded for every block).
#[inline(always)]
fn decode_plane<const W: usize, const FIRST: usize>(
    d: &mut BoolDecoder,
    probs: &PosProbs,
    above: &mut [u8],
    left: &mut [u8],
    dq: [i16; 2],
    blocks: &mut [[i16; 16]],
) -> (u32, u32) {
    let (above, left, blocks) = (&mut above[..W], &mut left[..W], &mut blocks[..W * W]);
    // Bit b: the flag above block b when it is in the top row, the one left of it when it is
    // in the first column (each flag is 0 or 1).
    let mut above_in = 0u32;
    let mut left_in = 0u32;
    for k in 0..W {
        above_in |= (above[k] as u32) << k;
        left_in |= (left[k] as u32) << (k * W);
    }
    // Blocks not in the first column take their left context from block b - 1.
    let not_first_col: u32 = (0..W * W).filter(|b| b % W != 0).fold(0, |m, b| m | 1 << b);
    let (mut nz, mut ac) = (0u32, 0u32);
    for (b, out) in blocks.iter_mut().enumerate() {
        let a = ((above_in | nz << W) >> b) & 1;
        let l = ((left_in | (nz << 1) & not_first_col) >> b) & 1;
        let eob = decode_block::<FIRST>(d, probs, (a + l) as usize, dq, out);
        nz |= ((eob > FIRST) as u32) << b;
        ac |= ((eob > 1) as u32) << b;
    }
    for k in 0..W {
        above[k] = ((nz >> (W * (W - 1) + k)) & 1) as u8;
        left[k] = ((nz >> (W * k + W - 1)) & 1) as u8;
    }
    (nz, ac)
}

/// Decode all coefficient tokens of a macroblock that is not skipped. `above`/`left` are the
/// neighbouring "has coefficients" flags, updated for the next macroblocks. Returns true when
/// any block had a token before its end-of-block.
pub fn decode_mb_tokens(
    reader: &mut BoolDecoder,
    probs: &TokenProbs,
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
    let p = &probs.by_pos;
    let (y_nz, y_ac, y2_nz) = if has_y2 {
        let ctx = (above[8] + left[8]) as usize;
        let eob = decode_block::<0>(d, &p[TYPE_Y2], ctx, dq.y2, &mut out.blocks[Y2_BLOCK]);
        let nz = (eob > 0) as u8;
        above[8] = nz;
        left[8] = nz;
        let (y_nz, y_ac) = decode_plane::<4, 1>(
            d,
            &p[TYPE_Y_AFTER_Y2],
            &mut above[..4],
            &mut left[..4],
            dq.y,
            &mut out.blocks[..16],
        );
        (y_nz, y_ac, (nz as u32) << Y2_BLOCK)
    } else {
        let (y_nz, y_ac) = decode_plane::<4, 0>(
            d,
            &p[TYPE_Y_WITH_DC],
            &mut above[..4],
            &mut left[..4],
            dq.y,
            &mut out.blocks[..16],
        );
        (y_nz, y_ac, 0)
    };
    let pc = &p[TYPE_CHROMA];
    let (u_nz, u_ac) =
        decode_plane::<2, 0>(d, pc, &mut above[4..6], &mut left[4..6], dq.uv, &mut out.blocks[16..20]);
    let (v_nz, v_ac) =
        decode_plane::<2, 0>(d, pc, &mut above[6..8], &mut left[6..8], dq.uv, &mut out.blocks[20..24]);
    let nonzero = y_nz | u_nz << 16 | v_nz << 20 | y2_nz;
    out.nonzero = nonzero;
    out.ac = y_ac | u_ac << 16 | v_ac << 20;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{CoeffProbs, COEFF_BANDS, DEFAULT_COEFF_PROBS};

    // The token reader as it was before the bands were resolved per frame and the contexts
    // kept in masks: the reference that the reader is checked against, token for token.

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
                (read_large_value(d, p), 2)
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

    pub(crate) fn decode_mb_tokens_by_band(
        reader: &mut BoolDecoder,
        probs: &CoeffProbs,
        above: &mut NzContext,
        left: &mut NzContext,
        has_y2: bool,
        dq: &Dequant,
        out: &mut MbCoeffs,
    ) -> bool {
        let d = reader;
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
        nonzero != 0
    }

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// Random partitions decoded as token data with random probabilities, contexts, Y2 or
    /// not and dequantizers: the reader and the reference agree on every coefficient, mask,
    /// context flag and the decoder's position, macroblock after macroblock.
    #[test]
    fn reader_matches_band_reference_on_random_data() {
        let mut seed = 7u64;
        let mut blocks_with_tokens = 0;
        for round in 0..300 {
            let mut probs: CoeffProbs = DEFAULT_COEFF_PROBS;
            if round % 3 != 0 {
                for p in probs.iter_mut().flatten().flatten().flatten() {
                    *p = (lcg(&mut seed) % 255 + 1) as u8;
                }
            }
            let resolved = TokenProbs::new(&probs);
            // Mostly zero bytes give blocks that end early, mostly 0xff ones long blocks
            // of large values.
            let density = lcg(&mut seed) % 4;
            let data: Vec<u8> = (0..600)
                .map(|_| match density {
                    0 => (lcg(&mut seed) & lcg(&mut seed) & lcg(&mut seed)) as u8,
                    3 => (lcg(&mut seed) | lcg(&mut seed)) as u8,
                    _ => lcg(&mut seed) as u8,
                })
                .collect();
            let dq = Dequant {
                y: [(lcg(&mut seed) % 160) as i16 + 1, (lcg(&mut seed) % 160) as i16 + 1],
                y2: [(lcg(&mut seed) % 300) as i16 + 1, (lcg(&mut seed) % 300) as i16 + 1],
                uv: [(lcg(&mut seed) % 130) as i16 + 1, (lcg(&mut seed) % 130) as i16 + 1],
            };
            let mut above: NzContext = std::array::from_fn(|_| (lcg(&mut seed) & 1) as u8);
            let mut left: NzContext = std::array::from_fn(|_| (lcg(&mut seed) & 1) as u8);
            let (mut above_r, mut left_r) = (above, left);
            let mut d = BoolDecoder::new(&data);
            let mut d_r = BoolDecoder::new(&data);
            for mb in 0..8 {
                let has_y2 = !lcg(&mut seed).is_multiple_of(3);
                let mut out = MbCoeffs::default();
                let mut out_r = MbCoeffs::default();
                let any = decode_mb_tokens(
                    &mut d, &resolved, &mut above, &mut left, has_y2, &dq, &mut out,
                );
                let any_r = decode_mb_tokens_by_band(
                    &mut d_r, &probs, &mut above_r, &mut left_r, has_y2, &dq, &mut out_r,
                );
                let at = format!("round {round} macroblock {mb}");
                assert_eq!(out.blocks, out_r.blocks, "{at}");
                assert_eq!((out.nonzero, out.ac, any), (out_r.nonzero, out_r.ac, any_r), "{at}");
                assert_eq!((above, left), (above_r, left_r), "{at}");
                assert_eq!(d.bits_past_end(), d_r.bits_past_end(), "{at}");
                assert_eq!(d.read_literal(8), d_r.read_literal(8), "{at}");
                blocks_with_tokens += out.nonzero.count_ones();
            }
        }
        assert!(blocks_with_tokens > 10_000, "{blocks_with_tokens}");
    }
}
