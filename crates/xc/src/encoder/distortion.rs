//! Distortion measures of the encoder: sums of squared and absolute differences of pixel runs,
//! and the SSE and PSNR of whole frames.
//!
//! The pipelines' own quality report (PSNR over a clip, SSIM, BD-rate) is Python's
//! `excamera.metrics`; these are what the encoder's decisions and its quality searches need.

use crate::frame::Frame;

/// Sum of squared differences of two equally sized pixel runs.
#[inline]
pub fn sse(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(&x, &y)| (x as i32 - y as i32).pow(2) as u32).sum()
}

/// Sum of absolute differences of two equally sized pixel runs.
#[inline]
pub fn sad(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs()).sum()
}

/// Sum of squared errors between two frames over the display area of all three planes.
pub fn frame_sse(a: &Frame, b: &Frame) -> u64 {
    let (w, h) = (a.display_width, a.display_height);
    let mut total = 0u64;
    for (pa, pb, pw, ph) in [
        (&a.y, &b.y, w, h),
        (&a.u, &b.u, w.div_ceil(2), h.div_ceil(2)),
        (&a.v, &b.v, w.div_ceil(2), h.div_ceil(2)),
    ] {
        for r in 0..ph {
            let (oa, ob) = (r * pa.stride, r * pb.stride);
            total += sse(&pa.data[oa..oa + pw], &pb.data[ob..ob + pw]) as u64;
        }
    }
    total
}

/// PSNR of `b` against `a` over the display area (all planes together).
pub fn psnr(a: &Frame, b: &Frame) -> f64 {
    let (w, h) = (a.display_width, a.display_height);
    let n = (w * h + 2 * w.div_ceil(2) * h.div_ceil(2)) as f64;
    let mse = frame_sse(a, b) as f64 / n;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}
