//! Shared helpers for the integration tests: the outside material (`material`, also compiled
//! into the crate's unit tests) and what needs the crate itself: the conformance vectors,
//! decoding IVF files.
#![allow(dead_code)]

pub mod material;
pub mod md5;

use std::path::{Path, PathBuf};

pub use material::*;
use xc::encoder::source_from_i420;
use xc::frame::Frame;
use xc::{decode_frame, DecoderState};

/// The conformance vectors: every `*.ivf` with an `.md5` in the directory, plus the small-size
/// vector from libvpx's extra test data.
pub fn conformance_vectors(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read vector dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "ivf") && p.with_extension("ivf.md5").exists()
        })
        .collect();
    v.sort();
    let small = dir.join("libvpx-test-data-extra/vp80-06-smallsize.ivf");
    v.extend(existing(small, "libvpx's extra test vector"));
    v
}

/// A test vector's frames, or None after [`missing`].
pub fn vector_frames(name: &str) -> Option<Vec<Vec<u8>>> {
    let path = existing(vectors_dir()?.join(name), "VP8 test vector")?;
    Some(read_ivf(&path))
}

/// Frame `i` of a clip as an encoder source.
pub fn source(clip: &Y4m, i: usize) -> Frame {
    source_from_i420(clip.width, clip.height, &clip.frames[i]).expect("source frame")
}

/// The frames of an IVF file.
pub fn read_ivf(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, frames) =
        xc::ivf::parse_ivf(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    frames.iter().map(|f| f.data.to_vec()).collect()
}

/// Decode a whole file; one `.md5`-format line per shown frame.
pub fn md5_lines(path: &Path) -> Result<Vec<String>, String> {
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
                md5::md5_hex(&fr.to_i420()),
                fr.display_width,
                fr.display_height,
                i + 1
            ));
        }
    }
    Ok(lines)
}
