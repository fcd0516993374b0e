//! PLACEHOLDER (branch xc-bitstream only), replaced by xc-recon's module on merge.
pub mod inter;
pub mod intra;
