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

/// The 16x16 block of `data` at `at` (rows `stride` apart) as sixteen 4x4 blocks: the sum
/// over them of `16 * sum_of_squares - sum^2`, i.e. 256 times the sum of their variances.
/// Integer throughout (a 4x4 block's `16 * 16 * 255^2` fits 32 bits).
///
/// On x86_64 the SSE2 kernel of `distortion_sse2.rs` takes a row at a time (the scalar loop,
/// once per macroblock of every frame with `--activity-rd`, was 4% of a 720p rebase's time).
#[inline]
pub(crate) fn block4_variances(data: &[u8], stride: usize, at: usize) -> u64 {
    assert!(data.len() >= at + 15 * stride + 16, "a 16x16 block at {at} overruns the plane");
    #[cfg(target_arch = "x86_64")]
    return sse2::block4_variances(data, stride, at);
    #[cfg(not(target_arch = "x86_64"))]
    block4_variances_scalar(data, stride, at)
}

/// [`block4_variances`] in plain Rust: the reference the SIMD kernel is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn block4_variances_scalar(data: &[u8], stride: usize, at: usize) -> u64 {
    let mut total = 0u64;
    for by in 0..4 {
        let (mut sum, mut sum2) = ([0u32; 4], [0u32; 4]);
        for r in 0..4 {
            let row = &data[at + (by * 4 + r) * stride..][..16];
            for (x, &v) in row.iter().enumerate() {
                sum[x >> 2] += v as u32;
                sum2[x >> 2] += v as u32 * v as u32;
            }
        }
        for b in 0..4 {
            total += (16 * sum2[b] - sum[b] * sum[b]) as u64;
        }
    }
    total
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

    /// The 4x4 variances' sum (the SIMD kernel and the scalar one) equals the definition
    /// computed in floating point: random pixels, flat blocks (0, 255) and blocks at the
    /// plane's end; extremes fit (255 and 0 in a checkerboard, the largest variance).
    #[test]
    fn block4_variances_match_the_definition() {
        let mut seed = 11u64;
        let (stride, rows) = (40, 20);
        let mut data: Vec<u8> = (0..stride * rows)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        let reference = |data: &[u8], at: usize| -> f64 {
            let mut total = 0.0;
            for b in 0..16 {
                let px: Vec<f64> = (0..16)
                    .map(|k| {
                        data[at + ((b >> 2) * 4 + k / 4) * stride + (b & 3) * 4 + k % 4] as f64
                    })
                    .collect();
                let mean = px.iter().sum::<f64>() / 16.0;
                total += px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 16.0;
            }
            total
        };
        for at in [0, 1, 7, 24, stride + 3, (rows - 16) * stride + stride - 16] {
            let got = block4_variances(&data, stride, at);
            assert_eq!(got, block4_variances_scalar(&data, stride, at), "at {at}");
            assert!((got as f64 / 256.0 - reference(&data, at)).abs() < 1e-6, "at {at}");
        }
        for (i, v) in data.iter_mut().enumerate() {
            *v = if (i + i / stride) % 2 == 0 { 255 } else { 0 };
        }
        assert_eq!(block4_variances(&data, stride, 5), 16 * 256 * 255 * 255 / 4);
        assert_eq!(block4_variances_scalar(&data, stride, 5), 16 * 256 * 255 * 255 / 4);
        for v in [0u8, 255] {
            data.fill(v);
            assert_eq!(block4_variances(&data, stride, 5), 0);
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
