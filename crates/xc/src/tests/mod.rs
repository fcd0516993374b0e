//! The crate's tests that reach its internals (bool decoder, headers, modes, the encoder's
//! bitstream writer and analysis). They are unit tests so those modules can stay `pub(crate)`;
//! they share the integration tests' `common` support and are written against `xc::` paths.

#[path = "../../tests/common/mod.rs"]
pub(crate) mod common;

mod decoder;
mod encoder_bitstream;
mod fuzz;
mod mode_parser;
mod next_state;
mod rebase;
