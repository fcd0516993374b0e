//! Time `reencode_chunk` the way bench/encode.py does, for profiling without Python: chunk k's
//! prediction stream (`DIR/chunkK.ivf`, from vpxenc) is re-encoded onto the state chunk k-1's
//! prediction stream ends in, with `DIR/chunkK.y4m` as its source pictures.
//!
//! With `XC_CHAIN=1` it times batch mode's two re-encodes with the `excamera` chain's options
//! instead (as bench/encode.py's `batch_mode_passes`): pass 1 (chunk k onto chunk k-1's pass-0
//! state, its key frame converted at the pipeline's effort, Good, `-w 0.75`) and pass 2, the
//! serial step (pass 1's output rebased onto chunk k-1's final state), over chunks 2...
//!
//! Usage: rebase_bench DIR CHUNKS [REPEATS]

use std::time::Instant;

#[path = "common/y4m.rs"]
mod y4m;

use xc::encoder::psnr;
use xc::encoder::rebase::{reencode_chunk, FirstFrameQuality, ReencodeOpts};
use xc::encoder::Speed;
use xc::frame::Frame;
use xc::ivf::parse_ivf;
use xc::DecoderState;

fn fail(msg: String) -> ! {
    eprintln!("rebase_bench: {msg}");
    std::process::exit(1)
}

fn read_y4m(path: &str) -> Vec<Frame> {
    y4m::read_y4m(path, usize::MAX).unwrap_or_else(|e| fail(e))
}

fn read_ivf(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| fail(format!("cannot read {path}: {e}")));
    let (_, frames) = parse_ivf(&data).unwrap_or_else(|e| fail(format!("{path}: {e}")));
    frames.into_iter().map(|f| f.data.to_vec()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        fail("usage: rebase_bench DIR CHUNKS [REPEATS]".into());
    }
    let dir = &args[1];
    let n: usize = args[2].parse().unwrap_or_else(|_| fail(format!("bad CHUNKS {}", args[2])));
    let repeats: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(1);
    let streams: Vec<Vec<Vec<u8>>> =
        (0..n).map(|k| read_ivf(&format!("{dir}/chunk{k}.ivf"))).collect();
    let sources: Vec<Vec<Frame>> =
        (0..n).map(|k| read_y4m(&format!("{dir}/chunk{k}.y4m"))).collect();
    let states: Vec<DecoderState> = streams
        .iter()
        .map(|s| {
            let mut dec = xc::decoder::Decoder::default();
            for f in s {
                dec.decode(f).unwrap_or_else(|e| fail(format!("decode: {e}")));
            }
            dec.into_state()
        })
        .collect();
    if std::env::var("XC_CHAIN").is_ok_and(|v| v == "1") {
        chain(&streams, &states, &sources, repeats);
        return;
    }
    // XC_FIRST_SPEED=rt|best picks the first frame's encoder effort (default good, as the
    // Python binding's default).
    let first_frame_speed = match std::env::var("XC_FIRST_SPEED").as_deref() {
        Ok("rt") => Speed::Realtime,
        Ok("best") => Speed::Best,
        _ => Speed::Good,
    };
    // XC_W=0.75 uses alfalfa's weighted first-frame quantizer (as the pipeline runs it)
    // instead of the matched-quality search.
    let weighted = std::env::var("XC_W").ok().and_then(|w| w.parse::<f64>().ok());
    let opts = ReencodeOpts {
        first_frame_speed,
        kf_q_weight: weighted.unwrap_or(1.0),
        first_frame_quality: if weighted.is_some() {
            FirstFrameQuality::Weighted
        } else {
            FirstFrameQuality::default()
        },
        ..ReencodeOpts::default()
    };
    let mut best = f64::INFINITY;
    let mut frames = 0;
    let mut out = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        frames = 0;
        out.clear();
        for k in 1..n {
            let c = reencode_chunk(&states[k - 1], &streams[k], None, &sources[k], &opts)
                .unwrap_or_else(|e| fail(format!("chunk {k}: {e}")));
            frames += sources[k].len();
            out.push(c.frames);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    // What the rebased chunks cost and look like: bytes, and Y-PSNR of the first frames (the
    // fully encoded ones) and of all shown frames, decoded from the predecessor's state.
    let (mut bytes, mut first_psnr, mut all_psnr) = (0usize, 0.0, 0.0);
    for (k, chunk) in out.iter().enumerate() {
        let mut dec = xc::decoder::Decoder::new(states[k].clone());
        let mut shown = 0;
        for f in chunk {
            bytes += f.len();
            if let Some(pic) = dec.decode(f).unwrap_or_else(|e| fail(format!("decode: {e}"))) {
                let p = psnr(&sources[k + 1][shown], &pic);
                all_psnr += p;
                if shown == 0 {
                    first_psnr += p;
                }
                shown += 1;
            }
        }
    }
    println!(
        "{:.3} ms/frame over {frames} shown frames; {bytes} bytes, Y-PSNR {:.2} dB (first frames {:.2} dB)",
        1000.0 * best / frames as f64,
        all_psnr / frames as f64,
        first_psnr / (n - 1) as f64
    );
}

/// Batch mode's pass 1 and pass 2 with the `excamera` chain's options, timed separately (best
/// of `repeats`) over chunks 2.. (chunk 1 rebases once).
fn chain(
    streams: &[Vec<Vec<u8>>],
    states: &[DecoderState],
    sources: &[Vec<Frame>],
    repeats: usize,
) {
    let n = streams.len();
    if n < 3 {
        fail("XC_CHAIN needs at least 3 chunks".into());
    }
    let opts = ReencodeOpts {
        first_frame_speed: Speed::Good,
        kf_q_weight: 0.75,
        first_frame_quality: FirstFrameQuality::Weighted,
        last_frame_refresh_all: false,
        choose_refs: true,
        ..ReencodeOpts::default()
    };
    let run =
        |k: usize, input: &DecoderState, pred: &[Vec<u8>], pred_state: Option<&DecoderState>| {
            reencode_chunk(input, pred, pred_state, &sources[k], &opts)
                .unwrap_or_else(|e| fail(format!("chunk {k}: {e}")))
        };
    let mut pass1 = vec![Vec::new(); n];
    let mut finals = vec![states[0].clone()];
    let mut t1 = 0.0;
    for k in 1..n {
        let t = Instant::now();
        let p1 = run(k, &states[k - 1], &streams[k], None);
        if k >= 2 {
            t1 += t.elapsed().as_secs_f64();
        }
        let fin = if k == 1 {
            p1.state.clone()
        } else {
            run(k, &finals[k - 1], &p1.frames, Some(&states[k - 1])).state
        };
        pass1[k] = p1.frames;
        finals.push(fin);
    }
    let frames: usize = sources[2..].iter().map(|s| s.len()).sum();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let (t, c) = (Instant::now(), cpu_seconds());
        for k in 2..n {
            run(k, &finals[k - 1], &pass1[k], Some(&states[k - 1]));
        }
        wall.push(1000.0 * t.elapsed().as_secs_f64() / frames as f64);
        cpu.push(1000.0 * (cpu_seconds() - c) / frames as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "pass 1 {:.2} ms/frame (once); pass 2 (serial step) median {:.2} ms/frame CPU ({:.2} wall) over {frames} frames",
        1000.0 * t1 / frames as f64,
        median(&mut cpu),
        median(&mut wall),
    );
}

/// This thread's CPU time in seconds (Linux's scheduler statistics; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}
