//! SPLITMV search: the 16x8, 8x16 and 8x8 partitionings and 4x4 (at Good only where 8x8
//! won), each partition's vector searched and then compared with the free neighbour vectors.

use crate::encoder::analysis::{better, Choice, FrameCtx, MbCtx, RefPic};
use crate::encoder::inter_search::{code_inter, split_info};
use crate::encoder::motion_search::{motion_search, pred_sse, Limits, Rect};
use crate::encoder::rdo::tree_cost;
use crate::frame::Frame;
use crate::mb::Mv;
use crate::modes::sub_mv_context;
use crate::tables::{
    MV_PARTITIONS, MV_PARTITION_COUNTS, MV_PARTITION_PROBS, MV_PARTITION_TREE, SUB_MV_REF_PROBS,
    SUB_MV_REF_TREE,
};

/// SPLITMV with the 16x8, 8x16 and 8x8 partitionings, and 4x4 (at Good only where 8x8 won).
#[allow(clippy::too_many_arguments)]
pub(crate) fn best_split(
    fc: &FrameCtx,
    m: &MbCtx,
    r: &RefPic,
    recon: &mut Frame,
    best_mv: Mv,
    new16: Mv,
    lim: &Limits,
    mode_cost: u32,
) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    // 4x4 (sixteen vectors): 1-3% smaller clips at Best for 40% more time.
    let mut best_part = 0;
    let mut mvs8 = [Mv::default(); 16];
    for part in 0..4 {
        // Good tries 4x4 only where 8x8 was the best partitioning (1.3% smaller clips on
        // carphone, bus and bbb; about 5% slower).
        if part == 3 && !fc.speed.full_split() && best_part != 2 {
            break;
        }
        let map = &MV_PARTITIONS[part];
        let mut mvs = [Mv::default(); 16];
        let mut rate = fc.mc.inter_ref[r.which as usize]
            + mode_cost
            + tree_cost(&MV_PARTITION_TREE, &MV_PARTITION_PROBS, part as u8);
        for j in 0..MV_PARTITION_COUNTS[part] {
            let blocks: Vec<usize> = (0..16).filter(|&b| map[b] as usize == j).collect();
            let k = blocks[0];
            let left = if k & 3 != 0 {
                mvs[k - 1]
            } else {
                m.nb.left.map_or(Mv::default(), |l| l.mvs[k + 3])
            };
            let above = if k >= 4 {
                mvs[k - 4]
            } else {
                m.nb.above.map_or(Mv::default(), |a| a.mvs[k + 12])
            };
            let (x0, y0) = ((k & 3) * 4, (k >> 2) * 4);
            let (x1, y1) = blocks
                .iter()
                .fold((0, 0), |acc, &b| (acc.0.max((b & 3) * 4 + 4), acc.1.max((b >> 2) * 4 + 4)));
            let rect = Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
            // 4x4 partitions also start from the 8x8 vector covering them.
            let starts = [mvs8[k], new16, left, above];
            let starts = if part == 3 { &starts[..] } else { &starts[1..] };
            let (found, found_sse) = motion_search(fc, m, r, recon, rect, starts, best_mv, lim);
            let probs = &SUB_MV_REF_PROBS[sub_mv_context(left, above)];
            // LEFT4X4 ABOVE4X4 ZERO4X4 NEW4X4, priced once for the partition's candidates.
            let leaf: [u32; 4] =
                std::array::from_fn(|k| tree_cost(&SUB_MV_REF_TREE, probs, k as u8));
            let sub_rate = |mv: Mv| -> u32 {
                let mut c = leaf[3] + fc.mc.mv_cost(mv, best_mv).unwrap_or(1 << 24);
                if mv == left {
                    c = c.min(leaf[0]);
                }
                if mv == above {
                    c = c.min(leaf[1]);
                }
                if mv == Mv::default() {
                    c = c.min(leaf[2]);
                }
                c
            };
            // Prefer a free neighbour vector when its prediction is nearly as good.
            let dist = |recon: &mut Frame, mv: Mv| pred_sse(m, r, recon, rect, mv);
            let mut pick = (found, fc.cost(found_sse, sub_rate(found)));
            for cand in [left, above, Mv::default()] {
                if cand != found && lim.ok(cand.row as i32, cand.col as i32) {
                    let j = fc.cost(dist(recon, cand), sub_rate(cand));
                    if j < pick.1 {
                        pick = (cand, j);
                    }
                }
            }
            rate += sub_rate(pick.0);
            for &b in &blocks {
                mvs[b] = pick.0;
            }
        }
        let info = split_info(m, r.which, mvs);
        if part == 2 {
            mvs8 = mvs;
        }
        let c = code_inter(fc, m, r, recon, info, rate);
        if best.as_ref().is_none_or(|b| c.cost < b.cost) {
            best_part = part;
        }
        best = better(best, c);
    }
    best
}
