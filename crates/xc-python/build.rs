//! Bakes the codec's *source identity* into the extension as `XC_BUILD_HASH`.
//!
//! A hand-off between workers is bit-exact only if both sides run the same codec, so a worker
//! reports this hash in its hello and the coordinator refuses one that differs. It hashes the
//! sources (both crates, the manifests and the lock file) rather than the compiled library:
//! a Lambda build for manylinux and a local development build of the same sources must agree,
//! while any source edit must not.

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = here.join("../..");
    let mut files = Vec::new();
    for dir in ["crates/xc/src", "crates/xc-python/src"] {
        collect(&root.join(dir), &mut files);
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for file in ["Cargo.toml", "Cargo.lock", "crates/xc/Cargo.toml", "crates/xc-python/Cargo.toml"]
    {
        files.push(root.join(file));
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let mut named: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            (rel, p)
        })
        .collect();
    named.sort();
    let mut hash = Sha256::new();
    for (rel, path) in &named {
        // A missing file (an unpacked sdist without the lock file) hashes as absent, not as a
        // build failure.
        let data = fs::read(path).unwrap_or_default();
        hash.update(rel.as_bytes());
        hash.update([0]);
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(&data);
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=XC_BUILD_HASH={hex}");
}
