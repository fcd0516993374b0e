//! Where a block's coded coefficients end: the last scan (zigzag) position whose magnitude
//! reaches a threshold. The token writer and counter ask it for the last non-zero level of
//! every block they code, and the RD quantizer for the last coefficient that rounds to a
//! non-zero level; most blocks of an inter frame have none, so this scan is most of their
//! cost (a scalar walk was 8% of a 720p rebase's instructions in the token walks alone).

use crate::tables::ZIGZAG;

/// Scan position of each raster index (the inverse of `ZIGZAG`).
pub(crate) const INV_ZIGZAG: [u8; 16] = {
    let mut inv = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        inv[ZIGZAG[i]] = i as u8;
        i += 1;
    }
    inv
};

/// The last scan position `i` in `first..16` whose coefficient `c[ZIGZAG[i]]` has a magnitude
/// of at least `min[0]` (position 0, the DC) or `min[1]` (the others); `None` when there is
/// none. `first` is 0 or 1 (luma blocks whose DC goes to Y2 start at 1); thresholds are at
/// least 1.
///
/// On x86_64 this is the SSE2 kernel of `scan_sse2.rs` (all sixteen compared at once).
#[inline]
pub(crate) fn last_reaching(c: &[i16; 16], first: usize, min: [u16; 2]) -> Option<usize> {
    debug_assert!(first <= 1 && min[0] >= 1 && min[1] >= 1);
    #[cfg(target_arch = "x86_64")]
    return sse2::last_reaching(c, first, min);
    #[cfg(not(target_arch = "x86_64"))]
    last_reaching_scalar(c, first, min)
}

/// Thresholds for [`last_reaching_with`], prepared once (per quantizer) rather than for every
/// block: building the kernel's comparison bounds was a third of its instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reach {
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    min: [u16; 2],
    #[cfg(target_arch = "x86_64")]
    bounds: sse2::Bounds,
}

impl Reach {
    /// The thresholds `min` ([`last_reaching`]'s), each at least 1.
    pub(crate) fn new(min: [u16; 2]) -> Self {
        debug_assert!(min[0] >= 1 && min[1] >= 1);
        Reach {
            min,
            #[cfg(target_arch = "x86_64")]
            bounds: sse2::Bounds::new(min),
        }
    }
}

/// [`last_reaching`] with the thresholds of `r`.
#[inline]
pub(crate) fn last_reaching_with(c: &[i16; 16], first: usize, r: &Reach) -> Option<usize> {
    debug_assert!(first <= 1);
    #[cfg(target_arch = "x86_64")]
    return sse2::last_reaching_with(c, first, &r.bounds);
    #[cfg(not(target_arch = "x86_64"))]
    last_reaching_scalar(c, first, r.min)
}

/// [`last_reaching`] in plain Rust: the reference the SIMD kernel is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn last_reaching_scalar(c: &[i16; 16], first: usize, min: [u16; 2]) -> Option<usize> {
    (first..16).rev().find(|&i| c[ZIGZAG[i]].unsigned_abs() >= min[(i > 0) as usize])
}

/// For each byte of a raster-order position mask (`lo` for positions 0..8, `hi` for 8..16),
/// the same positions as a scan-order mask, so the last scan position is the top set bit.
const fn scan_masks(hi: bool) -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut m = 0;
    while m < 256 {
        let mut j = 0;
        while j < 8 {
            if m >> j & 1 == 1 {
                t[m] |= 1 << INV_ZIGZAG[j + if hi { 8 } else { 0 }];
            }
            j += 1;
        }
        m += 1;
    }
    t
}

static SCAN_MASK_LO: [u16; 256] = scan_masks(false);
static SCAN_MASK_HI: [u16; 256] = scan_masks(true);

/// The last scan position among the raster positions set in `raster` (bit `j` = raster index
/// `j`), or `None` when it is empty.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn last_of_raster_mask(raster: u32) -> Option<usize> {
    let scan = SCAN_MASK_LO[(raster & 0xFF) as usize] | SCAN_MASK_HI[(raster >> 8 & 0xFF) as usize];
    (scan != 0).then(|| 15 - scan.leading_zeros() as usize)
}

#[cfg(target_arch = "x86_64")]
#[path = "scan_sse2.rs"]
mod sse2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raster_masks_map_to_their_last_scan_position() {
        assert_eq!(last_of_raster_mask(0), None);
        for (j, &scan) in INV_ZIGZAG.iter().enumerate() {
            assert_eq!(last_of_raster_mask(1 << j), Some(scan as usize));
        }
        assert_eq!(last_of_raster_mask(0xFFFF), Some(15));
        // Raster 12 is scan 9, raster 10 scan 11: the later scan position wins.
        assert_eq!(last_of_raster_mask(1 << 12 | 1 << 10), Some(11));
    }

    /// The SIMD kernels equal the scalar one on random blocks, on every single-coefficient
    /// block at and around the thresholds, and at the extremes (i16::MIN, whose magnitude does
    /// not fit i16; i16::MAX; thresholds of 1 and of u16::MAX).
    #[test]
    fn kernel_matches_scalar() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        // Both entry points: thresholds given per call, and prepared.
        let check = |c: &[i16; 16], first: usize, min: [u16; 2]| {
            let want = last_reaching_scalar(c, first, min);
            assert_eq!(last_reaching(c, first, min), want, "{c:?} first {first} min {min:?}");
            let prepared = last_reaching_with(c, first, &Reach::new(min));
            assert_eq!(prepared, want, "{c:?} first {first} min {min:?} prepared");
        };
        let mins =
            [[1, 1], [2, 3], [40, 17], [157, 284], [32767, 32767], [32768, 1], [u16::MAX; 2]];
        for min in mins {
            for first in 0..2 {
                check(&[0; 16], first, min);
                check(&[i16::MIN; 16], first, min);
                check(&[i16::MAX; 16], first, min);
                for j in 0..16 {
                    for t in [min[0], min[1]] {
                        for v in
                            [t as i32 - 1, t as i32, t as i32 + 1, -(t as i32) + 1, -(t as i32)]
                        {
                            let mut c = [0i16; 16];
                            c[j] = v.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                            check(&c, first, min);
                        }
                    }
                    let mut c = [0i16; 16];
                    c[j] = i16::MIN;
                    check(&c, first, min);
                }
            }
        }
        for _ in 0..20000 {
            let spread = [2, 20, 300, 70000][rnd(4) as usize];
            let c: [i16; 16] = std::array::from_fn(|_| {
                if rnd(3) == 0 {
                    (rnd(spread) as i64 - spread as i64 / 2).clamp(-32768, 32767) as i16
                } else {
                    0
                }
            });
            let min = [1 + rnd(300) as u16, 1 + rnd(300) as u16];
            check(&c, rnd(2) as usize, min);
        }
    }
}
