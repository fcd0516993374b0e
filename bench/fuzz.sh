#!/usr/bin/env bash
# Long mutation-fuzz run of the xc decoder (crates/xc/src/tests/fuzz.rs): many more iterations than
# CI's 100,000 decodes, over every conformance vector, with a fresh seed each run unless given.
#
#   bench/fuzz.sh [ITERATIONS] [SEED]        e.g. bench/fuzz.sh 2000000 0x1234
#
# A failure prints the seed, iteration, vector, frame and mutation, and writes the damaged frame
# under $TMPDIR/xc-fuzz-<seed>/ so it can be replayed with the same seed.
set -euo pipefail
cd "$(dirname "$0")/.."
iters="${1:-1000000}"
seed="${2:-$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')}"
export EXCAMERA_SHARED="${EXCAMERA_SHARED:-$(cd .. && pwd)/shared}"
export XC_TEST_VECTORS="${XC_TEST_VECTORS:-$EXCAMERA_SHARED/vp8-test-vectors}"
[ -d "$XC_TEST_VECTORS" ] || { echo "fuzz.sh: no test vectors at $XC_TEST_VECTORS (set EXCAMERA_SHARED)" >&2; exit 2; }
echo "xc fuzz: $iters iterations (2 decodes each), seed $seed, all vectors" >&2
XC_FUZZ_ITERS="$iters" XC_FUZZ_SEED="$seed" XC_FUZZ_VECTORS=all XC_FUZZ_MAX_MS="${XC_FUZZ_MAX_MS:-5000}" \
  cargo test --release -p xc --lib tests::fuzz -- --nocapture --test-threads=1
