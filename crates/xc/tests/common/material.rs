//! The tests' outside material and how to use it: the VP8 test vectors, the shared clips and
//! libvpx's `vpxenc`/`vpxdec`. Plain `std` only, so that the crate's unit tests compile this
//! same file (`src/lib.rs` includes it under `#[cfg(test)]`) and the integration tests reach it
//! through `common`.
//!
//! Where: `$EXCAMERA_SHARED` (else `shared/` beside the repository, as `/work/shared` is beside
//! `/work/main` and CI lays it beside its clone), and `$XC_TEST_VECTORS` for the vectors (else
//! `vp8-test-vectors/` in the shared directory): the same places the Python tests read.
//!
//! Missing material fails the test, so that a run without it cannot pass by testing nothing.
//! With `XC_ALLOW_MISSING_MATERIAL=1` such a test returns instead, after writing a `NOT RUN`
//! line straight to the process's stderr (past the test harness's output capture, so that it
//! shows in an ordinary `cargo test` run).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The opt-out: set to `1`, a test whose material is missing returns instead of failing.
pub const ALLOW_MISSING: &str = "XC_ALLOW_MISSING_MATERIAL";

/// Material `what` is missing: a panic naming it, or with the opt-out a `NOT RUN` line. The
/// caller returns (or leaves the missing part out) when this returns.
pub fn missing(what: &str) {
    let allowed = std::env::var_os(ALLOW_MISSING).is_some_and(|v| v == "1");
    if !allowed {
        panic!("missing test material: {what} ({ALLOW_MISSING}=1 lets the test return unrun)");
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // On a line of its own: the harness's progress dots may not have ended theirs.
    let line = format!("\nNOT RUN ({ALLOW_MISSING}=1): {test}: missing {what}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The shared material's directory (it may not exist: see [`clip_path`], [`vectors_dir`]).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("EXCAMERA_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// The VP8 test vector directory, or None after [`missing`].
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("XC_TEST_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => shared_dir().join("vp8-test-vectors"),
    };
    existing(dir, "VP8 test vectors (set XC_TEST_VECTORS or EXCAMERA_SHARED)")
}

/// `path` if it exists, else None after [`missing`] (`what` says what it should have been).
pub fn existing(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        Some(path)
    } else {
        missing(&format!("{what}: {} does not exist", path.display()));
        None
    }
}

/// A shared clip's path, or None after [`missing`].
pub fn clip_path(name: &str) -> Option<PathBuf> {
    existing(shared_dir().join("clips").join(name), "shared clip (set EXCAMERA_SHARED)")
}

/// Bytes of one 4:2:0 picture.
pub fn i420_size(width: usize, height: usize) -> usize {
    width * height + 2 * width.div_ceil(2) * height.div_ceil(2)
}

/// A 4:2:0 Y4M clip: its header line and its frames as raw I420 bytes.
pub struct Y4m {
    pub header: String,
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

impl Y4m {
    /// A shared clip, or None after [`missing`].
    pub fn clip(name: &str) -> Option<Y4m> {
        clip_path(name).map(|p| Y4m::read(&p))
    }

    /// Read a Y4M file (one-line header, then `FRAME` lines and I420 planes); material that is
    /// there but damaged fails the test.
    pub fn read(path: &Path) -> Y4m {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bad = |why: &str| -> ! { panic!("{}: not a usable Y4M file: {why}", path.display()) };
        let nl = data.iter().position(|&b| b == b'\n').unwrap_or_else(|| bad("no header"));
        let header = String::from_utf8(data[..nl].to_vec()).unwrap_or_else(|_| bad("header"));
        let field = |c: char| -> usize {
            header
                .split(' ')
                .find_map(|t| t.strip_prefix(c))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| bad("no W or H"))
        };
        let (width, height) = (field('W'), field('H'));
        let size = i420_size(width, height);
        let mut pos = nl + 1;
        let mut frames = Vec::new();
        while pos < data.len() {
            if !data[pos..].starts_with(b"FRAME") {
                bad("no FRAME line");
            }
            pos += data[pos..].iter().position(|&b| b == b'\n').unwrap_or_else(|| bad("FRAME"));
            pos += 1;
            let frame = data.get(pos..pos + size).unwrap_or_else(|| bad("truncated frame"));
            frames.push(frame.to_vec());
            pos += size;
        }
        Y4m { header, width, height, frames }
    }

    /// Write frames `range` as a Y4M file with this clip's header.
    pub fn write(&self, range: std::ops::Range<usize>, path: &Path) {
        let mut out = self.header.as_bytes().to_vec();
        out.push(b'\n');
        for f in &self.frames[range] {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(f);
        }
        std::fs::write(path, out).expect("write y4m");
    }
}

/// An IVF file (32-byte header at 30 fps, then 12-byte frame headers) around VP8 frames.
pub fn ivf_file(width: usize, height: usize, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DKIF");
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"VP80");
    out.extend_from_slice(&(width as u16).to_le_bytes());
    out.extend_from_slice(&(height as u16).to_le_bytes());
    out.extend_from_slice(&30u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(i as u64).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Whether every tool in `names` runs; false after [`missing`] when one does not.
pub fn tools(names: &[&str]) -> bool {
    let absent: Vec<&str> =
        names.iter().copied().filter(|t| Command::new(t).arg("--help").output().is_err()).collect();
    if absent.is_empty() {
        return true;
    }
    missing(&format!("{} (libvpx's tools, apt-get install vpx-tools)", absent.join(", ")));
    false
}

/// Run vpxenc with `settings` on `y4m`, writing `ivf`; returns its wall time in seconds.
pub fn vpxenc(settings: &[&str], y4m: &Path, ivf: &Path) -> f64 {
    let t = Instant::now();
    let out =
        Command::new("vpxenc").args(settings).arg("-o").arg(ivf).arg(y4m).output().expect("vpxenc");
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "vpxenc failed: {}", String::from_utf8_lossy(&out.stderr));
    secs
}

/// vpxdec's I420 output of the IVF file `ivf` (written beside it, then removed). vpxdec must
/// succeed and report no failure.
pub fn vpxdec_i420(ivf: &Path) -> Vec<u8> {
    let yuv = ivf.with_extension("vpxdec.i420");
    let out =
        Command::new("vpxdec").args(["--i420", "-o"]).arg(&yuv).arg(ivf).output().expect("vpxdec");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.to_lowercase().contains("fail"), "vpxdec: {stderr}");
    let data = std::fs::read(&yuv).expect("vpxdec output");
    let _ = std::fs::remove_file(&yuv);
    data
}

/// A fresh temporary directory. Tests run in parallel threads of one process, so each call
/// gets its own number as well as the process id and `name`.
pub fn work_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("xc-test-{}-{n}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Run one test of this test binary alone in a child process, with `env` changed (None
/// removes a variable): how a test checks what another does without its material.
pub fn run_test_alone(test: &str, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", test, "--test-threads=1"]);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().expect("run the test binary")
}

/// Check what `test` does when its material is missing (`env` takes it away): it fails naming
/// `what`, and with the opt-out it passes with a `NOT RUN` line naming it.
pub fn assert_missing_material_fails(test: &str, env: &[(&str, Option<&str>)], what: &str) {
    let mut env = env.to_vec();
    env.push((ALLOW_MISSING, None));
    let out = run_test_alone(test, &env);
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{test} passed without its material:\n{text}");
    assert!(text.contains("missing test material") && text.contains(what), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    env.pop();
    env.push((ALLOW_MISSING, Some("1")));
    let out = run_test_alone(test, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{test} with {ALLOW_MISSING}=1: {stderr}");
    assert!(stderr.contains(&format!("NOT RUN ({ALLOW_MISSING}=1): {test}: missing")), "{stderr}");
    assert!(stderr.contains(what), "{stderr}");
}
