//! Per-macroblock prediction records: what the mode parser produces and reconstruction consumes.
//! Names follow RFC 6386 (sections 8.1, 11, 16).

/// Luma prediction mode of a macroblock (`intra_mbmode` / `mv_ref` in the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MbMode {
    #[default]
    Dc,
    V,
    H,
    Tm,
    /// Each 4x4 luma subblock has its own `BMode`.
    BPred,
    /// Inter modes: the macroblock's motion vector came from one of these.
    Nearest,
    Near,
    Zero,
    New,
    /// Up to 16 motion vectors, one per luma subblock.
    Split,
}

impl MbMode {
    pub fn is_inter(self) -> bool {
        matches!(self, MbMode::Nearest | MbMode::Near | MbMode::Zero | MbMode::New | MbMode::Split)
    }
}

impl MbMode {
    /// The key-frame / intra luma modes in the spec's tree-leaf order (`intra_mbmode`).
    pub const INTRA: [MbMode; 5] = [MbMode::Dc, MbMode::V, MbMode::H, MbMode::Tm, MbMode::BPred];
}

/// Chroma intra mode (`uv_mode`); same set as the 16x16 luma intra modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum UvMode {
    #[default]
    Dc,
    V,
    H,
    Tm,
}

impl UvMode {
    /// Every chroma mode, in the spec's tree-leaf order.
    pub const ALL: [UvMode; 4] = [UvMode::Dc, UvMode::V, UvMode::H, UvMode::Tm];
}

/// 4x4 luma subblock intra mode (`intra_bmode`), in the spec's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BMode {
    #[default]
    Dc,
    Tm,
    Ve,
    He,
    Ld,
    Rd,
    Vr,
    Vl,
    Hd,
    Hu,
}

impl BMode {
    /// Every subblock mode, in the spec's tree-leaf order.
    pub const ALL: [BMode; 10] = [
        BMode::Dc,
        BMode::Tm,
        BMode::Ve,
        BMode::He,
        BMode::Ld,
        BMode::Rd,
        BMode::Vr,
        BMode::Vl,
        BMode::Hd,
        BMode::Hu,
    ];
}

/// Which picture a macroblock predicts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RefFrame {
    #[default]
    Intra,
    Last,
    Golden,
    AltRef,
}

/// A motion vector in quarter-pel luma units (row = vertical, col = horizontal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mv {
    pub row: i16,
    pub col: i16,
}

/// Everything decoded about one macroblock before its residual.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MbInfo {
    pub y_mode: MbMode,
    pub uv_mode: UvMode,
    /// Subblock modes; meaningful when `y_mode == BPred`. For other intra modes the decoder
    /// fills in the implied mode (needed as context for neighbouring B_PRED subblocks).
    pub b_modes: [BMode; 16],
    pub ref_frame: RefFrame,
    /// The macroblock's motion vector (for Split, the last subblock's, as the spec uses it for
    /// neighbours' near/nearest search).
    pub mv: Mv,
    /// Per-subblock luma motion vectors (all equal to `mv` unless Split).
    pub mvs: [Mv; 16],
    pub segment_id: u8,
    /// `mb_skip_coeff`: the macroblock has no non-zero coefficients coded.
    pub skip_coeff: bool,
}
