//! PLACEHOLDER (branch xc-bitstream only): xc-recon's inter prediction signatures.
use crate::frame::Frame;
use crate::mb::MbInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterFilter {
    SixTap,
    Bilinear,
}

pub fn predict_inter_mb(
    reference: &Frame,
    dst: &mut Frame,
    mbx: usize,
    mby: usize,
    info: &MbInfo,
    filter: InterFilter,
    full_pixel: bool,
) {
    let _ = (reference, dst, mbx, mby, info, filter, full_pixel);
}
