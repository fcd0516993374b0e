//! Decoder behaviour: header parsing on real streams, errors instead of panics on damaged
//! input, and state save/restore mid-stream.

use super::common;

use common::*;
use xc::bool_decoder::BoolDecoder;
use xc::header::{parse_frame_header, parse_uncompressed_chunk};
use xc::state::{EntropyProbs, LfAdjust, Segmentation};
use xc::{decode_frame, DecodeError, DecoderState};

#[test]
fn parses_key_frame_header_of_vector_001() {
    let Some(frames) = vector_frames("vp80-00-comprehensive-001.ivf") else { return };
    let c = parse_uncompressed_chunk(&frames[0]).unwrap();
    assert!(c.tag.key_frame && c.tag.show_frame);
    assert_eq!(c.tag.version, 0);
    let dims = c.dims.unwrap();
    assert_eq!((dims.width, dims.height), (176, 144));
    let rest = &frames[0][c.len..];
    let mut d = BoolDecoder::new(&rest[..c.tag.first_part_size]);
    let (mut seg, mut lf, mut probs, mut saved) =
        (Segmentation::default(), LfAdjust::default(), EntropyProbs::default(), None);
    let h = parse_frame_header(&mut d, true, &mut seg, &mut lf, &mut probs, &mut saved);
    assert!(h.refresh_golden_frame && h.refresh_alternate_frame && h.refresh_last);
    assert!(h.quant.y_ac_qi <= 127 && h.loop_filter_level <= 63 && h.sharpness_level <= 7);
    assert_eq!(saved.is_some(), !h.refresh_entropy_probs);
    assert!(!d.overrun());
    // Every inter frame header parses too, and all partitions are consumed sensibly.
    let mut state = DecoderState::default();
    for (i, f) in frames.iter().enumerate() {
        let c = parse_uncompressed_chunk(f).unwrap();
        assert_eq!(c.tag.key_frame, i == 0);
        state = decode_frame(&state, f).unwrap().0;
    }
}

#[test]
fn inter_frame_without_key_frame_is_an_error() {
    let Some(frames) = vector_frames("vp80-00-comprehensive-001.ivf") else { return };
    let e = decode_frame(&DecoderState::default(), &frames[1]).unwrap_err();
    assert_eq!(e, DecodeError::NoReferenceFrame);
    assert!(e.to_string().contains("key frame"));
}

#[test]
fn empty_and_garbage_frames_are_errors() {
    let s = DecoderState::default();
    assert!(matches!(decode_frame(&s, &[]), Err(DecodeError::TruncatedHeader { .. })));
    assert!(matches!(
        decode_frame(&s, &[0x10, 0, 0, 1, 2, 3, 0, 0, 0, 0]),
        Err(DecodeError::BadStartCode(_))
    ));
    // Key frame claiming a first partition larger than the frame.
    let raw: u32 = (5000 << 5) | (1 << 4);
    let f = [raw as u8, (raw >> 8) as u8, (raw >> 16) as u8, 0x9d, 1, 0x2a, 16, 0, 16, 0, 0, 0];
    assert!(matches!(decode_frame(&s, &f), Err(DecodeError::FirstPartitionTooLong { .. })));
}

/// Truncating or corrupting frames gives an error or a frame, never a panic.
#[test]
fn damaged_frames_never_panic() {
    let Some(frames) = vector_frames("vp80-00-comprehensive-007.ivf") else { return };
    let mut state = DecoderState::default();
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for f in frames.iter().take(6) {
        for cut in [0, 1, 3, 9, 10, 11, f.len() / 3, f.len() / 2, f.len() - 1] {
            let _ = decode_frame(&state, &f[..cut.min(f.len())]);
        }
        for _ in 0..20 {
            let mut g = f.clone();
            for _ in 0..4 {
                let i = rnd() % g.len();
                g[i] ^= 1 << (rnd() % 8);
            }
            let _ = decode_frame(&state, &g);
        }
        state = decode_frame(&state, f).unwrap().0;
    }
}

/// Decode frames 0..k, serialize the state, restore it and continue: output is identical.
#[test]
fn state_round_trip_mid_stream() {
    let Some(dir) = vectors_dir() else { return };
    for name in [
        "vp80-00-comprehensive-004.ivf",
        "vp80-03-segmentation-1436.ivf",
        "vp80-05-sharpness-1438.ivf",
    ] {
        let path = dir.join(name);
        let expected = md5_lines(&path).unwrap();
        let data = std::fs::read(&path).unwrap();
        let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
        for k in [1, frames.len() / 2, frames.len() - 1] {
            let mut state = DecoderState::default();
            let mut got = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                if i == k {
                    let bytes = state.serialize();
                    let restored = DecoderState::deserialize(&bytes).unwrap();
                    assert_eq!(restored.content_hash(), state.content_hash());
                    assert_eq!(restored, state);
                    state = restored;
                }
                let (next, shown) = decode_frame(&state, f.data).unwrap();
                state = next;
                if let Some(fr) = shown {
                    got.push(common::md5::md5_hex(&fr.to_i420()));
                }
            }
            let exp: Vec<&str> = expected.iter().map(|l| &l[..32]).collect();
            assert_eq!(got, exp, "{name}: resumed at frame {k}");
        }
    }
}

/// decode_frame leaves its input state untouched and is deterministic.
#[test]
fn input_state_is_not_modified() {
    let Some(frames) = vector_frames("vp80-00-comprehensive-002.ivf") else { return };
    let (s1, _) = decode_frame(&DecoderState::default(), &frames[0]).unwrap();
    let before = s1.content_hash();
    let (a, fa) = decode_frame(&s1, &frames[1]).unwrap();
    let (b, fb) = decode_frame(&s1, &frames[1]).unwrap();
    assert_eq!(s1.content_hash(), before);
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(fa, fb);
    assert_ne!(a.content_hash(), before);
}

#[test]
fn ivf_errors() {
    assert!(xc::ivf::parse_ivf(b"RIFF0000000000000000000000000000")
        .unwrap_err()
        .to_string()
        .contains("DKIF"));
    assert!(xc::ivf::parse_ivf(b"DKIF").is_err());
    let mut h = b"DKIF\0\0\x20\0VP80".to_vec();
    h.resize(32, 0);
    h.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    assert!(xc::ivf::parse_ivf(&h).unwrap_err().to_string().contains("truncated"));
}

/// Heavier robustness sweep over every vector (run with `--ignored`): bit flips and truncations
/// in every frame must give an error or a frame, never a panic (also under overflow checks).
#[test]
#[ignore]
fn damaged_frames_never_panic_all_vectors() {
    let Some(dir) = vectors_dir() else { return };
    let mut seed = 0x9e37_79b9u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for v in conformance_vectors(&dir) {
        let data = std::fs::read(&v).unwrap();
        let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
        let mut state = DecoderState::default();
        for f in frames.iter().take(12) {
            let f = f.data;
            for _ in 0..8 {
                let mut g = f.to_vec();
                for _ in 0..1 + rnd() % 8 {
                    let i = rnd() % g.len();
                    g[i] = rnd() as u8;
                }
                g.truncate(1 + rnd() % (g.len() + 8));
                if let Ok((s, _)) = decode_frame(&state, &g) {
                    // Keep decoding from the damaged state for one more frame too.
                    let _ = decode_frame(&s, f);
                }
            }
            state = decode_frame(&state, f).unwrap().0;
        }
    }
}
