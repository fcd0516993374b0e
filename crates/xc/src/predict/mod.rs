//! Prediction: intra (spec section 12) and inter (spec section 18).

pub mod inter;
pub mod intra;
