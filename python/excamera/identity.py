"""What code this process runs: the identity a worker and its coordinator must share.

ExCamera's hand-offs are bit-exact only when both ends run the same codec and the same job
code: a remote worker built from other sources would decode a handed-off state to different
pictures and the stitched stream would drift without any error. So the launch payload carries
the coordinator's identity, the worker's hello carries its own, and the coordinator refuses a
worker whose code differs.

The identity is three short hashes, cheap to compute once per process:

- ``version``: the package version;
- ``xc_build``: the Rust extension's source hash, baked in at build time
  (``crates/xc-python/build.rs``), so a manylinux build for Lambda and a local development
  build of the same sources agree;
- ``python``: a hash of the package's Python sources (``*.py`` under ``excamera/``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

HASH_CHARS = 16


def package_version() -> str:
    """The installed distribution's version (read lazily: importlib.metadata is slow)."""
    try:
        from importlib.metadata import version

        return version("excamera")
    except Exception:  # running from a tree that was never installed
        return "0.0.0+unknown"


def python_source_hash(root: Path | None = None) -> str:
    """SHA-256 over the package's ``*.py`` files, by relative path, in a fixed order."""
    base = root or Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        data = path.read_bytes()
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def extension_build_hash() -> str:
    try:
        from excamera import _xc
    except ImportError:
        return "none"
    return str(getattr(_xc, "BUILD_HASH", "unknown"))


@functools.cache
def code_identity() -> dict[str, str]:
    """This process's code identity (computed once)."""
    return {
        "version": package_version(),
        "xc_build": extension_build_hash()[:HASH_CHARS],
        "python": python_source_hash()[:HASH_CHARS],
    }


def describe(identity: dict[str, str] | None) -> str:
    if not identity:
        return "no code identity"
    return (f"excamera {identity.get('version', '?')} (xc build {identity.get('xc_build', '?')}, "
            f"python {identity.get('python', '?')})")


def mismatch(expected: dict[str, str], got: object) -> str | None:
    """Why ``got`` is not ``expected``, or None when they are the same code."""
    if not isinstance(got, dict):
        return f"the worker reported no code identity; the coordinator runs {describe(expected)}"
    diff = [k for k in sorted(expected) if got.get(k) != expected[k]]
    if not diff:
        return None
    return (f"the worker runs {describe(got)} but the coordinator runs {describe(expected)} "
            f"(differs in {', '.join(diff)}); deploy the same build to the workers")
