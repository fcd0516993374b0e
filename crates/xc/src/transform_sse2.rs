//! SSE2 inverse DCT plus prediction add for one 4x4 block, bit-exact with
//! [`super::idct4x4`] followed by [`super::add_residue`].
//!
//! The first (column) pass works on 16-bit lanes, one lane per column: the spec stores its
//! results into 16-bit values, and the products `(x * 35468) >> 16` and `(x * 20091) >> 16`
//! are exact high-half multiplies (35468 does not fit a signed 16-bit constant, so it is
//! applied as `x * (35468 - 65536) >> 16` plus `x`). The second (row) pass needs more than
//! 16 bits before its `>> 3`, so after a transpose it runs on 32-bit lanes, one lane per row;
//! its results fit in 16 bits again. SSE2 is baseline on x86_64, and no pointer is used, so
//! there is no `unsafe` here at all.

use std::arch::x86_64::*;

/// `(x * 20091) >> 16` per 16-bit lane.
#[inline]
#[target_feature(enable = "sse2")]
fn mul_c(x: __m128i) -> __m128i {
    _mm_mulhi_epi16(x, _mm_set1_epi16(20091))
}

/// `(x * 35468) >> 16` per 16-bit lane.
#[inline]
#[target_feature(enable = "sse2")]
fn mul_s(x: __m128i) -> __m128i {
    _mm_add_epi16(_mm_mulhi_epi16(x, _mm_set1_epi16((35468 - 65536) as i16)), x)
}

/// Sign-extend the low four 16-bit lanes to 32 bits.
#[inline]
#[target_feature(enable = "sse2")]
fn widen(x: __m128i) -> __m128i {
    _mm_srai_epi32::<16>(_mm_unpacklo_epi16(x, x))
}

/// Four bytes of `data` at `at` in the low lane.
#[inline]
#[target_feature(enable = "sse2")]
fn load4(data: &[u8], at: usize) -> __m128i {
    let b: [u8; 4] = data[at..at + 4].try_into().expect("four bytes");
    _mm_cvtsi32_si128(i32::from_le_bytes(b))
}

#[inline]
#[target_feature(enable = "sse2")]
fn store4(data: &mut [u8], at: usize, v: __m128i) {
    data[at..at + 4].copy_from_slice(&_mm_cvtsi128_si32(v).to_le_bytes());
}

/// Inverse-transform `c` and add it to the 4x4 block at `data[offset..]`, saturating.
pub fn idct4x4_add(c: &[i16; 16], data: &mut [u8], offset: usize, stride: usize) {
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always present.
    unsafe { idct4x4_add_sse2(c, data, offset, stride) }
}

#[target_feature(enable = "sse2")]
fn idct4x4_add_sse2(c: &[i16; 16], data: &mut [u8], offset: usize, stride: usize) {
    let row =
        |r: usize| _mm_set_epi16(0, 0, 0, 0, c[4 * r + 3], c[4 * r + 2], c[4 * r + 1], c[4 * r]);
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    // Column pass, lane = column.
    let a1 = _mm_add_epi16(r0, r2);
    let b1 = _mm_sub_epi16(r0, r2);
    let c1 = _mm_sub_epi16(mul_s(r1), _mm_add_epi16(r3, mul_c(r3)));
    let d1 = _mm_add_epi16(_mm_add_epi16(r1, mul_c(r1)), mul_s(r3));
    let t0 = _mm_add_epi16(a1, d1);
    let t1 = _mm_add_epi16(b1, c1);
    let t2 = _mm_sub_epi16(b1, c1);
    let t3 = _mm_sub_epi16(a1, d1);
    // Transpose: e01 = elements 0 and 1 of rows t0..t3, e23 = elements 2 and 3.
    let u = _mm_unpacklo_epi16(t0, t1);
    let v = _mm_unpacklo_epi16(t2, t3);
    let e01 = _mm_unpacklo_epi32(u, v);
    let e23 = _mm_unpackhi_epi32(u, v);
    let (x0, x1) = (e01, _mm_srli_si128::<8>(e01));
    let (x2, x3) = (e23, _mm_srli_si128::<8>(e23));
    // Row pass in 32 bits, lane = row.
    let a1 = _mm_add_epi32(widen(x0), widen(x2));
    let b1 = _mm_sub_epi32(widen(x0), widen(x2));
    let c1 = _mm_sub_epi32(widen(mul_s(x1)), _mm_add_epi32(widen(x3), widen(mul_c(x3))));
    let d1 = _mm_add_epi32(_mm_add_epi32(widen(x1), widen(mul_c(x1))), widen(mul_s(x3)));
    let four = _mm_set1_epi32(4);
    let out = |x: __m128i| _mm_srai_epi32::<3>(_mm_add_epi32(x, four));
    let (o0, o3) = (out(_mm_add_epi32(a1, d1)), out(_mm_sub_epi32(a1, d1)));
    let (o1, o2) = (out(_mm_add_epi32(b1, c1)), out(_mm_sub_epi32(b1, c1)));
    // The results fit in 16 bits, so the saturating packs are exact. Transpose back to rows.
    let p01 = _mm_packs_epi32(o0, o1);
    let p23 = _mm_packs_epi32(o2, o3);
    let lo = _mm_unpacklo_epi16(p01, p23);
    let hi = _mm_unpackhi_epi16(p01, p23);
    let rows01 = _mm_unpacklo_epi16(lo, hi);
    let rows23 = _mm_unpackhi_epi16(lo, hi);
    // Add to the prediction with saturation (one bounds check for the block's rows).
    let zero = _mm_setzero_si128();
    let data = &mut data[offset..offset + 3 * stride + 4];
    let at = |r: usize| r * stride;
    let pred01 = _mm_unpacklo_epi32(load4(data, at(0)), load4(data, at(1)));
    let pred23 = _mm_unpacklo_epi32(load4(data, at(2)), load4(data, at(3)));
    let s01 = _mm_adds_epi16(_mm_unpacklo_epi8(pred01, zero), rows01);
    let s23 = _mm_adds_epi16(_mm_unpacklo_epi8(pred23, zero), rows23);
    let px = _mm_packus_epi16(s01, s23);
    store4(data, at(0), px);
    store4(data, at(1), _mm_srli_si128::<4>(px));
    store4(data, at(2), _mm_srli_si128::<8>(px));
    store4(data, at(3), _mm_srli_si128::<12>(px));
}

/// Add `v` to the 4x4 block at `data[offset..]` with saturation, as
/// [`super::add_constant_scalar`]: a saturating unsigned byte add of `v` (or subtract of
/// `-v`), with `|v|` capped at 255, which saturates every pixel exactly as the clamp does.
/// Always inlined, so without `#[target_feature]` (which would prevent it): called out of
/// line, as one build of the decoder loop did, it cost 13.6 M more instructions in a 640x272
/// decode (callgrind).
#[inline(always)]
pub fn add_constant(v: i32, data: &mut [u8], offset: usize, stride: usize) {
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature is always present.
    unsafe {
        let k = _mm_set1_epi8(v.unsigned_abs().min(255) as u8 as i8);
        // One bounds check for the block; the row accesses below are then provably inside.
        let data = &mut data[offset..offset + 3 * stride + 4];
        let at = |r: usize| r * stride;
        let px = _mm_unpacklo_epi64(
            _mm_unpacklo_epi32(load4(data, at(0)), load4(data, at(1))),
            _mm_unpacklo_epi32(load4(data, at(2)), load4(data, at(3))),
        );
        let px = if v >= 0 { _mm_adds_epu8(px, k) } else { _mm_subs_epu8(px, k) };
        store4(data, at(0), px);
        store4(data, at(1), _mm_srli_si128::<4>(px));
        store4(data, at(2), _mm_srli_si128::<8>(px));
        store4(data, at(3), _mm_srli_si128::<12>(px));
    }
}
