//! Print one line per frame of an IVF file: index, size, key/inter, shown, quantizer index,
//! loop filter level and the reference refresh flags. For looking at where a stream's bits go.
//!
//! Usage: `cargo run --release -p xc --example ivf_info -- FILE.ivf`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: ivf_info FILE.ivf");
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
    let mut decoder = xc::decoder::Decoder::default();
    println!("frame bytes type shown q lf refresh(l,g,a) copy(g,a)");
    for (i, f) in frames.iter().enumerate() {
        let parsed = match xc::inspect::parse_frame(decoder.state(), f.data) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {path}: frame {i}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let h = &parsed.header;
        println!(
            "{i:5} {:6} {} {} {:3} {:2} {}{}{} {}{}",
            f.data.len(),
            if parsed.key_frame { "K" } else { "P" },
            if parsed.show_frame { "s" } else { "h" },
            h.quant.y_ac_qi,
            h.loop_filter_level,
            u8::from(h.refresh_last || parsed.key_frame),
            u8::from(h.refresh_golden_frame || parsed.key_frame),
            u8::from(h.refresh_alternate_frame || parsed.key_frame),
            h.copy_buffer_to_golden,
            h.copy_buffer_to_alternate,
        );
        if let Err(e) = decoder.decode(f.data) {
            eprintln!("error: {path}: frame {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
