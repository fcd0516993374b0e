//! xc: a VP8 codec (RFC 6386) written in explicit state-passing style.
//!
//! A [`state::DecoderState`] is a plain value: the three reference frames, the probability
//! tables, segmentation and loop-filter deltas. Decoding a frame takes a state and returns a new
//! one, so a state can be saved, shipped to another worker and resumed there.

pub mod bool_decoder;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod header;
pub mod inspect;
pub mod ivf;
pub mod loopfilter;
pub mod mb;
pub mod md5;
pub mod modes;
pub mod predict;
pub mod quant;
pub mod state;
pub mod tables;
pub mod tokens;
pub mod transform;

// The tests' outside material (clips, vectors, vpxenc/vpxdec), one file shared with the
// integration tests' `common`; compiled for the unit tests only.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/material.rs"]
pub(crate) mod test_material;

pub use decoder::decode_frame;
pub use error::DecodeError;
pub use state::DecoderState;
