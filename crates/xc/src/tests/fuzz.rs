//! Deterministic mutation fuzzing of the decoder: damaged frames (and damaged serialized states)
//! must give an error or a frame, never a panic, and every decode must finish within a time bound.
//!
//! Each iteration picks a frame of a small conformance vector, mutates it in one of several ways
//! (bit flips, truncation, random bytes in the uncompressed header, in the first partition and in
//! the token partitions, corrupted first-partition size / dimensions / partition size table,
//! empty and tag-only frames, random frames, splices of two frames), and decodes it twice:
//! from the correct state before that frame, and on a per-vector "damaged chain" that keeps every
//! state a damaged frame produced and carries on decoding the rest of the stream from it.
//!
//! `XC_FUZZ_ITERS` (default 50,000 iterations = 100,000 frame decodes), `XC_FUZZ_SEED` and
//! `XC_FUZZ_MAX_MS` (per-decode time bound, default 2000, plus 40 ns per pixel of the frame
//! size, which damage can raise to 16383x16383) tune a run; `bench/fuzz.sh` runs a long
//! one. A failure names the seed, iteration, vector, frame and mutation, and the damaged frame is
//! written under the system temp directory so it can be replayed.

use super::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::vectors_dir;
use xc::bool_decoder::BoolDecoder;
use xc::header::{parse_frame_header, parse_uncompressed_chunk};
use xc::{decode_frame, DecodeError, DecoderState};

/// splitmix64: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// An environment setting, or `default` when unset; a value that does not parse is an error
/// (a typo must not silently run the default).
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

/// `XC_FUZZ_SEED`, decimal or 0x-prefixed hex.
fn seed_or(default: u64) -> u64 {
    match std::env::var("XC_FUZZ_SEED") {
        Ok(v) => match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
        .unwrap_or_else(|| panic!("XC_FUZZ_SEED={v:?} does not parse")),
        Err(_) => default,
    }
}

/// A test vector, its frames, and the correct decoder state before each frame.
struct Stream {
    name: String,
    frames: Vec<Vec<u8>>,
    states: Vec<DecoderState>,
}

fn load_stream(path: &std::path::Path) -> Stream {
    let data = std::fs::read(path).unwrap();
    let (_, frames) = xc::ivf::parse_ivf(&data).unwrap();
    let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.data.to_vec()).collect();
    let mut states = Vec::with_capacity(frames.len());
    let mut s = DecoderState::default();
    for f in &frames {
        states.push(s.clone());
        s = decode_frame(&s, f).unwrap().0;
    }
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    Stream { name, frames, states }
}

/// Small vectors covering key and inter frames, bitstream versions 0-3, odd sizes, multiple
/// token partitions, segmentation and a tiny 16x16 stream. `XC_FUZZ_VECTORS=all` uses every
/// conformance vector instead (slower per decode; for long runs).
const VECTORS: &[&str] = &[
    "vp80-00-comprehensive-001.ivf",
    "vp80-00-comprehensive-004.ivf",
    "vp80-00-comprehensive-005.ivf",
    "vp80-00-comprehensive-006.ivf",
    "vp80-00-comprehensive-010.ivf",
    "vp80-00-comprehensive-016.ivf",
    "vp80-03-segmentation-1437.ivf",
    "vp80-04-partitions-1405.ivf",
    "libvpx-test-data-extra/vp80-06-smallsize.ivf",
];

#[derive(Clone, Copy, Debug)]
enum Mutation {
    BitFlips,
    Truncate,
    HeaderBytes,
    FirstPartitionBytes,
    TokenPartitionBytes,
    FirstPartitionSize,
    Dimensions,
    KeyFrameBit,
    PartitionTable,
    TinyFrame,
    RandomFrame,
    Splice,
}

const MUTATIONS: [Mutation; 12] = [
    Mutation::BitFlips,
    Mutation::Truncate,
    Mutation::HeaderBytes,
    Mutation::FirstPartitionBytes,
    Mutation::TokenPartitionBytes,
    Mutation::FirstPartitionSize,
    Mutation::Dimensions,
    Mutation::KeyFrameBit,
    Mutation::PartitionTable,
    Mutation::TinyFrame,
    Mutation::RandomFrame,
    Mutation::Splice,
];

/// Where the token partitions (with their size table) start, and how many there are, as the
/// correct state reads the frame; None when the header itself does not parse.
fn partition_layout(state: &DecoderState, frame: &[u8]) -> Option<(usize, usize)> {
    let c = parse_uncompressed_chunk(frame).ok()?;
    let rest = frame.get(c.len..)?;
    let mut d = BoolDecoder::new(rest);
    let (mut seg, mut lf, mut probs) =
        (state.segmentation.clone(), state.lf.clone(), state.probs.clone());
    let mut saved = None;
    let h = parse_frame_header(&mut d, c.tag.key_frame, &mut seg, &mut lf, &mut probs, &mut saved);
    let start = c.len + c.tag.first_part_size;
    (start <= frame.len()).then_some((start, 1 << h.log2_nbr_of_dct_partitions))
}

fn write_tag(f: &mut [u8], key: bool, version: u8, show: bool, first_part_size: usize) {
    let raw = (!key as u32)
        | (version as u32 & 7) << 1
        | (show as u32) << 4
        | ((first_part_size as u32) & 0x7FFFF) << 5;
    f[..3].copy_from_slice(&raw.to_le_bytes()[..3]);
}

/// Set `n` random bytes in `g[lo..hi]` to random values.
fn randomize(rng: &mut Rng, g: &mut [u8], lo: usize, hi: usize, n: usize) {
    if hi > lo {
        for _ in 0..n {
            let i = lo + rng.below(hi - lo);
            g[i] = rng.byte();
        }
    }
}

fn mutate(rng: &mut Rng, m: Mutation, frame: &[u8], other: &[u8], state: &DecoderState) -> Vec<u8> {
    let mut g = frame.to_vec();
    let len = g.len();
    let header_len = if len > 0 && g[0] & 1 == 0 { 10 } else { 3 };
    let first_part_end = partition_layout(state, frame).map(|(s, _)| s).unwrap_or(len);
    match m {
        Mutation::BitFlips => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(len);
                g[i] ^= 1 << rng.below(8);
            }
        }
        Mutation::Truncate => g.truncate(rng.below(len)),
        Mutation::HeaderBytes => {
            let n = 1 + rng.below(3);
            randomize(rng, &mut g, 0, header_len.min(len), n);
        }
        Mutation::FirstPartitionBytes => {
            // Mostly the frame header's bits (segmentation, filter, partition count, quant,
            // probability updates), sometimes anywhere in the modes.
            let hi =
                if rng.chance(2) { (header_len + 24).min(first_part_end) } else { first_part_end };
            let n = 1 + rng.below(6);
            randomize(rng, &mut g, header_len.min(len), hi, n);
        }
        Mutation::TokenPartitionBytes => {
            let n = 1 + rng.below(16);
            randomize(rng, &mut g, first_part_end.min(len), len, n);
        }
        Mutation::FirstPartitionSize => {
            if len >= 3 {
                let c = parse_uncompressed_chunk(frame).ok();
                let old = c.map(|c| c.tag.first_part_size).unwrap_or(0) as i64;
                let new = match rng.below(4) {
                    0 => rng.below(1 << 19) as i64,
                    1 => old + rng.below(65) as i64 - 32,
                    2 => len as i64 - header_len as i64 + rng.below(3) as i64 - 1,
                    _ => rng.below(4) as i64,
                };
                let new = new.clamp(0, (1 << 19) - 1) as usize;
                let b0 = g[0];
                write_tag(&mut g, b0 & 1 == 0, (b0 >> 1) & 7, b0 & 16 != 0, new);
            }
        }
        Mutation::Dimensions => {
            if len >= 10 && header_len == 10 {
                // Mostly plausible sizes (fast to decode), sometimes any 14-bit size with
                // scaling bits, cut to at most 1024x1024: a damaged key frame decodes in full
                // (as in libvpx), so its cost grows with its size; the maximum size has its own
                // test below.
                let (w, h) = if rng.chance(32) {
                    (rng.below(1 << 16) as u16, rng.below(1 << 16) as u16)
                } else {
                    (rng.below(400) as u16, rng.below(400) as u16)
                };
                let (w, h) = if (w & 0x3FFF) as usize * (h & 0x3FFF) as usize > 1024 * 1024 {
                    (w & 0xC3FF, h & 0xC3FF)
                } else {
                    (w, h)
                };
                g[6..8].copy_from_slice(&w.to_le_bytes());
                g[8..10].copy_from_slice(&h.to_le_bytes());
            }
        }
        Mutation::KeyFrameBit => {
            if len > 0 {
                g[0] ^= 1;
                if rng.chance(2) {
                    g[0] ^= (rng.below(8) as u8) << 1; // and the version bits
                }
            }
        }
        Mutation::PartitionTable => {
            if let Some((start, count)) = partition_layout(state, frame) {
                let table_end = (start + 3 * (count - 1)).min(len);
                match rng.below(4) {
                    // Random table bytes.
                    0 => randomize(rng, &mut g, start, table_end.max(start + 1).min(len), 3),
                    // A size of zero, a size past the end, or a huge size.
                    1 if count > 1 => {
                        let i = start + 3 * rng.below(count - 1);
                        let v = [0u32, (len - start) as u32 + 1, 0xFFFFFF][rng.below(3)];
                        if i + 3 <= len {
                            g[i..i + 3].copy_from_slice(&v.to_le_bytes()[..3]);
                        }
                    }
                    // Cut inside or right after the table.
                    2 => g.truncate((start + rng.below(3 * count + 1)).min(len)),
                    // Drop bytes between the table and the last partition.
                    _ => {
                        if table_end < len {
                            let cut = table_end + rng.below(len - table_end);
                            g.drain(cut..(cut + 1 + rng.below(64)).min(len));
                        }
                    }
                }
            } else {
                g.truncate(rng.below(len));
            }
        }
        Mutation::TinyFrame => {
            let n = [0, 1, 2, 3, 4, 9, 10, 11, 12][rng.below(9)];
            g.truncate(n);
            if rng.chance(2) && n >= 3 {
                // A valid-looking tag claiming the rest is a (tiny) first partition.
                let key = g[0] & 1 == 0;
                write_tag(&mut g, key, 0, true, n.saturating_sub(if key { 10 } else { 3 }));
            }
        }
        Mutation::RandomFrame => {
            let n = rng.below(2048);
            g = (0..n).map(|_| rng.byte()).collect();
            if n >= 10 && rng.chance(2) {
                let key = rng.chance(2);
                write_tag(&mut g, key, rng.below(4) as u8, true, rng.below(n - 9));
                if key {
                    g[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                    g[6] = rng.byte();
                    g[7] = rng.below(2) as u8;
                    g[8] = rng.byte();
                    g[9] = rng.below(2) as u8;
                }
            }
        }
        Mutation::Splice => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            g.truncate(cut);
            g.extend_from_slice(&other[from..]);
        }
    }
    g
}

struct Failure {
    what: String,
    frame: Vec<u8>,
}

/// Decode under `catch_unwind` and a stopwatch; a panic or an over-long decode becomes a Failure.
fn checked_decode(
    state: &DecoderState,
    data: &[u8],
    limit: Duration,
    describe: &dyn Fn() -> String,
    failures: &mut Vec<Failure>,
    slowest: &mut Duration,
) -> Option<Result<DecoderState, DecodeError>> {
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| decode_frame(state, data)));
    let took = t.elapsed();
    *slowest = (*slowest).max(took);
    // Decoding costs time in proportion to the frame size, and damage can declare any size
    // up to 16383x16383 (about 2 s here): the bound grows by 40 ns per pixel of the larger of
    // the input state's and the result's frame, so only a decode that does not finish in
    // time for its size fails.
    let pixels = |s: &DecoderState| s.width as u64 * s.height as u64;
    let mut px = pixels(state);
    if let Ok(Ok((next, _))) = &r {
        px = px.max(pixels(next));
    }
    let limit = limit + Duration::from_nanos(40 * px);
    if took > limit {
        failures.push(Failure {
            what: format!("{}: decode took {took:?} (limit {limit:?})", describe()),
            frame: data.to_vec(),
        });
    }
    match r {
        Ok(r) => Some(r.map(|(s, frame)| {
            if let Some(f) = frame {
                // A shown frame is a whole picture at the state's size.
                assert_eq!(
                    (f.display_width, f.display_height),
                    (s.width as usize, s.height as usize)
                );
            }
            s
        })),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(Failure {
                what: format!("{}: PANIC {msg}", describe()),
                frame: data.to_vec(),
            });
            None
        }
    }
}

fn report(failures: &[Failure], seed: u64) {
    if failures.is_empty() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("xc-fuzz-{seed:x}"));
    let _ = std::fs::create_dir_all(&dir);
    let mut lines = Vec::new();
    for (i, f) in failures.iter().enumerate().take(20) {
        let p: PathBuf = dir.join(format!("failure-{i}.vp8"));
        let _ = std::fs::write(&p, &f.frame);
        lines.push(format!("{} (frame bytes in {})", f.what, p.display()));
    }
    panic!("{} fuzz failures:\n{}", failures.len(), lines.join("\n"));
}

#[test]
fn mutated_frames_never_panic_or_hang() {
    let Some(dir) = vectors_dir() else { return };
    let iters: usize = env_or("XC_FUZZ_ITERS", 50_000);
    let seed: u64 = seed_or(0x5eed_2026);
    let limit = Duration::from_millis(env_or("XC_FUZZ_MAX_MS", 2000));
    let paths: Vec<PathBuf> = if std::env::var("XC_FUZZ_VECTORS").is_ok_and(|v| v == "all") {
        common::conformance_vectors(&dir)
    } else {
        VECTORS.iter().map(|v| dir.join(v)).collect()
    };
    let streams: Vec<Stream> = paths.iter().map(|p| load_stream(p)).collect();
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let (mut decodes, mut ok, mut shown_errors) = (0usize, 0usize, [0usize; 12]);
    // Each stream's damaged chain: (state, next frame index).
    let mut chains: Vec<(DecoderState, usize)> =
        streams.iter().map(|_| (DecoderState::default(), 0)).collect();
    let started = Instant::now();
    for iter in 0..iters {
        let si = rng.below(streams.len());
        let s = &streams[si];
        let k = rng.below(s.frames.len());
        let mi = rng.below(MUTATIONS.len());
        let m = MUTATIONS[mi];
        let other = &s.frames[rng.below(s.frames.len())];
        let bad = mutate(&mut rng, m, &s.frames[k], other, &s.states[k]);
        let describe = || format!("seed {seed:#x} iteration {iter}: {} frame {k} {m:?}", s.name);
        decodes += 1;
        match checked_decode(&s.states[k], &bad, limit, &describe, &mut failures, &mut slowest) {
            Some(Ok(_)) => ok += 1,
            Some(Err(e)) => {
                let text = e.to_string();
                assert!(!text.is_empty() && !text.contains('\n'), "error message {text:?}");
                shown_errors[mi] += 1;
            }
            None => {}
        }
        // The damaged chain: the next frame of this stream, damaged half of the time, decoded
        // from whatever state the earlier (possibly damaged) frames left.
        let (chain_state, pos) = &mut chains[si];
        let frame = &s.frames[*pos];
        let data = if rng.chance(2) {
            let m = MUTATIONS[rng.below(MUTATIONS.len())];
            mutate(&mut rng, m, frame, other, &s.states[*pos])
        } else {
            frame.clone()
        };
        let at = *pos;
        let describe =
            || format!("seed {seed:#x} iteration {iter}: {} damaged chain at frame {at}", s.name);
        decodes += 1;
        if let Some(Ok(next)) =
            checked_decode(chain_state, &data, limit, &describe, &mut failures, &mut slowest)
        {
            *chain_state = next;
        }
        *pos = (*pos + 1) % s.frames.len();
        if failures.len() >= 20 {
            break;
        }
    }
    println!(
        "{} vectors, seed {seed:#x}: {decodes} decodes in {:.1?} ({ok} damaged frames decoded, errors per mutation {shown_errors:?}), slowest {slowest:?}",
        streams.len(),
        started.elapsed()
    );
    report(&failures, seed);
    assert!(decodes >= iters * 2 || !failures.is_empty());
}

/// Damaged serialized states either fail to load with a BadState error naming the problem, or
/// load into a state that decodes (or rejects) the next frame without panicking.
#[test]
fn mutated_states_never_panic() {
    let Some(dir) = vectors_dir() else { return };
    let iters: usize = env_or::<usize>("XC_FUZZ_ITERS", 50_000) / 20;
    let seed: u64 = seed_or(0x5eed_2026) ^ 0x5_7a7e;
    let limit = Duration::from_millis(env_or("XC_FUZZ_MAX_MS", 2000));
    let streams: Vec<Stream> =
        ["libvpx-test-data-extra/vp80-06-smallsize.ivf", "vp80-00-comprehensive-006.ivf"]
            .iter()
            .map(|v| load_stream(&dir.join(v)))
            .collect();
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let (mut loaded, mut rejected) = (0usize, 0usize);
    for iter in 0..iters {
        let s = &streams[rng.below(streams.len())];
        let k = 1 + rng.below(s.frames.len() - 1);
        let original = s.states[k].serialize();
        let mut bytes = original.clone();
        match rng.below(5) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            // The fixed fields: size, scaling, flags, deltas.
            2 => {
                for _ in 0..1 + rng.below(3) {
                    let i = 6 + rng.below(15);
                    bytes[i] = rng.byte();
                }
            }
            // The segment map length and the reference tags / sizes that follow it.
            3 => {
                let map_at = 6 + 4 + 2 + 1 + 16 + 4 * 8 * 3 * 11 + 38 + 4 + 3;
                let i = map_at + rng.below(40.min(bytes.len() - map_at));
                bytes[i] = rng.byte();
            }
            _ => bytes.extend((0..1 + rng.below(8)).map(|_| rng.byte())),
        }
        // Most damage gets a valid checksum again, so that the field checks behind it are
        // fuzzed too; the rest must be caught by the checksum (or the magic/version/length
        // checks before it).
        let sealed = rng.below(4) != 0;
        if sealed {
            reseal(&mut bytes);
        }
        match DecoderState::deserialize(&bytes) {
            Err(e) => {
                rejected += 1;
                let text = e.to_string();
                assert!(text.starts_with("bad decoder state: ") && !text.contains('\n'), "{text}");
                if !sealed && bytes.len() >= 10 && bytes[..6] == original[..6] {
                    assert!(text.contains("checksum mismatch"), "{text}");
                }
            }
            Ok(_) if !sealed && bytes != original => {
                failures.push(Failure {
                    what: format!("seed {seed:#x} state iteration {iter}: damaged state loaded"),
                    frame: bytes.clone(),
                });
            }
            Ok(state) => {
                loaded += 1;
                let describe =
                    || format!("seed {seed:#x} state iteration {iter}: {} frame {k}", s.name);
                checked_decode(&state, &s.frames[k], limit, &describe, &mut failures, &mut slowest);
            }
        }
    }
    println!("{iters} damaged states: {loaded} loaded and decoded from, {rejected} rejected");
    report(&failures, seed);
    assert!(rejected > 0 && loaded > 0);
}

/// Overwrite a serialized state's trailing CRC-32 with that of the bytes before it (a bitwise
/// CRC-32 as zlib computes it, independent of the crate's table-driven one).
fn reseal(bytes: &mut [u8]) {
    if bytes.len() < 4 {
        return;
    }
    let n = bytes.len() - 4;
    let mut crc = !0u32;
    for &b in &bytes[..n] {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
        }
    }
    bytes[n..].copy_from_slice(&(!crc).to_le_bytes());
}

/// A state whose segment map was dropped (length 0) while it has a frame size and references
/// is inconsistent: it must be rejected on load, not panic in the next decode.
#[test]
fn state_without_segment_map_is_rejected() {
    let Some(dir) = vectors_dir() else { return };
    let s = load_stream(&dir.join("vp80-00-comprehensive-001.ivf"));
    let bytes = s.states[3].serialize();
    let map_at = 1130;
    let map_len = u32::from_le_bytes(bytes[map_at..map_at + 4].try_into().unwrap()) as usize;
    assert_eq!(map_len, 99, "11x9 macroblocks");
    let mut cut = bytes[..map_at].to_vec();
    cut.extend_from_slice(&0u32.to_le_bytes());
    cut.extend_from_slice(&bytes[map_at + 4 + map_len..]);
    reseal(&mut cut);
    let e =
        catch_unwind(|| DecoderState::deserialize(&cut).map(|st| decode_frame(&st, &s.frames[3])));
    match e {
        Ok(Err(e)) => assert!(e.to_string().contains("segment map"), "{e}"),
        Ok(Ok(_)) => panic!("inconsistent state accepted"),
        Err(_) => panic!("decoding from a state without a segment map panicked"),
    }
}

/// A damaged key frame claiming the largest size VP8 allows (16383x16383) after a good key
/// frame is decoded like any frame of that size, as libvpx does: it costs time and memory in
/// proportion to the size, and finishes. (As a stream's first key frame it is refused early.)
#[test]
fn maximum_size_damaged_key_frame_is_bounded() {
    let Some(dir) = vectors_dir() else { return };
    let s = load_stream(&dir.join("vp80-00-comprehensive-001.ivf"));
    let mut big = s.frames[0].clone();
    big[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
    let t = Instant::now();
    let e = decode_frame(&DecoderState::default(), &big).unwrap_err();
    assert_eq!(e, DecodeError::IncompleteFirstKeyFrame);
    assert!(t.elapsed() < Duration::from_secs(2), "first key frame refused in {:?}", t.elapsed());
    let t = Instant::now();
    let (state, shown) = decode_frame(&s.states[1], &big).unwrap();
    let took = t.elapsed();
    assert_eq!((state.width, state.height), (16383, 16383));
    assert_eq!(shown.map(|f| f.display_width), Some(16383));
    let limit = Duration::from_millis(env_or("XC_FUZZ_MAX_MS", 2000) * 10);
    assert!(took < limit, "16383x16383 damaged key frame took {took:?}");
    println!("16383x16383 damaged key frame decoded in {took:?}");
}
