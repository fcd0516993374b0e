//! The buffer-recycling [`xc::decoder::Decoder`] must give exactly what `decode_frame` gives.

mod common;

use std::sync::Arc;

use common::*;
use xc::decoder::Decoder;
use xc::frame::Frame;
use xc::{decode_frame, DecoderState};

/// Every conformance vector: same shown frames and same state after every frame, while the
/// caller keeps every shown frame alive (so none of them may be recycled under it).
#[test]
fn decoder_matches_decode_frame_on_all_vectors() {
    let Some(dir) = vectors_dir() else { return };
    let vectors = conformance_vectors(&dir);
    assert!(vectors.len() >= 62, "expected 62 vectors, found {}", vectors.len());
    for v in &vectors {
        let data = std::fs::read(v).unwrap();
        let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
        let mut state = DecoderState::default();
        let mut dec = Decoder::default();
        let mut kept: Vec<(Arc<Frame>, Frame)> = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let want = decode_frame(&state, f.data);
            let got = dec.decode(f.data);
            match (want, got) {
                (Ok((next, want_shown)), Ok(got_shown)) => {
                    state = next;
                    assert_eq!(dec.state(), &state, "{}: state after frame {}", v.display(), i);
                    assert_eq!(got_shown.is_some(), want_shown.is_some());
                    if let (Some(g), Some(w)) = (got_shown, want_shown) {
                        assert_eq!(*g, w, "{}: frame {}", v.display(), i);
                        // Keep the first few frames for the whole decode.
                        if kept.len() < 3 {
                            kept.push((g, w));
                        }
                    }
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string());
                    assert_eq!(dec.state(), &state, "state must not change on error");
                }
                (a, b) => panic!("{}: frame {i}: {:?} vs {:?}", v.display(), a.err(), b.err()),
            }
        }
        for (g, w) in &kept {
            assert_eq!(**g, *w, "{}: a kept frame was overwritten", v.display());
        }
    }
}

/// Frames released by the decoder are recycled only when unused: decoding while the caller
/// holds on to every earlier state must not change any of them.
#[test]
fn held_states_are_never_recycled() {
    let Some(dir) = vectors_dir() else { return };
    let path = dir.join("vp80-00-comprehensive-007.ivf");
    let data = std::fs::read(path).unwrap();
    let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
    let mut dec = Decoder::default();
    let mut held = Vec::new();
    for f in &frames {
        dec.decode(f.data).unwrap();
        // A deep copy, to compare with later, and the shared state itself.
        let copy: Vec<Option<Frame>> = [&dec.state().last, &dec.state().golden]
            .iter()
            .map(|r| r.as_ref().map(|a| Frame::clone(a)))
            .collect();
        held.push((dec.state().clone(), copy));
    }
    for (i, (state, copy)) in held.iter().enumerate() {
        let now: Vec<Option<Frame>> = [&state.last, &state.golden]
            .iter()
            .map(|r| r.as_ref().map(|a| Frame::clone(a)))
            .collect();
        assert_eq!(&now, copy, "state after frame {i} changed");
    }
}
