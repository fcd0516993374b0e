//! SSE2 [`super::last_reaching`]: the sixteen coefficients in two registers, each compared
//! with its threshold from both sides (`c >= t` or `c <= -t`, which also holds for
//! `i16::MIN`, whose magnitude has no 16-bit negation), packed to one byte mask per
//! position, then mapped to scan order by table (`super::last_of_raster_mask`). SSE2 is part
//! of the x86_64 baseline.

use std::arch::x86_64::*;

#[inline]
pub(super) fn last_reaching(c: &[i16; 16], first: usize, min: [u16; 2]) -> Option<usize> {
    // SAFETY: SSE2 is always present on x86_64.
    let raster = unsafe { reaching_mask(c, min) };
    // Raster index 0 is scan position 0: `first` = 1 leaves it out.
    super::last_of_raster_mask(raster & !(first as u32))
}

/// [`super::last_reaching_with`]: the same with the comparison bounds built beforehand.
#[inline]
pub(super) fn last_reaching_with(c: &[i16; 16], first: usize, b: &Bounds) -> Option<usize> {
    // SAFETY: SSE2 is always present on x86_64.
    let raster = unsafe { mask_within(c, b) };
    super::last_of_raster_mask(raster & !(first as u32))
}

/// The comparison bounds of thresholds `[dc, ac]`, per raster position: a coefficient
/// reaches its threshold `t` when it is above `hi` or below `lo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bounds {
    hi: [i16; 16],
    lo: [i16; 16],
}

impl Bounds {
    pub(super) fn new(min: [u16; 2]) -> Self {
        let (dc, ac) = (bound(min[0]), bound(min[1]));
        let at = |j: usize| if j == 0 { dc } else { ac };
        Bounds { hi: std::array::from_fn(|j| at(j).0), lo: std::array::from_fn(|j| at(j).1) }
    }
}

/// |c| >= t  <=>  c > t - 1  or  c < 1 - t, exactly for t in 1..=32768. A larger t is reached
/// by nothing, and the clamped bounds (c > 32767, c < -32768) hold for nothing.
#[inline]
fn bound(t: u16) -> (i16, i16) {
    let t = t as i32;
    ((t - 1).min(i16::MAX as i32) as i16, (1 - t).max(i16::MIN as i32) as i16)
}

/// Bit `j` set when `|c[j]| >= min[0]` (j = 0) or `min[1]` (j > 0). The bounds are built in
/// registers here (callers with constant thresholds get them folded); [`mask_within`] takes
/// them built beforehand.
#[inline]
#[target_feature(enable = "sse2")]
fn reaching_mask(c: &[i16; 16], min: [u16; 2]) -> u32 {
    let (dc_hi, dc_lo) = bound(min[0]);
    let (ac_hi, ac_lo) = bound(min[1]);
    // SAFETY: the two halves of a 16-element array, unaligned loads.
    let (a, b) =
        unsafe { (_mm_loadu_si128(c.as_ptr().cast()), _mm_loadu_si128(c.as_ptr().add(8).cast())) };
    let hi0 = _mm_set_epi16(ac_hi, ac_hi, ac_hi, ac_hi, ac_hi, ac_hi, ac_hi, dc_hi);
    let lo0 = _mm_set_epi16(ac_lo, ac_lo, ac_lo, ac_lo, ac_lo, ac_lo, ac_lo, dc_lo);
    let (hi1, lo1) = (_mm_set1_epi16(ac_hi), _mm_set1_epi16(ac_lo));
    let ra = _mm_or_si128(_mm_cmpgt_epi16(a, hi0), _mm_cmplt_epi16(a, lo0));
    let rb = _mm_or_si128(_mm_cmpgt_epi16(b, hi1), _mm_cmplt_epi16(b, lo1));
    _mm_movemask_epi8(_mm_packs_epi16(ra, rb)) as u32
}

/// Bit `j` set when `c[j]` is above `b.hi[j]` or below `b.lo[j]`.
#[inline]
#[target_feature(enable = "sse2")]
fn mask_within(c: &[i16; 16], b: &Bounds) -> u32 {
    // SAFETY: the two halves of 16-element arrays, unaligned loads.
    let load =
        |v: &[i16; 16], half: usize| unsafe { _mm_loadu_si128(v.as_ptr().add(8 * half).cast()) };
    let (a0, a1) = (load(c, 0), load(c, 1));
    let ra = _mm_or_si128(_mm_cmpgt_epi16(a0, load(&b.hi, 0)), _mm_cmplt_epi16(a0, load(&b.lo, 0)));
    let rb = _mm_or_si128(_mm_cmpgt_epi16(a1, load(&b.hi, 1)), _mm_cmplt_epi16(a1, load(&b.lo, 1)));
    _mm_movemask_epi8(_mm_packs_epi16(ra, rb)) as u32
}
