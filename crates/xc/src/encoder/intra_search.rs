//! Intra mode search: the chroma mode, the 16x16 luma modes and B_PRED (each subblock's mode
//! in turn, predicted from the reconstruction of the ones before it), by RD cost. At Realtime
//! only the mode whose prediction alone costs least is coded; Good screens the modes of inter
//! frames by their prediction before coding the best few.

use crate::encoder::analysis::{better, finish, Choice, FrameCtx, MbCtx, Speed};
use crate::encoder::block::{read_block, read_chroma, read_luma, sub4, write_block, MbPixels};
use crate::encoder::distortion::sse;
use crate::encoder::residual::MbCoder;
use crate::encoder::MbLevels;
use crate::frame::Frame;
use crate::mb::{BMode, MbInfo, MbMode, UvMode};
use crate::predict::intra::{predict_chroma8, predict_luma16, predict_luma4};
use crate::tokens::NzContext;

/// The best chroma intra coding of a macroblock.
struct ChromaChoice {
    cost: f64,
    mode: UvMode,
    levels: MbLevels,
    u: [u8; 64],
    v: [u8; 64],
    /// Token rate plus mode rate.
    rate: u32,
    sse: u64,
    above: NzContext,
    left: NzContext,
}

/// Best chroma intra mode for the macroblock (coded against the reconstruction).
fn best_chroma(
    fc: &FrameCtx,
    m: &MbCtx,
    recon: &mut Frame,
    above: &NzContext,
    left: &NzContext,
) -> ChromaChoice {
    let mut best: Option<ChromaChoice> = None;
    let all = [UvMode::Dc, UvMode::V, UvMode::H, UvMode::Tm];
    let mut screened = Screened::new();
    let modes = intra_candidates(fc, &all, 2, |mode| {
        predict_chroma8(&mut recon.u, m.mbx, m.mby, mode);
        predict_chroma8(&mut recon.v, m.mbx, m.mby, mode);
        let (pu, pv) = screened.keep(mode as usize, read_chroma(recon, m.mbx, m.mby));
        (sse(&m.src.u, &pu) as u64 + sse(&m.src.v, &pv) as u64, fc.mc.uv(mode))
    });
    for mode in modes.iter() {
        let (mut u, mut v) = screened.get(mode as usize, || {
            predict_chroma8(&mut recon.u, m.mbx, m.mby, mode);
            predict_chroma8(&mut recon.v, m.mbx, m.mby, mode);
            read_chroma(recon, m.mbx, m.mby)
        });
        let mut coder = fc.coder(m, *above, *left);
        let mut lv = MbLevels::default();
        coder.chroma_both((&m.src.u, &m.src.v), (&mut u, &mut v), &mut lv);
        let rate = coder.rate + fc.mc.uv(mode);
        let d = sse(&m.src.u, &u) as u64 + sse(&m.src.v, &v) as u64;
        let j = fc.cost(d, rate);
        if best.as_ref().is_none_or(|b| j < b.cost) {
            best = Some(ChromaChoice {
                cost: j,
                mode,
                levels: lv,
                u,
                v,
                rate,
                sse: d,
                above: coder.above,
                left: coder.left,
            });
        }
    }
    best.expect("four chroma modes tried")
}

/// The predictions made while screening intra modes, kept so that the modes then coded are
/// not predicted again (a prediction reads only the pixels above and left of its block, which
/// the screening and the coding of one block's modes do not change; the block's own pixels in
/// the reconstruction are overwritten by the chosen coding). Indexed by mode; up to ten.
struct Screened<P> {
    preds: [Option<P>; 10],
}

impl<P: Copy> Screened<P> {
    fn new() -> Self {
        Screened { preds: [None; 10] }
    }

    /// Keep the prediction of mode `k`, and return it.
    fn keep(&mut self, k: usize, p: P) -> P {
        self.preds[k] = Some(p);
        p
    }

    /// The prediction of mode `k`: the screened one, or `predict`'s when it was not screened.
    fn get(&self, k: usize, predict: impl FnOnce() -> P) -> P {
        self.preds[k].unwrap_or_else(predict)
    }
}

/// Realtime's mode choice: the mode whose prediction alone (`eval` gives its SSE and mode
/// rate) has the lowest RD cost, so that only that one is transformed and quantized.
fn pick_by_prediction<T: Copy>(
    fc: &FrameCtx,
    modes: &[T],
    mut eval: impl FnMut(T) -> (u64, u32),
) -> T {
    let mut best = (f64::MAX, modes[0]);
    for &mode in modes {
        let (d, r) = eval(mode);
        let j = fc.cost(d, r);
        if j < best.0 {
            best = (j, mode);
        }
    }
    best.1
}

/// The intra modes (of `all`) worth coding in full at this speed, the first `len` of `modes`:
/// at Realtime the one whose prediction alone (`eval` gives its SSE and mode rate) costs least,
/// where intra modes are screened ([`FrameCtx::screens_intra`]) the `keep` cheapest, else all
/// of them. A fixed array, not a `Vec`: this runs for every B_PRED subblock tried.
fn intra_candidates<T: Copy, const N: usize>(
    fc: &FrameCtx,
    all: &[T; N],
    keep: usize,
    eval: impl FnMut(T) -> (u64, u32),
) -> Candidates<T, N> {
    if fc.speed == Speed::Realtime {
        Candidates { modes: [pick_by_prediction(fc, all, eval); N], len: 1 }
    } else if fc.screens_intra() {
        top_by_prediction(fc, all, keep, eval)
    } else {
        Candidates { modes: *all, len: N }
    }
}

/// The first `len` of `modes`: the modes to code, best first where they were ranked.
struct Candidates<T, const N: usize> {
    modes: [T; N],
    len: usize,
}

impl<T: Copy, const N: usize> Candidates<T, N> {
    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.modes[..self.len].iter().copied()
    }
}

/// The `k` modes whose prediction alone (`eval` gives its SSE and mode rate) has the lowest
/// RD cost, best first (stable among equal costs: an insertion sort that moves a mode only
/// past strictly costlier ones).
fn top_by_prediction<T: Copy, const N: usize>(
    fc: &FrameCtx,
    modes: &[T; N],
    k: usize,
    mut eval: impl FnMut(T) -> (u64, u32),
) -> Candidates<T, N> {
    let mut scored: [(f64, T); N] = modes.map(|mode| {
        let (d, r) = eval(mode);
        (fc.cost(d, r), mode)
    });
    for i in 1..N {
        let mut j = i;
        while j > 0 && scored[j - 1].0.total_cmp(&scored[j].0).is_gt() {
            scored.swap(j - 1, j);
            j -= 1;
        }
    }
    Candidates { modes: scored.map(|x| x.1), len: k.min(N) }
}

fn implied_bmode(mode: MbMode) -> BMode {
    match mode {
        MbMode::V => BMode::Ve,
        MbMode::H => BMode::He,
        MbMode::Tm => BMode::Tm,
        _ => BMode::Dc,
    }
}

/// The best intra coding of the macroblock: 16x16 modes and B_PRED, with the best chroma mode;
/// `None` when no intra coding can cost less than `bound` (the best inter coding's cost).
pub(crate) fn best_intra(
    fc: &FrameCtx,
    m: &MbCtx,
    recon: &mut Frame,
    bound: f64,
) -> Option<Choice> {
    // An intra coding costs at least its chroma's distortion and rate, its mode rates and the
    // cheaper skip flag; when that floor already reaches `bound`, the inter coding (which wins
    // ties) is kept whatever the luma search finds, so it is not run (7% of bigbuckbunny's
    // macroblocks at qindex 60; a floor without the chroma, before it is chosen, never hit).
    // `FrameCtx::cost` is monotonic in both arguments in floating point too, so the floor never
    // exceeds a real coding's cost: the decisions are the same as without it.
    let min_y_mode = fc.mc.ymode.iter().copied().min().unwrap_or(0);
    let min_skip = fc.mc.skip[0].min(fc.mc.skip[1]);
    let ch = best_chroma(fc, m, recon, &m.above, &m.left);
    let (uv_mode, uv_levels, ur, vr) = (ch.mode, ch.levels, ch.u, ch.v);
    let (uv_rate, uv_sse, ca, cl) = (ch.rate, ch.sse, ch.above, ch.left);
    let uv_mode_rate = fc.mc.uv(uv_mode);
    let uv_tok = uv_rate - uv_mode_rate;
    let base_rate = fc.mc.intra + uv_mode_rate;
    // With chroma levels the macroblock is coded (not skipped) and pays their tokens.
    let uv_floor = if uv_levels.is_zero() { min_skip } else { fc.mc.skip[0] + uv_tok };
    if fc.cost(uv_sse, base_rate + min_y_mode + uv_floor) >= bound {
        return None;
    }
    let mut best: Option<Choice> = None;
    let mut px = MbPixels { y: [0; 256], u: ur, v: vr };
    let all = [MbMode::Dc, MbMode::V, MbMode::H, MbMode::Tm];
    let mut screened = Screened::new();
    let modes = intra_candidates(fc, &all, 2, |mode| {
        predict_luma16(&mut recon.y, m.mbx, m.mby, mode);
        let p = screened.keep(mode as usize, read_luma(recon, m.mbx, m.mby));
        (sse(&m.src.y, &p) as u64, fc.mc.y_mode(mode))
    });
    for mode in modes.iter() {
        // A mode whose floor reaches the best so far (or the inter coding's cost) cannot be
        // chosen: `better` and the inter comparison keep the earlier on ties.
        let best_so_far = best.as_ref().map_or(bound, |b| b.cost.min(bound));
        if fc.cost(uv_sse, base_rate + fc.mc.y_mode(mode) + uv_floor) >= best_so_far {
            continue;
        }
        let mut y = screened.get(mode as usize, || {
            predict_luma16(&mut recon.y, m.mbx, m.mby, mode);
            read_luma(recon, m.mbx, m.mby)
        });
        let mut coder = fc.coder(m, ca, cl);
        let mut levels = uv_levels.clone();
        coder.luma_y2(&m.src.y, &mut y, &mut levels);
        px.y = y;
        let info = MbInfo {
            y_mode: mode,
            uv_mode,
            b_modes: [implied_bmode(mode); 16],
            segment_id: m.segment,
            ..Default::default()
        };
        let c = Choice {
            info,
            levels,
            px,
            rate: 0,
            sse: sse(&m.src.y, &y) as u64 + uv_sse,
            cost: 0.0,
            above: coder.above,
            left: coder.left,
        };
        let c = finish(fc, c, base_rate + fc.mc.y_mode(mode), coder.rate + uv_tok);
        best = better(best, c);
    }
    let best16 = best.as_ref().map_or(f64::MAX, |b| b.cost).min(bound);
    // B_PRED: subblocks in order, each predicted from the reconstruction of the previous ones.
    // B_PRED's floor: its chroma, its mode rates (each subblock's at least `min_bmode`) and
    // the skip flag, with the tokens of the levels so far once any is non-zero (then the
    // macroblock cannot be skipped). At or above `best16` it cannot be chosen.
    let min_bmode = fc.mc.min_bmode;
    let bpred_floor = |dist: u64, rate: u32, left: u32, coded: Option<u32>| {
        let flag = coded.map_or(min_skip, |tokens| fc.mc.skip[0] + tokens);
        fc.cost(dist, rate + left * min_bmode + flag)
    };
    let uv_coded = (!uv_levels.is_zero()).then_some(uv_tok);
    let bpred_rate = base_rate + fc.mc.y_mode(MbMode::BPred);
    if (fc.key_frame || fc.speed != Speed::Realtime)
        && bpred_floor(uv_sse, bpred_rate, 16, uv_coded) < best16
    {
        let above_modes = m.nb.above.map(|a| a.b_modes);
        let left_modes = m.nb.left.map(|l| l.b_modes);
        let mut coder = fc.coder(m, ca, cl);
        let mut levels = uv_levels.clone();
        let mut modes = [BMode::Dc; 16];
        // Mode rates; the token rates are `uv_tok + coder.rate`.
        let mut rate = bpred_rate;
        let mut dist = uv_sse;
        let mut ok = true;
        let mut any_luma = false;
        for b in 0..16 {
            let (bx, by) = (b & 3, b >> 2);
            let am =
                if by > 0 { modes[b - 4] } else { above_modes.map_or(BMode::Dc, |x| x[b + 12]) };
            let lm = if bx > 0 { modes[b - 1] } else { left_modes.map_or(BMode::Dc, |x| x[b + 3]) };
            let src4 = sub4(&m.src.y, 16, bx, by);
            let (x0, y0) = (m.mbx * 16 + bx * 4, m.mby * 16 + by * 4);
            let mut screened = Screened::new();
            let bmodes = intra_candidates(fc, &BMode::ALL, 3, |mode| {
                predict_luma4(&mut recon.y, m.mbx, m.mby, b, mode);
                let p = screened.keep(mode as usize, read_block::<4, 16>(&recon.y, x0, y0));
                (sse(&src4, &p) as u64, fc.mc.b_mode(mode, am, lm))
            });
            let mut bb: Option<SubblockChoice> = None;
            for mode in bmodes.iter() {
                let mut rec = screened.get(mode as usize, || {
                    predict_luma4(&mut recon.y, m.mbx, m.mby, b, mode);
                    read_block::<4, 16>(&recon.y, x0, y0)
                });
                let mut trial = coder.clone();
                let mut lv = [0i16; 16];
                trial.subblock(b, &src4, &mut rec, &mut lv);
                let mode_rate = fc.mc.b_mode(mode, am, lm);
                let d = sse(&src4, &rec);
                let j = fc.cost(d as u64, trial.rate - coder.rate + mode_rate);
                if bb.as_ref().is_none_or(|x| j < x.cost) {
                    bb =
                        Some(SubblockChoice { cost: j, mode, coder: trial, lv, rec, mode_rate, d });
                }
            }
            let c = bb.expect("ten subblock modes tried");
            write_block::<4>(&mut recon.y, x0, y0, &c.rec);
            modes[b] = c.mode;
            levels.blocks[b] = c.lv;
            coder = c.coder;
            rate += c.mode_rate;
            dist += c.d as u64;
            any_luma |= c.lv.iter().any(|&v| v != 0);
            // The bail-out of the partial cost with the tokens so far (not a floor: a skipped
            // macroblock pays none; it decides which B_PRED codings are compared), then the
            // floor, which only stops searches whose coding could not be chosen.
            let coded = (any_luma || uv_coded.is_some()).then_some(uv_tok + coder.rate);
            if fc.cost(dist, rate + uv_tok + coder.rate) > best16
                || bpred_floor(dist, rate, 15 - b as u32, coded) >= best16
            {
                ok = false;
                break;
            }
        }
        if ok {
            px.y = read_luma(recon, m.mbx, m.mby);
            let info = MbInfo {
                y_mode: MbMode::BPred,
                uv_mode,
                b_modes: modes,
                segment_id: m.segment,
                ..Default::default()
            };
            let (above, left) = (coder.above, coder.left);
            let c = Choice { info, levels, px, rate: 0, sse: dist, cost: 0.0, above, left };
            let c = finish(fc, c, rate, uv_tok + coder.rate);
            best = better(best, c);
        }
    }
    best
}

/// The best coding of one B_PRED subblock so far.
struct SubblockChoice<'a> {
    cost: f64,
    mode: BMode,
    /// The macroblock's coder after this subblock.
    coder: MbCoder<'a>,
    lv: [i16; 16],
    rec: [u8; 16],
    mode_rate: u32,
    d: u32,
}
