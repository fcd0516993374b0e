//! Distortion measures of the encoder: sums of squared and absolute differences of pixel runs,
//! and the SSE and PSNR of whole frames.
//!
//! The pipelines' own quality report (PSNR over a clip, SSIM, BD-rate) is Python's
//! `excamera.metrics`; these are what the encoder's decisions and its quality searches need.

use crate::frame::Frame;

/// Sum of squared differences of two equally sized pixel runs (of at most 2^16 pixels, so
/// the sum fits 32 bits).
///
/// On x86_64 the SSE2 kernel of `distortion_sse2.rs` takes sixteen pixels at a time (the
/// scalar loop, which the compiler widens to 32-bit lanes, was 6% of a rebase's time).
#[inline]
pub fn sse(a: &[u8], b: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    return sse2::sse(a, b);
    #[cfg(not(target_arch = "x86_64"))]
    sse_scalar(a, b)
}

/// [`sse`] in plain Rust: the reference the SIMD kernel is tested against, and its tail.
#[inline]
fn sse_scalar(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(&x, &y)| (x as i32 - y as i32).pow(2) as u32).sum()
}

#[cfg(target_arch = "x86_64")]
#[path = "distortion_sse2.rs"]
mod sse2;

/// The sum and the sum of squares of the 16x16 block of `data` (rows `stride` apart) whose
/// top-left pixel is at `at`: a macroblock's mean and variance.
///
/// On x86_64 the SSE2 kernel of `distortion_sse2.rs` takes a row at a time (the scalar loop,
/// for every macroblock of every rebased frame with `--activity-rd`, was 3% of a 720p rebase's
/// instructions).
#[inline]
pub(crate) fn block16_sums(data: &[u8], stride: usize, at: usize) -> (u32, u32) {
    assert!(data.len() >= at + 15 * stride + 16, "a 16x16 block at {at} overruns the plane");
    #[cfg(target_arch = "x86_64")]
    return sse2::block16_sums(data, stride, at);
    #[cfg(not(target_arch = "x86_64"))]
    block16_sums_scalar(data, stride, at)
}

/// [`block16_sums`] in plain Rust: the reference the SIMD kernel is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn block16_sums_scalar(data: &[u8], stride: usize, at: usize) -> (u32, u32) {
    let (mut sum, mut sum2) = (0u32, 0u32);
    for r in 0..16 {
        for &v in &data[at + r * stride..][..16] {
            sum += v as u32;
            sum2 += v as u32 * v as u32;
        }
    }
    (sum, sum2)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD block sums equal the scalar ones: random pixels, flat blocks at 0 and 255 (the
    /// largest sums), and blocks at the plane's end.
    #[test]
    fn block16_sums_kernel_matches_scalar() {
        let mut seed = 11u64;
        let (stride, rows) = (40, 20);
        let mut data: Vec<u8> = (0..stride * rows)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        for at in [0, 1, 7, 24, stride + 3, (rows - 16) * stride + stride - 16] {
            assert_eq!(block16_sums(&data, stride, at), block16_sums_scalar(&data, stride, at));
        }
        for v in [0u8, 1, 128, 255] {
            data.fill(v);
            let n = 256 * v as u32;
            assert_eq!(block16_sums(&data, stride, 5), (n, n * v as u32));
            assert_eq!(block16_sums_scalar(&data, stride, 5), (n, n * v as u32));
        }
    }

    #[test]
    fn simd_sse_matches_the_scalar_reference() {
        let mut seed = 3u64;
        let mut byte = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        };
        // Every length up to 300 (whole registers and tails), random and extreme pixels.
        for len in 0..300 {
            let a: Vec<u8> = (0..len).map(|_| byte()).collect();
            let b: Vec<u8> = (0..len).map(|_| byte()).collect();
            assert_eq!(sse(&a, &b), sse_scalar(&a, &b), "length {len}");
            let (lo, hi) = (vec![0u8; len], vec![255u8; len]);
            assert_eq!(sse(&lo, &hi), 65025 * len as u32);
            assert_eq!(sse(&hi, &lo), sse_scalar(&hi, &lo));
        }
        // The largest run the contract allows: 2^16 pixels at the largest difference.
        let (lo, hi) = (vec![0u8; 65536 - 1], vec![255u8; 65536 - 1]);
        assert_eq!(sse(&lo, &hi), sse_scalar(&lo, &hi));
    }
}
