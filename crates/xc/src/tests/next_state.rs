//! The encoder builds the state after each frame from its own decisions instead of decoding
//! the frame it wrote (`encoder::next_state`). These tests hold that state to the decoder's:
//! every frame the encoder and rebase write is decoded here with `decode_frame`, and the
//! decoder's state must equal the built one (field by field, as serialized bytes and as
//! `content_hash`) and its picture must be the encoder's reconstruction. Inputs: the VP8 test
//! vectors (segmentation and segment maps, 2/4/8 token partitions, mid-stream key frames,
//! loop filter deltas, hidden frames, bitstream versions 1-3) rebased frame by frame, real
//! clips cut in chunks and encoded by vpxenc (plain, with hidden alt-refs, with partitions)
//! rebased as `reencode_chunk` does, and the full encoder with every reference flag.
//!
//! Run with `cargo test --release -p xc --test next_state -- --nocapture` for the counts.

use super::common;

use std::path::Path;

use common::*;

use xc::encoder::next_state::{state_difference, verify_by_decoding};
use xc::encoder::rebase::{
    rebase_frame, reencode_chunk, FirstFrameQuality, LoopFilterChoice, RebaseParams, ReencodeOpts,
};
use xc::encoder::{encode_frame, EncodeError, EncodeParams, EncodedFrame, Speed};
use xc::frame::Frame;
use xc::inspect::parse_frame;
use xc::{decode_frame, DecoderState};

/// Decode `e.data` from `before` and require the decoder's state to be `e.state` and its
/// picture (shown, else the refreshed buffer) to be `e.recon`.
fn assert_built_state_is_decoded(before: &DecoderState, e: &EncodedFrame, what: &str) {
    let (decoded, shown) =
        decode_frame(before, &e.data).unwrap_or_else(|err| panic!("{what}: decode: {err}"));
    if let Some(diff) = state_difference(&decoded, &e.state) {
        panic!("{what}: {diff}");
    }
    assert_eq!(decoded, e.state, "{what}");
    assert_eq!(decoded.serialize(), e.state.serialize(), "{what}: serialized state");
    assert_eq!(decoded.content_hash(), e.state.content_hash(), "{what}: content hash");
    let parsed = parse_frame(before, &e.data).expect("parse");
    let h = &parsed.header;
    let picture = match shown {
        Some(f) => f,
        None if h.refresh_last => (**decoded.last.as_ref().expect("last")).clone(),
        None if h.refresh_golden_frame => (**decoded.golden.as_ref().expect("golden")).clone(),
        None if h.refresh_alternate_frame => (**decoded.altref.as_ref().expect("altref")).clone(),
        None => return,
    };
    assert!(picture == *e.recon, "{what}: decoded picture differs from the reconstruction");
}

/// What the frames checked so far exercised, so a test fails if its inputs stop covering a case.
#[derive(Debug, Default)]
struct Coverage {
    frames: usize,
    key_frames_midstream: usize,
    segment_map_updates: usize,
    segment_data_updates: usize,
    partitions: [usize; 4],
    hidden: usize,
    no_entropy_refresh: usize,
    lf_deltas: usize,
    sign_bias: usize,
    copies: usize,
    versions: [usize; 4],
}

impl Coverage {
    fn note(&mut self, before: &DecoderState, data: &[u8]) {
        let p = parse_frame(before, data).expect("parse written frame");
        let h = &p.header;
        self.frames += 1;
        self.key_frames_midstream += (p.key_frame && before.last.is_some()) as usize;
        self.segment_map_updates +=
            (p.segmentation.enabled && h.update_mb_segmentation_map) as usize;
        self.segment_data_updates +=
            (p.segmentation.enabled && h.update_segment_feature_data) as usize;
        self.partitions[h.log2_nbr_of_dct_partitions as usize] += 1;
        self.hidden += !p.show_frame as usize;
        self.no_entropy_refresh += !h.refresh_entropy_probs as usize;
        self.lf_deltas += p.lf.enabled as usize;
        self.sign_bias += (h.sign_bias_golden || h.sign_bias_alternate) as usize;
        self.copies += (h.copy_buffer_to_golden != 0 || h.copy_buffer_to_alternate != 0) as usize;
        self.versions[p.version as usize] += 1;
    }
}

/// Every test vector rebased frame by frame onto the rebased stream's own state (the prediction
/// stream's decoded pictures as sources), with the rebase options varying from frame to frame.
#[test]
fn rebased_test_vectors_build_the_decoders_state() {
    let Some(dir) = vectors_dir() else { return };
    let mut cov = Coverage::default();
    for path in conformance_vectors(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).expect("read vector");
        let (_, frames) = xc::ivf::parse_ivf(&data).expect("parse ivf");
        let mut orig = DecoderState::default();
        let mut chain = DecoderState::default();
        let mut previous_picture: Option<Frame> = None;
        for (k, f) in frames.iter().enumerate() {
            let parsed = parse_frame(&orig, f.data).expect("parse vector frame");
            let (next, shown) = decode_frame(&orig, f.data).expect("decode vector frame");
            let h = &parsed.header;
            let target = match shown {
                Some(p) => p,
                None if h.refresh_alternate_frame => (**next.altref.as_ref().unwrap()).clone(),
                None if h.refresh_golden_frame => (**next.golden.as_ref().unwrap()).clone(),
                None if h.refresh_last => (**next.last.as_ref().unwrap()).clone(),
                None => previous_picture
                    .clone()
                    .unwrap_or_else(|| (**next.last.as_ref().unwrap()).clone()),
            };
            let params = RebaseParams {
                qindex: (k % 4 == 3)
                    .then(|| parsed.header.quant.y_ac_qi.saturating_add(6).min(127)),
                loop_filter: match k % 3 {
                    0 => LoopFilterChoice::Keep,
                    1 => LoopFilterChoice::Search,
                    _ => LoopFilterChoice::Level(((k * 7) % 64) as u8),
                },
                refresh_all: k % 5 == 4,
                fix_prob_tables: k % 2 == 1,
                choose_refs: k % 4 < 2,
                activity_rd: k % 3 == 2,
                ..Default::default()
            };
            let what = format!("{name} frame {k}");
            let e = rebase_frame(&chain, &parsed, &target, &params)
                .unwrap_or_else(|err| panic!("{what}: {err}"));
            assert_built_state_is_decoded(&chain, &e, &what);
            cov.note(&chain, &e.data);
            chain = e.state;
            orig = next;
            previous_picture = Some(target);
        }
    }
    eprintln!("test vectors: {cov:?}");
    assert!(cov.frames > 500, "{cov:?}");
    for (what, n) in [
        ("mid-stream key frames", cov.key_frames_midstream),
        ("segment map updates", cov.segment_map_updates),
        ("segment data updates", cov.segment_data_updates),
        ("2 partitions", cov.partitions[1]),
        ("4 partitions", cov.partitions[2]),
        ("8 partitions", cov.partitions[3]),
        ("hidden frames", cov.hidden),
        ("refresh_entropy_probs 0", cov.no_entropy_refresh),
        ("loop filter deltas", cov.lf_deltas),
        ("sign biases", cov.sign_bias),
        ("buffer copies", cov.copies),
        ("version 1..3", cov.versions[1] + cov.versions[2] + cov.versions[3]),
    ] {
        assert!(n > 0, "no frame with {what}: {cov:?}");
    }
}

/// vpxenc (two-pass at cq 24, plus `extra`) on frames `range` of `clip`.
fn vpxenc_chunk(
    clip: &Y4m,
    range: std::ops::Range<usize>,
    dir: &Path,
    extra: &[&str],
) -> Vec<Vec<u8>> {
    let tag = format!("{}-{}", range.start, extra.join("").replace(['-', '='], ""));
    let (y4m, ivf) = (dir.join(format!("{tag}.y4m")), dir.join(format!("{tag}.ivf")));
    clip.write(range, &y4m);
    let mut settings: Vec<&str> = "--ivf --codec=vp8 --good --cpu-used=0 --end-usage=cq \
         --min-q=0 --max-q=63 --cq-level=24 --passes=2 --auto-alt-ref=1 --threads=1 \
         --tune=ssim --target-bitrate=4294967295 -q"
        .split_whitespace()
        .collect();
    settings.extend(extra);
    vpxenc(&settings, &y4m, &ivf);
    read_ivf(&ivf)
}

/// The pictures each prediction frame codes toward: the source for shown frames, the
/// prediction stream's own reconstruction for hidden ones.
fn targets(pred: &[Vec<u8>], sources: &[Frame]) -> Vec<Frame> {
    let mut st = DecoderState::default();
    let mut src = sources.iter();
    let mut out = Vec::new();
    for f in pred {
        let h = parse_frame(&st, f).expect("parse").header;
        let (next, shown) = decode_frame(&st, f).expect("decode prediction");
        out.push(match shown {
            Some(_) => src.next().expect("a source per shown frame").clone(),
            None if h.refresh_alternate_frame => (**next.altref.as_ref().unwrap()).clone(),
            None if h.refresh_golden_frame => (**next.golden.as_ref().unwrap()).clone(),
            None => (**next.last.as_ref().unwrap()).clone(),
        });
        st = next;
    }
    out
}

/// Chunks of real clips encoded by vpxenc: chunk 0 stays as vpxenc wrote it, chunk 1 is
/// rebased onto chunk 0's final state as `reencode_chunk` does (first key frame fully encoded
/// as an inter frame at each speed, the rest rebased with options varying per frame), every
/// frame checked against the decoder; then `reencode_chunk` itself runs with `verify` on for
/// each option set, and its final state must be the decoder's after its frames.
#[test]
fn rebased_clip_chunks_build_the_decoders_state() {
    if !tools(&["vpxenc"]) {
        return;
    }
    let cases: [(&str, usize, &[&str]); 5] = [
        ("carphone_qcif_120f.y4m", 8, &[]),
        ("carphone_qcif_120f.y4m", 24, &["--lag-in-frames=16", "--auto-alt-ref=1"]),
        ("bus_cif_17f.y4m", 6, &["--token-parts=1"]),
        ("park_joy_160x90_10f.y4m", 5, &["--token-parts=3"]),
        ("bigbuckbunny_320x180_48f.y4m", 16, &["--lag-in-frames=16", "--auto-alt-ref=1"]),
    ];
    let Some(clips) = cases.iter().map(|c| Y4m::clip(c.0)).collect::<Option<Vec<Y4m>>>() else {
        return;
    };
    let mut cov = Coverage::default();
    for ((name, len, extra), clip) in cases.into_iter().zip(&clips) {
        let dir = work_dir(&format!("next-state-{}", &name[..4]));
        let chunk0 = vpxenc_chunk(clip, 0..len, &dir, extra);
        let chunk1 = vpxenc_chunk(clip, len..2 * len, &dir, extra);
        let sources: Vec<Frame> = (len..2 * len).map(|i| source(clip, i)).collect();
        let mut input = DecoderState::default();
        for f in &chunk0 {
            input = decode_frame(&input, f).expect("decode chunk 0").0;
        }
        let tgt = targets(&chunk1, &sources);

        // The rebase of chunk 0 itself from a fresh state: a key frame, then inter frames.
        let mut st = DecoderState::default();
        let src0: Vec<Frame> = (0..len).map(|i| source(clip, i)).collect();
        for (k, (f, t)) in chunk0.iter().zip(targets(&chunk0, &src0)).enumerate() {
            let parsed = parse_frame(&st, f).expect("parse");
            let params = RebaseParams { refresh_all: k + 1 == chunk0.len(), ..Default::default() };
            let what = format!("{name} chunk 0 frame {k}");
            let e =
                rebase_frame(&st, &parsed, &t, &params).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_built_state_is_decoded(&st, &e, &what);
            cov.note(&st, &e.data);
            st = e.state;
        }

        for speed in [Speed::Realtime, Speed::Good, Speed::Best] {
            let key = parse_frame(&DecoderState::default(), &chunk1[0]).expect("parse key");
            assert!(key.key_frame);
            let params = EncodeParams {
                speed,
                refresh_golden: true,
                refresh_altref: true,
                show_frame: key.show_frame,
                sharpness: key.header.sharpness_level,
                ..EncodeParams::inter(key.header.quant.y_ac_qi)
            };
            let what = format!("{name} first frame at {speed:?}");
            let first =
                encode_frame(&input, &tgt[0], &params).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_built_state_is_decoded(&input, &first, &what);
            cov.note(&input, &first.data);
            // The rest of the chunk, parsed from the prediction stream's own states.
            let mut pst = decode_frame(&DecoderState::default(), &chunk1[0]).unwrap().0;
            let mut st = first.state;
            for k in 1..chunk1.len() {
                let parsed = parse_frame(&pst, &chunk1[k]).expect("parse");
                let params = RebaseParams {
                    refresh_all: k + 1 == chunk1.len() || k % 4 == 2,
                    fix_prob_tables: k % 2 == 0,
                    loop_filter: if k % 3 == 0 {
                        LoopFilterChoice::Search
                    } else {
                        LoopFilterChoice::Keep
                    },
                    choose_refs: k % 3 != 1,
                    ..Default::default()
                };
                let what = format!("{name} chunk 1 frame {k} ({speed:?} first frame)");
                let e = rebase_frame(&st, &parsed, &tgt[k], &params)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_built_state_is_decoded(&st, &e, &what);
                cov.note(&st, &e.data);
                st = e.state;
                pst = decode_frame(&pst, &chunk1[k]).unwrap().0;
            }
        }

        // reencode_chunk with its own verification on, over its option sets.
        // (fix_prob_tables, first frame quality, speed, keep golden / no last refresh-all /
        // choose references)
        for (fix, quality, speed, refs) in [
            (false, FirstFrameQuality::default(), Speed::Realtime, false),
            (true, FirstFrameQuality::default(), Speed::Good, true),
            (false, FirstFrameQuality::Weighted, Speed::Good, false),
            (true, FirstFrameQuality::Weighted, Speed::Realtime, true),
            (false, FirstFrameQuality::default(), Speed::Realtime, true),
        ] {
            let opts = ReencodeOpts {
                fix_prob_tables: fix,
                first_frame_quality: quality,
                kf_q_weight: 0.75,
                first_frame_speed: speed,
                first_frame_keeps_golden: refs,
                last_frame_refresh_all: !refs,
                choose_refs: refs,
                verify: true,
                ..Default::default()
            };
            let out = reencode_chunk(&input, &chunk1, None, &sources, &opts).unwrap_or_else(|e| {
                panic!("{name} reencode {fix} {quality:?} {speed:?} {refs}: {e}")
            });
            let mut st = input.clone();
            for f in &out.frames {
                st = decode_frame(&st, f).expect("decode re-encoded chunk").0;
            }
            assert_eq!(st.serialize(), out.state.serialize(), "{name} reencode_chunk state");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    eprintln!("clips: {cov:?}");
    assert!(cov.hidden > 0 && cov.partitions[1] > 0 && cov.partitions[3] > 0, "{cov:?}");
}

/// The full encoder's frames with every reference flag combination, hidden frames, partitions
/// and a key frame after inter frames.
#[test]
fn encoded_frames_build_the_decoders_state() {
    let Some(clip) = Y4m::clip("park_joy_160x90_10f.y4m") else { return };
    let mut st = DecoderState::default();
    let mut cov = Coverage::default();
    for i in 0..10 {
        let base = if i == 0 || i == 7 { EncodeParams::key(30) } else { EncodeParams::inter(30) };
        let params = EncodeParams {
            speed: [Speed::Realtime, Speed::Good][i % 2],
            refresh_last: i % 3 != 1,
            refresh_golden: base.refresh_golden || i % 4 == 1,
            refresh_altref: base.refresh_altref || i == 5,
            copy_to_golden: [0, 1, 2][i % 3] * (i % 4 != 1) as u8,
            copy_to_altref: [2, 0, 1][i % 3] * (i != 5) as u8,
            sign_bias_golden: i % 2 == 1,
            sign_bias_altref: i % 3 == 2,
            log2_partitions: (i % 4) as u8,
            show_frame: i % 5 != 3,
            loop_filter_level: (i % 2 == 0).then_some(i as u8 * 5),
            ..base
        };
        let what = format!("park_joy frame {i}");
        let e =
            encode_frame(&st, &source(&clip, i), &params).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_built_state_is_decoded(&st, &e, &what);
        let v = encode_frame(&st, &source(&clip, i), &EncodeParams { verify: true, ..params })
            .unwrap_or_else(|e| panic!("{what} verified: {e}"));
        assert_eq!(v.data, e.data, "{what}: verifying changes nothing");
        cov.note(&st, &e.data);
        st = e.state;
    }
    assert!(cov.key_frames_midstream == 1 && cov.hidden == 2 && cov.copies > 0, "{cov:?}");
    assert!(cov.sign_bias > 0 && cov.partitions.iter().all(|&n| n > 0), "{cov:?}");
}

/// Verification catches a built state or picture that the decoder does not reach, and names
/// what differs.
#[test]
fn verification_rejects_a_wrong_state_or_picture() {
    let Some(clip) = Y4m::clip("park_joy_160x90_10f.y4m") else { return };
    let key = encode_frame(&DecoderState::default(), &source(&clip, 0), &EncodeParams::key(40))
        .expect("key frame");
    let st = key.state;
    let (decisions, recon) =
        xc::encoder::analyze_frame(&st, &source(&clip, 1), &EncodeParams::inter(40)).unwrap();
    let e = xc::encoder::next_state::finish_frame(
        &st,
        &decisions,
        recon.clone(),
        &Default::default(),
        true,
    )
    .expect("verified frame");
    verify_by_decoding(&st, &e.data, &decisions, &e.state, &recon).expect("consistent");

    let mut wrong = e.state.clone();
    wrong.probs.coeff[1][2][0][3] ^= 1;
    let err = verify_by_decoding(&st, &e.data, &decisions, &wrong, &recon).unwrap_err();
    assert!(
        matches!(&err, EncodeError::StateMismatch(m) if m.contains("coefficient probabilities")),
        "{err}"
    );
    let mut wrong = e.state.clone();
    wrong.segment_map[3] = 2;
    let err = verify_by_decoding(&st, &e.data, &decisions, &wrong, &recon).unwrap_err();
    assert!(matches!(&err, EncodeError::StateMismatch(m) if m.contains("segment map")), "{err}");
    let mut wrong = e.state.clone();
    wrong.golden = wrong.last.clone();
    let err = verify_by_decoding(&st, &e.data, &decisions, &wrong, &recon).unwrap_err();
    assert!(matches!(&err, EncodeError::StateMismatch(m) if m.contains("golden")), "{err}");
    let mut bad_recon = recon.clone();
    bad_recon.y.data[100] ^= 4;
    let err = verify_by_decoding(&st, &e.data, &decisions, &e.state, &bad_recon).unwrap_err();
    assert_eq!(err, EncodeError::ReconstructionMismatch);
}
