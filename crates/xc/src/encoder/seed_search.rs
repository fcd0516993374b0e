//! Seeded inter decision: a macroblock's coding chosen among a few candidates built from a
//! decision made elsewhere (the *seed*: another encode of the same frame against references
//! near these, such as the excamera chain's re-decide pass against a proxy of the state the
//! serial step has exactly), instead of a full motion and SPLITMV search.
//!
//! Candidates, each priced by its luma prediction's RD cost (SSE plus the mode's rate):
//! - on the seed's reference, the seed's vector and its four nearest quarter-pel neighbours,
//!   or the seed's SPLITMV vectors as they are;
//! - ZERO, NEAREST and NEAR on every reference;
//! - on the seed's reference, SPLITMV 8x8 with each quarter's vector from a narrow search
//!   (full-pel steps of 2 and 1 within 4 pixels, then quarter-pel) starting from the seed's
//!   vector over it and its left and above vectors: always where the seed is SPLITMV, and
//!   elsewhere only where no one-vector candidate predicts within [`SPLIT_MIN_BITS`].
//!
//! The [`SEED_CODED`] cheapest and the seed's own candidate are coded in full and the best by
//! RD cost is taken. Every mode is derived from the macroblock's final vector against its
//! final neighbours (the cheapest mode that codes it), so a neighbour's change of vector never
//! leaves a mode the decoder would read differently.
//!
//! Measured in the excamera chain's serial step, on the first frame of each re-decided chunk
//! (`ReencodeOpts::seeded_first_frame`, `bench/compression-ideas.md`, ninth and tenth
//! sessions): SSIM / PSNR-Y BD-rate bigbuckbunny +6.7% / +0.3% -> +4.6% / -1.3%, carphone
//! -4.3% / -3.7% -> -6.9% / -5.6%; without the split candidate +5.2% / -0.9% on
//! bigbuckbunny.

use crate::encoder::analysis::{better, Choice, FrameCtx, MbCtx, RefPic};
use crate::encoder::inter_search::{code_inter, inter_info, split_info, Near};
use crate::encoder::modes::inter_mode_cost;
use crate::encoder::motion_search::{motion_search_within, pred_sse, Limits, Rect, WHOLE};
use crate::encoder::rdo::BIT;
use crate::frame::Frame;
use crate::mb::{MbInfo, MbMode, Mv, RefFrame};
use crate::modes::MvBounds;
use crate::predict::inter::{predict_inter_mb, InterFilter};
use crate::tables::{MV_PARTITIONS, MV_PARTITION_COUNTS};

/// How many of the cheapest candidates (by prediction) are coded, besides the seed's own:
/// bigbuckbunny's SSIM BD-rate with one is +5.3%, with two +4.6%, with three (and no split
/// candidate) no better than two. The seed's own candidate is coded too because ranking by
/// prediction alone misjudges it: coding only the cheapest gave +7.7%, worse than keeping
/// the seed's decision as it is (+6.7%).
const SEED_CODED: usize = 2;

/// The 8x8 SPLITMV candidate's full-pel search: first step and range, in pixels.
const SPLIT_SEARCH: (i32, i32) = (2, 4);

/// Where the seed is one vector, the 8x8 SPLITMV candidate is searched only when the best
/// one-vector candidate's prediction costs more than this many bits' worth of RD cost (its SSE
/// plus its rate, over lambda): below it a split rarely pays for its vectors, and the search
/// was the seeded decision's largest cost. Bigbuckbunny's SSIM BD-rate (eight seed
/// neighbours): the split everywhere +4.62%, above 64 bits +4.62%, 256 +4.58%, 512 +4.75%,
/// 1024 +4.87%, nowhere +5.2%. The serial step's instructions at 1280x720: -6% at 256, -10%
/// at 512 (bench/compression-ideas.md, tenth session).
const SPLIT_MIN_BITS: f64 = 256.0;

/// One ranked candidate: prediction RD cost, index of its reference in `fc.refs`, the
/// macroblock record and its mode rate (reference bits included).
type Pick = (f64, usize, MbInfo, u32);

/// The one-vector mode that codes `mv` on a reference most cheaply, with its rate (reference
/// bits excluded); `None` when `mv` is no free vector and too far from `near.best_mv` for
/// NEWMV.
fn whole_mode(near: &Near, fc: &FrameCtx, mv: Mv) -> Option<(MbMode, u32)> {
    let mut best: Option<(MbMode, u32)> = None;
    let mut consider = |mode, rate: u32| {
        if best.is_none_or(|(_, r)| rate < r) {
            best = Some((mode, rate));
        }
    };
    if mv == Mv::default() {
        consider(MbMode::Zero, near.mode_costs[0]);
    }
    if mv == near.nearest {
        consider(MbMode::Nearest, near.mode_costs[1]);
    }
    if mv == near.nearv {
        consider(MbMode::Near, near.mode_costs[2]);
    }
    if let Some(c) = fc.mc.mv_cost(mv, near.best_mv) {
        consider(MbMode::New, near.mode_costs[3] + c);
    }
    best
}

/// The rate of SPLITMV macroblock `info` (reference bits included) as the writer will code it
/// against `m`'s neighbours; `None` when a vector is too far from the best vector to code.
fn split_rate(fc: &FrameCtx, m: &MbCtx, info: &MbInfo) -> Option<u32> {
    let (nb, sign_bias, mv_probs) = (&m.nb, &fc.sign_bias, &fc.mv_probs);
    let rate = inter_mode_cost(nb, info, m.mbx, m.mby, fc.cols, fc.rows, sign_bias, mv_probs);
    Some(rate.ok()? + fc.mc.inter_ref[info.ref_frame as usize])
}

/// The seeded inter coding of macroblock `m` (see the module doc) around `seed`, its record in
/// the seed frame; `None` when no candidate is codable (never in practice: ZERO always is).
pub(crate) fn seeded_inter(
    fc: &FrameCtx,
    m: &MbCtx,
    recon: &mut Frame,
    seed: &MbInfo,
) -> Option<Choice> {
    let bounds = MvBounds::new(m.mbx, m.mby, fc.cols, fc.rows);
    let mut picks: Vec<Pick> = Vec::with_capacity(24);
    let seed_ref =
        (seed.ref_frame != RefFrame::Intra).then(|| fc.ref_index[seed.ref_frame as usize]);
    let mut seed_pick: Option<Pick> = None;
    // The seed's reference: its index, near vectors and search limits (for the split).
    let mut on_seed: Option<(usize, Near, Limits)> = None;
    for (ri, r) in fc.refs.iter().enumerate() {
        let near = Near::new(fc, m, &bounds, r);
        let ref_rate = fc.mc.inter_ref[r.which as usize];
        let mut tried: Vec<Mv> = Vec::with_capacity(12);
        let mut add = |picks: &mut Vec<Pick>, recon: &mut Frame, mv: Mv| -> Option<Pick> {
            if tried.contains(&mv) {
                return None;
            }
            tried.push(mv);
            let (y_mode, rate) = whole_mode(&near, fc, mv)?;
            let rate = ref_rate + rate;
            let j = fc.cost(pred_sse(m, r, recon, WHOLE, mv), rate);
            let info = inter_info(m, r.which, y_mode, mv);
            picks.push((j, ri, info.clone(), rate));
            Some((j, ri, info, rate))
        };
        let on_seed_ref = seed_ref == Some(ri);
        // The seed's own vector first, so that it is the seed's candidate even when it is
        // also a free one (its mode is the cheapest that codes it either way).
        if on_seed_ref && seed.y_mode != MbMode::Split {
            seed_pick = add(&mut picks, recon, seed.mv);
        }
        for mv in [Mv::default(), near.nearest, near.nearv] {
            add(&mut picks, recon, mv);
        }
        if !on_seed_ref {
            continue;
        }
        let lim = Limits::new(&bounds, near.best_mv);
        if seed.y_mode == MbMode::Split {
            let info = MbInfo { ref_frame: r.which, segment_id: m.segment, ..seed.clone() };
            if let Some(rate) = split_rate(fc, m, &info) {
                predict_inter_mb(r.frame, recon, m.mbx, m.mby, &info, InterFilter::SixTap, false);
                let py = crate::encoder::block::read_luma(recon, m.mbx, m.mby);
                let j = fc.cost(crate::encoder::distortion::sse(&m.src.y, &py) as u64, rate);
                picks.push((j, ri, info.clone(), rate));
                seed_pick = Some((j, ri, info, rate));
            }
        } else {
            // The seed's four nearest quarter-pel neighbours (the diagonal four as well gave
            // the same BD-rates on bigbuckbunny and carphone, for four more predictions).
            let c = seed.mv;
            for (dr, dc) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
                let mv = Mv { row: c.row + dr, col: c.col + dc };
                if lim.ok(mv.row as i32, mv.col as i32) {
                    add(&mut picks, recon, mv);
                }
            }
        }
        on_seed = Some((ri, near, lim));
    }
    let best_whole = picks.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let split_worth = seed.y_mode == MbMode::Split
        || best_whole > fc.cost(0, (SPLIT_MIN_BITS * BIT as f64) as u32);
    if let Some((ri, near, lim)) = on_seed.filter(|_| split_worth) {
        if let Some(p) = split8x8(fc, m, &fc.refs[ri], ri, recon, seed, &near, &lim) {
            picks.push(p);
        }
    }
    // Stable: among equal prediction costs the earlier (cheaper to signal) candidate first.
    picks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut coded: Vec<&Pick> = picks.iter().take(SEED_CODED).collect();
    if let Some(s) = &seed_pick {
        if !coded.iter().any(|p| p.1 == s.1 && p.2 == s.2) {
            coded.push(s);
        }
    }
    let mut best = None;
    for &(_, ri, ref info, rate) in coded {
        best = better(best, code_inter(fc, m, &fc.refs[ri], recon, info.clone(), rate));
    }
    best
}

/// The SPLITMV 8x8 candidate on reference `r` (index `ri` in `fc.refs`): each quarter's
/// vector by a narrow search ([`SPLIT_SEARCH`], then quarter-pel) from the seed's vector over
/// it and the quarter's left and above vectors, in coding order; `None` when the vectors
/// cannot be coded.
#[allow(clippy::too_many_arguments)]
fn split8x8(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    ri: usize,
    recon: &mut Frame,
    seed: &MbInfo,
    near: &Near,
    lim: &Limits,
) -> Option<Pick> {
    const PART: usize = 2;
    let map = &MV_PARTITIONS[PART];
    let mut mvs = [Mv::default(); 16];
    let mut d = 0u64;
    for j in 0..MV_PARTITION_COUNTS[PART] {
        let k = (j / 2) * 8 + (j % 2) * 2;
        debug_assert_eq!(map[k] as usize, j);
        let left =
            if k & 3 != 0 { mvs[k - 1] } else { m.nb.left.map_or(Mv::default(), |l| l.mvs[k + 3]) };
        let above =
            if k >= 4 { mvs[k - 4] } else { m.nb.above.map_or(Mv::default(), |a| a.mvs[k + 12]) };
        let rect = Rect { x: (k & 3) * 4, y: (k >> 2) * 4, w: 8, h: 8 };
        let starts = [seed.mvs[k], left, above];
        let (found, sse) = motion_search_within(
            fc,
            m,
            r,
            recon,
            rect,
            &starts,
            near.best_mv,
            lim,
            SPLIT_SEARCH,
            1,
        );
        for b in [k, k + 1, k + 4, k + 5] {
            mvs[b] = found;
        }
        d += sse;
    }
    let info = split_info(m, r.which, mvs);
    let rate = split_rate(fc, m, &info)?;
    Some((fc.cost(d, rate), ri, info, rate))
}
