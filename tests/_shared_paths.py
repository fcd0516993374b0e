"""Where the read-only background material (clips, test vectors) lives for tests.

``EXCAMERA_SHARED`` if set, else ``shared/`` beside the repository (as /work/shared is beside
/work/main, and as CI lays it beside its clone); the VP8 test vectors are ``XC_TEST_VECTORS`` if
set, else ``vp8-test-vectors/`` in it. The Rust tests read the same variables
(``crates/xc/tests/common/material.rs``).

Missing material is a test failure, not a skip, so a run without it cannot pass by testing
nothing. ``XC_ALLOW_MISSING_MATERIAL=1`` turns that failure into a skip that names what is
missing (reported as skipped, never as passed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOW_MISSING = "XC_ALLOW_MISSING_MATERIAL"


def missing(what: str) -> NoReturn:
    """Fail (or with the opt-out skip) the test, or the module being collected."""
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(f"NOT RUN ({ALLOW_MISSING}=1): missing {what}", allow_module_level=True)
    pytest.fail(f"missing test material: {what} ({ALLOW_MISSING}=1 skips instead)",
                pytrace=False)


def shared_dir() -> Path:
    path = Path(os.environ.get("EXCAMERA_SHARED") or REPO.parent / "shared")
    if not (path / "clips").is_dir():
        missing(f"shared material (clips/) at {path}: set EXCAMERA_SHARED")
    return path


def vectors_dir() -> Path:
    env = os.environ.get("XC_TEST_VECTORS")
    path = Path(env) if env else shared_dir() / "vp8-test-vectors"
    if not path.is_dir():
        missing(f"VP8 test vectors at {path}: set XC_TEST_VECTORS or EXCAMERA_SHARED")
    return path


def conformance_vectors() -> list[Path]:
    """The 61 conformance vectors that come with a per-frame ``.md5`` file, and smallsize."""
    root = vectors_dir()
    found = sorted(p for p in root.glob("*.ivf") if Path(f"{p}.md5").exists())
    found.append(root / "libvpx-test-data-extra" / "vp80-06-smallsize.ivf")
    return found
