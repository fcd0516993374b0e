//! Decode an IVF file and print one line per shown frame in the format of the test vectors'
//! `.md5` files (`vpxdec --md5 --i420 -o NAME-%wx%h-%4.i420`), or an error naming what failed.
//!
//! Usage: `cargo run --release -p xc --example xc-decode-md5 -- [--no-md5] FILE.ivf`
//! (`--no-md5` decodes only and prints the decode time, for benchmarking).

use std::io::Write;
use std::process::ExitCode;

// MD5 is test support, not part of the codec: the example shares the tests' copy.
#[path = "../tests/common/md5.rs"]
mod md5;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let no_md5 = args.iter().any(|a| a == "--no-md5");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")).cloned() else {
        eprintln!("usage: xc-decode-md5 [--no-md5] FILE.ivf");
        return ExitCode::from(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, frames) = match xc::ivf::parse_ivf(&data) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stem = std::path::Path::new(&path)
        .file_stem()
        .map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let mut decoder = xc::decoder::Decoder::default();
    // Locked and checked rather than `println!`: a reader that stops early (`| head`) must end
    // the run with one line, not a panic.
    let mut out = std::io::stdout().lock();
    let start = std::time::Instant::now();
    for (i, f) in frames.iter().enumerate() {
        match decoder.decode(f.data) {
            Ok(shown) => {
                if no_md5 {
                    continue;
                }
                if let Some(frame) = shown {
                    let (w, h) = (frame.display_width, frame.display_height);
                    let line = writeln!(
                        out,
                        "{}  {stem}-{w}x{h}-{:04}.i420",
                        md5::md5_hex(&frame.to_i420()),
                        i + 1
                    );
                    if let Err(e) = line {
                        eprintln!("error: writing standard output: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {path}: frame {}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    if no_md5 {
        let secs = start.elapsed().as_secs_f64();
        let fps = frames.len() as f64 / secs;
        if let Err(e) = writeln!(out, "{} frames in {secs:.3} s ({fps:.1} fps)", frames.len()) {
            eprintln!("error: writing standard output: {e}");
            return ExitCode::FAILURE;
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing standard output: {e}");
            ExitCode::FAILURE
        }
    }
}
