//! Conformance: every shown frame of every VP8 test vector must match libvpx's MD5.

mod common;

use common::*;

#[test]
fn all_vectors_match_libvpx_md5() {
    let Some(dir) = vectors_dir() else { return };
    let vectors = conformance_vectors(&dir);
    assert!(vectors.len() >= 62, "expected 62 vectors, found {}", vectors.len());
    let mut failures = Vec::new();
    for v in &vectors {
        let expected: Vec<String> = std::fs::read_to_string(v.with_extension("ivf.md5"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        match md5_lines(v) {
            Ok(got) if got == expected => {}
            Ok(got) => {
                let first = got
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(expected.len()));
                failures.push(format!(
                    "{}: {} of {} lines, first mismatch at line {}",
                    v.display(),
                    got.len(),
                    expected.len(),
                    first + 1
                ));
            }
            Err(e) => failures.push(format!("{}: {e}", v.display())),
        }
    }
    println!("{} of {} vectors match", vectors.len() - failures.len(), vectors.len());
    assert!(failures.is_empty(), "mismatching vectors:\n{}", failures.join("\n"));
}

/// The fourcc-I420 copies decode identically (the IVF fourcc is ignored).
#[test]
fn fourcc_is_ignored() {
    let Some(dir) = vectors_dir() else { return };
    for n in 1..=4 {
        let a = dir.join(format!("vp80-03-segmentation-0{n}.ivf"));
        let b =
            dir.join(format!("libvpx-test-data-extra/vp80-03-segmentation-0{n}.fourcc-I420.ivf"));
        let Some(b) = existing(b, "libvpx's extra test vector") else { return };
        let strip = |l: Vec<String>| l.into_iter().map(|s| s[..32].to_owned()).collect::<Vec<_>>();
        assert_eq!(strip(md5_lines(&a).unwrap()), strip(md5_lines(&b).unwrap()));
    }
}

/// libvpx's invalid-file tests: the `.res` file lists libvpx's result per frame (0 = decoded).
/// Decoding continues after a failed frame from the last good state, as a player would.
#[test]
fn invalid_streams_fail_like_libvpx_without_panicking() {
    let Some(dir) = vectors_dir() else { return };
    let extra = dir.join("libvpx-test-data-extra");
    for name in [
        "invalid-vp80-00-comprehensive-018.ivf.2kf_0x6.ivf",
        "invalid-vp80-00-comprehensive-s17661_r01-05_b6-.ivf",
    ] {
        let Some(path) = existing(extra.join(name), "libvpx's invalid-file test") else { return };
        let data = std::fs::read(&path).unwrap();
        let expected: Vec<bool> = std::fs::read_to_string(path.with_extension("ivf.res"))
            .unwrap()
            .split_whitespace()
            .map(|c| c == "0")
            .collect();
        let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
        let mut state = xc::DecoderState::default();
        let mut got = Vec::new();
        for f in &frames {
            match xc::decode_frame(&state, f.data) {
                Ok((next, _)) => {
                    state = next;
                    got.push(true);
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty() && !e.to_string().contains('\n'));
                    got.push(false);
                }
            }
        }
        assert_eq!(got, expected, "{name}: per-frame ok/error pattern differs from libvpx");
        assert!(got.contains(&false), "{name} must fail on some frame");
    }
}

/// Without the vectors the tests above fail (they once printed SKIP and passed); with
/// XC_ALLOW_MISSING_MATERIAL=1 they return with a NOT RUN line.
#[test]
fn missing_vectors_fail_unless_allowed() {
    let nowhere = std::env::temp_dir().join("xc-no-such-vectors");
    let env = [("XC_TEST_VECTORS", nowhere.to_str())];
    assert_missing_material_fails("all_vectors_match_libvpx_md5", &env, "xc-no-such-vectors");
}
