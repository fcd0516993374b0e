//! Pixel blocks of a macroblock: copies between planes and fixed-size row-major arrays.

use crate::frame::{Frame, Plane};

/// The pixels of one macroblock: 16x16 luma and two 8x8 chroma blocks, row-major.
#[derive(Clone, Copy)]
pub(crate) struct MbPixels {
    pub(crate) y: [u8; 256],
    pub(crate) u: [u8; 64],
    pub(crate) v: [u8; 64],
}

impl Default for MbPixels {
    fn default() -> Self {
        MbPixels { y: [0; 256], u: [0; 64], v: [0; 64] }
    }
}

/// The `N` x `N` block (`S` = `N * N` pixels) of `p` whose top-left is (x0, y0).
pub(crate) fn read_block<const N: usize, const S: usize>(
    p: &Plane,
    x0: usize,
    y0: usize,
) -> [u8; S] {
    let mut out = [0u8; S];
    for r in 0..N {
        let o = (y0 + r) * p.stride + x0;
        out[r * N..r * N + N].copy_from_slice(&p.data[o..o + N]);
    }
    out
}

/// Store an `N` x `N` block at (x0, y0) of `p`.
pub(crate) fn write_block<const N: usize>(p: &mut Plane, x0: usize, y0: usize, px: &[u8]) {
    for r in 0..N {
        let o = (y0 + r) * p.stride + x0;
        p.data[o..o + N].copy_from_slice(&px[r * N..r * N + N]);
    }
}

pub(crate) fn read_luma(f: &Frame, mbx: usize, mby: usize) -> [u8; 256] {
    read_block::<16, 256>(&f.y, mbx * 16, mby * 16)
}

pub(crate) fn read_chroma(f: &Frame, mbx: usize, mby: usize) -> ([u8; 64], [u8; 64]) {
    (read_block::<8, 64>(&f.u, mbx * 8, mby * 8), read_block::<8, 64>(&f.v, mbx * 8, mby * 8))
}

pub(crate) fn read_mb(f: &Frame, mbx: usize, mby: usize) -> MbPixels {
    let (u, v) = read_chroma(f, mbx, mby);
    MbPixels { y: read_luma(f, mbx, mby), u, v }
}

pub(crate) fn write_mb(f: &mut Frame, mbx: usize, mby: usize, px: &MbPixels) {
    write_block::<16>(&mut f.y, mbx * 16, mby * 16, &px.y);
    write_block::<8>(&mut f.u, mbx * 8, mby * 8, &px.u);
    write_block::<8>(&mut f.v, mbx * 8, mby * 8, &px.v);
}

/// The 4x4 block `(bx, by)` of an `n`-wide pixel array.
pub(crate) fn sub4(px: &[u8], n: usize, bx: usize, by: usize) -> [u8; 16] {
    std::array::from_fn(|i| px[(by * 4 + i / 4) * n + bx * 4 + i % 4])
}
