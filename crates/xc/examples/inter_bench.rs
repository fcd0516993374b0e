//! Time the encoder's inter frames as the ExCamera chain's re-decide pass encodes them: a key
//! frame, then a chain of inter frames at `SPEED` with `activity_rd` and `ssim_decisions` (as
//! `rebase::redecide_frame`). Prints the CPU time of the inter frames alone (this thread's, from
//! `/proc/thread-self/schedstat`, so other processes' load does not count) and a hash of every
//! written byte, so that a change meant to be faster can show it wrote the same frames.
//!
//! Usage: inter_bench CLIP.y4m FRAMES QINDEX [good|goodrefs|rt] [plain]
//! (`plain`: without `activity_rd` and `ssim_decisions`.)

use xc::encoder::{encode_frame, EncodeParams, Speed};
use xc::DecoderState;

#[path = "common/y4m.rs"]
mod y4m;

fn fail(msg: String) -> ! {
    eprintln!("inter_bench: {msg}");
    std::process::exit(1)
}

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .unwrap_or_else(|e| fail(format!("cannot read schedstat: {e}")));
    s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        fail("usage: inter_bench CLIP.y4m FRAMES QINDEX [good|goodrefs|rt] [plain]".into());
    }
    let n: usize = args[2].parse().unwrap_or_else(|_| fail(format!("bad FRAMES {}", args[2])));
    let q: u8 = args[3].parse().unwrap_or_else(|_| fail(format!("bad QINDEX {}", args[3])));
    let speed = match args.get(4).map(String::as_str) {
        None | Some("goodrefs") => Speed::GoodRefs,
        Some("good") => Speed::Good,
        Some("rt") => Speed::Realtime,
        Some(s) => fail(format!("unknown speed {s}")),
    };
    let tuned = args.get(5).map(String::as_str) != Some("plain");
    let frames = y4m::read_y4m(&args[1], n).unwrap_or_else(|e| fail(e));
    if frames.len() < 2 {
        fail("need at least two frames".into());
    }
    let mut state = DecoderState::default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let (mut cpu, mut bytes) = (0u64, 0usize);
    for (i, src) in frames.iter().enumerate() {
        let p = if i == 0 {
            EncodeParams::key(q)
        } else {
            EncodeParams {
                speed,
                activity_rd: tuned,
                ssim_decisions: tuned,
                ..EncodeParams::inter(q)
            }
        };
        let t = cpu_ns();
        let e = encode_frame(&state, src, &p).unwrap_or_else(|e| fail(format!("frame {i}: {e}")));
        if i > 0 {
            cpu += cpu_ns() - t;
            bytes += e.data.len();
        }
        for &b in &e.data {
            hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        state = e.state;
    }
    println!(
        "{} inter frames {}x{} q{q} {speed:?}{}: {bytes} bytes, {:.2} ms CPU/frame, hash {hash:016x}",
        frames.len() - 1,
        frames[0].display_width,
        frames[0].display_height,
        if tuned { " activity+ssim" } else { "" },
        cpu as f64 / 1e6 / (frames.len() - 1) as f64,
    );
}
