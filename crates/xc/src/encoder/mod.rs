//! The VP8 encoder, in the same explicit state-passing style as the decoder.
//!
//! Encoding a frame is three steps with plain data between them:
//!
//! 1. **analysis** (`analysis`, `rdo`, `fdct`, `quantize`): given the entering
//!    [`DecoderState`] and the source picture, choose every macroblock's prediction (intra modes,
//!    or reference frame and motion vectors) and its quantized residual. Reconstruction inside
//!    the frame uses the decoder's own prediction, dequantization and inverse transforms, so it
//!    is exactly what any decoder computes. The result is a [`FrameDecisions`].
//! 2. **bitstream** (`bool_encoder`, `bitstream`): write a [`FrameDecisions`] as a VP8 frame,
//!    choosing probability updates (coefficients, motion vectors, skip) that pay for themselves.
//! 3. the **decoder** turns the written bytes into the next state, so the state an encoder hands
//!    on is by construction the state every decoder reaches.
//!
//! Rebase (`rebase`) reuses step 1's prediction decisions from another stream and recomputes
//! only the residuals against a new state, then runs steps 2 and 3.

use crate::header::FrameHeader;
use crate::mb::MbInfo;
use crate::state::{LfAdjust, Segmentation};

/// The quantized coefficient levels of one macroblock: for each block, 16 levels in raster
/// order (not zigzag). Block order is the decoder's (`tokens::MbCoeffs`): 0..16 luma, 16..20 U,
/// 20..24 V, 24 the Y2 block (used only when the macroblock's mode is neither B_PRED nor SPLITMV;
/// then each luma block's level 0 is not coded and must be 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MbLevels {
    pub blocks: [[i16; 16]; 25],
}

impl MbLevels {
    pub fn is_zero(&self) -> bool {
        self.blocks.iter().all(|b| b.iter().all(|&v| v == 0))
    }
}

/// Everything needed to write one frame, decided before any bit is written.
#[derive(Clone, Debug, Default)]
pub struct FrameDecisions {
    pub key_frame: bool,
    /// Bitstream version 0..=3 (0: 6-tap filters and the normal loop filter).
    pub version: u8,
    pub show_frame: bool,
    /// Picture size, written in key frames (must equal the state's size in inter frames).
    pub width: u16,
    pub height: u16,
    /// Header fields as the decoder parses them. The writer computes `prob_skip_false`,
    /// `prob_intra`, `prob_last` and `prob_gf` itself from `mbs` (their input values are
    /// ignored); everything else is written as given.
    pub header: FrameHeader,
    /// Segmentation in force for this frame (written when `header.update_segment_feature_data`;
    /// per-macroblock ids come from `MbInfo::segment_id` when `header.update_mb_segmentation_map`).
    pub segmentation: Segmentation,
    /// Loop-filter deltas in force for this frame; written when they differ from the state's.
    pub lf_adjust: LfAdjust,
    /// One record per macroblock in raster order. `skip_coeff` is recomputed by the writer
    /// from `levels` when `header.mb_no_skip_coeff` is set.
    pub mbs: Vec<MbInfo>,
    pub levels: Vec<MbLevels>,
}

pub mod fdct;
pub mod quantize;
pub mod rdo;
