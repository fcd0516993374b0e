//! PLACEHOLDER (branch xc-bitstream only): xc-recon's loop filter signatures.
use crate::frame::Frame;
use crate::mb::{MbMode, RefFrame};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterType {
    Normal,
    Simple,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LfDeltas {
    pub ref_deltas: [i8; 4],
    pub mode_deltas: [i8; 4],
}

pub fn mb_filter_level(base: u8, deltas: Option<&LfDeltas>, ref_frame: RefFrame, mode: MbMode) -> u8 {
    let _ = (deltas, ref_frame, mode);
    base
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MbEdgeInfo {
    pub level: u8,
    pub filter_inner: bool,
}

pub fn filter_frame(frame: &mut Frame, mbs: &[MbEdgeInfo], filter_type: FilterType, sharpness: u8, key_frame: bool) {
    let _ = (frame, mbs, filter_type, sharpness, key_frame);
}
