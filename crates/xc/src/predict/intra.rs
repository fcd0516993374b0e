//! PLACEHOLDER (branch xc-bitstream only): xc-recon's intra prediction signatures.
use crate::frame::Plane;
use crate::mb::{BMode, MbMode, UvMode};

pub fn predict_luma16(y: &mut Plane, mbx: usize, mby: usize, mode: MbMode) {
    let _ = (y, mbx, mby, mode);
}
pub fn predict_chroma8(p: &mut Plane, mbx: usize, mby: usize, mode: UvMode) {
    let _ = (p, mbx, mby, mode);
}
pub fn predict_luma4(y: &mut Plane, mbx: usize, mby: usize, b: usize, mode: BMode) {
    let _ = (y, mbx, mby, b, mode);
}
