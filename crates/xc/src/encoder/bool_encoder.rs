//! The boolean entropy encoder (RFC 6386 section 7), the exact inverse of
//! [`crate::bool_decoder::BoolDecoder`], plus the bit-cost model used for rate estimates.
//!
//! The coder keeps the low end of the current interval, `low`, and its width, `range`
//! (128..=255 between symbols). Coding a bool narrows the interval to its lower `split` part
//! (bit 0) or upper `range - split` part (bit 1), then doubles both until `range >= 128` again.
//! `low` holds the bits of the interval start that have not been written yet: `pending` settled
//! bits above an 8-bit window that later symbols still add into. Whole settled bytes are moved
//! to the output; a carry out of `low` adds one to the bytes already written.

/// Cost of coding a bool whose probability is `p / 256`, in 1/256 bit: `-log2(p / 256) * 256`
/// rounded, for p = 1..=255.
const COST: [u16; 255] = [
    2048, 1792, 1642, 1536, 1454, 1386, 1329, 1280, 1236, 1198, 1162, 1130, 1101, 1073, 1048, 1024,
    1002, 980, 961, 942, 924, 906, 890, 874, 859, 845, 831, 817, 804, 792, 780, 768, 757, 746, 735,
    724, 714, 705, 695, 686, 676, 668, 659, 650, 642, 634, 626, 618, 611, 603, 596, 589, 582, 575,
    568, 561, 555, 548, 542, 536, 530, 524, 518, 512, 506, 501, 495, 490, 484, 479, 474, 468, 463,
    458, 453, 449, 444, 439, 434, 430, 425, 420, 416, 412, 407, 403, 399, 394, 390, 386, 382, 378,
    374, 370, 366, 362, 358, 355, 351, 347, 343, 340, 336, 333, 329, 326, 322, 319, 315, 312, 309,
    305, 302, 299, 296, 292, 289, 286, 283, 280, 277, 274, 271, 268, 265, 262, 259, 256, 253, 250,
    247, 245, 242, 239, 236, 234, 231, 228, 226, 223, 220, 218, 215, 212, 210, 207, 205, 202, 200,
    197, 195, 193, 190, 188, 185, 183, 181, 178, 176, 174, 171, 169, 167, 164, 162, 160, 158, 156,
    153, 151, 149, 147, 145, 143, 140, 138, 136, 134, 132, 130, 128, 126, 124, 122, 120, 118, 116,
    114, 112, 110, 108, 106, 104, 102, 101, 99, 97, 95, 93, 91, 89, 87, 86, 84, 82, 80, 78, 77, 75,
    73, 71, 70, 68, 66, 64, 63, 61, 59, 58, 56, 54, 53, 51, 49, 48, 46, 44, 43, 41, 40, 38, 36, 35,
    33, 32, 30, 28, 27, 25, 24, 22, 21, 19, 18, 16, 15, 13, 12, 10, 9, 7, 6, 4, 3, 1,
];

/// The cost of coding `bit` with probability `prob` (of a 0) in 1/256-bit units.
#[inline(always)]
pub fn cost_bits(prob: u8, bit: bool) -> u32 {
    let p = if bit { 256 - prob as usize } else { prob as usize };
    COST[p.clamp(1, 255) - 1] as u32
}

/// The cost of `n0` zeros and `n1` ones coded with probability `prob` (1/256-bit units).
#[inline]
pub fn cost_counts(prob: u8, n0: u32, n1: u32) -> u64 {
    n0 as u64 * cost_bits(prob, false) as u64 + n1 as u64 * cost_bits(prob, true) as u64
}

/// The probability (of a 0) that best codes `n0` zeros and `n1` ones, in 1..=255
/// (128 when there is nothing to code).
pub fn prob_from_counts(n0: u32, n1: u32) -> u8 {
    let total = n0 as u64 + n1 as u64;
    if total == 0 {
        return 128;
    }
    ((n0 as u64 * 256 + total / 2) / total).clamp(1, 255) as u8
}

/// The path from the root of a spec-convention tree to `leaf`: `(node index, bit)` pairs in
/// coding order; the bool at node `i` is coded with `probs[i >> 1]`. Returns the path length
/// (0 if the leaf is not in the tree).
pub fn tree_path(tree: &[i8], leaf: u8) -> ([(u8, bool); 16], usize) {
    /// Depth-first from `node`, recording the branches taken in `path[depth..]`; the length
    /// of the path to `leaf` when it is below `node`. One visit per entry: this runs for every
    /// mode and MV the writer prices or writes.
    fn walk(
        tree: &[i8],
        node: usize,
        leaf: u8,
        path: &mut [(u8, bool); 16],
        depth: usize,
    ) -> Option<usize> {
        if depth == path.len() {
            return None;
        }
        for bit in 0..2 {
            path[depth] = (node as u8, bit == 1);
            let e = *tree.get(node + bit)?;
            if e <= 0 {
                if -(e as i32) == leaf as i32 {
                    return Some(depth + 1);
                }
            } else if let Some(n) = walk(tree, e as usize, leaf, path, depth + 1) {
                return Some(n);
            }
        }
        None
    }
    let mut path = [(0u8, false); 16];
    let n = walk(tree, 0, leaf, &mut path, 0).unwrap_or(0);
    (path, n)
}

/// The cost of coding `leaf` with `tree` and `probs` (1/256-bit units).
pub fn tree_cost(tree: &[i8], probs: &[u8], leaf: u8) -> u32 {
    let (path, n) = tree_path(tree, leaf);
    path[..n].iter().map(|&(node, bit)| cost_bits(probs[node as usize >> 1], bit)).sum()
}

/// A boolean encoder writing one partition.
#[derive(Clone, Debug)]
pub struct BoolEncoder {
    out: Vec<u8>,
    low: u64,
    range: u32,
    /// Settled bits in `low` above its 8-bit window.
    pending: u32,
}

impl Default for BoolEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BoolEncoder {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    pub fn with_capacity(bytes: usize) -> Self {
        BoolEncoder { out: Vec::with_capacity(bytes), low: 0, range: 255, pending: 0 }
    }

    /// Add one to the bytes written so far (a carry out of `low`).
    #[cold]
    fn propagate_carry(&mut self) {
        for b in self.out.iter_mut().rev() {
            if *b == 255 {
                *b = 0;
            } else {
                *b += 1;
                return;
            }
        }
    }

    /// Move whole settled bytes from `low` to the output.
    #[inline]
    fn flush_settled(&mut self) {
        while self.pending >= 8 {
            let top = self.pending + 8;
            if self.low >> top != 0 {
                self.propagate_carry();
                self.low &= (1u64 << top) - 1;
            }
            self.pending -= 8;
            self.out.push((self.low >> (self.pending + 8)) as u8);
            self.low &= (1u64 << (self.pending + 8)) - 1;
        }
    }

    /// Code one bool whose probability of being 0 is `prob / 256`.
    #[inline(always)]
    pub fn write_bool(&mut self, prob: u8, bit: bool) {
        let split = 1 + (((self.range - 1) * prob as u32) >> 8);
        if bit {
            self.low += split as u64;
            self.range -= split;
        } else {
            self.range = split;
        }
        let shift = (self.range as u8).leading_zeros();
        self.range <<= shift;
        self.low <<= shift;
        self.pending += shift;
        if self.pending >= 40 {
            self.flush_settled();
        }
    }

    /// A bool with probability one half.
    #[inline]
    pub fn write_flag(&mut self, bit: bool) {
        self.write_bool(128, bit);
    }

    /// The low `n` bits of `v`, most significant first (inverse of `read_literal`).
    #[inline]
    pub fn write_literal(&mut self, n: u32, v: u32) {
        for i in (0..n).rev() {
            self.write_flag((v >> i) & 1 == 1);
        }
    }

    /// A magnitude of `n` bits and a sign bit (inverse of `read_signed`).
    #[inline]
    pub fn write_signed(&mut self, n: u32, v: i32) {
        self.write_literal(n, v.unsigned_abs());
        self.write_flag(v < 0);
    }

    /// A presence flag, then (if `v != 0`) `write_signed(n, v)` (inverse of
    /// `read_optional_signed`).
    #[inline]
    pub fn write_optional_signed(&mut self, n: u32, v: i32) {
        self.write_flag(v != 0);
        if v != 0 {
            self.write_signed(n, v);
        }
    }

    /// Code `leaf` with a spec-convention tree (inverse of `read_tree`). A leaf that is not in
    /// the tree writes nothing.
    #[inline]
    pub fn write_tree(&mut self, tree: &[i8], probs: &[u8], leaf: u8) {
        let (path, n) = tree_path(tree, leaf);
        for &(node, bit) in &path[..n] {
            self.write_bool(probs[node as usize >> 1], bit);
        }
    }

    /// Bytes produced so far (a lower bound on the final size).
    pub fn bytes_written(&self) -> usize {
        self.out.len()
    }

    /// Finish: write out the start of the final interval, zero-padded to whole bytes. A decoder
    /// that supplies zeros past the end (as the spec's does) reads exactly this value. The
    /// result is never empty.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_settled();
        let top = self.pending + 8;
        if self.low >> top != 0 {
            self.propagate_carry();
            self.low &= (1u64 << top) - 1;
        }
        let pad = (8 - top % 8) % 8;
        let low = self.low << pad;
        let bytes = (top + pad) / 8;
        for i in (0..bytes).rev() {
            self.out.push((low >> (8 * i)) as u8);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bool_decoder::BoolDecoder;

    #[test]
    fn cost_table_shape() {
        assert_eq!(cost_bits(128, false), 256);
        assert_eq!(cost_bits(128, true), 256);
        assert_eq!(cost_bits(255, false), 1);
        assert_eq!(cost_bits(255, true), 2048);
        assert_eq!(cost_bits(0, true), 1);
        assert!(cost_bits(200, false) < cost_bits(100, false));
        assert_eq!(prob_from_counts(3, 1), 192);
        assert_eq!(prob_from_counts(0, 9), 1);
        assert_eq!(prob_from_counts(0, 0), 128);
    }

    #[test]
    fn tree_paths() {
        // MV_REF_TREE: ZERO "0", NEAREST "10", NEAR "110", NEW "1110", SPLIT "1111".
        let tree = crate::tables::MV_REF_TREE;
        let (p, n) = tree_path(&tree, 3);
        assert_eq!(&p[..n], &[(0, true), (2, true), (4, true), (6, false)]);
        let (p, n) = tree_path(&tree, 0);
        assert_eq!(&p[..n], &[(0, false)]);
        assert_eq!(tree_path(&tree, 9).1, 0);
        // Every leaf of every spec tree: following the path from the root reaches it.
        use crate::tables::*;
        let trees: [&[i8]; 9] = [
            &KF_YMODE_TREE,
            &YMODE_TREE,
            &UV_MODE_TREE,
            &BMODE_TREE,
            &SEGMENT_TREE,
            &MV_REF_TREE,
            &MV_PARTITION_TREE,
            &SUB_MV_REF_TREE,
            &SMALL_MV_TREE,
        ];
        for tree in trees {
            let leaves = tree.iter().filter(|&&t| t <= 0).count();
            for leaf in 0..leaves as u8 {
                let (p, n) = tree_path(tree, leaf);
                assert!(n > 0, "{tree:?} {leaf}");
                let mut node = 0;
                for (k, &(at, bit)) in p[..n].iter().enumerate() {
                    assert_eq!(at as usize, node);
                    let e = tree[node + bit as usize];
                    if k + 1 == n {
                        assert_eq!(-(e as i32), leaf as i32, "{tree:?} {leaf}");
                    } else {
                        node = e as usize;
                    }
                }
            }
        }
    }

    #[test]
    fn carries_through_runs_of_ff() {
        // Many likely-1 bools at prob 1 push `low` up against a carry repeatedly.
        let mut items = Vec::new();
        for i in 0..5000u32 {
            items.push(((i % 7 == 0) as u8 * 254 + 1, i % 13 != 0));
        }
        let mut e = BoolEncoder::new();
        for &(p, b) in &items {
            e.write_bool(p, b);
        }
        let data = e.finish();
        let mut d = BoolDecoder::new(&data);
        for (i, &(p, b)) in items.iter().enumerate() {
            assert_eq!(d.read_bool(p), b, "bool {i}");
        }
        assert!(!d.overrun());
    }
}
