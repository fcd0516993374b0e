//! [`xc::inspect::ModeParser`] follows a stream without decoding it; every frame's parse must
//! be exactly what `parse_frame` gives from the decoder's real state (coefficients aside).

use super::common;

use common::*;
use xc::error::DecodeError;
use xc::inspect::{parse_frame, ModeParser, ParsedFrame};
use xc::{decode_frame, DecoderState};

fn assert_same_parse(want: &ParsedFrame, got: &ParsedFrame, what: &str) {
    assert_eq!(got.key_frame, want.key_frame, "{what}: key_frame");
    assert_eq!(got.version, want.version, "{what}: version");
    assert_eq!(got.show_frame, want.show_frame, "{what}: show_frame");
    assert_eq!((got.width, got.height), (want.width, want.height), "{what}: size");
    assert_eq!(got.header, want.header, "{what}: header");
    assert_eq!(got.segmentation, want.segmentation, "{what}: segmentation");
    assert_eq!(got.lf, want.lf, "{what}: loop filter deltas");
    assert_eq!(got.probs, want.probs, "{what}: probabilities");
    assert_eq!(got.dequant, want.dequant, "{what}: dequantization");
    assert_eq!(got.mbs, want.mbs, "{what}: macroblocks");
    assert_eq!(got.partition_sizes, want.partition_sizes, "{what}: partitions");
    assert!(got.coeffs.is_empty(), "{what}: the mode parser returns no coefficients");
}

/// Every conformance vector (segment maps, probability persistence, golden/altref sign
/// biases, multiple partitions): each frame parsed the same as from the decoder's state.
#[test]
fn mode_parser_matches_parse_frame_on_all_vectors() {
    let Some(dir) = vectors_dir() else { return };
    let vectors = conformance_vectors(&dir);
    assert!(vectors.len() >= 62, "expected 62 vectors, found {}", vectors.len());
    let mut frames_checked = 0;
    for v in &vectors {
        let data = std::fs::read(v).unwrap();
        let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
        let mut state = DecoderState::default();
        let mut parser = ModeParser::new(&state);
        for (i, f) in frames.iter().enumerate() {
            let what = format!("{} frame {i}", v.display());
            let want = parse_frame(&state, f.data).unwrap();
            let got = parser.parse(f.data).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_same_parse(&want, &got, &what);
            state = decode_frame(&state, f.data).unwrap().0;
            frames_checked += 1;
        }
    }
    assert!(frames_checked > 1000, "only {frames_checked} frames checked");
}

/// A parser started from a mid-stream state continues like the decoder.
#[test]
fn mode_parser_starts_from_any_state() {
    let Some(dir) = vectors_dir() else { return };
    let v = &conformance_vectors(&dir)[3];
    let data = std::fs::read(v).unwrap();
    let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
    let mut state = DecoderState::default();
    for f in &frames[..5] {
        state = decode_frame(&state, f.data).unwrap().0;
    }
    let mut parser = ModeParser::new(&state);
    for (i, f) in frames.iter().enumerate().skip(5) {
        let want = parse_frame(&state, f.data).unwrap();
        assert_same_parse(&want, &parser.parse(f.data).unwrap(), &format!("frame {i}"));
        state = decode_frame(&state, f.data).unwrap().0;
    }
}

/// What the decoder refuses, the parser refuses too, and a refused frame changes nothing.
#[test]
fn mode_parser_refuses_what_the_decoder_refuses() {
    let Some(dir) = vectors_dir() else { return };
    let v = &conformance_vectors(&dir)[0];
    let data = std::fs::read(v).unwrap();
    let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
    let fresh = DecoderState::default();
    let mut parser = ModeParser::new(&fresh);

    // An inter frame with no key frame before it.
    assert!(matches!(decode_frame(&fresh, frames[1].data), Err(DecodeError::NoReferenceFrame)));
    assert!(matches!(parser.parse(frames[1].data), Err(DecodeError::NoReferenceFrame)));

    // The stream's first key frame cut short: its tokens are checked for completeness.
    let key = frames[0].data;
    let cut = &key[..key.len() * 2 / 3];
    assert!(matches!(decode_frame(&fresh, cut), Err(DecodeError::IncompleteFirstKeyFrame)));
    assert!(matches!(parser.parse(cut), Err(DecodeError::IncompleteFirstKeyFrame)));
    assert!(parser.parse(&key[..3]).is_err());

    // After the refusals the parser is still at the stream's start.
    let mut state = fresh;
    for (i, f) in frames.iter().enumerate().take(10) {
        let want = parse_frame(&state, f.data).unwrap();
        assert_same_parse(&want, &parser.parse(f.data).unwrap(), &format!("frame {i}"));
        state = decode_frame(&state, f.data).unwrap().0;
    }
}
