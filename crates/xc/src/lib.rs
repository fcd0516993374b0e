//! xc: a VP8 codec (RFC 6386) written in explicit state-passing style.
//!
//! A [`DecoderState`] is a plain value: the three reference frames, the probability
//! tables, segmentation and loop-filter deltas. Decoding a frame takes a state and returns a new
//! one, so a state can be saved, shipped to another worker and resumed there.
//!
//! The public surface is small on purpose:
//!
//! - [`decoder`]: [`decode_frame`] (state in, state and picture out) and the buffer-reusing
//!   [`Decoder`];
//! - [`state`]: [`DecoderState`] and its serialization;
//! - [`encoder`]: [`encoder::encode_frame`] and, in [`encoder::rebase`], re-encoding a chunk
//!   onto another chunk's final state;
//! - [`ivf`]: the IVF container reader;
//! - [`frame`] and [`error`]: the pictures and errors the above pass around.
//!
//! There is no Y4M reader here: the Python package (`excamera.xc.y4m`) reads Y4M and hands the
//! pictures to [`encoder::source_from_i420`]. Everything else (bool decoder, headers, modes,
//! prediction, transforms, loop filter, the encoder's analysis and bitstream writer) is
//! `pub(crate)`, and the crate's own tests that reach it live in `src/tests/`.
//!
//! ```
//! use xc::encoder::{encode_frame, source_from_i420, EncodeParams};
//! use xc::{decode_frame, DecoderState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A 32x16 gradient as I420, encoded as a key frame and decoded back.
//! let (w, h) = (32, 16);
//! let mut i420: Vec<u8> = (0..w * h).map(|i| (i % w * 8) as u8).collect();
//! i420.resize(w * h * 3 / 2, 128);
//! let source = source_from_i420(w, h, &i420)?;
//! let encoded = encode_frame(&DecoderState::default(), &source, &EncodeParams::key(20))?;
//!
//! let (state, shown) = decode_frame(&DecoderState::default(), &encoded.data)?;
//! assert_eq!(state, encoded.state);
//! assert_eq!(shown.expect("a key frame is shown").to_i420(), encoded.recon.to_i420());
//! // A state is a value: saved, shipped, and resumed elsewhere.
//! assert_eq!(DecoderState::deserialize(&state.serialize())?, state);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod decoder;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod ivf;
pub mod state;

/// Internal modules: `pub(crate)`, or `pub` but hidden and unstable under the non-default
/// `internals` feature, which exists only for the crate's own examples (`recon_bench`,
/// `ivf_info`, `enc_compare`, `rebase_bench`) and makes no API promise.
macro_rules! internal_mods {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        #[allow(missing_docs)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}

internal_mods!(
    bool_decoder,
    header,
    inspect,
    loopfilter,
    mb,
    modes,
    predict,
    quant,
    tables,
    tokens,
    transform,
);

pub use decoder::{decode_frame, Decoder};
pub use error::DecodeError;
pub use frame::{Frame, Plane};
pub use state::DecoderState;

/// The facade, checked by `cargo test --doc`: every public item below resolves, and each
/// internal module (and the former `md5` helper) is out of reach. A `compile_fail` block
/// compiles, failing this test, as soon as its module becomes public again.
///
/// ```
/// use xc::encoder::rebase::{
///     reencode_chunk, FirstFrameQuality, LoopFilterChoice, ReencodeOpts, ReencodedChunk,
/// };
/// use xc::encoder::{
///     encode_frame, psnr, source_from_i420, source_from_planes, EncodeError, EncodeParams,
///     EncodedFrame, QuantMode, Speed,
/// };
/// use xc::error::DecodeError;
/// use xc::frame::{Frame, Plane};
/// use xc::ivf::{parse_ivf, IvfFrame, IvfHeader};
/// use xc::state::{fnv1a64, DecoderState, EntropyProbs, LfAdjust, Segmentation};
/// use xc::state::{STATE_MAGIC, STATE_VERSION};
/// use xc::decoder::{decode_frame, Decoder};
/// use xc::{decode_frame as _, DecodeError as _, Decoder as _, DecoderState as _};
/// use xc::{Frame as _, Plane as _};
/// ```
///
/// ```compile_fail,E0603
/// use xc::bool_decoder as _;
/// ```
/// ```compile_fail,E0603
/// use xc::header as _;
/// ```
/// ```compile_fail,E0603
/// use xc::inspect as _;
/// ```
/// ```compile_fail,E0603
/// use xc::loopfilter as _;
/// ```
/// ```compile_fail,E0603
/// use xc::mb as _;
/// ```
/// ```compile_fail,E0603
/// use xc::modes as _;
/// ```
/// ```compile_fail,E0603
/// use xc::predict as _;
/// ```
/// ```compile_fail,E0603
/// use xc::quant as _;
/// ```
/// ```compile_fail,E0603
/// use xc::tables as _;
/// ```
/// ```compile_fail,E0603
/// use xc::tokens as _;
/// ```
/// ```compile_fail,E0603
/// use xc::transform as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::analysis as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::bitstream as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::bool_encoder as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::fdct as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::modes as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::next_state as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::quantize as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::rdo as _;
/// ```
/// ```compile_fail,E0603
/// use xc::encoder::tokens as _;
/// ```
/// ```compile_fail,E0432
/// use xc::md5 as _;
/// ```
#[cfg(all(doctest, not(feature = "internals")))]
pub struct FacadeGuard;

// The tests' outside material (clips, vectors, vpxenc/vpxdec) and MD5 (comparing pictures
// with the vectors' `.md5` files; test support, not part of the codec), shared with the
// integration tests' `common`.
#[cfg(test)]
pub(crate) use tests::common::{material as test_material, md5};

// The shared test support and the tests moved in from `tests/` are written against `xc::`
// paths, as an outside user would; inside the crate that name is the crate itself.
#[cfg(test)]
extern crate self as xc;

#[cfg(test)]
mod tests;
