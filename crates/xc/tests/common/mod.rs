//! Shared helpers for the integration tests: locating the test vectors and decoding IVF files.
#![allow(dead_code)]

use std::path::PathBuf;

use xc::{decode_frame, DecoderState};

/// The test vector directory: `$XC_TEST_VECTORS`, else `shared/vp8-test-vectors` beside the repo
/// (`../../../shared` from this crate at /work/main, `../../../shared` in CI's clone too).
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XC_TEST_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vp8-test-vectors"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: VP8 test vectors not found at {} (set XC_TEST_VECTORS)", dir.display());
        None
    }
}

/// The conformance vectors: every `*.ivf` with an `.md5` in the directory, plus the small-size
/// vector from libvpx's extra test data.
pub fn conformance_vectors(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read vector dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "ivf") && p.with_extension("ivf.md5").exists()
        })
        .collect();
    v.sort();
    let small = dir.join("libvpx-test-data-extra/vp80-06-smallsize.ivf");
    if small.exists() {
        v.push(small);
    }
    v
}

/// Decode a whole file; one `.md5`-format line per shown frame.
pub fn md5_lines(path: &std::path::Path) -> Result<Vec<String>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, frames) = xc::ivf::parse_ivf(&data).map_err(|e| e.to_string())?;
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut state = DecoderState::default();
    let mut lines = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let (next, shown) =
            decode_frame(&state, f.data).map_err(|e| format!("frame {}: {e}", i + 1))?;
        state = next;
        if let Some(fr) = shown {
            lines.push(format!(
                "{}  {stem}-{}x{}-{:04}.i420",
                xc::md5::md5_hex(&fr.to_i420()),
                fr.display_width,
                fr.display_height,
                i + 1
            ));
        }
    }
    Ok(lines)
}
