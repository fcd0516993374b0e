//! The boolean entropy decoder (RFC 6386 section 7).
//!
//! The arithmetic is the spec's: `split = 1 + (((range - 1) * prob) >> 8)`, compare the top of the
//! value window against `split`, then renormalize so `range >= 128`. Instead of shifting in one bit
//! at a time, the value is kept in a 64-bit window whose top byte lines up with `range`; bytes are
//! loaded eight bits at a time whenever fewer than eight spare bits remain below the top byte.
//! Reading past the end of the data supplies zero bytes (as libvpx does); how many were supplied
//! is tracked so the caller can recognize a grossly overrun (corrupt) partition.

/// A boolean decoder over one partition.
#[derive(Clone, Debug)]
pub struct BoolDecoder<'a> {
    data: &'a [u8],
    pos: usize,
    /// Bits of the window: the top 8 bits are compared with `range`; `count` more valid bits follow.
    value: u64,
    /// Number of valid bits below the top byte (may dip to -7 between reads).
    count: i32,
    range: u32,
    /// Zero bytes supplied after the data ran out.
    zeros_appended: usize,
}

impl<'a> BoolDecoder<'a> {
    /// Start decoding `data` (spec 7.3 `init_bool_decoder`).
    pub fn new(data: &'a [u8]) -> Self {
        let mut d =
            BoolDecoder { data, pos: 0, value: 0, count: -8, range: 255, zeros_appended: 0 };
        d.fill();
        d
    }

    /// Load bytes into the window. The end of the data goes through [`refill`], out of line,
    /// which takes and returns the state by value: a caller that copies the decoder into a
    /// local (the token reader) then keeps the state in registers between reads, where a call
    /// taking the decoder's address made every read store the state and the next one load it
    /// again.
    #[inline(always)]
    fn fill(&mut self) {
        // Eight bytes available (all but the last few of a partition): loaded in place, as
        // many whole bytes as fit below the valid bits. Out of line, the window went through
        // memory (stored for the call, loaded after it) on the reads' dependency chain.
        if let Some(bytes) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_be_bytes(bytes.try_into().expect("eight bytes"));
            let nbytes = ((48 - self.count) / 8 + 1) as usize; // count <= 48 - 8*(n-1)
            let bits = nbytes * 8;
            // Place the first loaded byte at bit position (48 - count) .. (55 - count).
            self.value |= (word >> (64 - bits)) << (56 - self.count - bits as i32);
            self.count += bits as i32;
            self.pos += nbytes;
            return;
        }
        let w = Window {
            pos: self.pos,
            value: self.value,
            count: self.count,
            zeros_appended: self.zeros_appended,
        };
        let w = refill(self.data, w);
        self.pos = w.pos;
        self.value = w.value;
        self.count = w.count;
        self.zeros_appended = w.zeros_appended;
    }

    /// Decode one bool whose probability of being 0 is `prob / 256` (spec 7.3 `read_bool`).
    #[inline(always)]
    pub fn read_bool(&mut self, prob: u8) -> bool {
        if self.count < 0 {
            self.fill();
        }
        // The spec's `split` less one, compared with the window's top byte: `top >= split`.
        // Written so, the `- 1` and `+ 1` around the multiply and the shift of `split` to the
        // window's top are off the dependency chain from one read's `range` to the next.
        let r1 = self.range - 1;
        let s = (r1 * prob as u32) >> 8;
        let bit = (self.value >> 56) as u32 > s;
        let bigsplit = ((s + 1) as u64) << 56;
        self.range = std::hint::select_unpredictable(bit, r1 - s, s + 1);
        self.value -= std::hint::select_unpredictable(bit, bigsplit, 0);
        let shift = (self.range as u8).leading_zeros();
        self.range <<= shift;
        self.value <<= shift;
        self.count -= shift as i32;
        bit
    }

    /// A bool with probability one half.
    #[inline]
    pub fn read_flag(&mut self) -> bool {
        self.read_bool(128)
    }

    /// An `n`-bit unsigned literal, most significant bit first (spec 7.3 `read_literal`).
    #[inline]
    pub fn read_literal(&mut self, n: u32) -> u32 {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.read_flag() as u32;
        }
        v
    }

    /// A magnitude of `n` bits followed by a sign bit (1 = negative), as in the frame header.
    #[inline]
    pub fn read_signed(&mut self, n: u32) -> i32 {
        let m = self.read_literal(n) as i32;
        if self.read_flag() {
            -m
        } else {
            m
        }
    }

    /// An optional signed value: a flag, then (if set) `read_signed(n)`; 0 when absent.
    #[inline]
    pub fn read_optional_signed(&mut self, n: u32) -> i32 {
        if self.read_flag() {
            self.read_signed(n)
        } else {
            0
        }
    }

    /// Decode a value with a tree (spec 8.1 `treed_read`). Positive entries index the tree,
    /// non-positive entries are negated leaf values.
    #[inline]
    pub fn read_tree(&mut self, tree: &[i8], probs: &[u8]) -> u8 {
        self.read_tree_from(tree, probs, 0)
    }

    /// `read_tree` starting at node `start` (used to skip the first branch).
    #[inline]
    pub fn read_tree_from(&mut self, tree: &[i8], probs: &[u8], start: usize) -> u8 {
        let mut i = start;
        loop {
            let next = tree[i + self.read_bool(probs[i >> 1]) as usize];
            if next <= 0 {
                return (-next) as u8;
            }
            i = next as usize;
        }
    }

    /// Bits consumed so far beyond the end of the data (0 while within it).
    #[cfg(test)]
    pub fn bits_past_end(&self) -> usize {
        let loaded_bits = (self.pos + self.zeros_appended) * 8;
        let consumed = loaded_bits as i64 - (self.count as i64 + 8);
        (consumed - self.data.len() as i64 * 8).max(0) as usize
    }

    /// True when the decoder has consumed more bits than the data holds.
    #[cfg(test)]
    pub fn overrun(&self) -> bool {
        self.bits_past_end() > 0
    }

    /// libvpx's bool decoder error condition: fewer than 8 bits of real data remain under the
    /// decoding window (the window has started to take in the zeros supplied past the end).
    /// libvpx stops decoding a macroblock's tokens once its partition is in this state, so the
    /// decoder mirrors that to produce the same pixels for damaged streams.
    pub fn window_past_end(&self) -> bool {
        let loaded_bits = (self.pos + self.zeros_appended) as i64 * 8;
        let consumed = loaded_bits - (self.count as i64 + 8);
        consumed + 8 > self.data.len() as i64 * 8
    }
}

/// The fields of a [`BoolDecoder`] that a refill changes.
#[derive(Clone, Copy)]
struct Window {
    pos: usize,
    value: u64,
    count: i32,
    zeros_appended: usize,
}

/// Load bytes of `data` into the window `w`, near the end of the data (fewer than eight
/// bytes left), supplying zeros past it. Out of line: it runs a few times per partition.
#[inline(never)]
fn refill(data: &[u8], mut w: Window) -> Window {
    while w.count <= 48 {
        let byte = if w.pos < data.len() {
            let b = data[w.pos];
            w.pos += 1;
            b
        } else {
            w.zeros_appended += 1;
            0
        };
        w.value |= (byte as u64) << (48 - w.count);
        w.count += 8;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward boolean encoder (spec 7.3's encoder), used to test the decoder.
    pub(crate) struct BoolEncoder {
        out: Vec<u8>,
        range: u32,
        bottom: u32,
        bit_count: i32,
    }

    impl BoolEncoder {
        pub fn new() -> Self {
            BoolEncoder { out: Vec::new(), range: 255, bottom: 0, bit_count: 24 }
        }
        fn add_one_to_output(&mut self) {
            let mut i = self.out.len();
            while i > 0 {
                i -= 1;
                if self.out[i] == 255 {
                    self.out[i] = 0;
                } else {
                    self.out[i] += 1;
                    break;
                }
            }
        }
        pub fn write_bool(&mut self, prob: u8, value: bool) {
            let split = 1 + (((self.range - 1) * prob as u32) >> 8);
            if value {
                self.bottom = self.bottom.wrapping_add(split);
                self.range -= split;
            } else {
                self.range = split;
            }
            while self.range < 128 {
                self.range <<= 1;
                if self.bottom & (1 << 31) != 0 {
                    self.add_one_to_output();
                }
                self.bottom <<= 1;
                self.bit_count -= 1;
                if self.bit_count == 0 {
                    self.out.push((self.bottom >> 24) as u8);
                    self.bottom &= (1 << 24) - 1;
                    self.bit_count = 8;
                }
            }
        }
        pub fn finish(mut self) -> Vec<u8> {
            for _ in 0..32 {
                self.write_bool(128, false);
            }
            self.out
        }
    }

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    #[test]
    fn round_trip_random_bools() {
        let mut seed = 12345u64;
        let mut items = Vec::new();
        for _ in 0..20000 {
            let prob = (lcg(&mut seed) % 255 + 1) as u8;
            let bit = (lcg(&mut seed) % 256) >= prob as u32;
            items.push((prob, bit));
        }
        let mut enc = BoolEncoder::new();
        for &(p, b) in &items {
            enc.write_bool(p, b);
        }
        let data = enc.finish();
        let mut dec = BoolDecoder::new(&data);
        for (i, &(p, b)) in items.iter().enumerate() {
            assert_eq!(dec.read_bool(p), b, "bool {i}");
        }
        assert!(!dec.overrun());
    }

    #[test]
    fn literals_and_trees() {
        let mut enc = BoolEncoder::new();
        for v in [0u32, 1, 77, 127] {
            for i in (0..7).rev() {
                enc.write_bool(128, (v >> i) & 1 == 1);
            }
        }
        // Tree: -0, 2, -1, -2 ; encode leaf 2 = "11".
        enc.write_bool(10, true);
        enc.write_bool(200, true);
        let data = enc.finish();
        let mut dec = BoolDecoder::new(&data);
        for v in [0u32, 1, 77, 127] {
            assert_eq!(dec.read_literal(7), v);
        }
        assert_eq!(dec.read_tree(&[0, 2, -1, -2], &[10, 200]), 2);
    }

    #[test]
    fn reads_past_end_as_zeros_and_reports_overrun() {
        let data = [0u8; 2];
        let mut dec = BoolDecoder::new(&data);
        for _ in 0..16 {
            assert!(!dec.read_flag());
        }
        assert!(!dec.overrun());
        for _ in 0..100 {
            assert!(!dec.read_flag());
        }
        assert!(dec.overrun());
        assert!(dec.bits_past_end() >= 90);
        let empty: [u8; 0] = [];
        let mut dec = BoolDecoder::new(&empty);
        assert!(!dec.read_bool(1));
    }
}
