//! The bitstream writer is the exact inverse of the decoder's parser: random but valid frame
//! decisions are written, parsed back with `inspect::parse_frame` and compared field by field;
//! written streams decode identically with libvpx's `vpxdec`; probability updates pay off.

use super::common;

use common::*;
use xc::bool_decoder::BoolDecoder;
use xc::encoder::bitstream::{write_frame, write_frame_with, EncodeError, WriteOptions};
use xc::encoder::bool_encoder::BoolEncoder;
use xc::encoder::{FrameDecisions, MbLevels};
use xc::header::FrameHeader;
use xc::inspect::parse_frame;
use xc::mb::{BMode, MbInfo, MbMode, Mv, RefFrame, UvMode};
use xc::modes::{find_near_mvs, implied_bmode, MvBounds, Neighbours};
use xc::quant::QuantIndices;
use xc::state::{LfAdjust, Segmentation};
use xc::tables::{BMODE_TREE, MV_PARTITIONS, MV_PARTITION_COUNTS, SMALL_MV_TREE, ZIGZAG};
use xc::{decode_frame, DecoderState};

/// xorshift64*: deterministic test randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.below((hi - lo + 1) as u64) as i32
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[test]
fn bool_encoder_round_trips_bits_literals_and_trees() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    #[derive(Debug)]
    enum Item {
        Bool(u8, bool),
        Literal(u32, u32),
        Signed(u32, i32),
        Tree(u8, u8),
    }
    let mut items = Vec::new();
    for _ in 0..50_000 {
        items.push(match rng.below(4) {
            0 => {
                let p = rng.range(0, 255) as u8;
                // Skewed bits so both likely and unlikely outcomes occur at extreme probabilities.
                Item::Bool(p, (rng.below(256) as u8) >= p)
            }
            1 => {
                let n = rng.range(1, 16) as u32;
                Item::Literal(n, rng.below(1 << n) as u32)
            }
            2 => {
                let n = rng.range(1, 7) as u32;
                Item::Signed(n, rng.range(-(1 << n) + 1, (1 << n) - 1))
            }
            _ => Item::Tree(rng.range(0, 9) as u8, rng.range(1, 255) as u8),
        });
    }
    let tree_probs = |p: u8| [p, 255 - p / 2, 128, p / 2 + 1, 200, 30, 99, 180, 7];
    let mut e = BoolEncoder::new();
    for it in &items {
        match *it {
            Item::Bool(p, b) => e.write_bool(p, b),
            Item::Literal(n, v) => e.write_literal(n, v),
            Item::Signed(n, v) => e.write_signed(n, v),
            Item::Tree(leaf, p) => e.write_tree(&BMODE_TREE, &tree_probs(p), leaf),
        }
    }
    e.write_optional_signed(4, 0);
    e.write_optional_signed(4, -9);
    e.write_tree(&SMALL_MV_TREE, &[1, 255, 2, 254, 128, 3, 77], 6);
    let data = e.finish();
    let mut d = BoolDecoder::new(&data);
    for (i, it) in items.iter().enumerate() {
        match *it {
            Item::Bool(p, b) => assert_eq!(d.read_bool(p), b, "item {i}: {it:?}"),
            Item::Literal(n, v) => assert_eq!(d.read_literal(n), v, "item {i}"),
            Item::Signed(n, v) => assert_eq!(d.read_signed(n), v, "item {i}"),
            Item::Tree(leaf, p) => {
                assert_eq!(d.read_tree(&BMODE_TREE, &tree_probs(p)), leaf, "item {i}")
            }
        }
    }
    assert_eq!(d.read_optional_signed(4), 0);
    assert_eq!(d.read_optional_signed(4), -9);
    assert_eq!(d.read_tree(&SMALL_MV_TREE, &[1, 255, 2, 254, 128, 3, 77]), 6);
    assert!(!d.overrun(), "decoder read past the written data");
    // An empty encoder still yields a (one byte) partition.
    assert_eq!(BoolEncoder::new().finish().len(), 1);
}

/// Options for generated frames.
#[derive(Clone, Copy)]
struct Gen {
    /// Highest level magnitude to generate (2114 = DCT_CAT6's maximum).
    max_level: i32,
    /// Percent of coefficients that are non-zero.
    density: u64,
    /// Percent of macroblocks with no coefficients at all.
    empty_mbs: u64,
    /// Allow the header's reserved / unusual values (color space 1, clamping type 1).
    odd_header: bool,
}

const PARSE_GEN: Gen = Gen { max_level: 2114, density: 12, empty_mbs: 20, odd_header: true };

fn random_level(rng: &mut Rng, g: &Gen) -> i16 {
    // Pick a token category first so every DCT_CAT range is exercised.
    let ranges = [(1, 1), (2, 4), (5, 6), (7, 10), (11, 18), (19, 34), (35, 66), (67, 2114)];
    let (lo, hi) = ranges[rng.below(ranges.len() as u64) as usize];
    let hi = hi.min(g.max_level);
    let lo = lo.min(hi);
    let v = if rng.chance(3) { hi } else { rng.range(lo, hi) };
    (if rng.chance(50) { -v } else { v }) as i16
}

fn random_levels(rng: &mut Rng, g: &Gen, has_y2: bool) -> MbLevels {
    let mut lv = MbLevels::default();
    if rng.chance(g.empty_mbs) {
        return lv;
    }
    for (b, blk) in lv.blocks.iter_mut().enumerate() {
        if b == 24 && !has_y2 {
            continue;
        }
        // Some blocks run to the last scan position, some are empty.
        let dense = rng.chance(10);
        for i in 0..16 {
            if (b < 16 && has_y2 && i == 0) || rng.chance(30) && i > 0 && !dense {
                continue;
            }
            if dense || rng.chance(g.density) {
                blk[ZIGZAG[i]] = random_level(rng, g);
            }
        }
    }
    lv
}

fn random_intra(rng: &mut Rng, segment_id: u8) -> MbInfo {
    let y_mode = MbMode::INTRA[rng.below(5) as usize];
    let b_modes = if y_mode == MbMode::BPred {
        std::array::from_fn(|_| BMode::ALL[rng.below(10) as usize])
    } else {
        [implied_bmode(y_mode); 16]
    };
    MbInfo {
        y_mode,
        uv_mode: UvMode::ALL[rng.below(4) as usize],
        b_modes,
        segment_id,
        ..Default::default()
    }
}

/// A random inter macroblock in the decoder's form, given the already generated neighbours.
#[allow(clippy::too_many_arguments)]
fn random_inter(
    rng: &mut Rng,
    mbs: &[MbInfo],
    cols: usize,
    rows: usize,
    mbx: usize,
    mby: usize,
    sign_bias: &[bool; 4],
    segment_id: u8,
) -> MbInfo {
    let i = mby * cols + mbx;
    let nb = Neighbours {
        above: (mby > 0).then(|| &mbs[i - cols]),
        left: (mbx > 0).then(|| &mbs[i - 1]),
        above_left: (mby > 0 && mbx > 0).then(|| &mbs[i - cols - 1]),
    };
    let ref_frame = [RefFrame::Last, RefFrame::Golden, RefFrame::AltRef][rng.below(3) as usize];
    let near = find_near_mvs(nb, ref_frame, sign_bias);
    let bounds = MvBounds::new(mbx, mby, cols, rows);
    let best = bounds.clamp(near.best);
    let random_mv = |rng: &mut Rng, spread: i32| {
        let mv = Mv {
            row: (best.row as i32 + rng.range(-spread, spread)) as i16,
            col: (best.col as i32 + rng.range(-spread, spread)) as i16,
        };
        bounds.clamp(mv)
    };
    let mut mb = MbInfo { ref_frame, segment_id, ..Default::default() };
    match rng.below(5) {
        0 => mb.y_mode = MbMode::Zero,
        1 => {
            mb.y_mode = MbMode::Nearest;
            mb.mv = bounds.clamp(near.nearest);
        }
        2 => {
            mb.y_mode = MbMode::Near;
            mb.mv = bounds.clamp(near.near);
        }
        3 => {
            mb.y_mode = MbMode::New;
            let spread = [4, 8, 40, 1000][rng.below(4) as usize];
            mb.mv = random_mv(rng, spread);
        }
        _ => {
            mb.y_mode = MbMode::Split;
            let part = rng.below(4) as usize;
            let mut part_mvs = [Mv::default(); 16];
            for j in 0..MV_PARTITION_COUNTS[part] {
                part_mvs[j] = match rng.below(5) {
                    0 => Mv::default(),
                    1 if j > 0 => part_mvs[rng.below(j as u64) as usize],
                    2 => nb.left.map_or(Mv::default(), |l| l.mvs[rng.below(16) as usize]),
                    3 => nb.above.map_or(Mv::default(), |a| a.mvs[rng.below(16) as usize]),
                    _ => {
                        let spread = [3, 20, 400][rng.below(3) as usize];
                        random_mv(rng, spread)
                    }
                };
            }
            for b in 0..16 {
                mb.mvs[b] = part_mvs[MV_PARTITIONS[part][b] as usize];
            }
            mb.mv = mb.mvs[15];
            return mb;
        }
    }
    mb.mvs = [mb.mv; 16];
    mb
}

fn random_header(rng: &mut Rng, key: bool, g: &Gen) -> FrameHeader {
    let r = |rng: &mut Rng| rng.range(-15, 15) as i8 * (rng.chance(60) as i8);
    let mut h = FrameHeader {
        color_space: (g.odd_header && rng.chance(30)) as u8,
        clamping_type: (g.odd_header && rng.chance(30)) as u8,
        update_mb_segmentation_map: rng.chance(60),
        update_segment_feature_data: rng.chance(60),
        simple_filter: rng.chance(30),
        loop_filter_level: rng.range(0, 63) as u8,
        sharpness_level: rng.range(0, 7) as u8,
        log2_nbr_of_dct_partitions: rng.range(0, 3) as u8,
        quant: QuantIndices {
            y_ac_qi: rng.range(0, 127) as u8,
            y_dc_delta: r(rng),
            y2_dc_delta: r(rng),
            y2_ac_delta: r(rng),
            uv_dc_delta: r(rng),
            uv_ac_delta: r(rng),
        },
        refresh_entropy_probs: rng.chance(70),
        mb_no_skip_coeff: rng.chance(70),
        ..Default::default()
    };
    if !key {
        h.refresh_golden_frame = rng.chance(30);
        h.refresh_alternate_frame = rng.chance(30);
        h.copy_buffer_to_golden = if h.refresh_golden_frame { 0 } else { rng.range(0, 2) as u8 };
        h.copy_buffer_to_alternate =
            if h.refresh_alternate_frame { 0 } else { rng.range(0, 2) as u8 };
        h.sign_bias_golden = rng.chance(30);
        h.sign_bias_alternate = rng.chance(30);
        h.refresh_last = rng.chance(80);
    }
    h
}

/// Random but valid decisions for the next frame after `state` (a key frame when `key`).
fn random_frame(
    rng: &mut Rng,
    state: &DecoderState,
    key: bool,
    size: (u16, u16),
    g: &Gen,
) -> FrameDecisions {
    let (width, height) = if key { size } else { (state.width, state.height) };
    let header = random_header(rng, key, g);
    let segmentation = Segmentation {
        enabled: rng.chance(60),
        abs_delta: rng.chance(40),
        quant: std::array::from_fn(|_| rng.range(-127, 127) as i8),
        lf: std::array::from_fn(|_| rng.range(-63, 63) as i8),
    };
    let mut lf_adjust = if key { LfAdjust::default() } else { state.lf.clone() };
    lf_adjust.enabled = rng.chance(60);
    for v in lf_adjust.ref_deltas.iter_mut().chain(lf_adjust.mode_deltas.iter_mut()) {
        if rng.chance(40) {
            *v = rng.range(-63, 63) as i8;
        }
    }
    let (cols, rows) = ((width as usize).div_ceil(16), (height as usize).div_ceil(16));
    let sign_bias = if key {
        [false; 4]
    } else {
        [false, false, header.sign_bias_golden, header.sign_bias_alternate]
    };
    let mut mbs: Vec<MbInfo> = Vec::with_capacity(cols * rows);
    let mut levels = Vec::with_capacity(cols * rows);
    for mby in 0..rows {
        for mbx in 0..cols {
            let seg = rng.below(4) as u8;
            let mb = if key || rng.chance(25) {
                random_intra(rng, seg)
            } else {
                random_inter(rng, &mbs, cols, rows, mbx, mby, &sign_bias, seg)
            };
            let has_y2 = mb.y_mode != MbMode::BPred && mb.y_mode != MbMode::Split;
            levels.push(random_levels(rng, g, has_y2));
            mbs.push(mb);
        }
    }
    FrameDecisions {
        key_frame: key,
        version: 0,
        show_frame: true,
        width,
        height,
        header,
        segmentation,
        lf_adjust,
        mbs,
        levels,
    }
}

/// Write `d`, parse it back from `state`, check every parsed field against `d`, and return the
/// state after decoding it (plus the frame's bytes).
fn write_and_check(
    state: &DecoderState,
    d: &FrameDecisions,
    what: &str,
) -> (DecoderState, Vec<u8>) {
    let data = write_frame(state, d).unwrap_or_else(|e| panic!("{what}: {e}"));
    let p = parse_frame(state, &data).unwrap_or_else(|e| panic!("{what}: parse: {e}"));
    let h = &d.header;
    assert_eq!((p.key_frame, p.show_frame, p.version), (d.key_frame, d.show_frame, d.version));
    assert_eq!((p.width, p.height), (d.width, d.height), "{what}");
    let ph = &p.header;
    assert_eq!(ph.quant, h.quant, "{what}");
    assert_eq!(
        (ph.simple_filter, ph.loop_filter_level, ph.sharpness_level),
        (h.simple_filter, h.loop_filter_level, h.sharpness_level),
        "{what}"
    );
    assert_eq!(ph.log2_nbr_of_dct_partitions, h.log2_nbr_of_dct_partitions);
    assert_eq!(p.partition_sizes.len(), 1 + (1 << h.log2_nbr_of_dct_partitions));
    assert_eq!(ph.refresh_entropy_probs, h.refresh_entropy_probs);
    assert_eq!(ph.mb_no_skip_coeff, h.mb_no_skip_coeff);
    if d.key_frame {
        assert_eq!((ph.color_space, ph.clamping_type), (h.color_space, h.clamping_type));
    } else {
        assert_eq!(
            (
                ph.refresh_golden_frame,
                ph.refresh_alternate_frame,
                ph.copy_buffer_to_golden,
                ph.copy_buffer_to_alternate,
                ph.sign_bias_golden,
                ph.sign_bias_alternate,
                ph.refresh_last
            ),
            (
                h.refresh_golden_frame,
                h.refresh_alternate_frame,
                h.copy_buffer_to_golden,
                h.copy_buffer_to_alternate,
                h.sign_bias_golden,
                h.sign_bias_alternate,
                h.refresh_last
            ),
            "{what}"
        );
    }
    let seg = &d.segmentation;
    assert_eq!(p.segmentation.enabled, seg.enabled, "{what}");
    let map_update = seg.enabled && h.update_mb_segmentation_map;
    if seg.enabled {
        assert_eq!(ph.update_mb_segmentation_map, h.update_mb_segmentation_map);
        assert_eq!(ph.update_segment_feature_data, h.update_segment_feature_data);
        if h.update_segment_feature_data {
            assert_eq!(&p.segmentation, seg, "{what}");
        }
    }
    assert_eq!(p.lf.enabled, d.lf_adjust.enabled);
    if d.lf_adjust.enabled {
        assert_eq!(p.lf, d.lf_adjust, "{what}");
    }
    for (i, ((got, want), lv)) in p.mbs.iter().zip(&d.mbs).zip(&d.levels).enumerate() {
        let mut want = want.clone();
        want.segment_id = if map_update {
            want.segment_id
        } else if d.key_frame {
            0
        } else {
            state.segment_map[i]
        };
        want.skip_coeff = h.mb_no_skip_coeff && lv.is_zero();
        if !want.y_mode.is_inter() {
            want.ref_frame = RefFrame::Intra;
        }
        assert_eq!(got, &want, "{what}: macroblock {i}");
        let dq = &p.dequant[got.segment_id as usize];
        for (b, blk) in lv.blocks.iter().enumerate() {
            let f = match b {
                0..=15 => dq.y,
                16..=23 => dq.uv,
                _ => dq.y2,
            };
            let expect: [i16; 16] =
                std::array::from_fn(|k| (blk[k] as i32 * f[(k > 0) as usize] as i32) as i16);
            assert_eq!(p.coeffs[i][b], expect, "{what}: macroblock {i} block {b}");
        }
    }
    let (next, _) = decode_frame(state, &data).unwrap_or_else(|e| panic!("{what}: decode: {e}"));
    (next, data)
}

#[test]
fn random_key_frames_parse_back_exactly() {
    let mut rng = Rng(0xfeed_beef_0000_0001);
    for (n, size) in
        [(16, 16), (48, 32), (176, 144), (33, 17), (1, 1), (100, 60)].iter().enumerate()
    {
        for rep in 0..3 {
            let d = random_frame(&mut rng, &DecoderState::default(), true, *size, &PARSE_GEN);
            write_and_check(&DecoderState::default(), &d, &format!("key frame {n}.{rep}"));
        }
    }
}

#[test]
fn random_inter_frames_parse_back_exactly() {
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    for (run, size) in [(64, 48), (176, 144), (40, 72)].iter().enumerate() {
        let mut state = DecoderState::default();
        let d = random_frame(&mut rng, &state, true, *size, &PARSE_GEN);
        state = write_and_check(&state, &d, "key").0;
        for f in 1..12 {
            let d = random_frame(&mut rng, &state, false, *size, &PARSE_GEN);
            state = write_and_check(&state, &d, &format!("run {run} frame {f}")).0;
        }
    }
}

#[test]
fn every_inter_mode_and_split_partitioning_occurs() {
    // The generator above must actually produce what the round-trip tests claim to cover.
    let mut rng = Rng(0x0bad_cafe_1234_5678);
    let mut state = DecoderState::default();
    let d = random_frame(&mut rng, &state, true, (176, 144), &PARSE_GEN);
    state = decode_frame(&state, &write_frame(&state, &d).unwrap()).unwrap().0;
    let d = random_frame(&mut rng, &state, false, (176, 144), &PARSE_GEN);
    let p = parse_frame(&state, &write_frame(&state, &d).unwrap()).unwrap();
    for m in
        [MbMode::Zero, MbMode::Nearest, MbMode::Near, MbMode::New, MbMode::Split, MbMode::BPred]
    {
        assert!(p.mbs.iter().any(|mb| mb.y_mode == m), "{m:?} missing");
    }
    for r in [RefFrame::Intra, RefFrame::Last, RefFrame::Golden, RefFrame::AltRef] {
        assert!(p.mbs.iter().any(|mb| mb.ref_frame == r), "{r:?} missing");
    }
    // Distinct sub-MV counts of split macroblocks: 2 (halves), 4 and up to 16 partitions.
    let kinds: std::collections::BTreeSet<usize> = p
        .mbs
        .iter()
        .filter(|mb| mb.y_mode == MbMode::Split)
        .map(|mb| {
            mb.mvs.iter().map(|m| (m.row, m.col)).collect::<std::collections::BTreeSet<_>>().len()
        })
        .collect();
    assert!(kinds.len() >= 3, "split variety {kinds:?}");
}

fn n_mbs(d: &FrameDecisions) -> usize {
    (d.width as usize).div_ceil(16) * (d.height as usize).div_ceil(16)
}

/// Limit levels so every dequantized coefficient is at most 2048 (Y2: 1024) in magnitude, the
/// range real residuals occupy. Beyond it the 16-bit inverse transforms overflow, and libvpx's
/// SIMD transforms wrap differently from the spec's C arithmetic (which xc follows), so such
/// streams are not a test of the bitstream writer.
fn tame_levels(state: &DecoderState, d: &mut FrameDecisions) {
    use xc::quant::{segment_qindex, Dequant};
    let h = &d.header;
    let mut seg = if h.update_segment_feature_data {
        d.segmentation.clone()
    } else if d.key_frame {
        Segmentation::default()
    } else {
        state.segmentation.clone()
    };
    seg.enabled = d.segmentation.enabled;
    let map_update = seg.enabled && h.update_mb_segmentation_map;
    for (i, (mb, lv)) in d.mbs.iter().zip(d.levels.iter_mut()).enumerate() {
        let id = if map_update {
            mb.segment_id
        } else if d.key_frame {
            0
        } else {
            state.segment_map[i]
        } as usize;
        let q = segment_qindex(h.quant.y_ac_qi, seg.enabled, seg.abs_delta, seg.quant[id]);
        let dq = Dequant::new(q, &h.quant);
        for (b, blk) in lv.blocks.iter_mut().enumerate() {
            let (f, limit) = match b {
                0..=15 => (dq.y, 2048),
                16..=23 => (dq.uv, 2048),
                _ => (dq.y2, 1024),
            };
            for (k, v) in blk.iter_mut().enumerate() {
                let m = limit / f[(k > 0) as usize] as i32;
                *v = (*v as i32).clamp(-m, m) as i16;
            }
        }
    }
}

/// Written streams are valid VP8: libvpx decodes every frame to exactly what our decoder does.
#[test]
fn vpxdec_decodes_written_streams_like_our_decoder() {
    if !tools(&["vpxdec"]) {
        return;
    }
    let dir = work_dir("bitstream");
    let g = Gen { max_level: 2114, density: 10, empty_mbs: 25, odd_header: false };
    let mut rng = Rng(0x5eed_0000_aaaa_5555);
    for (run, size) in [(176u16, 144u16), (72, 40), (30, 50)].iter().enumerate() {
        let mut state = DecoderState::default();
        let mut frames = Vec::new();
        let mut ours = Vec::new();
        for f in 0..10 {
            let mut d = random_frame(&mut rng, &state, f == 0 || f == 6, *size, &g);
            d.show_frame = f != 3;
            if f % 2 == 0 {
                // A fine quantizer, so that large tokens survive `tame_levels`.
                d.header.quant =
                    QuantIndices { y_ac_qi: rng.range(0, 6) as u8, ..Default::default() };
                d.segmentation.abs_delta = false;
                d.segmentation.quant = [0, -3, -6, 2];
            }
            tame_levels(&state, &mut d);
            if f == 3 || f == 8 {
                // Both buffer copies at once: libvpx copies to altref first, then golden from
                // the updated altref.
                d.header.refresh_golden_frame = false;
                d.header.refresh_alternate_frame = false;
                d.header.copy_buffer_to_golden = 2;
                d.header.copy_buffer_to_alternate = 2;
            }
            let data = write_frame(&state, &d).unwrap_or_else(|e| panic!("run {run}: {e}"));
            let (next, shown) = decode_frame(&state, &data).unwrap();
            if let Some(fr) = shown {
                ours.push(fr.to_i420());
            }
            state = next;
            frames.push(data);
        }
        let path = dir.join(format!("{run}.ivf"));
        std::fs::write(&path, ivf_file(size.0 as usize, size.1 as usize, &frames)).unwrap();
        let theirs = vpxdec_i420(&path);
        let ours: Vec<u8> = ours.concat();
        assert_eq!(theirs.len(), ours.len(), "run {run}: vpxdec output size");
        let frame_len = ours.len() / 9;
        for (i, (a, b)) in theirs.chunks(frame_len).zip(ours.chunks(frame_len)).enumerate() {
            if let Some(k) = a.iter().zip(b).position(|(x, y)| x != y) {
                let (w, h) = (size.0 as usize, size.1 as usize);
                let (plane, off, pw) = if k < w * h {
                    ("Y", k, w)
                } else {
                    let c = w.div_ceil(2) * h.div_ceil(2);
                    let r = k - w * h;
                    (if r < c { "U" } else { "V" }, r % c, w.div_ceil(2))
                };
                panic!(
                    "run {run}: shown frame {i} differs between vpxdec and xc: first at {plane} \
                     x={} y={} (vpxdec {} xc {}), {} bytes differ",
                    off % pw,
                    off / pw,
                    a[k],
                    b[k],
                    a.iter().zip(b).filter(|(x, y)| x != y).count()
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A frame whose tokens are far from the default statistics: every block holds the same
/// large level at the same place.
fn skewed_key_frame() -> FrameDecisions {
    let (w, h) = (176u16, 144u16);
    let n = 11 * 9;
    let mut lv = MbLevels::default();
    for (b, blk) in lv.blocks.iter_mut().enumerate().take(24) {
        blk[ZIGZAG[3]] = if b % 2 == 0 { 40 } else { -40 };
        blk[ZIGZAG[9]] = 2;
    }
    lv.blocks[24][0] = 300;
    let mb = MbInfo { y_mode: MbMode::Tm, b_modes: [BMode::Tm; 16], ..Default::default() };
    let mut hdr =
        FrameHeader { mb_no_skip_coeff: true, refresh_entropy_probs: true, ..Default::default() };
    hdr.quant.y_ac_qi = 10;
    FrameDecisions {
        key_frame: true,
        show_frame: true,
        width: w,
        height: h,
        header: hdr,
        mbs: vec![mb; n],
        levels: vec![lv; n],
        ..Default::default()
    }
}

#[test]
fn probability_updates_shrink_skewed_frames() {
    let d = skewed_key_frame();
    let s = DecoderState::default();
    let with = write_frame(&s, &d).unwrap();
    let off = WriteOptions { coeff_prob_updates: false, ..Default::default() };
    let without = write_frame_with(&s, &d, &off).unwrap();
    eprintln!("skewed key frame: {} bytes with updates, {} without", with.len(), without.len());
    assert!(
        with.len() * 10 < without.len() * 8,
        "updates: {} bytes, no updates: {} bytes",
        with.len(),
        without.len()
    );
    // Same pictures either way, and the updated probabilities persist (refresh_entropy_probs).
    let (a, fa) = decode_frame(&s, &with).unwrap();
    let (b, fb) = decode_frame(&s, &without).unwrap();
    assert_eq!(fa, fb);
    assert_ne!(a.probs.coeff, b.probs.coeff);
    assert_eq!(b.probs, xc::state::EntropyProbs::default());

    // Inter frame: every macroblock NEWMV with the same delta from its best MV, far from what
    // the default MV probabilities expect; MV probability updates pay off.
    let mut rng = Rng(7);
    let mut d2 = random_frame(&mut rng, &a, false, (176, 144), &PARSE_GEN);
    d2.header.log2_nbr_of_dct_partitions = 0;
    let mut mbs: Vec<MbInfo> = Vec::new();
    for i in 0..n_mbs(&d2) {
        let (mbx, mby) = (i % 11, i / 11);
        let nb = Neighbours {
            above: (mby > 0).then(|| &mbs[i - 11]),
            left: (mbx > 0).then(|| &mbs[i - 1]),
            above_left: (mby > 0 && mbx > 0).then(|| &mbs[i - 12]),
        };
        let near = find_near_mvs(nb, RefFrame::Last, &[false; 4]);
        let best = MvBounds::new(mbx, mby, 11, 9).clamp(near.best);
        let mv = Mv { row: best.row + 6, col: best.col - 5 };
        mbs.push(MbInfo {
            y_mode: MbMode::New,
            ref_frame: RefFrame::Last,
            mv,
            mvs: [mv; 16],
            ..Default::default()
        });
    }
    d2.mbs = mbs;
    d2.levels.iter_mut().for_each(|lv| *lv = MbLevels::default());
    d2.header.sign_bias_golden = false;
    d2.header.sign_bias_alternate = false;
    let with = write_frame(&a, &d2).unwrap();
    let off = WriteOptions { mv_prob_updates: false, ..Default::default() };
    let without = write_frame_with(&a, &d2, &off).unwrap();
    eprintln!("NEWMV frame: {} bytes with MV updates, {} without", with.len(), without.len());
    assert!(with.len() < without.len(), "mv updates: {} vs {}", with.len(), without.len());
    assert_eq!(decode_frame(&a, &with).unwrap().1, decode_frame(&a, &without).unwrap().1);
}

#[test]
fn undecodable_decisions_are_clear_errors() {
    let s = DecoderState::default();
    let good = skewed_key_frame();
    let one_line = |e: EncodeError| {
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.is_empty());
        m
    };
    let mut d = good.clone();
    d.mbs.pop();
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("macroblocks"));
    let mut d = good.clone();
    d.levels[5].blocks[3][7] = 2115;
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("macroblock 5"));
    // Negative levels too, i16::MIN (whose magnitude has no i16) included; the largest codable
    // magnitude is written.
    for (v, ok) in [(-2115, false), (i16::MIN, false), (2114, true), (-2114, true)] {
        let mut d = good.clone();
        d.levels[5].blocks[3][7] = v;
        match write_frame(&s, &d) {
            Ok(_) => assert!(ok, "level {v} written"),
            Err(e) => {
                assert!(!ok, "level {v}: {e}");
                assert!(one_line(e).contains(&format!("level {v} in block 3")));
            }
        }
    }
    let mut d = good.clone();
    d.levels[2].blocks[0][0] = 1; // DC of a luma block in a macroblock with Y2
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("Y2"));
    let mut d = good.clone();
    d.mbs[0].y_mode = MbMode::Zero;
    d.mbs[0].ref_frame = RefFrame::Last;
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("key frame"));
    let mut d = good.clone();
    d.header.quant.uv_dc_delta = 16;
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("uv_dc_delta"));
    let mut d = good.clone();
    d.key_frame = false;
    assert!(one_line(write_frame(&s, &d).unwrap_err()).contains("references"));

    // Inter frame: a NEARESTMV whose MV is not the decoder's nearest.
    let (state, _) = decode_frame(&s, &write_frame(&s, &good).unwrap()).unwrap();
    let mut d = good.clone();
    d.key_frame = false;
    d.mbs[12] = MbInfo {
        y_mode: MbMode::Nearest,
        ref_frame: RefFrame::Last,
        mv: Mv { row: 8, col: 8 },
        ..Default::default()
    };
    let m = one_line(write_frame(&state, &d).unwrap_err());
    assert!(m.contains("macroblock 12") && m.contains("NEARESTMV"), "{m}");
    d.mbs[12].y_mode = MbMode::New;
    d.mbs[12].mv = Mv { row: 2000, col: 0 };
    assert!(one_line(write_frame(&state, &d).unwrap_err()).contains("1023"));
    d.mbs[12].mv = Mv { row: 1000, col: -4 };
    assert!(write_frame(&state, &d).is_ok());
}
