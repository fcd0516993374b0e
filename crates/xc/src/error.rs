//! Decoder errors: every way a VP8 frame or container can be rejected, each naming what failed.

use std::fmt;

/// Why a frame (or an IVF file, or a serialized decoder state) could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is shorter than its uncompressed data chunk (3-byte tag, plus 7 bytes on key frames).
    TruncatedHeader {
        /// Bytes the chunk needs.
        needed: usize,
        /// Bytes the frame has.
        got: usize,
    },
    /// A key frame whose start code is not 0x9d 0x01 0x2a.
    BadStartCode([u8; 3]),
    /// A key frame declaring a zero width or height.
    ZeroDimensions {
        /// The declared width.
        width: u16,
        /// The declared height.
        height: u16,
    },
    /// The first partition extends past the end of the frame.
    FirstPartitionTooLong {
        /// The declared size.
        size: usize,
        /// Bytes left after the uncompressed chunk.
        available: usize,
    },
    /// The DCT token partition size table or a partition extends past the end of the frame.
    PartitionPastEnd {
        /// The token partition's index.
        partition: usize,
    },
    /// An inter frame arrived before any key frame (no reference frames exist).
    NoReferenceFrame,
    /// The stream's first key frame is damaged (a partition was read past its end).
    IncompleteFirstKeyFrame,
    /// The frame uses an unsupported bitstream version (VP8 defines 0..=3).
    UnsupportedVersion(u8),
    /// A buffer copy flag of 3 (only 0, 1 and 2 are defined).
    InvalidCopyFlag {
        /// True for the golden flag, false for the alt-ref one.
        golden: bool,
    },
    /// The memory for a frame of the declared size could not be allocated.
    OutOfMemory {
        /// The picture's width.
        width: usize,
        /// The picture's height.
        height: usize,
        /// Bytes of one frame's planes.
        bytes: usize,
    },
    /// A serialized decoder state could not be loaded.
    BadState(String),
    /// An IVF container problem.
    Ivf(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TruncatedHeader { needed, got } => {
                write!(f, "truncated frame header: need {needed} bytes, got {got}")
            }
            DecodeError::BadStartCode(c) => write!(
                f,
                "bad key frame start code {:02x} {:02x} {:02x} (expected 9d 01 2a)",
                c[0], c[1], c[2]
            ),
            DecodeError::ZeroDimensions { width, height } => {
                write!(f, "key frame has zero dimensions {width}x{height}")
            }
            DecodeError::FirstPartitionTooLong { size, available } => write!(
                f,
                "first partition size {size} is past the end of the frame ({available} bytes left)"
            ),
            DecodeError::PartitionPastEnd { partition } => {
                write!(f, "DCT token partition {partition} is past the end of the frame")
            }
            DecodeError::NoReferenceFrame => {
                write!(f, "inter frame without a prior key frame (no reference frame)")
            }
            DecodeError::IncompleteFirstKeyFrame => {
                write!(f, "corrupt key frame: a stream must start with a complete key frame")
            }
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported VP8 bitstream version {v}")
            }
            DecodeError::InvalidCopyFlag { golden } => write!(
                f,
                "invalid buffer copy flag 3 for the {} frame",
                if *golden { "golden" } else { "altref" }
            ),
            DecodeError::OutOfMemory { width, height, bytes } => write!(
                f,
                "out of memory: cannot allocate the {bytes} bytes of a {width}x{height} frame"
            ),
            DecodeError::BadState(m) => write!(f, "bad decoder state: {m}"),
            DecodeError::Ivf(m) => write!(f, "IVF: {m}"),
        }
    }
}

impl std::error::Error for DecodeError {}
