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

/// Two `w` x `h` blocks of pixels (`w` 4, 8 or 16, `h` 1..=16) at the start of `a` and `b`,
/// whose rows are `astride` and `bstride` apart; [`BlockPair::new`] checks once that every row
/// lies inside its slice, so that the SIMD kernels load rows without a bounds check each.
#[derive(Clone, Copy)]
pub(crate) struct BlockPair<'a> {
    a: &'a [u8],
    astride: usize,
    b: &'a [u8],
    bstride: usize,
    w: usize,
    h: usize,
}

impl<'a> BlockPair<'a> {
    pub(crate) fn new(
        a: &'a [u8],
        astride: usize,
        b: &'a [u8],
        bstride: usize,
        w: usize,
        h: usize,
    ) -> Self {
        assert!(matches!(w, 4 | 8 | 16), "block width {w}");
        assert!((1..=16).contains(&h), "block height {h}");
        assert!(a.len() >= (h - 1) * astride + w, "block overruns its plane");
        assert!(b.len() >= (h - 1) * bstride + w, "block overruns its plane");
        BlockPair { a, astride, b, bstride, w, h }
    }

    /// Row `r` of both blocks.
    fn rows(&self, r: usize) -> (&'a [u8], &'a [u8]) {
        (&self.a[r * self.astride..][..self.w], &self.b[r * self.bstride..][..self.w])
    }

    /// Sum of absolute differences: the full-pel motion search's measure.
    ///
    /// On x86_64 the SSE2 kernel of `distortion_sse2.rs` takes a row per `psadbw` (the
    /// row-by-row scalar loop, which the compiler vectorized four pixels at a time, was 15% of
    /// a GoodRefs inter frame).
    #[inline]
    pub(crate) fn sad(self) -> u32 {
        #[cfg(target_arch = "x86_64")]
        return sse2::block_sad(self);
        #[cfg(not(target_arch = "x86_64"))]
        self.sad_scalar()
    }

    /// Sum of squared differences.
    ///
    /// On x86_64 the SSE2 kernel of `distortion_sse2.rs` takes a row per step, where [`sse`]
    /// row by row left 8- and 4-pixel rows (SPLITMV's partitions) to its scalar tail.
    #[inline]
    pub(crate) fn sse(self) -> u32 {
        #[cfg(target_arch = "x86_64")]
        return sse2::block_sse(self);
        #[cfg(not(target_arch = "x86_64"))]
        self.sse_scalar()
    }

    /// [`BlockPair::sad`] in plain Rust: the reference the SIMD kernel is tested against.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn sad_scalar(self) -> u32 {
        (0..self.h).map(|r| self.rows(r)).map(|(a, b)| sad(a, b)).sum()
    }

    /// [`BlockPair::sse`] in plain Rust: the reference the SIMD kernel is tested against.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn sse_scalar(self) -> u32 {
        (0..self.h).map(|r| self.rows(r)).map(|(a, b)| sse_scalar(a, b)).sum()
    }
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

    /// The block kernels (the SIMD ones on x86_64) equal their scalar references for every
    /// width and height they take, at every alignment, on random pixels and at the extremes
    /// (a 16x16 block of 0 against 255, the largest sums).
    #[test]
    fn block_sad_and_sse_match_the_scalar_references() {
        let mut seed = 5u64;
        let mut byte = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        };
        let (astride, bstride) = (37, 53);
        let a: Vec<u8> = (0..astride * 20).map(|_| byte()).collect();
        let b: Vec<u8> = (0..bstride * 20).map(|_| byte()).collect();
        for w in [4, 8, 16] {
            for h in 1..=16 {
                for (ao, bo) in [(0, 0), (1, 3), (7, 15), (astride + 5, 2 * bstride + 9)] {
                    // The blocks may end at their slices' very ends.
                    let (ea, eb) = (ao + (h - 1) * astride + w, bo + (h - 1) * bstride + w);
                    let (sa, sb) = (&a[ao..ea], &b[bo..eb]);
                    let p = BlockPair::new(sa, astride, sb, bstride, w, h);
                    assert_eq!(p.sad(), p.sad_scalar(), "{w}x{h} at {ao}, {bo}");
                    assert_eq!(p.sse(), p.sse_scalar(), "{w}x{h} at {ao}, {bo}");
                }
            }
        }
        let (lo, hi) = (vec![0u8; 16 * 16], vec![255u8; 16 * 16]);
        for w in [4, 8, 16] {
            let n = (w * 16) as u32;
            let (up, down) =
                (BlockPair::new(&lo, 16, &hi, 16, w, 16), BlockPair::new(&hi, 16, &lo, 16, w, 16));
            assert_eq!((up.sad(), down.sad()), (255 * n, 255 * n));
            assert_eq!((up.sse(), down.sse()), (65025 * n, 65025 * n));
        }
    }

    #[test]
    #[should_panic(expected = "block overruns its plane")]
    fn block_sad_refuses_a_short_slice() {
        BlockPair::new(&[0; 40], 16, &[0; 64], 16, 16, 3);
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
