//! DCT/WHT coefficient token coding (RFC 6386 section 13), the inverse of
//! [`crate::tokens::decode_mb_tokens`].
//!
//! One generic walk over a block's levels produces the token tree decisions; what happens to
//! each decision is up to a [`TokenSink`]: write it ([`TokenWriter`]), count it for probability
//! updates ([`TokenCounts`]) or price it ([`TokenCostSink`]). The walk is monomorphized per sink,
//! so the writer's hot path is straight-line code with no allocation.

use crate::encoder::bool_encoder::{cost_bits, BoolEncoder};
use crate::encoder::scan::last_reaching;
use crate::encoder::MbLevels;
use crate::tables::{CoeffProbs, COEFF_BANDS, DCT_CAT_BASE, PCAT3, PCAT4, PCAT5, PCAT6, ZIGZAG};
use crate::tokens::{
    skip_mb_tokens, NzContext, TYPE_CHROMA, TYPE_Y2, TYPE_Y_AFTER_Y2, TYPE_Y_WITH_DC, Y2_BLOCK,
};

/// The largest level magnitude a token can code: DCT_CAT6's base plus 11 extra bits.
pub const MAX_LEVEL: i32 = DCT_CAT_BASE[5] + 2047;

const PCAT1: [u8; 1] = [159];
const PCAT2: [u8; 2] = [165, 145];

/// Receives the decisions of the token walk. `node` decisions are coded with the adaptive
/// probability `probs[plane][band][ctx][node]`; `raw` ones (extra bits, signs) with a fixed one.
pub trait TokenSink {
    fn node(&mut self, plane: usize, band: usize, ctx: usize, node: usize, bit: bool);
    fn raw(&mut self, prob: u8, bit: bool);
}

/// Writes tokens to a bool encoder with the frame's coefficient probabilities.
pub struct TokenWriter<'a> {
    pub enc: &'a mut BoolEncoder,
    pub probs: &'a CoeffProbs,
}

impl TokenSink for TokenWriter<'_> {
    #[inline(always)]
    fn node(&mut self, plane: usize, band: usize, ctx: usize, node: usize, bit: bool) {
        self.enc.write_bool(self.probs[plane][band][ctx][node], bit);
    }
    #[inline(always)]
    fn raw(&mut self, prob: u8, bit: bool) {
        self.enc.write_bool(prob, bit);
    }
}

/// Counts `[node][bit]` of one token probability context.
pub type ContextCounts = [[u32; 2]; 11];

/// Branch counts `[plane][band][ctx][node][bit]` of the adaptive token decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenCounts(pub Box<[[[ContextCounts; 3]; 8]; 4]>);

impl Default for TokenCounts {
    fn default() -> Self {
        TokenCounts(Box::new([[[[[0; 2]; 11]; 3]; 8]; 4]))
    }
}

impl TokenSink for TokenCounts {
    #[inline(always)]
    fn node(&mut self, plane: usize, band: usize, ctx: usize, node: usize, bit: bool) {
        self.0[plane][band][ctx][node][bit as usize] += 1;
    }
    #[inline(always)]
    fn raw(&mut self, _prob: u8, _bit: bool) {}
}

/// Sums the cost (1/256 bit) of the decisions under given probabilities.
pub struct TokenCostSink<'a> {
    pub probs: &'a CoeffProbs,
    pub cost: u32,
}

impl TokenSink for TokenCostSink<'_> {
    #[inline(always)]
    fn node(&mut self, plane: usize, band: usize, ctx: usize, node: usize, bit: bool) {
        self.cost += cost_bits(self.probs[plane][band][ctx][node], bit);
    }
    #[inline(always)]
    fn raw(&mut self, prob: u8, bit: bool) {
        self.cost += cost_bits(prob, bit);
    }
}

#[inline(always)]
fn extra_bits<S: TokenSink>(s: &mut S, probs: &[u8], v: u32) {
    let n = probs.len();
    for (i, &p) in probs.iter().enumerate() {
        s.raw(p, (v >> (n - 1 - i)) & 1 == 1);
    }
}

/// The tree decisions for a non-zero magnitude `a` (<= [`MAX_LEVEL`]) after the "not ZERO"
/// branch: nodes 2..=10 and the DCT_CAT extra bits.
#[inline(always)]
fn magnitude<S: TokenSink>(s: &mut S, plane: usize, band: usize, ctx: usize, a: u32) {
    let n = |s: &mut S, node: usize, bit: bool| s.node(plane, band, ctx, node, bit);
    if a == 1 {
        n(s, 2, false);
        return;
    }
    n(s, 2, true);
    if a <= 4 {
        n(s, 3, false);
        if a == 2 {
            n(s, 4, false);
        } else {
            n(s, 4, true);
            n(s, 5, a == 4);
        }
        return;
    }
    n(s, 3, true);
    let base = |k: usize| DCT_CAT_BASE[k] as u32;
    if a < base(2) {
        n(s, 6, false);
        if a < base(1) {
            n(s, 7, false);
            extra_bits(s, &PCAT1, a - base(0));
        } else {
            n(s, 7, true);
            extra_bits(s, &PCAT2, a - base(1));
        }
    } else {
        n(s, 6, true);
        if a < base(4) {
            n(s, 8, false);
            if a < base(3) {
                n(s, 9, false);
                extra_bits(s, &PCAT3, a - base(2));
            } else {
                n(s, 9, true);
                extra_bits(s, &PCAT4, a - base(3));
            }
        } else {
            n(s, 8, true);
            if a < base(5) {
                n(s, 10, false);
                extra_bits(s, &PCAT5, a - base(4));
            } else {
                n(s, 10, true);
                extra_bits(s, &PCAT6, a - base(5));
            }
        }
    }
}

/// Code one block's levels (raster order, magnitudes <= [`MAX_LEVEL`]) from scan position
/// `first` with neighbour context `ctx` (0..=2). Returns true when the block has a token before
/// its end-of-block (the decoder's "non-zero" flag for the neighbours' contexts).
#[inline]
pub fn code_block<S: TokenSink>(
    s: &mut S,
    plane: usize,
    ctx: usize,
    first: usize,
    levels: &[i16; 16],
) -> bool {
    let Some(last) = last_reaching(levels, first, [1, 1]) else {
        s.node(plane, COEFF_BANDS[first], ctx, 0, false);
        return false;
    };
    let mut ctx = ctx;
    let mut after_zero = false;
    for i in first..=last {
        let band = COEFF_BANDS[i];
        if !after_zero {
            s.node(plane, band, ctx, 0, true);
        }
        let v = levels[ZIGZAG[i]] as i32;
        if v == 0 {
            s.node(plane, band, ctx, 1, false);
            ctx = 0;
            after_zero = true;
            continue;
        }
        s.node(plane, band, ctx, 1, true);
        let a = v.unsigned_abs();
        magnitude(s, plane, band, ctx, a);
        s.raw(128, v < 0);
        ctx = if a == 1 { 1 } else { 2 };
        after_zero = false;
    }
    if last < 15 {
        s.node(plane, COEFF_BANDS[last + 1], ctx, 0, false);
    }
    true
}

/// Code all blocks of a macroblock that is not skipped, in the decoder's order (Y2 if
/// `has_y2`, 16 Y, 4 U, 4 V), updating the above/left non-zero contexts as the decoder does.
pub fn code_mb<S: TokenSink>(
    s: &mut S,
    above: &mut NzContext,
    left: &mut NzContext,
    has_y2: bool,
    levels: &MbLevels,
) {
    let (y_plane, y_first) = if has_y2 {
        let ctx = (above[8] + left[8]) as usize;
        let nz = code_block(s, TYPE_Y2, ctx, 0, &levels.blocks[Y2_BLOCK]) as u8;
        above[8] = nz;
        left[8] = nz;
        (TYPE_Y_AFTER_Y2, 1)
    } else {
        (TYPE_Y_WITH_DC, 0)
    };
    for b in 0..16 {
        let (x, y) = (b & 3, b >> 2);
        let ctx = (above[x] + left[y]) as usize;
        let nz = code_block(s, y_plane, ctx, y_first, &levels.blocks[b]) as u8;
        above[x] = nz;
        left[y] = nz;
    }
    for plane in 0..2 {
        for b in 0..4 {
            let (x, y) = (4 + plane * 2 + (b & 1), 4 + plane * 2 + (b >> 1));
            let ctx = (above[x] + left[y]) as usize;
            let nz = code_block(s, TYPE_CHROMA, ctx, 0, &levels.blocks[16 + plane * 4 + b]) as u8;
            above[x] = nz;
            left[y] = nz;
        }
    }
}

/// Code a macroblock's tokens, or (when `skip`) only reset the contexts as the decoder does
/// for a macroblock with `mb_skip_coeff` set.
#[inline]
pub fn code_or_skip_mb<S: TokenSink>(
    s: &mut S,
    above: &mut NzContext,
    left: &mut NzContext,
    has_y2: bool,
    skip: bool,
    levels: &MbLevels,
) {
    if skip {
        skip_mb_tokens(above, left, has_y2);
    } else {
        code_mb(s, above, left, has_y2, levels);
    }
}

/// Rate of one block's tokens under `probs` (1/256 bit): `plane` is one of the
/// `crate::tokens::TYPE_*` block types, `ctx` the above + left non-zero count, `first` 1 for
/// luma blocks of a macroblock with Y2 and 0 otherwise. Also returns the block's non-zero flag.
pub fn block_cost(
    probs: &CoeffProbs,
    plane: usize,
    ctx: usize,
    first: usize,
    levels: &[i16; 16],
) -> (u32, bool) {
    let mut s = TokenCostSink { probs, cost: 0 };
    let nz = code_block(&mut s, plane, ctx, first, levels);
    (s.cost, nz)
}

/// Rate of a whole macroblock's tokens (1/256 bit), updating the contexts as coding would.
pub fn mb_tokens_cost(
    probs: &CoeffProbs,
    above: &mut NzContext,
    left: &mut NzContext,
    has_y2: bool,
    levels: &MbLevels,
) -> u32 {
    let mut s = TokenCostSink { probs, cost: 0 };
    code_mb(&mut s, above, left, has_y2, levels);
    s.cost
}

/// Token ids used by [`TokenCosts`]: ZERO, ONE, TWO, THREE, FOUR, CAT1..CAT6 are 0..=10, EOB is 11.
pub const TOKEN_EOB: usize = 11;

/// Precomputed per-token costs for fast rate estimates in RDO loops.
///
/// `cost[plane][band][ctx][token]` is the cost (1/256 bit) of the token's tree path, starting
/// at the root (the "not EOB" branch included); `cost_after_zero` is the same path entered past
/// the EOB branch, as coded right after a ZERO token. Extra bits and signs are not included:
/// use [`level_extra_cost`].
#[derive(Clone, Debug)]
pub struct TokenCosts {
    pub cost: Box<[[[[u16; 12]; 3]; 8]; 4]>,
    pub cost_after_zero: Box<[[[[u16; 12]; 3]; 8]; 4]>,
}

/// The token id of a level magnitude (0..=[`MAX_LEVEL`]).
pub fn token_of(a: u32) -> usize {
    match a {
        0..=4 => a as usize,
        _ => match DCT_CAT_BASE.iter().rposition(|&b| a >= b as u32) {
            Some(k) => 5 + k,
            None => 4,
        },
    }
}

/// The cost of a non-zero level's sign and DCT_CAT extra bits (1/256 bit).
pub fn level_extra_cost(v: i32) -> u32 {
    let a = v.unsigned_abs();
    let t = token_of(a);
    let extra: &[u8] = match t {
        5 => &PCAT1,
        6 => &PCAT2,
        7 => &PCAT3,
        8 => &PCAT4,
        9 => &PCAT5,
        10 => &PCAT6,
        _ => &[],
    };
    let sign = if a != 0 { cost_bits(128, v < 0) } else { 0 };
    let base = if t >= 5 { DCT_CAT_BASE[t - 5] as u32 } else { 0 };
    let n = extra.len();
    let mut c = sign;
    for (i, &p) in extra.iter().enumerate() {
        c += cost_bits(p, ((a - base) >> (n - 1 - i)) & 1 == 1);
    }
    c
}

/// Adds up node costs without touching extra bits (for the token path tables).
struct PathCost<'a> {
    probs: &'a [u8; 11],
    cost: u32,
}

impl TokenSink for PathCost<'_> {
    fn node(&mut self, _plane: usize, _band: usize, _ctx: usize, node: usize, bit: bool) {
        self.cost += cost_bits(self.probs[node], bit);
    }
    fn raw(&mut self, _prob: u8, _bit: bool) {}
}

/// Build [`TokenCosts`] for a frame's coefficient probabilities.
pub fn token_cost_tables(probs: &CoeffProbs) -> TokenCosts {
    let mut cost = Box::new([[[[0u16; 12]; 3]; 8]; 4]);
    let mut after = Box::new([[[[0u16; 12]; 3]; 8]; 4]);
    // One representative magnitude per token.
    let reps: [u32; 11] = [0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67];
    for plane in 0..4 {
        for band in 0..8 {
            for ctx in 0..3 {
                let p = &probs[plane][band][ctx];
                let not_eob = cost_bits(p[0], true);
                for (t, &a) in reps.iter().enumerate() {
                    let mut s = PathCost { probs: p, cost: 0 };
                    if a == 0 {
                        s.node(0, 0, 0, 1, false);
                    } else {
                        s.node(0, 0, 0, 1, true);
                        magnitude(&mut s, 0, 0, 0, a);
                    }
                    after[plane][band][ctx][t] = s.cost.min(u16::MAX as u32) as u16;
                    cost[plane][band][ctx][t] = (s.cost + not_eob).min(u16::MAX as u32) as u16;
                }
                cost[plane][band][ctx][TOKEN_EOB] = cost_bits(p[0], false) as u16;
                after[plane][band][ctx][TOKEN_EOB] = u16::MAX;
            }
        }
    }
    TokenCosts { cost, cost_after_zero: after }
}

impl TokenCosts {
    /// Rate of one block (same contract as [`block_cost`]) from the tables.
    pub fn block_cost(&self, plane: usize, ctx: usize, first: usize, levels: &[i16; 16]) -> u32 {
        let Some(last) = last_reaching(levels, first, [1, 1]) else {
            return self.cost[plane][COEFF_BANDS[first]][ctx][TOKEN_EOB] as u32;
        };
        let mut ctx = ctx;
        let mut after_zero = false;
        let mut total = 0;
        for i in first..=last {
            let band = COEFF_BANDS[i];
            let v = levels[ZIGZAG[i]] as i32;
            let a = v.unsigned_abs();
            let t = token_of(a);
            let table = if after_zero { &self.cost_after_zero } else { &self.cost };
            total += table[plane][band][ctx][t] as u32;
            if a != 0 {
                total += level_extra_cost(v);
            }
            ctx = match a {
                0 => 0,
                1 => 1,
                _ => 2,
            };
            after_zero = a == 0;
        }
        if last < 15 {
            total += self.cost[plane][COEFF_BANDS[last + 1]][ctx][TOKEN_EOB] as u32;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bool_decoder::BoolDecoder;
    use crate::quant::Dequant;
    use crate::tables::DEFAULT_COEFF_PROBS;
    use crate::tokens::{decode_mb_tokens, MbCoeffs, TokenProbs};

    #[test]
    fn token_ids_and_costs_agree_with_the_walk() {
        assert_eq!(token_of(4), 4);
        assert_eq!(token_of(5), 5);
        assert_eq!(token_of(6), 5);
        assert_eq!(token_of(7), 6);
        assert_eq!(token_of(66), 9);
        assert_eq!(token_of(67), 10);
        assert_eq!(token_of(MAX_LEVEL as u32), 10);
        let tables = token_cost_tables(&DEFAULT_COEFF_PROBS);
        let mut levels = [0i16; 16];
        levels[0] = 3;
        levels[1] = -70;
        levels[5] = 1;
        levels[10] = -2114;
        levels[15] = 20;
        for plane in 0..4 {
            for ctx in 0..3 {
                for first in 0..2 {
                    let (c, nz) = block_cost(&DEFAULT_COEFF_PROBS, plane, ctx, first, &levels);
                    assert!(nz);
                    assert_eq!(tables.block_cost(plane, ctx, first, &levels), c);
                }
            }
        }
        let zero = [0i16; 16];
        assert!(!block_cost(&DEFAULT_COEFF_PROBS, 2, 1, 0, &zero).1);
    }

    #[test]
    fn one_macroblock_round_trips() {
        let mut lv = MbLevels::default();
        for (b, blk) in lv.blocks.iter_mut().enumerate() {
            for (i, v) in blk.iter_mut().enumerate() {
                *v = match (b + i) % 7 {
                    0 => 0,
                    1 => (b * 37 + i) as i16 % 2115,
                    2 => -((b * i) as i16),
                    _ => 0,
                };
            }
            if b < 16 {
                blk[0] = 0;
            }
        }
        let mut enc = BoolEncoder::new();
        let (mut above, mut left) = ([0u8; 9], [0u8; 9]);
        let mut w = TokenWriter { enc: &mut enc, probs: &DEFAULT_COEFF_PROBS };
        code_mb(&mut w, &mut above, &mut left, true, &lv);
        let data = enc.finish();
        let mut d = BoolDecoder::new(&data);
        let dq = Dequant { y: [1, 1], y2: [1, 1], uv: [1, 1] };
        let mut out = MbCoeffs::default();
        let (mut a2, mut l2) = ([0u8; 9], [0u8; 9]);
        let probs = TokenProbs::new(&DEFAULT_COEFF_PROBS);
        decode_mb_tokens(&mut d, &probs, &mut a2, &mut l2, true, &dq, &mut out);
        assert_eq!(out.blocks, lv.blocks);
        assert_eq!((a2, l2), (above, left));
    }
}
