//! Forward transforms for the encoder: the 4x4 DCT and the Walsh-Hadamard transform of the
//! sixteen luma DCs.
//!
//! RFC 6386 fixes only the inverse transforms (section 14); the forward ones are the encoder's
//! choice. Both here are scaled so that the decoder's inverses undo them: the DCT computes
//! twice the orthonormal 2-D DCT-II (so a flat block of value `m` has DC `8 m`, which the
//! inverse turns back into `(8 m + 4) >> 3 = m`), and the WHT computes `M D M / 2` for the
//! symmetric +-1 matrix `M` whose `M X M / 8` is the decoder's inverse.
//!
//! The DCT runs in integers: the first pass (rows) keeps three extra bits of precision, the
//! odd basis functions use `sqrt(2) cos(pi/8)` and `sqrt(2) sin(pi/8)` in 12-bit fixed point
//! (5352 and 2217), and each output is rounded to nearest.

/// `sqrt(2) * cos(pi / 8)` in 12-bit fixed point.
const C1: i32 = 5352;
/// `sqrt(2) * sin(pi / 8)` in 12-bit fixed point.
const S1: i32 = 2217;

/// Forward DCT of a 4x4 residual block (raster order) into coefficients in raster order
/// (index `row * 4 + col`, row = vertical frequency), in the decoder's scaling.
pub fn fdct4x4(input: &[i16; 16]) -> [i16; 16] {
    let mut tmp = [0i32; 16];
    for r in 0..4 {
        let x = |c: usize| input[4 * r + c] as i32;
        let a = (x(0) + x(3)) * 8;
        let b = (x(1) + x(2)) * 8;
        let c = (x(1) - x(2)) * 8;
        let d = (x(0) - x(3)) * 8;
        tmp[4 * r] = a + b;
        tmp[4 * r + 2] = a - b;
        tmp[4 * r + 1] = (d * C1 + c * S1 + 2048) >> 12;
        tmp[4 * r + 3] = (d * S1 - c * C1 + 2048) >> 12;
    }
    let mut out = [0i16; 16];
    for col in 0..4 {
        let t = |r: usize| tmp[4 * r + col];
        let a = t(0) + t(3);
        let b = t(1) + t(2);
        let c = t(1) - t(2);
        let d = t(0) - t(3);
        out[col] = ((a + b + 8) >> 4) as i16;
        out[8 + col] = ((a - b + 8) >> 4) as i16;
        out[4 + col] = ((d * C1 + c * S1 + 32768) >> 16) as i16;
        out[12 + col] = ((d * S1 - c * C1 + 32768) >> 16) as i16;
    }
    out
}

/// The forward DCTs of the two horizontally adjacent 4x4 blocks of `src - pred` whose top-left
/// pixel is at `off` (both arrays `stride` wide): what [`fdct4x4`] gives for each.
///
/// On x86_64 this is the SSE2 kernel of `fdct_sse2.rs` (both blocks at once, residuals
/// included): with it a rebased 1280x720 frame takes 7% less time than with the scalar
/// version (`examples/rebase_bench`, XC_CHAIN=1 on mosaic720: 26.6 -> 24.8 ms of CPU).
pub(crate) fn fdct4x4_pair(src: &[u8], pred: &[u8], stride: usize, off: usize) -> [[i16; 16]; 2] {
    #[cfg(target_arch = "x86_64")]
    return sse2::fdct4x4_pair(src, pred, stride, off);
    #[cfg(not(target_arch = "x86_64"))]
    fdct4x4_pair_scalar(src, pred, stride, off)
}

/// [`fdct4x4_pair`] in plain Rust: the reference the SIMD kernel is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn fdct4x4_pair_scalar(src: &[u8], pred: &[u8], stride: usize, off: usize) -> [[i16; 16]; 2] {
    std::array::from_fn(|k| {
        let at = |i: usize| off + (i / 4) * stride + 4 * k + i % 4;
        fdct4x4(&std::array::from_fn(|i| src[at(i)] as i16 - pred[at(i)] as i16))
    })
}

/// The forward DCT of the 4x4 residual `src - pred` (two 4x4 blocks, rows 4 apart): what
/// [`fdct4x4`] gives, a B_PRED subblock's transform.
///
/// On x86_64 the SSE2 pair kernel takes it as the left of two blocks, a zero one beside it
/// (the scalar transform of the subblocks was 1.5% of a GoodRefs inter frame's instructions).
pub(crate) fn fdct4x4_sub(src: &[u8; 16], pred: &[u8; 16]) -> [i16; 16] {
    #[cfg(target_arch = "x86_64")]
    {
        let (mut s, mut p) = ([0u8; 32], [0u8; 32]);
        for r in 0..4 {
            s[r * 8..r * 8 + 4].copy_from_slice(&src[r * 4..r * 4 + 4]);
            p[r * 8..r * 8 + 4].copy_from_slice(&pred[r * 4..r * 4 + 4]);
        }
        let [c, _] = sse2::fdct4x4_pair(&s, &p, 8, 0);
        c
    }
    #[cfg(not(target_arch = "x86_64"))]
    fdct4x4(&std::array::from_fn(|i| src[i] as i16 - pred[i] as i16))
}

#[cfg(target_arch = "x86_64")]
#[path = "fdct_sse2.rs"]
mod sse2;

/// Forward Walsh-Hadamard transform of the sixteen luma DC coefficients (index = luma
/// subblock number, raster order) into the Y2 block (raster order).
pub fn fwht4x4(dcs: &[i16; 16]) -> [i16; 16] {
    // M's rows: [1 1 1 1], [1 1 -1 -1], [1 -1 -1 1], [1 -1 1 -1]; M is symmetric.
    let butterfly = |x: [i32; 4]| {
        let a = x[0] + x[3];
        let b = x[1] + x[2];
        let c = x[1] - x[2];
        let d = x[0] - x[3];
        [a + b, c + d, a - b, d - c]
    };
    let mut tmp = [0i32; 16];
    for col in 0..4 {
        let v = butterfly(std::array::from_fn(|r| dcs[4 * r + col] as i32));
        for (k, &y) in v.iter().enumerate() {
            tmp[4 * k + col] = y;
        }
    }
    let mut out = [0i16; 16];
    for r in 0..4 {
        let v = butterfly(std::array::from_fn(|c| tmp[4 * r + c]));
        for (k, &y) in v.iter().enumerate() {
            // Divide by 2, rounding half away from zero.
            let h = if y >= 0 { (y + 1) >> 1 } else { -((-y + 1) >> 1) };
            out[4 * r + k] = h.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{idct4x4, iwht4x4};

    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u64) as i32
        }
    }

    #[test]
    fn flat_block_has_only_dc() {
        let c = fdct4x4(&[10; 16]);
        assert_eq!(c[0], 80);
        assert!(c[1..].iter().all(|&v| v == 0), "{c:?}");
        let c = fdct4x4(&[-255; 16]);
        assert_eq!(c[0], -2040);
    }

    #[test]
    fn dct_round_trip_without_quantization() {
        let mut rng = Rng(99);
        let mut worst = 0;
        for _ in 0..20000 {
            let x: [i16; 16] = std::array::from_fn(|_| rng.range(-255, 255) as i16);
            let y = idct4x4(&fdct4x4(&x));
            for (a, b) in x.iter().zip(&y) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst <= 1, "worst error {worst}");
    }

    #[test]
    fn dct_round_trip_through_finest_quantizer() {
        // q = 4 (qindex 0): fdct -> quantize -> dequantize -> idct stays close to the input.
        let mut rng = Rng(7);
        let (mut worst, mut total) = (0, 0i64);
        let n = 20000;
        for _ in 0..n {
            let x: [i16; 16] = std::array::from_fn(|_| rng.range(-255, 255) as i16);
            let c = fdct4x4(&x);
            let dq: [i16; 16] = std::array::from_fn(|i| {
                let v = c[i] as i32;
                let l = (v.abs() + 2) / 4 * v.signum();
                (l * 4) as i16
            });
            let y = idct4x4(&dq);
            for (a, b) in x.iter().zip(&y) {
                worst = worst.max((a - b).abs());
                total += (a - b).abs() as i64;
            }
        }
        let mean = total as f64 / (16 * n) as f64;
        assert!(worst <= 3, "worst error {worst}");
        eprintln!("q=4 round trip: worst {worst}, mean {mean:.3}");
        assert!(mean < 0.5, "mean error {mean}");
    }

    /// A source and a predicted pixel: random (`round % 3 == 0`), extreme (0 or 255, which
    /// bound the 16-bit intermediates) or near-equal.
    fn pixel_pair(rng: &mut Rng, round: usize) -> (u8, u8) {
        match round % 3 {
            0 => (rng.range(0, 255) as u8, rng.range(0, 255) as u8),
            1 => ([0, 255][(rng.next() % 2) as usize], [0, 255][(rng.next() % 2) as usize]),
            _ => {
                let v = rng.range(20, 230);
                (v as u8, (v + rng.range(-20, 20)) as u8)
            }
        }
    }

    /// The SSE2 pair against the scalar transform, on random residuals and on the extremes
    /// (+-255, which bound the 16-bit intermediates), at an offset inside a wider array.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse2_pair_matches_scalar() {
        let mut rng = Rng(0xfdc7);
        for round in 0..50000 {
            let mut src = [0u8; 12 * 6];
            let mut pred = [0u8; 12 * 6];
            for (s, p) in src.iter_mut().zip(pred.iter_mut()) {
                (*s, *p) = pixel_pair(&mut rng, round);
            }
            let off = 12 + 1 + (round % 3);
            let got = sse2::fdct4x4_pair(&src, &pred, 12, off);
            assert_eq!(got, fdct4x4_pair_scalar(&src, &pred, 12, off), "round {round}");
        }
    }

    /// A subblock's transform equals the scalar one of its residual: random, extreme (+-255)
    /// and near-equal pixels.
    #[test]
    fn subblock_transform_matches_scalar() {
        let mut rng = Rng(0x5b);
        for round in 0..20000 {
            let mut src = [0u8; 16];
            let mut pred = [0u8; 16];
            for (s, p) in src.iter_mut().zip(pred.iter_mut()) {
                (*s, *p) = pixel_pair(&mut rng, round);
            }
            let residual = std::array::from_fn(|i| src[i] as i16 - pred[i] as i16);
            assert_eq!(fdct4x4_sub(&src, &pred), fdct4x4(&residual), "round {round}");
        }
    }

    #[test]
    fn wht_round_trip() {
        let mut rng = Rng(3);
        for _ in 0..20000 {
            let d: [i16; 16] = std::array::from_fn(|_| rng.range(-2040, 2040) as i16);
            let back = iwht4x4(&fwht4x4(&d));
            for (a, b) in d.iter().zip(&back) {
                assert!((a - b).abs() <= 1, "{d:?} -> {back:?}");
            }
        }
        let mut flat = [0i16; 16];
        flat.fill(100);
        let y = fwht4x4(&flat);
        assert_eq!(y[0], 800);
        assert!(y[1..].iter().all(|&v| v == 0));
    }
}
