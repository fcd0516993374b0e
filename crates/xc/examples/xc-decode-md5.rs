//! Decode an IVF file and print one line per shown frame in the format of the test vectors'
//! `.md5` files (`vpxdec --md5 --i420 -o NAME-%wx%h-%4.i420`), or an error naming what failed.
//!
//! Usage: `cargo run --release -p xc --example xc-decode-md5 -- FILE.ivf`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: xc-decode-md5 FILE.ivf");
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
    let mut state = xc::DecoderState::default();
    for (i, f) in frames.iter().enumerate() {
        match xc::decode_frame(&state, f.data) {
            Ok((next, shown)) => {
                state = next;
                if let Some(frame) = shown {
                    let (w, h) = (frame.display_width, frame.display_height);
                    println!(
                        "{}  {stem}-{w}x{h}-{:04}.i420",
                        xc::md5::md5_hex(&frame.to_i420()),
                        i + 1
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {path}: frame {}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
