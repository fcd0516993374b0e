//! The examples' Y4M reader: a clip's frames as encoder sources (`source_from_i420`).

use xc::encoder::source_from_i420;
use xc::frame::Frame;

/// The first `max` frames of the 4:2:0 Y4M file at `path`, or a one-line reason.
pub fn read_y4m(path: &str, max: usize) -> Result<Vec<Frame>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let nl = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let header = String::from_utf8_lossy(&data[..nl]).to_string();
    let field = |c: char| -> usize {
        header.split(' ').find_map(|t| t.strip_prefix(c)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let (w, h) = (field('W'), field('H'));
    let size = w * h + 2 * w.div_ceil(2) * h.div_ceil(2);
    let mut frames = Vec::new();
    let mut pos = nl + 1;
    while frames.len() < max && pos + 6 + size <= data.len() {
        pos += data[pos..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
        frames.push(
            source_from_i420(w, h, &data[pos..pos + size]).map_err(|e| format!("{path}: {e}"))?,
        );
        pos += size;
    }
    Ok(frames)
}
