//! xc: a VP8 codec (RFC 6386) written in explicit state-passing style.
//!
//! A [`state::DecoderState`] is a plain value: the three reference frames, the probability
//! tables, segmentation and loop-filter deltas. Decoding a frame takes a state and returns a new
//! one, so a state can be saved, shipped to another worker and resumed there.

pub mod frame;
pub mod loopfilter;
pub mod mb;
pub mod predict;
pub mod transform;
