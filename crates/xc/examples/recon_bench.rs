//! Rough throughput of the reconstruction kernels on a 640x368 frame (40 x 23 macroblocks).
//! Run: cargo run --release -p xc --example recon_bench

use std::hint::black_box;
use std::time::Instant;
use xc::frame::Frame;
use xc::loopfilter::{filter_frame, FilterType, MbEdgeInfo};
use xc::mb::{BMode, MbInfo, MbMode, Mv};
use xc::predict::inter::{predict_inter_mb, InterFilter};
use xc::predict::intra::{predict_luma16, predict_luma4};
use xc::transform::idct4x4_add;

fn frame(w: usize, h: usize) -> Frame {
    let mut f = Frame::new(w, h, 0);
    let mut s = 12345u32;
    for p in [&mut f.y, &mut f.u, &mut f.v] {
        for (i, v) in p.data.iter_mut().enumerate() {
            s = s.wrapping_mul(1103515245).wrapping_add(12345);
            *v = (100 + (i % 37) as u32 + (s >> 29)) as u8;
        }
    }
    f
}

fn time<F: FnMut()>(name: &str, iters: usize, mbs: usize, mut f: F) {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per_frame = t.elapsed().as_secs_f64() / iters as f64;
    println!(
        "{name:28} {:8.3} ms/frame {:7.1} ns/MB",
        per_frame * 1e3,
        per_frame * 1e9 / mbs as f64
    );
}

fn main() {
    let (w, h) = (640, 368);
    let reference = frame(w, h);
    let mut dst = frame(w, h);
    let (cols, rows) = (dst.mb_cols(), dst.mb_rows());
    let n = cols * rows;
    let iters = 200;
    for (name, mv) in [
        ("inter 16x16 full-pel", Mv { row: 4, col: -8 }),
        ("inter 16x16 2D 6-tap", Mv { row: 3, col: -5 }),
    ] {
        let info = MbInfo { y_mode: MbMode::New, mv, mvs: [mv; 16], ..Default::default() };
        time(name, iters, n, || {
            for mby in 0..rows {
                for mbx in 0..cols {
                    predict_inter_mb(
                        &reference,
                        &mut dst,
                        mbx,
                        mby,
                        &info,
                        InterFilter::SixTap,
                        false,
                    );
                }
            }
        });
    }
    let mut split = MbInfo { y_mode: MbMode::Split, ..Default::default() };
    for b in 0..16 {
        split.mvs[b] = Mv { row: (b as i16 % 5) - 2, col: 3 - (b as i16 % 7) };
    }
    time("inter split 4x4 6-tap", iters, n, || {
        for mby in 0..rows {
            for mbx in 0..cols {
                predict_inter_mb(
                    &reference,
                    &mut dst,
                    mbx,
                    mby,
                    &split,
                    InterFilter::SixTap,
                    false,
                );
            }
        }
    });
    let info = MbInfo { y_mode: MbMode::New, mv: Mv { row: 3, col: -5 }, ..Default::default() };
    time("inter 16x16 bilinear", iters, n, || {
        for mby in 0..rows {
            for mbx in 0..cols {
                predict_inter_mb(
                    &reference,
                    &mut dst,
                    mbx,
                    mby,
                    &info,
                    InterFilter::Bilinear,
                    false,
                );
            }
        }
    });
    let mut coeffs = [0i16; 16];
    for (i, c) in coeffs.iter_mut().enumerate() {
        *c = (i as i16 * 37 % 23) - 11;
    }
    time("idct4x4_add x24 per MB", iters, n, || {
        for mby in 0..rows {
            for mbx in 0..cols {
                for b in 0..24 {
                    let off = (mby * 16 + (b / 4 % 4) * 4) * w + mbx * 16 + (b % 4) * 4;
                    idct4x4_add(black_box(&coeffs), &mut dst.y.data, off, w);
                }
            }
        }
    });
    time("intra 16x16 TM", iters, n, || {
        for mby in 0..rows {
            for mbx in 0..cols {
                predict_luma16(&mut dst.y, mbx, mby, MbMode::Tm);
            }
        }
    });
    time("intra 4x4 x16 (VR)", iters, n, || {
        for mby in 0..rows {
            for mbx in 0..cols {
                for b in 0..16 {
                    predict_luma4(&mut dst.y, mbx, mby, b, BMode::Vr);
                }
            }
        }
    });
    let base = frame(w, h);
    let mbs = vec![MbEdgeInfo { level: 30, filter_inner: true }; n];
    for (name, t) in
        [("loop filter normal", FilterType::Normal), ("loop filter simple", FilterType::Simple)]
    {
        let mut f = base.clone();
        time(name, iters, n, || {
            f.clone_from(&base);
            filter_frame(&mut f, &mbs, t, 0, false);
        });
    }
}
