"""Where the read-only background material (clips, test vectors) lives for tests.

``EXCAMERA_SHARED`` if set, else ``shared/`` beside the repository (as /work/shared is beside
/work/main, and as CI lays it beside its clone). Missing material is a test failure, not a skip,
so a run without it cannot pass by testing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    path = Path(os.environ.get("EXCAMERA_SHARED") or REPO.parent / "shared")
    if not (path / "clips").is_dir():
        pytest.fail(f"shared material not found at {path}: set EXCAMERA_SHARED")
    return path
