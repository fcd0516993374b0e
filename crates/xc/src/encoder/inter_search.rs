//! Inter mode search: for each usable reference, ZERO, NEAREST, NEAR and NEWMV (the vector
//! from `motion_search`), and SPLITMV where the effort level tries it (`split_search`), each
//! coded in full and with no residual; Realtime ranks its candidates by their prediction alone
//! and codes only the best few.

use crate::encoder::analysis::{better, finish, Choice, FrameCtx, MbCtx, RefPic, Speed};
use crate::encoder::block::read_mb;
use crate::encoder::distortion::sse;
use crate::encoder::motion_search::{motion_search, pred_sse, Limits, WHOLE};
use crate::encoder::rdo::inter_mode_costs;
use crate::encoder::split_search::best_split;
use crate::encoder::MbLevels;
use crate::frame::Frame;
use crate::mb::{MbInfo, MbMode, Mv, RefFrame};
use crate::modes::{find_near_mvs, MvBounds};
use crate::predict::inter::{predict_inter_mb, InterFilter};
use crate::tokens::skip_mb_tokens;

/// Code an inter candidate (prediction already described by `info`) and return its choice;
/// also the zero-residual variant when that is cheaper.
pub(crate) fn code_inter(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    info: MbInfo,
    mode_rate: u32,
) -> Choice {
    predict_inter_mb(r.frame, recon, m.mbx, m.mby, &info, InterFilter::SixTap, false);
    let pred = read_mb(recon, m.mbx, m.mby);
    let mut coder = fc.coder(m, m.above, m.left);
    let mut levels = MbLevels::default();
    let mut px = pred;
    let split = info.y_mode == MbMode::Split;
    if split {
        coder.luma_nodc(&m.src.y, &mut px.y, &mut levels);
    } else {
        coder.luma_y2(&m.src.y, &mut px.y, &mut levels);
    }
    coder.chroma_both((&m.src.u, &m.src.v), (&mut px.u, &mut px.v), &mut levels);
    let d = sse(&m.src.y, &px.y) as u64 + sse(&m.src.u, &px.u) as u64 + sse(&m.src.v, &px.v) as u64;
    let (above, left) = (coder.above, coder.left);
    let coded = Choice { info: info.clone(), levels, px, rate: 0, sse: d, cost: 0.0, above, left };
    let coded = finish(fc, coded, mode_rate, coder.rate);
    // The same prediction with no residual at all.
    let d0 = sse(&m.src.y, &pred.y) as u64
        + sse(&m.src.u, &pred.u) as u64
        + sse(&m.src.v, &pred.v) as u64;
    let (mut a0, mut l0) = (m.above, m.left);
    skip_mb_tokens(&mut a0, &mut l0, !split);
    let skip = Choice {
        info,
        levels: MbLevels::default(),
        px: pred,
        rate: 0,
        sse: d0,
        cost: 0.0,
        above: a0,
        left: l0,
    };
    let skip = finish(fc, skip, mode_rate, 0);
    if skip.cost < coded.cost {
        skip
    } else {
        coded
    }
}

/// [`code_inter`] of a one-vector mode (ZERO, NEAREST, NEAR, NEWMV) of reference `r`.
fn code_whole(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    y_mode: MbMode,
    mv: Mv,
    mode_rate: u32,
) -> Choice {
    code_inter(fc, m, r, recon, inter_info(m, r.which, y_mode, mv), mode_rate)
}

/// The record of macroblock `m` predicted from `which` in the one-vector mode `y_mode` with
/// vector `mv`.
pub(crate) fn inter_info(m: &MbCtx, which: RefFrame, y_mode: MbMode, mv: Mv) -> MbInfo {
    MbInfo {
        y_mode,
        ref_frame: which,
        mv,
        mvs: [mv; 16],
        segment_id: m.segment,
        ..Default::default()
    }
}

/// The record of SPLITMV macroblock `m` predicted from `which` with subblock vectors `mvs`
/// (the last one is the macroblock's vector, as the spec's near-vector search reads it).
pub(crate) fn split_info(m: &MbCtx, which: RefFrame, mvs: [Mv; 16]) -> MbInfo {
    let y_mode = MbMode::Split;
    MbInfo {
        y_mode,
        ref_frame: which,
        mv: mvs[15],
        mvs,
        segment_id: m.segment,
        ..Default::default()
    }
}

/// The vectors a reference's one-vector modes use and the modes' rates.
pub(crate) struct Near {
    /// The NEWMV reference vector.
    pub(crate) best_mv: Mv,
    pub(crate) nearest: Mv,
    pub(crate) nearv: Mv,
    /// ZERO NEAREST NEAR NEW SPLIT.
    pub(crate) mode_costs: [u32; 5],
}

impl Near {
    pub(crate) fn new(fc: &FrameCtx, m: &MbCtx, bounds: &MvBounds, r: &RefPic) -> Self {
        let near = find_near_mvs(m.nb, r.which, &fc.sign_bias);
        Near {
            best_mv: bounds.clamp(near.best),
            nearest: bounds.clamp(near.nearest),
            nearv: bounds.clamp(near.near),
            mode_costs: inter_mode_costs(&near.cnt),
        }
    }
}

/// The best inter coding of the macroblock over all usable references.
pub(crate) fn best_inter(fc: &FrameCtx, m: &MbCtx, recon: &mut Frame) -> Option<Choice> {
    if fc.speed == Speed::Realtime {
        return best_inter_fast(fc, m, recon);
    }
    let mut best: Option<Choice> = None;
    let bounds = MvBounds::new(m.mbx, m.mby, fc.cols, fc.rows);
    for r in &fc.refs {
        let Near { best_mv, nearest, nearv, mode_costs } = Near::new(fc, m, &bounds, r);
        let lim = Limits::new(&bounds, best_mv);
        let (new_mv, _) =
            motion_search(fc, m, r, recon, WHOLE, &[nearest, nearv, best_mv], best_mv, &lim);
        let ref_rate = fc.mc.inter_ref[r.which as usize];
        let mut tried: Vec<Mv> = Vec::new();
        for (mode, mv, mcost) in [
            (MbMode::Zero, Mv::default(), mode_costs[0]),
            (MbMode::Nearest, nearest, mode_costs[1]),
            (MbMode::Near, nearv, mode_costs[2]),
            (
                MbMode::New,
                new_mv,
                mode_costs[3] + fc.mc.mv_cost(new_mv, best_mv).unwrap_or(1 << 24),
            ),
        ] {
            if tried.contains(&mv) {
                continue;
            }
            tried.push(mv);
            let c = code_whole(fc, m, r, recon, mode, mv, ref_rate + mcost);
            best = better(best, c);
        }
        // Good tries SPLITMV on the last frame only, and only when the best coding so far
        // has a residual (carphone, bus, bbb: 9-15% smaller than without SPLITMV, about as
        // fast as before with intra screening; on every reference always: 0.7% smaller
        // still, 60% slower).
        let split_here = match fc.speed {
            Speed::Best | Speed::GoodSplit => true,
            Speed::Good => {
                r.which == RefFrame::Last && best.as_ref().is_none_or(|b| !b.levels.is_zero())
            }
            Speed::GoodRefs => best.as_ref().is_none_or(|b| !b.levels.is_zero()),
            Speed::Realtime => false,
        };
        if split_here {
            if let Some(c) = best_split(fc, m, r, recon, best_mv, new_mv, &lim, mode_costs[4]) {
                best = better(best, c);
            }
        }
    }
    best
}

/// How many of Realtime's best-predicting inter candidates are transformed and quantized.
const FAST_INTER_CODED: usize = 2;

/// Realtime's inter choice: ZERO, NEAREST and NEAR (and NEWMV, searched only when none of
/// them predicts the luma well) are ranked by the RD cost of their prediction alone, and only
/// the best [`FAST_INTER_CODED`] are transformed and quantized.
fn best_inter_fast(fc: &FrameCtx, m: &MbCtx, recon: &mut Frame) -> Option<Choice> {
    let bounds = MvBounds::new(m.mbx, m.mby, fc.cols, fc.rows);
    let q = fc.quant[m.segment as usize & 3].dq.y[1] as f64;
    // Below a mean squared error of (q / 16)^2 per pixel a search rarely pays (tried: (q / 4)^2
    // and (q / 8)^2 cost 25% and 0.5% more inter-frame bytes on bus).
    let good_enough = q * q;
    #[allow(clippy::type_complexity)]
    let mut picks: Vec<(f64, &RefPic, MbMode, Mv, u32)> = Vec::with_capacity(12);
    for r in &fc.refs {
        let Near { best_mv, nearest, nearv, mode_costs } = Near::new(fc, m, &bounds, r);
        let ref_rate = fc.mc.inter_ref[r.which as usize];
        let mut tried: [Option<Mv>; 3] = [None; 3];
        let mut local = f64::MAX;
        for (k, (mode, mv, mcost)) in [
            (MbMode::Zero, Mv::default(), mode_costs[0]),
            (MbMode::Nearest, nearest, mode_costs[1]),
            (MbMode::Near, nearv, mode_costs[2]),
        ]
        .into_iter()
        .enumerate()
        {
            if tried.contains(&Some(mv)) {
                continue;
            }
            tried[k] = Some(mv);
            let rate = ref_rate + mcost;
            let j = fc.cost(pred_sse(m, r, recon, WHOLE, mv), rate);
            local = local.min(j);
            picks.push((j, r, mode, mv, rate));
        }
        if local > good_enough {
            let lim = Limits::new(&bounds, best_mv);
            let (new_mv, new_sse) =
                motion_search(fc, m, r, recon, WHOLE, &[nearest, nearv, best_mv], best_mv, &lim);
            if !tried.contains(&Some(new_mv)) {
                if let Some(mvc) = fc.mc.mv_cost(new_mv, best_mv) {
                    let rate = ref_rate + mode_costs[3] + mvc;
                    let j = fc.cost(new_sse, rate);
                    picks.push((j, r, MbMode::New, new_mv, rate));
                }
            }
        }
    }
    // Stable: among equal prediction costs the earlier (cheaper to signal) candidate first.
    picks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = None;
    for &(_, r, mode, mv, rate) in picks.iter().take(FAST_INTER_CODED) {
        best = better(best, code_whole(fc, m, r, recon, mode, mv, rate));
    }
    best
}
