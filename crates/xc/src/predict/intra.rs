//! Intra prediction (RFC 6386 section 12).
//!
//! Every function writes its prediction straight into the plane at the block's position and
//! reads the neighbours from the same plane, which at that point holds reconstructed but not
//! yet loop-filtered pixels (the decoder reconstructs the whole frame before filtering).
//!
//! # Frame-edge rules (spec 12.2, 12.3; identical in key frames and inter frames)
//!
//! For a block whose top-left pixel is at frame position (x0, y0):
//! - the row above (`A`) reads as **127** when `y0 == 0`;
//! - the column to the left (`L`) reads as **129** when `x0 == 0`;
//! - the above-left pixel (`P`) reads as **127** when `y0 == 0` (this includes the corner
//!   above-left of the frame), otherwise as **129** when `x0 == 0`, otherwise the pixel at
//!   (x0 - 1, y0 - 1). So `P` belongs to the row above when that row is outside the frame
//!   and to the left column otherwise.
//! - 16x16 and 8x8 DC prediction instead averages only the edges that exist (32/16 or 16/8
//!   pixels), and is 128 when neither exists; V, H and TM use the 127/129 values.
//!
//! # Above-right pixels of 4x4 subblocks (spec 12.3)
//!
//! Subblock modes LD and VL read 8 pixels above: the 4 above the subblock and 4 above-right.
//! - Subblocks not in the right column (b % 4 != 3) take them from the row directly above
//!   the subblock: the above macroblock's bottom row for b = 0..2, and the already
//!   reconstructed subblock b - 3 of the current macroblock for b = 4..14.
//! - Subblocks in the right column (b = 3, 7, 11, 15) all use the same 4 pixels: positions
//!   (-1, 16..19) relative to the macroblock, i.e. the bottom row of the above-right
//!   macroblock, which is already reconstructed. When the macroblock is in the rightmost
//!   column (and not the top row) those 4 pixels all take the value at (-1, 15), the last
//!   pixel of the row above the macroblock.
//! - In the top macroblock row all above-right pixels are 127, like the rest of the row
//!   above the frame. (For b = 7, 11, 15 in the top row the 4 pixels directly above are
//!   real pixels of the current macroblock; only the above-right ones are 127.)

use crate::frame::Plane;
use crate::mb::{BMode, MbMode, UvMode};

/// Value of the row above the frame.
const ABOVE_EDGE: u8 = 127;
/// Value of the column left of the frame.
const LEFT_EDGE: u8 = 129;

/// The four whole-block modes shared by 16x16 luma and 8x8 chroma.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockMode {
    Dc,
    V,
    H,
    Tm,
}

/// The `N` pixels above the block at (x0, y0), or 127s on the top frame row.
fn above_row<const N: usize>(p: &Plane, x0: usize, y0: usize) -> [u8; N] {
    if y0 == 0 {
        [ABOVE_EDGE; N]
    } else {
        let start = (y0 - 1) * p.stride + x0;
        let mut a = [0u8; N];
        a.copy_from_slice(&p.data[start..start + N]);
        a
    }
}

/// The `N` pixels left of the block at (x0, y0), or 129s on the left frame column.
fn left_col<const N: usize>(p: &Plane, x0: usize, y0: usize) -> [u8; N] {
    if x0 == 0 {
        [LEFT_EDGE; N]
    } else {
        std::array::from_fn(|i| p.data[(y0 + i) * p.stride + x0 - 1])
    }
}

/// The pixel above-left of the block at (x0, y0) (see the module doc for the edge rule).
fn above_left(p: &Plane, x0: usize, y0: usize) -> u8 {
    if y0 == 0 {
        ABOVE_EDGE
    } else if x0 == 0 {
        LEFT_EDGE
    } else {
        p.data[(y0 - 1) * p.stride + x0 - 1]
    }
}

/// Predict an N x N block (N = 16 luma, 8 chroma) at (x0, y0); `shift` is log2(N).
fn predict_block<const N: usize>(p: &mut Plane, x0: usize, y0: usize, mode: BlockMode) {
    let stride = p.stride;
    match mode {
        BlockMode::Dc => {
            let shift = N.trailing_zeros();
            let have_above = y0 > 0;
            let have_left = x0 > 0;
            let sum_above = || above_row::<N>(p, x0, y0).iter().map(|&v| v as u32).sum::<u32>();
            let sum_left = || left_col::<N>(p, x0, y0).iter().map(|&v| v as u32).sum::<u32>();
            let dc = match (have_above, have_left) {
                (true, true) => (sum_above() + sum_left() + (1 << shift)) >> (shift + 1),
                (true, false) => (sum_above() + (1 << (shift - 1))) >> shift,
                (false, true) => (sum_left() + (1 << (shift - 1))) >> shift,
                (false, false) => 128,
            } as u8;
            for r in 0..N {
                p.data[(y0 + r) * stride + x0..][..N].fill(dc);
            }
        }
        BlockMode::V => {
            let a = above_row::<N>(p, x0, y0);
            for r in 0..N {
                p.data[(y0 + r) * stride + x0..][..N].copy_from_slice(&a);
            }
        }
        BlockMode::H => {
            let l = left_col::<N>(p, x0, y0);
            for (r, &v) in l.iter().enumerate() {
                p.data[(y0 + r) * stride + x0..][..N].fill(v);
            }
        }
        BlockMode::Tm => {
            let a = above_row::<N>(p, x0, y0);
            let l = left_col::<N>(p, x0, y0);
            let corner = above_left(p, x0, y0) as i32;
            for (r, &lv) in l.iter().enumerate() {
                let base = lv as i32 - corner;
                let row = &mut p.data[(y0 + r) * stride + x0..][..N];
                for (px, &av) in row.iter_mut().zip(&a) {
                    *px = (base + av as i32).clamp(0, 255) as u8;
                }
            }
        }
    }
}

/// Predict the 16x16 luma block of macroblock (mbx, mby) with a whole-block mode.
///
/// # Panics
/// If `mode` is not one of Dc, V, H, Tm (B_PRED goes through [`predict_luma4`], inter modes
/// through inter prediction): that is a caller bug, not a property of the stream.
pub fn predict_luma16(y: &mut Plane, mbx: usize, mby: usize, mode: MbMode) {
    let mode = match mode {
        MbMode::Dc => BlockMode::Dc,
        MbMode::V => BlockMode::V,
        MbMode::H => BlockMode::H,
        MbMode::Tm => BlockMode::Tm,
        other => panic!("predict_luma16 called with non-16x16 mode {other:?}"),
    };
    predict_block::<16>(y, mbx * 16, mby * 16, mode);
}

/// Predict the 8x8 block of one chroma plane (U or V) of macroblock (mbx, mby).
pub fn predict_chroma8(p: &mut Plane, mbx: usize, mby: usize, mode: UvMode) {
    let mode = match mode {
        UvMode::Dc => BlockMode::Dc,
        UvMode::V => BlockMode::V,
        UvMode::H => BlockMode::H,
        UvMode::Tm => BlockMode::Tm,
    };
    predict_block::<8>(p, mbx * 8, mby * 8, mode);
}

/// The 13 edge pixels of a 4x4 subblock, laid out as the spec's `E` array extended by the
/// above-right pixels: `e[0..4]` = L[3], L[2], L[1], L[0]; `e[4]` = P; `e[5..13]` = A[0..8].
fn subblock_edge(y: &Plane, mbx: usize, mby: usize, b: usize) -> [u8; 13] {
    let x0 = mbx * 16 + (b % 4) * 4;
    let y0 = mby * 16 + (b / 4) * 4;
    let mut e = [0u8; 13];
    let l = left_col::<4>(y, x0, y0);
    for i in 0..4 {
        e[3 - i] = l[i];
    }
    e[4] = above_left(y, x0, y0);
    let a = above_row::<4>(y, x0, y0);
    e[5..9].copy_from_slice(&a);
    let above_right: [u8; 4] = if b % 4 != 3 {
        // Row directly above the subblock: above MB (b < 4) or subblock b - 3.
        above_row::<8>(y, x0, y0)[4..].try_into().expect("4 of 8")
    } else if mby == 0 {
        [ABOVE_EDGE; 4]
    } else {
        let row = (mby * 16 - 1) * y.stride;
        if (mbx + 1) * 16 >= y.width {
            [y.data[row + mbx * 16 + 15]; 4]
        } else {
            let s = row + mbx * 16 + 16;
            y.data[s..s + 4].try_into().expect("4 pixels")
        }
    };
    e[9..13].copy_from_slice(&above_right);
    e
}

/// Compute a 4x4 subblock prediction from its edge (spec 12.3 `subblock_intra_predict`).
/// Returned in raster order `B[r][c]`.
pub fn subblock_predict(e: &[u8; 13], mode: BMode) -> [[u8; 4]; 4] {
    let ev = |i: usize| e[i] as u32;
    // A[i] = e[5 + i] (A[-1] = P = e[4]); L[i] = e[3 - i] (L[-1] = P).
    let a = |i: usize| ev(5 + i);
    let l = |i: usize| ev(3 - i);
    let avg3 = |x: u32, y: u32, z: u32| ((x + 2 * y + z + 2) >> 2) as u8;
    let avg2 = |x: u32, y: u32| ((x + y + 1) >> 1) as u8;
    // Averages centred on e[i] and between e[i] and e[i + 1].
    let e3 = |i: usize| avg3(ev(i - 1), ev(i), ev(i + 1));
    let e2 = |i: usize| avg2(ev(i), ev(i + 1));
    let mut b = [[0u8; 4]; 4];
    match mode {
        BMode::Dc => {
            let v = ((0..4).map(|i| a(i) + l(i)).sum::<u32>() + 4) >> 3;
            b = [[v as u8; 4]; 4];
        }
        BMode::Tm => {
            let p = ev(4) as i32;
            for (r, row) in b.iter_mut().enumerate() {
                for (c, px) in row.iter_mut().enumerate() {
                    *px = (l(r) as i32 + a(c) as i32 - p).clamp(0, 255) as u8;
                }
            }
        }
        BMode::Ve => {
            // avg3p(A + c), which for c = 0 uses P and for c = 3 uses A[4].
            let row: [u8; 4] = std::array::from_fn(|c| e3(5 + c));
            b = [row; 4];
        }
        BMode::He => {
            // avg3p(L + r) for r = 0..2 (L[-1] = P); the bottom row uses avg3(L2, L3, L3).
            let v = [
                avg3(ev(4), l(0), l(1)),
                avg3(l(0), l(1), l(2)),
                avg3(l(1), l(2), l(3)),
                avg3(l(2), l(3), l(3)),
            ];
            for (row, &x) in b.iter_mut().zip(&v) {
                *row = [x; 4];
            }
        }
        BMode::Ld => {
            // Pixel (r, c) lies on anti-diagonal r + c; predictor avg3p(A + r + c + 1).
            for (r, row) in b.iter_mut().enumerate() {
                for (c, px) in row.iter_mut().enumerate() {
                    let d = r + c;
                    *px = if d == 6 { avg3(a(6), a(7), a(7)) } else { e3(5 + d + 1) };
                }
            }
        }
        BMode::Rd => {
            // Pixel (r, c) lies on diagonal c - r; predictor avg3p(E + 4 + c - r).
            for (r, row) in b.iter_mut().enumerate() {
                for (c, px) in row.iter_mut().enumerate() {
                    *px = e3(4 + c - r);
                }
            }
        }
        BMode::Vr => {
            b[3][0] = e3(2);
            b[2][0] = e3(3);
            b[3][1] = e3(4);
            b[1][0] = b[3][1];
            b[2][1] = e2(4);
            b[0][0] = b[2][1];
            b[3][2] = e3(5);
            b[1][1] = b[3][2];
            b[2][2] = e2(5);
            b[0][1] = b[2][2];
            b[3][3] = e3(6);
            b[1][2] = b[3][3];
            b[2][3] = e2(6);
            b[0][2] = b[2][3];
            b[1][3] = e3(7);
            b[0][3] = e2(7);
        }
        BMode::Vl => {
            // In terms of A: avg2p(A + i) = e2(5 + i), avg3p(A + i) = e3(5 + i).
            b[0][0] = e2(5);
            b[1][0] = e3(6);
            b[2][0] = e2(6);
            b[0][1] = b[2][0];
            b[1][1] = e3(7);
            b[3][0] = b[1][1];
            b[2][1] = e2(7);
            b[0][2] = b[2][1];
            b[3][1] = e3(8);
            b[1][2] = b[3][1];
            b[2][2] = e2(8);
            b[0][3] = b[2][2];
            b[3][2] = e3(9);
            b[1][3] = b[3][2];
            b[2][3] = e3(10);
            b[3][3] = e3(11);
        }
        BMode::Hd => {
            b[3][0] = e2(0);
            b[3][1] = e3(1);
            b[2][0] = e2(1);
            b[3][2] = b[2][0];
            b[2][1] = e3(2);
            b[3][3] = b[2][1];
            b[2][2] = e2(2);
            b[1][0] = b[2][2];
            b[2][3] = e3(3);
            b[1][1] = b[2][3];
            b[1][2] = e2(3);
            b[0][0] = b[1][2];
            b[1][3] = e3(4);
            b[0][1] = b[1][3];
            b[0][2] = e3(5);
            b[0][3] = e3(6);
        }
        BMode::Hu => {
            // In terms of L: avg2p(L + i) = avg2(L[i], L[i + 1]), avg3p(L + i) likewise.
            let l2 = |i: usize| avg2(l(i), l(i + 1));
            let l3 = |i: usize| avg3(l(i - 1), l(i), l(i + 1));
            b[0][0] = l2(0);
            b[0][1] = l3(1);
            b[0][2] = l2(1);
            b[1][0] = b[0][2];
            b[0][3] = l3(2);
            b[1][1] = b[0][3];
            b[1][2] = l2(2);
            b[2][0] = b[1][2];
            b[1][3] = avg3(l(2), l(3), l(3));
            b[2][1] = b[1][3];
            let v = l(3) as u8;
            b[2][2] = v;
            b[2][3] = v;
            b[3] = [v; 4];
        }
    }
    b
}

/// Predict 4x4 luma subblock `b` (0..16, raster order within the macroblock) of macroblock
/// (mbx, mby) with `mode`, writing into `y`.
///
/// The decoder predicts and adds the residue of each subblock in order, so subblocks
/// 0..b-1 of the current macroblock are final when this runs; see the module doc for the
/// above-right rule.
pub fn predict_luma4(y: &mut Plane, mbx: usize, mby: usize, b: usize, mode: BMode) {
    let e = subblock_edge(y, mbx, mby, b);
    let pred = subblock_predict(&e, mode);
    let x0 = mbx * 16 + (b % 4) * 4;
    let y0 = mby * 16 + (b / 4) * 4;
    for (r, row) in pred.iter().enumerate() {
        y.data[(y0 + r) * y.stride + x0..][..4].copy_from_slice(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// A plane of `mbw` x `mbh` macroblocks (of `size` pixels) with random content.
    fn random_plane(seed: u64, w: usize, h: usize) -> Plane {
        let mut rng = Rng(seed);
        let mut p = Plane::new(w, h);
        for v in p.data.iter_mut() {
            *v = (rng.next() % 256) as u8;
        }
        p
    }

    fn block(p: &Plane, x0: usize, y0: usize, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|r| (0..n).map(|c| p.at(x0 + c, y0 + r)).collect()).collect()
    }

    /// Expected N x N prediction computed from explicitly given edges.
    fn expect_block(n: usize, mode: BlockMode, a: &[u8], l: &[u8], p: u8, dc: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|r| {
                (0..n)
                    .map(|c| match mode {
                        BlockMode::Dc => dc,
                        BlockMode::V => a[c],
                        BlockMode::H => l[r],
                        BlockMode::Tm => (l[r] as i32 + a[c] as i32 - p as i32).clamp(0, 255) as u8,
                    })
                    .collect()
            })
            .collect()
    }

    fn check_whole_block(n: usize, mbx: usize, mby: usize) {
        let (w, h) = (3 * n, 3 * n);
        let (x0, y0) = (mbx * n, mby * n);
        for (mode, mb_mode, uv_mode) in [
            (BlockMode::Dc, MbMode::Dc, UvMode::Dc),
            (BlockMode::V, MbMode::V, UvMode::V),
            (BlockMode::H, MbMode::H, UvMode::H),
            (BlockMode::Tm, MbMode::Tm, UvMode::Tm),
        ] {
            let orig = random_plane(42 + (mbx * 3 + mby) as u64, w, h);
            let a: Vec<u8> = if y0 == 0 {
                vec![127; n]
            } else {
                (0..n).map(|c| orig.at(x0 + c, y0 - 1)).collect()
            };
            let l: Vec<u8> = if x0 == 0 {
                vec![129; n]
            } else {
                (0..n).map(|r| orig.at(x0 - 1, y0 + r)).collect()
            };
            let p = if y0 == 0 {
                127
            } else if x0 == 0 {
                129
            } else {
                orig.at(x0 - 1, y0 - 1)
            };
            let sum = |v: &[u8]| v.iter().map(|&x| x as u32).sum::<u32>();
            let shf = n.trailing_zeros();
            let dc = match (y0 > 0, x0 > 0) {
                (true, true) => (sum(&a) + sum(&l) + n as u32) >> (shf + 1),
                (true, false) => (sum(&a) + n as u32 / 2) >> shf,
                (false, true) => (sum(&l) + n as u32 / 2) >> shf,
                (false, false) => 128,
            } as u8;
            let mut plane = orig.clone();
            if n == 16 {
                predict_luma16(&mut plane, mbx, mby, mb_mode);
            } else {
                predict_chroma8(&mut plane, mbx, mby, uv_mode);
            }
            assert_eq!(
                block(&plane, x0, y0, n),
                expect_block(n, mode, &a, &l, p, dc),
                "n {n} mb ({mbx},{mby}) {mode:?}"
            );
            // Nothing outside the block changed.
            for yy in 0..h {
                for xx in 0..w {
                    if !(x0..x0 + n).contains(&xx) || !(y0..y0 + n).contains(&yy) {
                        assert_eq!(plane.at(xx, yy), orig.at(xx, yy));
                    }
                }
            }
        }
    }

    #[test]
    fn whole_block_modes_at_all_positions() {
        for n in [16, 8] {
            for (mbx, mby) in [(1, 1), (1, 0), (0, 1), (0, 0), (2, 1), (2, 2)] {
                check_whole_block(n, mbx, mby);
            }
        }
    }

    #[test]
    fn edge_cases_hand_values() {
        // Top-left macroblock: DC 128, V 127, H 129, TM 129 + 127 - 127 = 129.
        let mut p = Plane::filled(32, 32, 0);
        predict_luma16(&mut p, 0, 0, MbMode::Dc);
        assert_eq!(p.at(5, 5), 128);
        predict_luma16(&mut p, 0, 0, MbMode::V);
        assert_eq!(p.at(15, 15), 127);
        predict_luma16(&mut p, 0, 0, MbMode::H);
        assert_eq!(p.at(0, 0), 129);
        predict_luma16(&mut p, 0, 0, MbMode::Tm);
        assert!(block(&p, 0, 0, 16).iter().flatten().all(|&v| v == 129));
        // Top row, second macroblock: left column all 200 -> DC averages only L = 200, and
        // TM = L + 127 - 127 = L.
        let mut p = Plane::filled(32, 32, 200);
        predict_chroma8(&mut p, 1, 0, UvMode::Dc);
        assert!(block(&p, 8, 0, 8).iter().flatten().all(|&v| v == 200));
        // Left column, second row: above row 10, left 129 -> TM = 129 + 10 - 129 = 10.
        let mut p = Plane::filled(16, 32, 10);
        predict_chroma8(&mut p, 0, 1, UvMode::Tm);
        assert!(block(&p, 0, 8, 8).iter().flatten().all(|&v| v == 10));
        // TM saturation: L = 250, A = 250, P = 0 -> 255; L = 0, A = 0, P = 250 -> 0.
        let mut p = Plane::filled(32, 32, 250);
        p.data[15 * 32 + 15] = 0;
        predict_luma16(&mut p, 1, 1, MbMode::Tm);
        assert_eq!(p.at(20, 20), 255);
        let mut p = Plane::filled(32, 32, 0);
        p.data[15 * 32 + 15] = 250;
        predict_luma16(&mut p, 1, 1, MbMode::Tm);
        assert_eq!(p.at(20, 20), 0);
    }

    /// Edge as (L[0..4], P, A[0..8]) from `subblock_edge`'s layout.
    fn split_edge(e: &[u8; 13]) -> ([u8; 4], u8, [u8; 8]) {
        ([e[3], e[2], e[1], e[0]], e[4], e[5..13].try_into().unwrap())
    }

    #[test]
    fn subblock_edges_interior_and_above_right() {
        // 3 x 2 macroblocks; pixel value encodes position so we can tell where it came from.
        let (w, h) = (48, 32);
        let mut y = Plane::new(w, h);
        for r in 0..h {
            for c in 0..w {
                y.data[r * w + c] = ((r * 7 + c * 3) % 251) as u8;
            }
        }
        let px = |x: usize, r: usize| ((r * 7 + x * 3) % 251) as u8;
        // Interior subblock 5 of MB (1, 1): everything from the plane; above-right from
        // subblock 2 of the same MB (row y0 - 1, columns x0 + 4 ..).
        let (x0, y0) = (16 + 4, 16 + 4);
        let (l, p, a) = split_edge(&subblock_edge(&y, 1, 1, 5));
        assert_eq!(l, std::array::from_fn(|i| px(x0 - 1, y0 + i)));
        assert_eq!(p, px(x0 - 1, y0 - 1));
        assert_eq!(a, std::array::from_fn(|i| px(x0 + i, y0 - 1)));
        // Subblocks 3, 7, 11, 15 of MB (1, 1) use the row above the MB, columns 32..36.
        for b in [3, 7, 11, 15] {
            let (_, _, a) = split_edge(&subblock_edge(&y, 1, 1, b));
            let x0 = 16 + 12;
            let y0 = 16 + (b / 4) * 4;
            for i in 0..4 {
                assert_eq!(a[i], px(x0 + i, y0 - 1), "b {b} above");
                assert_eq!(a[4 + i], px(32 + i, 15), "b {b} above-right");
            }
        }
        // Rightmost MB (2, 1): above-right = 4 copies of (-1, 15) = pixel (47, 15).
        for b in [3, 7, 11, 15] {
            let (_, _, a) = split_edge(&subblock_edge(&y, 2, 1, b));
            assert_eq!(&a[4..], &[px(47, 15); 4], "b {b}");
        }
        // Subblock 2 of MB (2, 1) is not in the right column: its above-right is the above
        // macroblock's bottom row, columns 44..48 (inside the frame).
        let (_, _, a) = split_edge(&subblock_edge(&y, 2, 1, 2));
        assert_eq!(&a[4..], &[px(44, 15), px(45, 15), px(46, 15), px(47, 15)]);
        // Top macroblock row: row above = 127 including above-right and P (b = 0..3); for
        // b = 7 only the above-right is 127, the row above is the MB's own subblock 3.
        for b in 0..4 {
            let (_, p, a) = split_edge(&subblock_edge(&y, 1, 0, b));
            assert_eq!(a, [127; 8], "b {b}");
            assert_eq!(p, 127);
        }
        for b in [7, 11, 15] {
            let (_, p, a) = split_edge(&subblock_edge(&y, 2, 0, b));
            let y0 = (b / 4) * 4;
            assert_eq!(&a[..4], &[px(44, y0 - 1), px(45, y0 - 1), px(46, y0 - 1), px(47, y0 - 1)]);
            assert_eq!(&a[4..], &[127; 4]);
            assert_eq!(p, px(43, y0 - 1));
        }
        // Left column: L = 129; P = 129 below the top frame row, 127 on it.
        let (l, p, _) = split_edge(&subblock_edge(&y, 0, 1, 0));
        assert_eq!((l, p), ([129; 4], 129));
        let (l, p, _) = split_edge(&subblock_edge(&y, 0, 1, 4));
        assert_eq!((l, p), ([129; 4], 129));
        let (l, p, a) = split_edge(&subblock_edge(&y, 0, 0, 0));
        assert_eq!((l, p, a), ([129; 4], 127, [127; 8]));
        let (l, p, _) = split_edge(&subblock_edge(&y, 0, 0, 4));
        assert_eq!((l, p), ([129; 4], 129));
        // Subblock 1 in the left MB column still has a real left column (subblock 0).
        let (l, p, _) = split_edge(&subblock_edge(&y, 0, 1, 1));
        assert_eq!(l, std::array::from_fn(|i| px(3, 16 + i)));
        assert_eq!(p, px(3, 15));
    }

    #[allow(clippy::needless_range_loop)]
    /// Literal transcription of spec 12.3 `subblock_intra_predict`, with `A` and `L` as
    /// arrays offset by one so that index -1 (P) exists.
    fn spec_subblock(l: [u8; 4], p: u8, a: [u8; 8], mode: BMode) -> [[u8; 4]; 4] {
        let av = |i: isize| if i < 0 { p as u32 } else { a[i as usize] as u32 };
        let lv = |i: isize| if i < 0 { p as u32 } else { l[i as usize] as u32 };
        let e: [u32; 9] = [lv(3), lv(2), lv(1), lv(0), p as u32, av(0), av(1), av(2), av(3)];
        let avg3 = |x: u32, y: u32, z: u32| ((x + y + y + z + 2) >> 2) as u8;
        let avg2 = |x: u32, y: u32| ((x + y + 1) >> 1) as u8;
        let a3 = |i: isize| avg3(av(i - 1), av(i), av(i + 1));
        let a2 = |i: isize| avg2(av(i), av(i + 1));
        let l3 = |i: isize| avg3(lv(i - 1), lv(i), lv(i + 1));
        let l2 = |i: isize| avg2(lv(i), lv(i + 1));
        let e3 = |i: usize| avg3(e[i - 1], e[i], e[i + 1]);
        let e2 = |i: usize| avg2(e[i], e[i + 1]);
        let mut b = [[0u8; 4]; 4];
        match mode {
            BMode::Dc => {
                let mut v = 4;
                for i in 0..4 {
                    v += av(i) + lv(i);
                }
                b = [[(v >> 3) as u8; 4]; 4];
            }
            BMode::Tm => {
                for r in 0..4 {
                    for c in 0..4 {
                        b[r][c] = (lv(r as isize) as i32 + av(c as isize) as i32 - p as i32)
                            .clamp(0, 255) as u8;
                    }
                }
            }
            BMode::Ve => {
                for c in 0..4 {
                    for r in 0..4 {
                        b[r][c] = a3(c as isize);
                    }
                }
            }
            BMode::He => {
                let mut v = avg3(lv(2), lv(3), lv(3));
                let mut r = 3isize;
                loop {
                    b[r as usize] = [v; 4];
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                    v = l3(r);
                }
            }
            BMode::Ld => {
                b[0][0] = a3(1);
                (b[0][1], b[1][0]) = (a3(2), a3(2));
                (b[0][2], b[1][1], b[2][0]) = (a3(3), a3(3), a3(3));
                (b[0][3], b[1][2], b[2][1], b[3][0]) = (a3(4), a3(4), a3(4), a3(4));
                (b[1][3], b[2][2], b[3][1]) = (a3(5), a3(5), a3(5));
                (b[2][3], b[3][2]) = (a3(6), a3(6));
                b[3][3] = avg3(av(6), av(7), av(7));
            }
            BMode::Rd => {
                b[3][0] = e3(1);
                (b[3][1], b[2][0]) = (e3(2), e3(2));
                (b[3][2], b[2][1], b[1][0]) = (e3(3), e3(3), e3(3));
                (b[3][3], b[2][2], b[1][1], b[0][0]) = (e3(4), e3(4), e3(4), e3(4));
                (b[2][3], b[1][2], b[0][1]) = (e3(5), e3(5), e3(5));
                (b[1][3], b[0][2]) = (e3(6), e3(6));
                b[0][3] = e3(7);
            }
            BMode::Vr => {
                b[3][0] = e3(2);
                b[2][0] = e3(3);
                (b[3][1], b[1][0]) = (e3(4), e3(4));
                (b[2][1], b[0][0]) = (e2(4), e2(4));
                (b[3][2], b[1][1]) = (e3(5), e3(5));
                (b[2][2], b[0][1]) = (e2(5), e2(5));
                (b[3][3], b[1][2]) = (e3(6), e3(6));
                (b[2][3], b[0][2]) = (e2(6), e2(6));
                b[1][3] = e3(7);
                b[0][3] = e2(7);
            }
            BMode::Vl => {
                b[0][0] = a2(0);
                b[1][0] = a3(1);
                (b[2][0], b[0][1]) = (a2(1), a2(1));
                (b[1][1], b[3][0]) = (a3(2), a3(2));
                (b[2][1], b[0][2]) = (a2(2), a2(2));
                (b[3][1], b[1][2]) = (a3(3), a3(3));
                (b[2][2], b[0][3]) = (a2(3), a2(3));
                (b[3][2], b[1][3]) = (a3(4), a3(4));
                b[2][3] = a3(5);
                b[3][3] = a3(6);
            }
            BMode::Hd => {
                b[3][0] = e2(0);
                b[3][1] = e3(1);
                (b[2][0], b[3][2]) = (e2(1), e2(1));
                (b[2][1], b[3][3]) = (e3(2), e3(2));
                (b[2][2], b[1][0]) = (e2(2), e2(2));
                (b[2][3], b[1][1]) = (e3(3), e3(3));
                (b[1][2], b[0][0]) = (e2(3), e2(3));
                (b[1][3], b[0][1]) = (e3(4), e3(4));
                b[0][2] = e3(5);
                b[0][3] = e3(6);
            }
            BMode::Hu => {
                b[0][0] = l2(0);
                b[0][1] = l3(1);
                (b[0][2], b[1][0]) = (l2(1), l2(1));
                (b[0][3], b[1][1]) = (l3(2), l3(2));
                (b[1][2], b[2][0]) = (l2(2), l2(2));
                (b[1][3], b[2][1]) = (avg3(lv(2), lv(3), lv(3)), avg3(lv(2), lv(3), lv(3)));
                let v = lv(3) as u8;
                (b[2][2], b[2][3]) = (v, v);
                b[3] = [v; 4];
            }
        }
        b
    }

    #[test]
    fn subblock_modes_match_spec_transcription() {
        let mut rng = Rng(5);
        for _ in 0..3000 {
            let mut e = [0u8; 13];
            for v in e.iter_mut() {
                *v = (rng.next() % 256) as u8;
            }
            let (l, p, a) = split_edge(&e);
            for mode in BMode::ALL {
                assert_eq!(subblock_predict(&e, mode), spec_subblock(l, p, a, mode), "{mode:?}");
            }
        }
    }

    #[test]
    fn subblock_modes_hand_values() {
        // L = 10, 20, 30, 40; P = 50; A = 60, 70, ..., 130.
        let e = [40, 30, 20, 10, 50, 60, 70, 80, 90, 100, 110, 120, 130];
        let ld = subblock_predict(&e, BMode::Ld);
        assert_eq!(ld[0][0], 70); // avg3(A0, A1, A2) = (60 + 140 + 80 + 2) >> 2
        assert_eq!(ld[3][3], 128); // avg3(A6, A7, A7) = (120 + 260 + 130 + 2) >> 2
        let he = subblock_predict(&e, BMode::He);
        assert_eq!(he[0], [(50 + 20 + 20 + 2) >> 2; 4]); // avg3(P, L0, L1) = 23
        assert_eq!(he[3], [38; 4]); // avg3(L2, L3, L3) = (30 + 80 + 40 + 2) >> 2
        let hu = subblock_predict(&e, BMode::Hu);
        assert_eq!(hu[3], [40; 4]);
        assert_eq!(hu[0][0], 15);
        let dc = subblock_predict(&e, BMode::Dc);
        assert_eq!(dc[2][2], 50); // (100 + 300 + 4) >> 3
        let vr = subblock_predict(&e, BMode::Vr);
        assert_eq!(vr[0][0], 55); // avg2(P, A0)
        assert_eq!(vr[0][3], 85); // avg2(A2, A3)
    }

    #[test]
    fn predict_luma4_writes_only_its_subblock() {
        let orig = random_plane(9, 32, 32);
        for b in 0..16 {
            for mode in BMode::ALL {
                let mut y = orig.clone();
                let e = subblock_edge(&y, 1, 1, b);
                predict_luma4(&mut y, 1, 1, b, mode);
                let (x0, y0) = (16 + (b % 4) * 4, 16 + (b / 4) * 4);
                let want = subblock_predict(&e, mode);
                for yy in 0..32 {
                    for xx in 0..32 {
                        let inside = (x0..x0 + 4).contains(&xx) && (y0..y0 + 4).contains(&yy);
                        let v = if inside { want[yy - y0][xx - x0] } else { orig.at(xx, yy) };
                        assert_eq!(y.at(xx, yy), v);
                    }
                }
            }
        }
    }
}
