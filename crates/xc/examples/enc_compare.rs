//! Encode the first frames of a Y4M clip at fixed qindex values (a key frame, then inter
//! frames) and print bytes, PSNR and time per frame, for comparison with vpxenc.
//!
//! Usage: enc_compare CLIP.y4m FRAMES SPEED(best|good|rt) QINDEX...
//! (`XC_QUANT=plain` in the environment selects the plain quantizer instead of the RD one.)

use std::time::Instant;

#[path = "common/y4m.rs"]
mod y4m;

use xc::encoder::psnr;
use xc::encoder::QuantMode;
use xc::encoder::{encode_frame, EncodeParams, Speed};
use xc::DecoderState;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: enc_compare CLIP.y4m FRAMES best|good|rt QINDEX...");
        std::process::exit(2);
    }
    let n: usize = args[2].parse().unwrap_or(10);
    let speed = match args[3].as_str() {
        "best" => Speed::Best,
        "rt" => Speed::Realtime,
        _ => Speed::Good,
    };
    let frames = y4m::read_y4m(&args[1], n).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let quant = match std::env::var("XC_QUANT").as_deref() {
        Ok("plain") => QuantMode::Plain,
        _ => QuantMode::Rd,
    };
    for q in &args[4..] {
        let q: u8 = q.parse().unwrap_or(40);
        let mut state = DecoderState::default();
        let (mut bytes, mut ps) = (0usize, 0.0);
        let t = Instant::now();
        for (i, src) in frames.iter().enumerate() {
            let p = if i == 0 { EncodeParams::key(q) } else { EncodeParams::inter(q) };
            let p = EncodeParams { speed, quant, ..p };
            let e = encode_frame(&state, src, &p).unwrap_or_else(|e| panic!("frame {i}: {e}"));
            bytes += e.data.len();
            ps += psnr(src, &e.recon);
            if std::env::var_os("XC_VERBOSE").is_some() {
                println!("  frame {i}: {} bytes, {:.2} dB", e.data.len(), psnr(src, &e.recon));
            }
            state = e.state;
        }
        let el = t.elapsed().as_secs_f64();
        let nf = frames.len() as f64;
        println!(
            "q {q:3}: {:8.1} kbit/s @30fps, avg psnr {:.2} dB, {:.2} ms/frame",
            bytes as f64 * 8.0 * 30.0 / nf / 1000.0,
            ps / nf,
            el * 1000.0 / nf
        );
    }
}
