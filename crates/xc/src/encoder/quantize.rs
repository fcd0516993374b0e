//! Quantization: coefficient levels from transform coefficients, using the decoder's own
//! dequantization factors (`quant::Dequant`) so that `level * factor` is exactly what the
//! decoder multiplies back.
//!
//! A level is `sign(c) * floor((|c| + round) / q)`: `round` below `q / 2` gives the usual
//! dead zone around zero (small coefficients, which cost many bits for little distortion,
//! become 0) and biases the other levels toward zero. Levels are capped at the largest value
//! the token alphabet codes (`DCT_CAT6` base 67 plus 11 extra bits) and so that the
//! dequantized product fits the 16 bits the decoder stores it in.

use crate::encoder::rdo::{TokenCosts, BIT};
use crate::encoder::scan::{last_reaching_with, Reach};
use crate::quant::{segment_qindex, Dequant, QuantIndices};
use crate::state::Segmentation;
use crate::tables::ZIGZAG;
use crate::tokens::TYPE_Y2;

/// Largest codable coefficient magnitude: `dct_cat6` covers 67..=67 + 2^11 - 1.
pub const MAX_LEVEL: i32 = 67 + 2047;

/// Quantizer of one block type: step and rounding offset for position 0 (DC) and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQuant {
    pub q: [i32; 2],
    pub round: [i32; 2],
    /// `floor(2^32 / q) + 1`: `(n * recip) >> 32` is exactly `n / q` for every `n, q < 2^16`
    /// (the multiplier's excess over `2^32 / q` adds less than `n / 2^32 < 2^-16` to the
    /// quotient, less than the `1 / q` gap between a fraction and the next integer).
    pub recip: [u64; 2],
    /// Largest level: [`MAX_LEVEL`], and small enough that `level * q` fits 16 bits.
    pub cap: [i32; 2],
    /// Half a step, `q - q / 2`: the magnitudes whose nearest level is not 0, prepared for
    /// the RD quantizer's scan for the last of them.
    pub(crate) half_step: Reach,
}

impl BlockQuant {
    /// Rounding offsets are `round_num / 128` of the step.
    pub fn new(dq: [i16; 2], round_num: [i32; 2]) -> Self {
        let q = [dq[0].max(1) as i32, dq[1].max(1) as i32];
        BlockQuant {
            q,
            round: [(q[0] * round_num[0]) >> 7, (q[1] * round_num[1]) >> 7],
            recip: q.map(|q| (1u64 << 32) / q as u64 + 1),
            cap: q.map(|q| MAX_LEVEL.min(i16::MAX as i32 / q)),
            half_step: Reach::new(q.map(|q| (q - q / 2) as u16)),
        }
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

/// Quantize `coeffs` (raster order) from position `first` (0, or 1 for luma blocks whose DC
/// goes to Y2) into `levels`; positions before `first` are set to 0. Returns true when any
/// level is non-zero.
///
/// On x86_64 this is the SSE2 kernel of `quantize_sse2.rs` (the scalar loop was a third of a
/// Realtime inter frame's instructions).
#[inline]
pub fn quantize_block(
    coeffs: &[i16; 16],
    first: usize,
    bq: &BlockQuant,
    levels: &mut [i16; 16],
) -> bool {
    debug_assert!(first <= 1);
    #[cfg(target_arch = "x86_64")]
    return sse2::quantize_block(coeffs, first, bq, levels);
    #[cfg(not(target_arch = "x86_64"))]
    quantize_block_scalar(coeffs, first, bq, levels)
}

/// [`quantize_block`] in plain Rust: the reference the SIMD kernel is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn quantize_block_scalar(
    coeffs: &[i16; 16],
    first: usize,
    bq: &BlockQuant,
    levels: &mut [i16; 16],
) -> bool {
    let mut any = 0;
    for (i, (&c, l)) in coeffs.iter().zip(levels.iter_mut()).enumerate() {
        let k = (i > 0) as usize;
        // |c| + round < 2^16 and q < 2^15, so the reciprocal product is the exact quotient.
        let n = (c.unsigned_abs() as u32 + bq.round[k] as u32) as u64;
        let m = (((n * bq.recip[k]) >> 32) as i32).min(bq.cap[k]);
        let m = if i < first { 0 } else { m };
        *l = if c < 0 { -m as i16 } else { m as i16 };
        any |= m;
    }
    any != 0
}

/// Rate-distortion optimized quantization of one block: among, for every coefficient, the
/// nearest level, one less, and 0, and every end-of-block position, the levels minimizing
/// `distortion + lambda * bits`.
///
/// Rates are the real token costs ([`TokenCosts`]) under the frame's probabilities, following
/// the token context chain (the neighbour context `ctx` for the first token, then 0 / 1 / 2
/// after a zero / one / larger level) and the rule that no end-of-block follows a zero.
/// Distortion is the pixel-domain squared error the transform implies: VP8's DCT is twice an
/// orthonormal one, so a coefficient error `e` costs `e^2 / 4` of pixel SSE, and a Y2 error
/// reaches the pixels through the WHT and sixteen DCs, `e^2 / 16`. `lambda` is SSE per bit,
/// as in `rdo::lambda`. The search is a Viterbi pass over the scan positions whose state is
/// the previous token's context. Returns whether any level is non-zero, and the levels' token
/// rate (what `TokenCosts::block_cost` gives for them, found along the way).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn quantize_block_rd(
    coeffs: &[i16; 16],
    first: usize,
    bq: &BlockQuant,
    ty: usize,
    ctx: usize,
    costs: &TokenCosts,
    lambda: f64,
    levels: &mut [i16; 16],
) -> (bool, u32) {
    *levels = [0; 16];
    let eob_first = costs.eob_cost(ty, first, ctx);
    // The last scan position whose nearest level is not 0, (a + q / 2) / q >= 1: whose
    // magnitude reaches half a step. Most blocks of an inter frame have none, and so no
    // level.
    let Some(last) = last_reaching_with(coeffs, first, &bq.half_step) else {
        return (false, eob_first);
    };
    // The squared magnitudes' total from `first` on (raster index 0 is scan position 0).
    let total =
        coeffs[first..].iter().map(|&c| (c.unsigned_abs() as u64).pow(2)).sum::<u64>() as i64;
    let w = if ty == TYPE_Y2 { 1.0 / 16.0 } else { 0.25 };
    let lam = lambda / BIT as f64;
    // The distortion of leaving every position from `i` on at zero is `w` times the squared
    // magnitudes' sum `tail` from `i` on: each `w * a^2` is exact in f64 (w is 1/4 or 1/16),
    // and so are their sums, so summing integers and scaling once is the same.
    let mut tail = total;
    // back_*[i][state]: how the best path into `state` after position i got there (the
    // previous state, the level at i, the rate of that step). Only reached states are read
    // back, and the walk stops at `first`, so no entry needs a "none" marker.
    let mut back_prev = [[0u8; 3]; 16];
    let mut back_level = [[0i32; 3]; 16];
    let mut back_rate = [[0u32; 3]; 16];
    let mut dp = [f64::INFINITY; 3];
    // The all-zero block: one end-of-block token at `first`. Then the best ending so far:
    // its cost, last position and state, and the rate of its end-of-block.
    let mut best = (w * tail as f64 + lam * eob_first as f64, None, eob_first);
    for i in first..=last {
        // A path's cost only grows (distortions and rates are non-negative, and rounding
        // preserves order), and an ending must be strictly below `best`: states at `best` or
        // above can lead to no ending that is chosen, so they are dropped, and the search
        // stops when none is left. (Which path reaches a dropped state's successors differs,
        // but only paths that are not chosen are read back.)
        if i > first {
            for d in dp.iter_mut() {
                if *d >= best.0 {
                    *d = f64::INFINITY;
                }
            }
            if dp.iter().all(|d| *d == f64::INFINITY) {
                break;
            }
        }
        // The magnitude, and its nearest level (a + q / 2) / q by the reciprocal: a <= 2^15
        // and q / 2 < 2^14, so the quotient is exact (`BlockQuant::recip`).
        let k = (i > 0) as usize;
        let (a, q) = (coeffs[ZIGZAG[i]].unsigned_abs() as i32, bq.q[k]);
        let n = ((((a + q / 2) as u64 * bq.recip[k]) >> 32) as i32).min(bq.cap[k]);
        tail -= (a as i64) * (a as i64);
        let zero_after = w * tail as f64;
        // Candidates: n, n - 1 and 0 (fewer when n < 2; the unused slots are never read).
        let cands = [n, n - 1, 0];
        let ncand = if n >= 2 { 3 } else { (n + 1) as usize };
        // Per candidate: its distortion, and its rate in each context (with the not-EOB part).
        let mut dist = [0f64; 3];
        let mut tok = [[0u32; 3]; 3];
        let mut not_eob = [0u32; 3];
        for k in 0..ncand {
            let e = (a - cands[k] * q) as f64;
            dist[k] = w * e * e;
            (tok[k], not_eob) = costs.level_costs(ty, i, cands[k] as u32);
        }
        let mut next = [f64::INFINITY; 3];
        // One step from state `s` (context `c`) with base cost `base`; ties keep the earlier
        // source and candidate (sources in state order, candidates as listed). A macro, so
        // that it is inlined (a closure here was not).
        macro_rules! step {
            ($s:expr, $c:expr, $check_eob:expr, $base:expr) => {{
                let (s, c, base) = ($s, $c, $base);
                let extra = if $check_eob { not_eob[c] } else { 0 };
                for k in 0..ncand {
                    let r = tok[k][c] + extra;
                    let j = base + dist[k] + lam * r as f64;
                    let ns = cands[k].min(2) as usize;
                    if j < next[ns] {
                        next[ns] = j;
                        back_prev[i][ns] = s as u8;
                        back_level[i][ns] = cands[k];
                        back_rate[i][ns] = r;
                    }
                }
            }};
        }
        if i == first {
            step!(0, ctx, true, 0.0);
        } else {
            for (s, &base) in dp.iter().enumerate() {
                if base.is_finite() {
                    step!(s, s, s != 0, base);
                }
            }
        }
        dp = next;
        // Only non-zero levels may end the block (no end-of-block after a zero).
        if n == 0 {
            continue;
        }
        for (ns, &cost) in dp.iter().enumerate().skip(1) {
            let (end, eob) = if i < 15 {
                let eob = costs.eob_cost(ty, i + 1, ns);
                (cost + zero_after + lam * eob as f64, eob)
            } else {
                (cost, 0)
            };
            if end < best.0 {
                best = (end, Some((i, ns)), eob);
            }
        }
    }
    let (_, Some((mut i, mut s)), mut rate) = best else {
        return (false, eob_first);
    };
    loop {
        let m = back_level[i][s];
        let z = ZIGZAG[i];
        levels[z] = if coeffs[z] < 0 { -m as i16 } else { m as i16 };
        rate += back_rate[i][s];
        if i == first {
            break;
        }
        s = back_prev[i][s] as usize;
        i -= 1;
    }
    (true, rate)
}

#[cfg(target_arch = "x86_64")]
#[path = "quantize_sse2.rs"]
mod sse2;

/// Which quantizer an encoding step uses (a plain value for options structs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum QuantMode {
    /// Rate-distortion optimized levels (`quantize_block_rd`).
    #[default]
    Rd,
    /// The dead-zone quantizer alone (`quantize_block`): faster, larger output.
    Plain,
}

/// How a macroblock's levels are chosen: the plain dead-zone quantizer, or the RD search of
/// [`quantize_block_rd`] with these token costs and lambda.
#[derive(Clone, Copy)]
pub enum Quantizer<'a> {
    Plain,
    Rd { costs: &'a TokenCosts, lambda: f64 },
}

impl Quantizer<'_> {
    /// Quantize one block of type `ty` with neighbour context `ctx`: whether it is non-zero,
    /// and its token rate when the RD search found it (`None` from the plain quantizer).
    /// Inlined into the residual coder (a call here cost about 1% of an inter frame).
    #[inline(always)]
    pub fn block(
        &self,
        coeffs: &[i16; 16],
        first: usize,
        bq: &BlockQuant,
        ty: usize,
        ctx: usize,
        levels: &mut [i16; 16],
    ) -> (bool, Option<u32>) {
        match *self {
            Quantizer::Plain => (quantize_block(coeffs, first, bq, levels), None),
            Quantizer::Rd { costs, lambda } => {
                let (nz, rate) =
                    quantize_block_rd(coeffs, first, bq, ty, ctx, costs, lambda, levels);
                (nz, Some(rate))
            }
        }
    }
}

/// The decoder's dequantization: `level * factor` stored as 16 bits (tokens.rs).
pub fn dequantize_block(levels: &[i16; 16], dq: [i16; 2]) -> [i16; 16] {
    std::array::from_fn(|i| (levels[i] as i32 * dq[(i > 0) as usize] as i32) as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocal_quotient_is_exact() {
        for q in 1..=600i32 {
            let bq = BlockQuant::new([q as i16, q as i16], [64, 64]);
            for n in 0..(1u64 << 16) {
                assert_eq!((n * bq.recip[1]) >> 32, n / q as u64, "{n} / {q}");
            }
        }
    }
    use crate::encoder::fdct::fdct4x4;
    use crate::transform::idct4x4;

    /// The SIMD kernel equals the scalar quantizer: every magnitude at every step up to 600
    /// (DC and AC positions, with and without the DC skipped), the extremes (i16::MIN, whose
    /// magnitude does not fit i16; i16::MAX; steps of 1, where the cap binds), and random
    /// blocks under the decoder's real factors.
    #[test]
    fn kernel_matches_scalar() {
        let check = |c: &[i16; 16], first: usize, bq: &BlockQuant| {
            let (mut fast, mut slow) = ([7i16; 16], [9i16; 16]);
            let got = quantize_block(c, first, bq, &mut fast);
            let want = quantize_block_scalar(c, first, bq, &mut slow);
            assert_eq!((got, fast), (want, slow), "{c:?} first {first} {bq:?}");
        };
        for q in 1..=600i16 {
            for rounding in [[56, 48], [64, 64], [127, 0]] {
                let bq = BlockQuant::new([q, q + 3], rounding);
                for first in 0..2 {
                    for start in (-32768i32..32768).step_by(16) {
                        let c: [i16; 16] = std::array::from_fn(|i| (start + i as i32) as i16);
                        check(&c, first, &bq);
                    }
                    check(&[i16::MIN; 16], first, &bq);
                    check(&[i16::MAX; 16], first, &bq);
                    check(&[0; 16], first, &bq);
                }
            }
        }
        let mut seed = 3u64;
        for qi in 0..128 {
            let mq = MbQuant::new(Dequant::new(qi, &QuantIndices::default()), false);
            for bq in [&mq.y, &mq.y2, &mq.uv] {
                for n in 0..200 {
                    let c = lcg_block(&mut seed, [8, 60, 400, 3000][n % 4]);
                    check(&c, n % 2, bq);
                }
            }
        }
    }

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

    fn lcg_block(seed: &mut u64, spread: i64) -> [i16; 16] {
        std::array::from_fn(|i| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = ((*seed >> 33) as i64 % (2 * spread + 1)) - spread;
            // Energy falls off with frequency, as in real residuals.
            (v * 4 / (1 + i as i64)) as i16
        })
    }

    /// `distortion + lambda * rate` of `levels` with the RD quantizer's own model.
    #[allow(clippy::too_many_arguments)]
    fn rd_cost(
        c: &[i16; 16],
        l: &[i16; 16],
        bq: &BlockQuant,
        ty: usize,
        ctx: usize,
        first: usize,
        tc: &TokenCosts,
        lambda: f64,
    ) -> f64 {
        let w = if ty == TYPE_Y2 { 1.0 / 16.0 } else { 0.25 };
        let d: f64 = (first..16)
            .map(|i| {
                let e = c[i].unsigned_abs() as f64
                    - (l[i].unsigned_abs() as i32 * bq.q[(i > 0) as usize]) as f64;
                w * e * e
            })
            .sum();
        d + lambda * tc.block_cost(l, ty, ctx, first) as f64 / BIT as f64
    }

    /// The RD quantizer as first written (one Viterbi step per source and candidate through
    /// slices, "none" markers in the back pointers): the reference the faster one must match
    /// level for level.
    #[allow(clippy::too_many_arguments)]
    fn quantize_block_rd_reference(
        coeffs: &[i16; 16],
        first: usize,
        bq: &BlockQuant,
        ty: usize,
        ctx: usize,
        costs: &TokenCosts,
        lambda: f64,
        levels: &mut [i16; 16],
    ) -> (bool, u32) {
        *levels = [0; 16];
        let eob_first = costs.eob_cost(ty, first, ctx);
        // Most blocks of an inter frame have no coefficient that reaches half a step (nearest
        // level 0 everywhere: `a + q / 2 < q`), and so no level: found with one maximum.
        let half_step = |k: usize| bq.q[k] - bq.q[k] / 2;
        let ac_max = coeffs[1..].iter().map(|c| c.unsigned_abs()).max().unwrap_or(0) as i32;
        let dc = if first == 0 { coeffs[0].unsigned_abs() as i32 } else { 0 };
        if ac_max < half_step(1) && dc < half_step(0) {
            return (false, eob_first);
        }
        let w = if ty == TYPE_Y2 { 1.0 / 16.0 } else { 0.25 };
        let lam = lambda / BIT as f64;
        // Magnitudes and nearest levels in scan order (the step is `bq.q[(i > 0) as usize]`).
        // (a + q / 2) / q by the reciprocal: a <= 2^15 and q / 2 < 2^14, so the quotient is exact
        // (`BlockQuant::recip`); it is 0 below half a step.
        let mut mag = [0i32; 16];
        let mut near = [0i32; 16];
        let mut last = None;
        for i in first..16 {
            let k = (i > 0) as usize;
            let a = coeffs[ZIGZAG[i]].unsigned_abs() as i32;
            mag[i] = a;
            near[i] = ((((a + bq.q[k] / 2) as u64 * bq.recip[k]) >> 32) as i32).min(bq.cap[k]);
            if near[i] > 0 {
                last = Some(i);
            }
        }
        let Some(last) = last else {
            return (false, eob_first);
        };
        // zero_dist[i]: distortion of leaving positions i.. at zero. Each `w * a^2` is exact in
        // f64 (w is 1/4 or 1/16), and so are their sums: summed as integers, then scaled.
        let mut zero_dist = [0f64; 17];
        let mut tail = 0i64;
        for i in (first..16).rev() {
            tail += (mag[i] as i64) * (mag[i] as i64);
            zero_dist[i] = w * tail as f64;
        }
        const NONE: u8 = u8::MAX;
        // back[i][state] = (previous state or NONE for the block start, level at i, the rate of
        // that step).
        let mut back = [[(NONE, 0i32, 0u32); 3]; 16];
        let mut dp = [f64::INFINITY; 3];
        // The all-zero block: one end-of-block token at `first`. Then the best ending so far:
        // its cost, last position and state, and the rate of its end-of-block.
        let mut best = (zero_dist[first] + lam * eob_first as f64, None, eob_first);
        for i in first..=last {
            let (a, q, n) = (mag[i], bq.q[(i > 0) as usize], near[i]);
            let cands = [n, n - 1, 0];
            let cands = &cands[..if n >= 2 { 3 } else { (n + 1) as usize }];
            // Per candidate: its distortion, and its rate in each context (with the not-EOB part).
            let mut dist = [0f64; 3];
            let mut tok = [[0u32; 3]; 3];
            let mut not_eob = [0u32; 3];
            for (k, &m) in cands.iter().enumerate() {
                let e = (a - m * q) as f64;
                dist[k] = w * e * e;
                (tok[k], not_eob) = costs.level_costs(ty, i, m as u32);
            }
            let mut next = [f64::INFINITY; 3];
            let sources: &[(u8, f64)] = &if i == first {
                [(NONE, 0.0), (NONE, f64::INFINITY), (NONE, f64::INFINITY)]
            } else {
                [(0, dp[0]), (1, dp[1]), (2, dp[2])]
            };
            for &(s, base) in sources {
                if !base.is_finite() {
                    continue;
                }
                let (c, check_eob) = if s == NONE { (ctx, true) } else { (s as usize, s != 0) };
                for (k, &m) in cands.iter().enumerate() {
                    let r = tok[k][c] + if check_eob { not_eob[c] } else { 0 };
                    let j = base + dist[k] + lam * r as f64;
                    let ns = m.min(2) as usize;
                    if j < next[ns] {
                        next[ns] = j;
                        back[i][ns] = (s, m, r);
                    }
                }
            }
            dp = next;
            for (ns, &cost) in dp.iter().enumerate().skip(1) {
                let (end, eob) = if i < 15 {
                    let eob = costs.eob_cost(ty, i + 1, ns);
                    (cost + zero_dist[i + 1] + lam * eob as f64, eob)
                } else {
                    (cost, 0)
                };
                if end < best.0 {
                    best = (end, Some((i, ns as u8)), eob);
                }
            }
        }
        let (_, Some((mut i, mut s)), mut rate) = best else {
            return (false, eob_first);
        };
        loop {
            let (prev, m, r) = back[i][s as usize];
            let z = ZIGZAG[i];
            levels[z] = if coeffs[z] < 0 { -m as i16 } else { m as i16 };
            rate += r;
            if prev == NONE {
                break;
            }
            s = prev;
            i -= 1;
        }
        (true, rate)
    }

    #[test]
    fn rd_quantizer_matches_its_reference() {
        use crate::encoder::rdo::skewed_coeff_probs;
        use crate::tables::DEFAULT_COEFF_PROBS;
        // The default probabilities and a skewed set (as a frame's adapted ones are).
        let skewed = skewed_coeff_probs(5);
        for probs in [&DEFAULT_COEFF_PROBS, &skewed] {
            let tc = TokenCosts::new(probs);
            for (n, bq) in [
                BlockQuant::new([20, 24], [56, 48]),
                BlockQuant::new([4, 5], [48, 48]),
                BlockQuant::new([90, 157], [64, 56]),
            ]
            .iter()
            .enumerate()
            {
                let mut seed = 17 + n as u64;
                for t in 0..4000 {
                    let c = lcg_block(&mut seed, [8, 60, 400, 3000][t % 4]);
                    let (ty, first, ctx) =
                        [(3, 0, 0), (0, 1, 1), (1, 0, 2), (2, 0, 1), (0, 1, 0), (3, 0, 2)][t % 6];
                    let lambda = [0.0, 5.0, 17.0, 60.0, 400.0][t / 6 % 5];
                    let (mut fast, mut reference) = ([0i16; 16], [0i16; 16]);
                    let got = quantize_block_rd(&c, first, bq, ty, ctx, &tc, lambda, &mut fast);
                    let want = quantize_block_rd_reference(
                        &c,
                        first,
                        bq,
                        ty,
                        ctx,
                        &tc,
                        lambda,
                        &mut reference,
                    );
                    assert_eq!((got, fast), (want, reference), "{c:?} ty {ty} ctx {ctx}");
                }
            }
        }
    }

    #[test]
    fn rd_quantizer_minimizes_its_cost() {
        use crate::tables::DEFAULT_COEFF_PROBS;
        let tc = TokenCosts::new(&DEFAULT_COEFF_PROBS);
        let bq = BlockQuant::new([20, 24], [56, 48]);
        let mut seed = 11u64;
        let (mut sum_rd, mut sum_plain) = (0.0, 0.0);
        for n in 0..3000 {
            let c = lcg_block(&mut seed, 60);
            let (ty, first, ctx) = [(3, 0, 0), (0, 1, 1), (1, 0, 2), (2, 0, 1)][n % 4];
            let lambda = [0.0, 5.0, 17.0, 60.0][n / 4 % 4];
            let (mut lr, mut lp) = ([0i16; 16], [0i16; 16]);
            let (nz, rate) = quantize_block_rd(&c, first, &bq, ty, ctx, &tc, lambda, &mut lr);
            quantize_block(&c, first, &bq, &mut lp);
            assert_eq!(nz, lr.iter().any(|&v| v != 0));
            assert_eq!(rate, tc.block_cost(&lr, ty, ctx, first), "{c:?} {lr:?}");
            // Signs kept, magnitudes never above the nearest level, DC skipped after Y2.
            for i in 0..16 {
                assert!(lr[i] == 0 || (lr[i] > 0) == (c[i] > 0), "{c:?} {lr:?}");
                let q = bq.q[(i > 0) as usize];
                assert!((lr[i].unsigned_abs() as i32) <= (c[i].unsigned_abs() as i32 + q / 2) / q);
            }
            if first == 1 {
                assert_eq!(lr[0], 0);
            }
            if lambda == 0.0 {
                // No rate term: the nearest levels.
                for i in first..16 {
                    let q = bq.q[(i > 0) as usize];
                    let a = c[i].unsigned_abs() as i32;
                    let n = (a + q / 2) / q;
                    let m = lr[i].unsigned_abs() as i32;
                    assert_eq!((a - m * q).abs(), (a - n * q).abs(), "{c:?} {lr:?}");
                }
            }
            let jr = rd_cost(&c, &lr, &bq, ty, ctx, first, &tc, lambda);
            let jp = rd_cost(&c, &lp, &bq, ty, ctx, first, &tc, lambda);
            assert!(jr <= jp + 1e-6, "rd {jr} > plain {jp}: {c:?} {lr:?} {lp:?}");
            // The all-zero block is always a candidate.
            let j0 = rd_cost(&c, &[0; 16], &bq, ty, ctx, first, &tc, lambda);
            assert!(jr <= j0 + 1e-6);
            sum_rd += jr;
            sum_plain += jp;
        }
        assert!(sum_rd < 0.97 * sum_plain, "{sum_rd} vs {sum_plain}");
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
