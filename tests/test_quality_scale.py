"""One quality scale: ``--quality`` is vpxenc's cq level (0..63) whichever encoder runs pass 0.

The level-to-quantizer-index table is checked against vpxenc itself (every level, read back
from the frame headers by tests/vp8_headers.py, a reader independent of xc's decoder), and the
two pass-0 encoders are checked to put the same quantizer index in their frames.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import excamera
from _shared_paths import shared_dir
from excamera.errors import SettingsError
from excamera.pipelines.xcenc.plan import CQ_LEVEL_QINDEX, PlanError, XcencParams, cq_level_qindex
from excamera.xc.ivf import IvfReader
from vp8_headers import FrameInfo, parse_frame

CLIP = "park_joy_160x90_10f.y4m"


def headers(path: Path) -> list[FrameInfo]:
    with IvfReader(path) as r:
        return [parse_frame(f.data) for f in r]


def test_cq_level_table_is_vpxenc_s(tmp_path: Path) -> None:
    """vpxenc pinned to one level (--min-q = --max-q = L) writes index CQ_LEVEL_QINDEX[L]."""
    clip = shared_dir() / "clips" / CLIP
    out = tmp_path / "one.ivf"
    got = []
    for level in range(64):
        subprocess.run(["vpxenc", "--codec=vp8", "--ivf", "-q", "--disable-warning-prompt",
                        "--limit=1", "--end-usage=q", f"--cq-level={level}",
                        f"--min-q={level}", f"--max-q={level}", "-o", str(out), str(clip)],
                       check=True, capture_output=True, timeout=60)
        got.append(headers(out)[0].y_ac_qi)
    assert tuple(got) == CQ_LEVEL_QINDEX
    assert cq_level_qindex(63) == 127
    with pytest.raises(PlanError, match="0..63"):
        cq_level_qindex(64)


@pytest.mark.parametrize("level", [40])
def test_pass0_encoders_share_the_quality_scale(tmp_path: Path, level: int) -> None:
    """At the same --quality, xc's pass 0 puts vpxenc's index for that level in every frame,
    and vpxenc (mu's constrained-quality settings) puts it in every plain inter frame (its key
    and golden/alt-ref frames are boosted below it)."""
    clip = shared_dir() / "clips" / CLIP
    want = CQ_LEVEL_QINDEX[level]
    assert want != level  # the old reading (an index) would not pass
    seen: dict[str, list[FrameInfo]] = {}
    for pass0 in ("xc", "vpxenc"):
        out = tmp_path / f"{pass0}.ivf"
        excamera.encode(clip, out, quality=level, workers=2, chunk=5, passes=1, pass0=pass0)
        seen[pass0] = headers(out)
    assert {h.y_ac_qi for h in seen["xc"]} == {want}
    plain = [h.y_ac_qi for h in seen["vpxenc"] if not h.key_frame and h.show_frame
             and not h.refresh_golden and not h.refresh_altref]
    assert len(plain) >= 4 and set(plain) == {want}


def test_quality_beyond_the_scale_is_refused_for_either_encoder(tmp_path: Path) -> None:
    clip = shared_dir() / "clips" / CLIP
    for pass0 in ("xc", "vpxenc"):
        with pytest.raises(SettingsError, match=r"^quality 64: must be 0\.\.63$"):
            excamera.encode(clip, tmp_path / "x.ivf", quality=64, pass0=pass0)
    with pytest.raises(PlanError, match="-Y 100"):
        XcencParams("v", 1, y_ac_qi=100, pass0="xc")
    assert not (tmp_path / "x.ivf").exists()
