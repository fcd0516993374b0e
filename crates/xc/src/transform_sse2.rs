//! SSE2 inverse DCT plus prediction add for one 4x4 block, bit-exact with
//! [`super::idct4x4`] followed by [`super::add_residue`].
//!
//! The first (column) pass works on 16-bit lanes, one lane per column: the spec stores its
//! results into 16-bit values, and the products `(x * 35468) >> 16` and `(x * 20091) >> 16`
//! are exact high-half multiplies (35468 does not fit a signed 16-bit constant, so it is
//! applied as `x * (35468 - 65536) >> 16` plus `x`). The second (row) pass needs more than
//! 16 bits before its `>> 3`, so after a transpose it runs on 32-bit lanes, one lane per row;
//! its results fit in 16 bits again. SSE2 is baseline on x86_64; the only pointers are those
//! of bounds-checked rows, for the row loads and stores of the DC-only rows.
//!
//! The DC-only rows add the residues of several DC-only blocks to a row of pixels at once.

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

/// Sixteen pixels plus the residues of their blocks, four lanes each (`dc` as four 16-bit
/// values), in 16-bit lanes: no saturation short of the final pack.
#[inline(always)]
fn add_dc16(px: __m128i, dc: [i16; 4]) -> __m128i {
    // SAFETY: SSE2 is baseline on x86_64.
    unsafe {
        let d = _mm_set_epi16(dc[3], dc[2], dc[1], dc[0], dc[3], dc[2], dc[1], dc[0]);
        // Lanes 0..4 of `d` each repeated four times: one block's residue per four pixels.
        let d = _mm_unpacklo_epi16(d, d);
        let (lo, hi) = (_mm_unpacklo_epi32(d, d), _mm_unpackhi_epi32(d, d));
        let zero = _mm_setzero_si128();
        let a = _mm_adds_epi16(_mm_unpacklo_epi8(px, zero), lo);
        let b = _mm_adds_epi16(_mm_unpackhi_epi8(px, zero), hi);
        _mm_packus_epi16(a, b)
    }
}

/// [`super::add_dc_row_scalar`]: each pixel row of the four blocks in one 16-byte load,
/// widened, added and packed with unsigned saturation.
#[inline(always)]
pub fn add_dc_row(dc: [i16; 4], data: &mut [u8], offset: usize, stride: usize) {
    let data = &mut data[offset..offset + 3 * stride + 16];
    for r in 0..4 {
        let row: &mut [u8; 16] = (&mut data[r * stride..r * stride + 16]).try_into().unwrap();
        // SAFETY: SSE2 is baseline; the loads and stores are of `row`'s 16 bytes.
        unsafe {
            let px = _mm_loadu_si128(row.as_ptr().cast());
            _mm_storeu_si128(row.as_mut_ptr().cast(), add_dc16(px, dc));
        }
    }
}

/// [`super::add_dc_row_uv_scalar`]: a U row and a V row of eight pixels in one register.
#[inline(always)]
pub fn add_dc_row_uv(dc: [i16; 4], u: &mut [u8], v: &mut [u8], offset: usize, stride: usize) {
    let u = &mut u[offset..offset + 3 * stride + 8];
    let v = &mut v[offset..offset + 3 * stride + 8];
    for r in 0..4 {
        let ur: &mut [u8; 8] = (&mut u[r * stride..r * stride + 8]).try_into().unwrap();
        let vr: &mut [u8; 8] = (&mut v[r * stride..r * stride + 8]).try_into().unwrap();
        // SAFETY: SSE2 is baseline; each load and store is of one row's 8 bytes.
        unsafe {
            let px = _mm_unpacklo_epi64(
                _mm_loadl_epi64(ur.as_ptr().cast()),
                _mm_loadl_epi64(vr.as_ptr().cast()),
            );
            let out = add_dc16(px, dc);
            _mm_storel_epi64(ur.as_mut_ptr().cast(), out);
            _mm_storel_epi64(vr.as_mut_ptr().cast(), _mm_unpackhi_epi64(out, out));
        }
    }
}
