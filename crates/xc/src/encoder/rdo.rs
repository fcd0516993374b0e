//! Rate-distortion helpers: the Lagrange multiplier and rate estimates in 1/256 bit units from
//! the probabilities the frame will be coded with (distortion measures are `distortion`).
//!
//! Rates mirror the parser exactly (token tree with band/context switching and the "no EOB
//! after a zero" rule, mode trees with their contexts, the MV component coding of spec 17),
//! so a choice that looks cheaper here is cheaper in the bitstream up to the probability
//! updates the writer makes. [`bit_cost`] is the single place a bit's price comes from.

use std::sync::OnceLock;

use crate::encoder::distortion::block4_variances;
use crate::encoder::scan::last_reaching;
use crate::frame::Frame;
use crate::mb::{BMode, MbMode, Mv, UvMode};
use crate::state::EntropyProbs;
use crate::tables::*;

/// Cost unit: 1/256 of a bit.
pub const BIT: u32 = 256;

fn cost_table() -> &'static [u32; 256] {
    static T: OnceLock<[u32; 256]> = OnceLock::new();
    T.get_or_init(|| {
        std::array::from_fn(|p| {
            let p = (p.max(1)) as f64 / 256.0;
            (-p.log2() * BIT as f64).round() as u32
        })
    })
}

/// Cost of coding `bit` with probability `prob` (of a 0), in 1/256 bits: the bitstream
/// writer's own cost model.
#[inline]
pub fn bit_cost(prob: u8, bit: bool) -> u32 {
    crate::encoder::bool_encoder::cost_bits(prob, bit)
}

/// The same cost computed from `log2` (kept to cross-check the writer's table).
pub fn bit_cost_exact(prob: u8, bit: bool) -> u32 {
    let t = cost_table();
    if bit {
        t[(256 - prob as usize).min(255)]
    } else {
        t[prob as usize]
    }
}

/// Cost of coding `leaf` with a spec-style tree (positive entries index the tree, others are
/// negated leaves; probabilities indexed by node / 2).
pub fn tree_cost(tree: &[i8], probs: &[u8], leaf: u8) -> u32 {
    fn walk(tree: &[i8], probs: &[u8], node: usize, leaf: u8, acc: u32) -> Option<u32> {
        for bit in 0..2 {
            let e = tree[node + bit];
            let c = acc + bit_cost(probs[node >> 1], bit == 1);
            if e <= 0 {
                if (-e) as u8 == leaf {
                    return Some(c);
                }
            } else if let Some(r) = walk(tree, probs, e as usize, leaf, c) {
                return Some(r);
            }
        }
        None
    }
    walk(tree, probs, 0, leaf, 0).unwrap_or(u32::MAX / 4)
}

/// Lagrange multiplier (SSE per bit) for a luma AC quantizer step.
pub fn lambda(y_ac_q: i32, key_frame: bool) -> f64 {
    let q = y_ac_q as f64;
    if key_frame {
        0.05 * q * q
    } else {
        0.03 * q * q
    }
}

/// Per-macroblock multipliers of a frame's lambda that favour SSIM over squared error, in
/// raster order. SSIM divides a window's error by its variance, so an error in a flat area
/// costs far more SSIM than the same squared error in a busy one; libvpx's `--tune=ssim` makes
/// the same trade by its activity masking. A macroblock's activity `a` is the mean variance of
/// its sixteen 4x4 luma blocks plus 1 (so that flat blocks stay finite); it gets
/// `(2a + m) / (a + 2m)` with `m` the frame's geometric mean activity: between 1/2 (flat) and
/// 2 (busy), 1 at the mean.
///
/// The activity is local, as SSIM's windows are (and as libvpx's measure, the macroblock's
/// error under 4x4 DC prediction, is): a smooth gradient has a large 16x16 variance but little
/// within each 4x4 block, and its errors show in SSIM as a flat area's do. Measured on
/// ExCamera[6,16] (`bench/compression-ideas.md`): the 16x16 variance with the arithmetic mean
/// favoured flat blocks too little (bigbuckbunny -0.8% SSIM BD-rate, the geometric -1.4%),
/// the square of the weight (0.25..4) cost PSNR (+2.4%) for no more SSIM; the 4x4 variance
/// instead of the 16x16 one gained -0.2..-0.8 points more (2x2 and 8x8 blocks: less).
pub(crate) fn activity_weights(src: &Frame) -> Vec<f64> {
    let (cols, rows) = (src.mb_cols(), src.mb_rows());
    let act: Vec<f64> = (0..rows * cols)
        .map(|i| {
            let (x0, y0) = ((i % cols) * 16, (i / cols) * 16);
            let v = block4_variances(&src.y.data, src.y.stride, y0 * src.y.stride + x0);
            // 256 times the sum of 16 variances: their mean is v / 4096.
            v as f64 / 4096.0 + 1.0
        })
        .collect();
    let mean = (act.iter().map(|a| a.ln()).sum::<f64>() / act.len().max(1) as f64).exp();
    act.iter().map(|&a| (2.0 * a + mean) / (a + 2.0 * mean)).collect()
}

/// Lagrange multiplier of the RD quantizer (`quantize::quantize_block_rd`) for a luma AC
/// quantizer step: the mode decision's [`lambda`] on inter frames, a tenth of it on key
/// frames. Every later frame predicts from the key frame, so its distortion is worth more
/// than its own bits say. Measured on carphone (30 frames, Good, qindex 15..60, BD-PSNR
/// against the plain quantizer): key x1 / inter x1 -> about +0.28 dB, key x0.1 / inter x1 ->
/// +0.42 dB, key x0.25 / inter x0.5 -> +0.13 dB, inter x3 -> -0.07 dB.
pub fn trellis_lambda(y_ac_q: i32, key_frame: bool) -> f64 {
    if key_frame {
        0.1 * lambda(y_ac_q, true)
    } else {
        lambda(y_ac_q, false)
    }
}

/// Token index of a coefficient magnitude: 0 zero, 1..=4 literal, 5..=10 dct_cat1..6.
#[inline]
pub(crate) fn token_of(v: u32) -> usize {
    match v {
        0..=4 => v as usize,
        5..=6 => 5,
        7..=10 => 6,
        11..=18 => 7,
        19..=34 => 8,
        35..=66 => 9,
        _ => 10,
    }
}

fn extra_cost(v: u32) -> u32 {
    let t = token_of(v);
    if t < 5 {
        return 0;
    }
    let probs: &[u8] = match t {
        5 => &PCAT1,
        6 => &PCAT2,
        7 => &PCAT3,
        8 => &PCAT4,
        9 => &PCAT5,
        _ => &PCAT6,
    };
    let e = v as i32 - DCT_CAT_BASE[t - 5];
    let n = probs.len();
    probs.iter().enumerate().map(|(i, &p)| bit_cost(p, (e >> (n - 1 - i)) & 1 == 1)).sum()
}

/// Per-frame token cost tables from the coefficient probabilities.
#[derive(Clone)]
pub struct TokenCosts {
    /// `[type][band][ctx]`: cost of "end of block" and of "not end of block".
    eob: [[[u32; 3]; 8]; 4],
    not_eob: [[[u32; 3]; 8]; 4],
    /// `[type][band][ctx][token]`: cost of the token after the EOB decision (tokens 0..=10),
    /// without extra bits or sign.
    tok: [[[[u32; 11]; 3]; 8]; 4],
    /// Extra-bit cost of magnitudes below 67 (cat6 is computed on demand).
    extra: [u32; 67],
    /// `[type][scan position][magnitude]`: what [`TokenCosts::level_costs`] gives for the
    /// magnitudes below [`SMALL_LEVELS`], looked up where the RD quantizer's inner loop would
    /// otherwise find the band, the token and the extra bits each time (a fifth of its
    /// instructions).
    small: Box<[[[SmallLevel; SMALL_LEVELS]; 16]; 4]>,
}

/// The magnitudes whose costs [`TokenCosts`] keeps per scan position: the RD quantizer's
/// candidates at the coarse quantizers that matter most are nearly all 0, 1 and 2.
const SMALL_LEVELS: usize = 8;

/// The token costs of one magnitude at one scan position, in each context 0..=2, and the "not
/// end of block" costs there: [`TokenCosts::level_costs`]'s two arrays.
type SmallLevel = ([u32; 3], [u32; 3]);

impl TokenCosts {
    #[allow(clippy::needless_range_loop)]
    pub fn new(probs: &CoeffProbs) -> Self {
        let mut t = TokenCosts {
            eob: [[[0; 3]; 8]; 4],
            not_eob: [[[0; 3]; 8]; 4],
            tok: [[[[0; 11]; 3]; 8]; 4],
            extra: std::array::from_fn(|v| extra_cost(v as u32)),
            small: Box::new([[[([0; 3], [0; 3]); SMALL_LEVELS]; 16]; 4]),
        };
        for ty in 0..4 {
            for band in 0..8 {
                for ctx in 0..3 {
                    let p = &probs[ty][band][ctx];
                    t.eob[ty][band][ctx] = bit_cost(p[0], false);
                    t.not_eob[ty][band][ctx] = bit_cost(p[0], true);
                    let c = |i: usize, b: bool| bit_cost(p[i], b);
                    let big = c(1, true) + c(2, true);
                    let small = big + c(3, false);
                    let cat = big + c(3, true);
                    t.tok[ty][band][ctx] = [
                        c(1, false),
                        c(1, true) + c(2, false),
                        small + c(4, false),
                        small + c(4, true) + c(5, false),
                        small + c(4, true) + c(5, true),
                        cat + c(6, false) + c(7, false),
                        cat + c(6, false) + c(7, true),
                        cat + c(6, true) + c(8, false) + c(9, false),
                        cat + c(6, true) + c(8, false) + c(9, true),
                        cat + c(6, true) + c(8, true) + c(10, false),
                        cat + c(6, true) + c(8, true) + c(10, true),
                    ];
                }
            }
        }
        for ty in 0..4 {
            for i in 0..16 {
                t.small[ty][i] = std::array::from_fn(|v| t.level_costs_computed(ty, i, v as u32));
            }
        }
        t
    }

    /// Cost of "end of block" at scan position `i` (band `COEFF_BANDS[i]`) in context `ctx`.
    #[inline]
    pub fn eob_cost(&self, ty: usize, i: usize, ctx: usize) -> u32 {
        self.eob[ty][COEFF_BANDS[i]][ctx]
    }

    /// Cost of the token of magnitude `v` at scan position `i` in context `ctx`, with the
    /// "not end of block" decision when `check_eob` (not right after a zero), the DCT_CAT
    /// extra bits and the sign.
    #[inline]
    pub fn level_cost(&self, ty: usize, i: usize, ctx: usize, check_eob: bool, v: u32) -> u32 {
        let band = COEFF_BANDS[i];
        let mut c = self.tok[ty][band][ctx][token_of(v)];
        if check_eob {
            c += self.not_eob[ty][band][ctx];
        }
        if v > 0 {
            c += BIT + if v < 67 { self.extra[v as usize] } else { extra_cost(v) };
        }
        c
    }

    /// [`TokenCosts::level_cost`] for every context 0..=2 at once: the token's cost with its
    /// extra bits and sign, and the "not end of block" cost to add when `check_eob`.
    #[inline]
    pub fn level_costs(&self, ty: usize, i: usize, v: u32) -> ([u32; 3], [u32; 3]) {
        match self.small[ty][i].get(v as usize) {
            Some(&costs) => costs,
            None => self.level_costs_computed(ty, i, v),
        }
    }

    /// [`TokenCosts::level_costs`] from the band, token and extra-bit tables.
    #[inline]
    fn level_costs_computed(&self, ty: usize, i: usize, v: u32) -> ([u32; 3], [u32; 3]) {
        let band = COEFF_BANDS[i];
        let t = token_of(v);
        let extra = if v == 0 {
            0
        } else {
            BIT + if v < 67 { self.extra[v as usize] } else { extra_cost(v) }
        };
        let tok = &self.tok[ty][band];
        ([tok[0][t] + extra, tok[1][t] + extra, tok[2][t] + extra], self.not_eob[ty][band])
    }

    /// Cost of one block's tokens. `levels` in raster order, `ty` the block type (tokens.rs
    /// TYPE_*), `ctx` 0..=2 from the neighbours, `first` 1 for luma blocks after Y2.
    pub fn block_cost(&self, levels: &[i16; 16], ty: usize, ctx: usize, first: usize) -> u32 {
        let Some(last) = last_reaching(levels, first, [1, 1]) else {
            return self.eob[ty][COEFF_BANDS[first]][ctx];
        };
        let mut cost = 0;
        let mut ctx = ctx;
        let mut after_zero = false;
        for i in first..=last {
            let band = COEFF_BANDS[i];
            if !after_zero {
                cost += self.not_eob[ty][band][ctx];
            }
            let v = levels[ZIGZAG[i]].unsigned_abs() as u32;
            let t = token_of(v);
            cost += self.tok[ty][band][ctx][t];
            if v == 0 {
                ctx = 0;
                after_zero = true;
                continue;
            }
            cost += BIT; // sign
            cost += if v < 67 { self.extra[v as usize] } else { extra_cost(v) };
            ctx = if v == 1 { 1 } else { 2 };
            after_zero = false;
        }
        if last < 15 {
            cost += self.eob[ty][COEFF_BANDS[last + 1]][ctx];
        }
        cost
    }
}

/// The cost of one motion vector component difference `v` under probabilities `p`, as the
/// writer codes it (`modes::code_mv_component`), for every value -1023..=1023 (index
/// v + 1023), from per-bit costs:
/// a long magnitude's cost is a sum of one cost per bit, so the sums are found from a table of
/// its three low bits and one of its six high bits (every bit priced a value at a time was
/// 1.5% of a 320x180 inter frame's instructions).
fn mv_component_costs(p: &[u8; 19]) -> Vec<u32> {
    const IS_SHORT: usize = 0;
    const SIGN: usize = 1;
    const SHORT: usize = 2;
    const BITS: usize = 9;
    let bit = |i: usize, a: u32| bit_cost(p[BITS + i], (a >> i) & 1 == 1);
    let low: [u32; 8] = std::array::from_fn(|a| (0..3).map(|i| bit(i, a as u32)).sum());
    let high: [u32; 64] = std::array::from_fn(|h| (4..10).map(|i| bit(i, (h as u32) << 4)).sum());
    let long = bit_cost(p[IS_SHORT], true);
    let magnitude: Vec<u32> = (0..=MAX_MV_DIFF as u32)
        .map(|a| {
            if a < 8 {
                bit_cost(p[IS_SHORT], false)
                    + tree_cost(&SMALL_MV_TREE, &p[SHORT..SHORT + 7], a as u8)
            } else {
                // Bit 3 is implicit (1) when no higher bit is set.
                let b3 = if a & 0xFFF0 != 0 { bit(3, a) } else { 0 };
                long + low[(a & 7) as usize] + high[(a >> 4) as usize] + b3
            }
        })
        .collect();
    let sign = [bit_cost(p[SIGN], false), bit_cost(p[SIGN], true)];
    (-MAX_MV_DIFF..=MAX_MV_DIFF)
        .map(|v| {
            let a = v.unsigned_abs();
            magnitude[a as usize] + if a != 0 { sign[(v < 0) as usize] } else { 0 }
        })
        .collect()
}

/// Largest MV component difference the bitstream codes (10 magnitude bits).
pub const MAX_MV_DIFF: i32 = 1023;

/// Per-frame mode and motion vector cost tables.
#[derive(Clone)]
pub struct ModeCosts {
    pub key_frame: bool,
    /// Luma 16x16 mode costs, indexed like `YMODE_TREE` leaves (DC V H TM B_PRED).
    pub ymode: [u32; 5],
    pub uv_mode: [u32; 4],
    /// Key frames: `[above][left][mode]`; inter frames use `[0][0]` (context-free).
    pub bmode: Box<[[[u32; 10]; 10]; 10]>,
    /// The cheapest subblock mode in any context (a floor of B_PRED's mode rates).
    pub min_bmode: u32,
    /// MV component costs for values -1023..=1023 (index v + 1023), row then column.
    mv: [Vec<u32>; 2],
    /// Estimated costs of the intra/inter and reference frame choices.
    pub intra: u32,
    pub inter_ref: [u32; 4],
    pub skip: [u32; 2],
}

impl ModeCosts {
    pub fn new(probs: &EntropyProbs, key_frame: bool) -> Self {
        let mut bmode = Box::new([[[0u32; 10]; 10]; 10]);
        if key_frame {
            for (a, row) in bmode.iter_mut().enumerate() {
                for (l, m) in row.iter_mut().enumerate() {
                    *m = std::array::from_fn(|k| {
                        tree_cost(&BMODE_TREE, &KF_BMODE_PROBS[a][l], k as u8)
                    });
                }
            }
        } else {
            bmode[0][0] = std::array::from_fn(|k| tree_cost(&BMODE_TREE, &BMODE_PROBS, k as u8));
        }
        let (ytree, yprobs, uvprobs): (&[i8], &[u8], &[u8]) = if key_frame {
            (&KF_YMODE_TREE, &KF_YMODE_PROBS, &KF_UV_MODE_PROBS)
        } else {
            (&YMODE_TREE, &probs.ymode, &probs.uv_mode)
        };
        let mv = [0, 1].map(|c| mv_component_costs(&probs.mv[c]));
        // The writer chooses prob_intra / prob_last / prob_gf from the frame's counts; assume
        // a typical mostly-inter frame with mostly-last references.
        let (p_intra, p_last, p_gf) = (40u8, 200u8, 128u8);
        let min_bmode = if key_frame {
            bmode.as_flattened().as_flattened().iter().copied().min()
        } else {
            bmode[0][0].iter().copied().min()
        };
        ModeCosts {
            key_frame,
            min_bmode: min_bmode.unwrap_or(0),
            ymode: std::array::from_fn(|m| tree_cost(ytree, yprobs, m as u8)),
            uv_mode: std::array::from_fn(|m| tree_cost(&UV_MODE_TREE, uvprobs, m as u8)),
            bmode,
            mv,
            intra: if key_frame { 0 } else { bit_cost(p_intra, false) },
            inter_ref: [
                0,
                bit_cost(p_intra, true) + bit_cost(p_last, false),
                bit_cost(p_intra, true) + bit_cost(p_last, true) + bit_cost(p_gf, false),
                bit_cost(p_intra, true) + bit_cost(p_last, true) + bit_cost(p_gf, true),
            ],
            skip: [bit_cost(100, false), bit_cost(100, true)],
        }
    }

    pub fn y_mode(&self, m: MbMode) -> u32 {
        let i = match m {
            MbMode::Dc => 0,
            MbMode::V => 1,
            MbMode::H => 2,
            MbMode::Tm => 3,
            _ => 4,
        };
        self.ymode[i]
    }

    pub fn uv(&self, m: UvMode) -> u32 {
        self.uv_mode[m as usize]
    }

    /// Subblock mode cost; `above` / `left` are the context modes (key frames only).
    pub fn b_mode(&self, m: BMode, above: BMode, left: BMode) -> u32 {
        if self.key_frame {
            self.bmode[above as usize][left as usize][m as usize]
        } else {
            self.bmode[0][0][m as usize]
        }
    }

    /// Cost of coding `mv` as a NEWMV difference from `best`; `None` when out of range.
    pub fn mv_cost(&self, mv: Mv, best: Mv) -> Option<u32> {
        let dr = mv.row as i32 - best.row as i32;
        let dc = mv.col as i32 - best.col as i32;
        if dr.abs() > MAX_MV_DIFF || dc.abs() > MAX_MV_DIFF {
            return None;
        }
        Some(self.mv[0][(dr + MAX_MV_DIFF) as usize] + self.mv[1][(dc + MAX_MV_DIFF) as usize])
    }
}

/// Inter mode costs given the near-MV census `cnt` (spec 16.3): ZERO NEAREST NEAR NEW SPLIT.
pub fn inter_mode_costs(cnt: &[u8; 4]) -> [u32; 5] {
    let probs: [u8; 4] = std::array::from_fn(|i| MODE_CONTEXTS[cnt[i] as usize][i]);
    std::array::from_fn(|m| tree_cost(&MV_REF_TREE, &probs, m as u8))
}

/// The default coefficient probabilities with every one replaced by a pseudo-random 1..=255
/// drawn from `seed`: skewed as a frame's adapted probabilities are, for tests that price
/// tokens.
#[cfg(test)]
pub(crate) fn skewed_coeff_probs(mut seed: u64) -> CoeffProbs {
    let mut probs = DEFAULT_COEFF_PROBS;
    for p in probs.iter_mut().flatten().flatten().flatten() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *p = 1 + (seed >> 56) as u8 % 255;
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bool_decoder::BoolDecoder;

    /// The activity is local: a macroblock holding a smooth ramp (a large 16x16 variance,
    /// little within any 4x4 block) weighs well below one with fine texture of the same 16x16
    /// variance (a 16x16 measure weighs them alike), and above a flat one; all in 1/2..2.
    #[test]
    fn activity_weights_read_a_smooth_ramp_as_flat() {
        let mut f = Frame::new(48, 16, 0);
        let stride = f.y.stride;
        for y in 0..16 {
            for x in 0..16 {
                // A horizontal ramp 8..248, its 16x16 variance 16^2 * (16^2 - 1) / 12 = 5440.
                f.y.data[y * stride + x] = (8 + 16 * x) as u8;
                // A 2x2 checkerboard of 128 +- 73.8 (74 / 54 + 128): about the same variance.
                f.y.data[y * stride + 16 + x] =
                    if ((x >> 1) + (y >> 1)) % 2 == 0 { 202 } else { 54 };
                // A plain mid-grey macroblock.
                f.y.data[y * stride + 32 + x] = 128;
            }
        }
        let w = activity_weights(&f);
        assert!(w[0] < 0.8 * w[1], "ramp {} texture {}", w[0], w[1]);
        assert!(w[2] < w[0], "flat {} ramp {}", w[2], w[0]);
        assert!(w.iter().all(|&v| (0.5..=2.0).contains(&v)), "{w:?}");
    }

    #[test]
    fn bit_costs() {
        for p in 1..=255u8 {
            for b in [false, true] {
                assert!(bit_cost(p, b).abs_diff(bit_cost_exact(p, b)) <= 8, "{p} {b}");
            }
        }
        assert_eq!(bit_cost(128, false), 256);
        assert_eq!(bit_cost(128, true), 256);
        assert!(bit_cost(250, false) < 10 && bit_cost(250, true) > 1000);
        assert!(bit_cost(1, true) <= 2);
        // A tree's leaf costs are a proper code: sum of 2^-cost over leaves is 1.
        let s: f64 = (0..10)
            .map(|k| 2f64.powf(-(tree_cost(&BMODE_TREE, &BMODE_PROBS, k) as f64) / 256.0))
            .sum();
        assert!((s - 1.0).abs() < 0.01, "{s}");
    }

    #[test]
    fn token_costs_are_sane() {
        let tc = TokenCosts::new(&DEFAULT_COEFF_PROBS);
        let zero = [0i16; 16];
        let mut one = [0i16; 16];
        one[0] = 1;
        let mut big = one;
        big[0] = 500;
        let mut late = one;
        late[15] = 1;
        let c0 = tc.block_cost(&zero, 3, 0, 0);
        let c1 = tc.block_cost(&one, 3, 0, 0);
        let cb = tc.block_cost(&big, 3, 0, 0);
        let cl = tc.block_cost(&late, 3, 0, 0);
        assert!(c0 < c1 && c1 < cb && c1 < cl, "{c0} {c1} {cb} {cl}");
        // Luma after Y2 ignores the DC position.
        assert_eq!(tc.block_cost(&one, 0, 1, 1), tc.block_cost(&zero, 0, 1, 1));
    }

    /// The per-position table of small magnitudes gives what the band, token and extra-bit
    /// tables give, for every type, position and context, under the default probabilities and
    /// skewed random ones; larger magnitudes (and cat6's) are computed as before.
    #[test]
    fn level_costs_table_matches_the_computed_costs() {
        let skewed = skewed_coeff_probs(9);
        for probs in [&DEFAULT_COEFF_PROBS, &skewed] {
            let tc = TokenCosts::new(probs);
            for ty in 0..4 {
                for i in 0..16 {
                    for v in (0..80).chain([2113, 2114]) {
                        let got = tc.level_costs(ty, i, v);
                        assert_eq!(got, tc.level_costs_computed(ty, i, v), "{ty} {i} {v}");
                        for ctx in 0..3 {
                            let one = tc.level_cost(ty, i, ctx, true, v);
                            assert_eq!(got.0[ctx] + got.1[ctx], one, "{ty} {i} {v} {ctx}");
                        }
                    }
                }
            }
        }
    }

    /// `block_cost` is the writer's price of the same tokens: over whole macroblocks (Y2 or
    /// not, every context chain) it sums to `encoder::tokens::mb_tokens_cost`.
    #[test]
    fn block_costs_sum_to_the_writers_macroblock_cost() {
        use crate::encoder::tokens::mb_tokens_cost;
        use crate::encoder::MbLevels;
        use crate::tokens::{TYPE_CHROMA, TYPE_Y2, TYPE_Y_AFTER_Y2, TYPE_Y_WITH_DC};
        let mut probs = DEFAULT_COEFF_PROBS;
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for p in probs.iter_mut().flatten().flatten().flatten() {
            *p = 1 + rnd(255) as u8;
        }
        let tc = TokenCosts::new(&probs);
        for round in 0..4000 {
            let has_y2 = round % 2 == 0;
            let mut lv = MbLevels::default();
            for (b, block) in lv.blocks.iter_mut().enumerate() {
                let density = rnd(17);
                for (i, v) in block.iter_mut().enumerate() {
                    if rnd(16) < density && !(has_y2 && b < 16 && i == 0) {
                        let m = [1, 2, 3, 5, 9, 20, 40, 100, 2114][rnd(9) as usize];
                        *v = if rnd(2) == 0 { m } else { -m };
                    }
                }
            }
            if !has_y2 {
                lv.blocks[24] = [0; 16];
            }
            let mut above: [u8; 9] = std::array::from_fn(|_| rnd(2) as u8);
            let mut left: [u8; 9] = std::array::from_fn(|_| rnd(2) as u8);
            let (mut a, mut l) = (above, left);
            let want = mb_tokens_cost(&probs, &mut a, &mut l, has_y2, &lv);
            let mut got = 0;
            let mut one = |b: usize, ty: usize, x: usize, y: usize, first: usize| {
                let ctx = (above[x] + left[y]) as usize;
                got += tc.block_cost(&lv.blocks[b], ty, ctx, first);
                let nz = lv.blocks[b][first..].iter().any(|&v| v != 0) as u8;
                (above[x], left[y]) = (nz, nz);
            };
            if has_y2 {
                one(24, TYPE_Y2, 8, 8, 0);
            }
            let (ty, first) = if has_y2 { (TYPE_Y_AFTER_Y2, 1) } else { (TYPE_Y_WITH_DC, 0) };
            for b in 0..16 {
                one(b, ty, b & 3, b >> 2, first);
            }
            for b in 16..24 {
                let (plane, k) = ((b - 16) / 4, (b - 16) % 4);
                one(b, TYPE_CHROMA, 4 + plane * 2 + (k & 1), 4 + plane * 2 + (k >> 1), 0);
            }
            assert_eq!(got, want, "round {round}");
            assert_eq!((above, left), (a, l));
        }
    }

    /// The writer's own cost of one MV component difference: its coder, bit by bit.
    fn written_component_cost(v: i32, p: &[u8; 19]) -> u32 {
        struct Sum(u32);
        impl crate::encoder::modes::MvSink for Sum {
            fn mv_bit(&mut self, _comp: usize, _idx: usize, prob: u8, bit: bool) {
                self.0 += bit_cost(prob, bit);
            }
        }
        let mut sum = Sum(0);
        crate::encoder::modes::code_mv_component(&mut sum, 0, p, v as i16);
        sum.0
    }

    #[test]
    fn mv_cost_table_is_the_per_value_cost() {
        let skewed: [u8; 19] = std::array::from_fn(|i| (i as u8 * 53 + 7) % 254 + 1);
        for p in [&DEFAULT_MV_PROBS[0], &DEFAULT_MV_PROBS[1], &skewed] {
            let table = mv_component_costs(p);
            assert_eq!(table.len(), 2 * MAX_MV_DIFF as usize + 1);
            for v in -MAX_MV_DIFF..=MAX_MV_DIFF {
                assert_eq!(table[(v + MAX_MV_DIFF) as usize], written_component_cost(v, p), "{v}");
            }
        }
    }

    #[test]
    fn mv_costs_grow_with_magnitude() {
        let mc = ModeCosts::new(&EntropyProbs::default(), false);
        let z = Mv::default();
        let c = |r, c| mc.mv_cost(Mv { row: r, col: c }, z).unwrap();
        assert!(c(0, 0) < c(0, 2) && c(0, 2) < c(0, 40) && c(0, 40) < c(0, 600));
        assert!(mc.mv_cost(Mv { row: 1100, col: 0 }, z).is_none());
        // Short and long forms sum to a proper code over 0..1023 magnitudes (one component,
        // positive and negative values).
        let s: f64 = (-1023..=1023)
            .map(|v| 2f64.powf(-(written_component_cost(v, &DEFAULT_MV_PROBS[0]) as f64) / 256.0))
            .sum();
        assert!((s - 1.0).abs() < 0.02, "{s}");
        let _ = BoolDecoder::new(&[]);
    }
}
