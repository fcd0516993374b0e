//! Residual coding of one macroblock: forward transform, quantization (plain or RD), the
//! levels' token rate, and the reconstruction with the decoder's own dequantization and
//! inverse transforms, so the pixels are exactly what a decoder rebuilds. Analysis codes every
//! candidate prediction with it; the rebase codes its kept decisions with it.

use crate::encoder::fdct::{fdct4x4_pair, fdct4x4_sub, fwht4x4};
use crate::encoder::quantize::{dequantize_block, MbQuant, Quantizer};
use crate::encoder::rdo::TokenCosts;
use crate::encoder::MbLevels;
use crate::tokens::{NzContext, TYPE_CHROMA, TYPE_Y2, TYPE_Y_AFTER_Y2, TYPE_Y_WITH_DC, Y2_BLOCK};
use crate::transform::{idct4x4_add, iwht4x4};

/// Codes a macroblock's residual block by block: the block quantizers, the level chooser, the
/// running above/left non-zero contexts the token costs depend on, and the token rate so far.
#[derive(Clone)]
pub(crate) struct MbCoder<'a> {
    mq: &'a MbQuant,
    qz: Quantizer<'a>,
    /// Prices every coded block into `rate`; `None` when the caller needs no rate.
    costs: Option<&'a TokenCosts>,
    pub(crate) above: NzContext,
    pub(crate) left: NzContext,
    /// Token rate (1/256 bit) of the blocks coded so far (0 without `costs`).
    pub(crate) rate: u32,
}

impl<'a> MbCoder<'a> {
    pub(crate) fn new(
        mq: &'a MbQuant,
        qz: Quantizer<'a>,
        costs: Option<&'a TokenCosts>,
        above: NzContext,
        left: NzContext,
    ) -> Self {
        MbCoder { mq, qz, costs, above, left, rate: 0 }
    }

    /// Quantize block `blk` of type `ty` (context slots `x`, `y`), price it and record its
    /// non-zero flag, which it returns. (An all-zero block's reconstruction is its prediction:
    /// the callers skip its inverse transform.)
    fn block(
        &mut self,
        c: &[i16; 16],
        first: usize,
        ty: usize,
        x: usize,
        y: usize,
        blk: &mut [i16; 16],
    ) -> bool {
        let bq = match ty {
            TYPE_Y2 => &self.mq.y2,
            TYPE_CHROMA => &self.mq.uv,
            _ => &self.mq.y,
        };
        let ctx = (self.above[x] + self.left[y]) as usize;
        let (nz, rate) = self.qz.block(c, first, bq, ty, ctx, blk);
        let nz = nz as u8;
        if let Some(tc) = self.costs {
            self.rate += rate.unwrap_or_else(|| tc.block_cost(blk, ty, ctx, first));
        }
        self.above[x] = nz;
        self.left[y] = nz;
        nz != 0
    }

    /// A 16x16 luma residual with a Y2 block (all modes but B_PRED and SPLITMV). `recon`
    /// holds the prediction on entry and the reconstruction on return.
    pub(crate) fn luma_y2(&mut self, src: &[u8; 256], recon: &mut [u8; 256], lv: &mut MbLevels) {
        let coeffs = luma_coeffs(src, recon);
        let dcs: [i16; 16] = std::array::from_fn(|b| coeffs[b][0]);
        self.block(&fwht4x4(&dcs), 0, TYPE_Y2, 8, 8, &mut lv.blocks[Y2_BLOCK]);
        let dc_out = iwht4x4(&dequantize_block(&lv.blocks[Y2_BLOCK], self.mq.dq.y2));
        for b in 0..16 {
            let nz = self.block(&coeffs[b], 1, TYPE_Y_AFTER_Y2, b & 3, b >> 2, &mut lv.blocks[b]);
            if nz || dc_out[b] != 0 {
                let mut dq = dequantize_block(&lv.blocks[b], self.mq.dq.y);
                dq[0] = dc_out[b];
                idct4x4_add(&dq, recon, (b >> 2) * 64 + (b & 3) * 4, 16);
            }
        }
    }

    /// Sixteen luma blocks with their own DCs (SPLITMV), all against one prediction.
    pub(crate) fn luma_nodc(&mut self, src: &[u8; 256], recon: &mut [u8; 256], lv: &mut MbLevels) {
        let coeffs = luma_coeffs(src, recon);
        for (b, c) in coeffs.iter().enumerate() {
            if self.block(c, 0, TYPE_Y_WITH_DC, b & 3, b >> 2, &mut lv.blocks[b]) {
                let dq = dequantize_block(&lv.blocks[b], self.mq.dq.y);
                idct4x4_add(&dq, recon, (b >> 2) * 64 + (b & 3) * 4, 16);
            }
        }
    }

    /// One 8x8 chroma plane (`plane` 0 = U, 1 = V).
    pub(crate) fn chroma(
        &mut self,
        src: &[u8; 64],
        recon: &mut [u8; 64],
        plane: usize,
        lv: &mut MbLevels,
    ) {
        let [c0, c1] = fdct4x4_pair(src, recon, 8, 0);
        let [c2, c3] = fdct4x4_pair(src, recon, 8, 32);
        for (b, c) in [c0, c1, c2, c3].iter().enumerate() {
            let blk = 16 + plane * 4 + b;
            let (x, y) = (4 + plane * 2 + (b & 1), 4 + plane * 2 + (b >> 1));
            if self.block(c, 0, TYPE_CHROMA, x, y, &mut lv.blocks[blk]) {
                let dq = dequantize_block(&lv.blocks[blk], self.mq.dq.uv);
                idct4x4_add(&dq, recon, (b >> 1) * 32 + (b & 1) * 4, 8);
            }
        }
    }

    /// Both chroma planes.
    pub(crate) fn chroma_both(
        &mut self,
        src: (&[u8; 64], &[u8; 64]),
        recon: (&mut [u8; 64], &mut [u8; 64]),
        lv: &mut MbLevels,
    ) {
        self.chroma(src.0, recon.0, 0, lv);
        self.chroma(src.1, recon.1, 1, lv);
    }

    /// B_PRED subblock `b` (4x4, with its own DC): `rec` holds its prediction on entry and its
    /// reconstruction on return.
    pub(crate) fn subblock(
        &mut self,
        b: usize,
        src: &[u8; 16],
        rec: &mut [u8; 16],
        lv: &mut [i16; 16],
    ) {
        let c = fdct4x4_sub(src, rec);
        if self.block(&c, 0, TYPE_Y_WITH_DC, b & 3, b >> 2, lv) {
            idct4x4_add(&dequantize_block(lv, self.mq.dq.y), rec, 0, 4);
        }
    }
}

/// The DCTs of the sixteen 4x4 blocks of a 16x16 residual `src - pred`, in raster order.
fn luma_coeffs(src: &[u8; 256], pred: &[u8; 256]) -> [[i16; 16]; 16] {
    let mut coeffs = [[0i16; 16]; 16];
    for (b, pair) in coeffs.chunks_exact_mut(2).enumerate() {
        let [c0, c1] = fdct4x4_pair(src, pred, 16, (b >> 1) * 64 + (b & 1) * 8);
        pair[0] = c0;
        pair[1] = c1;
    }
    coeffs
}
