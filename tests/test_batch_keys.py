"""Batch mode's key frames (``XcencParams.mild_batch_keys``): every batch, the clip's first
included, starts with a key frame at the quantizer the rebased chunks give their first frames,
not at pass 0's (vpxenc's two-pass key frames sit at about 0), and the chunk's other frames are
rebased onto it. Headers are read by tests/vp8_headers.py; the output must decode in vpxdec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import excamera
from _shared_paths import shared_dir
from excamera.pipelines.xcenc.plan import (
    CQ_LEVEL_QINDEX,
    JOIN_FINAL,
    JOIN_KEY,
    PassPlan,
    XcencParams,
)
from excamera.xc.ivf import IvfReader
from vp8_headers import parse_frame


def test_the_plan_rekeys_batch_starts_without_a_neighbour() -> None:
    p = XcencParams("v", 20, plan=PassPlan.parse(3), kf_dist=16, mild_batch_keys=True)
    for k in (0, 16):
        start = p.worker_plan(k)
        assert start.passes == 2 and start.rekey_pass == 1 and start.needs == {}
        assert start.out_tags == {1: 0}  # the batch starts from the re-keyed chunk's state
    assert p.join(16).kind == JOIN_KEY and p.join(1).kind == p.join(17).kind == JOIN_FINAL
    assert p.worker_plan(1).passes == 2 and p.worker_plan(2).passes == 3
    assert "--s-ac-qi" in p.rekey_argv(16) and p.rekey_argv(16)[p.rekey_argv(16).index(
        "--s-ac-qi") + 1] == str(round(0.25 * CQ_LEVEL_QINDEX[30]))
    assert "--activity-rd" in p.rekey_argv(16)  # the same rebase as the chain's
    assert "--full-key" in p.rekey_argv(16)  # xc's own key frame, not vpxenc's re-quantized
    mu = XcencParams("v", 20, plan=PassPlan.parse(3), kf_dist=16, mild_batch_keys=True,
                     chain="mu")
    assert mu.worker_plan(16).passes == 1  # mu's chain runs as mu did


def test_batch_key_frames_are_milder_and_decode(tmp_path: Path) -> None:
    out = tmp_path / "out.ivf"
    excamera.encode(shared_dir() / "clips" / "park_joy_160x90_10f.y4m", out, quality=30,
                    workers=2, chunk=2, batch=3)
    with IvfReader(out) as r:
        headers = [parse_frame(f.data) for f in r]
    keys, shown = {}, 0
    for h in headers:
        if h.key_frame:
            keys[shown] = h.y_ac_qi
        shown += h.show_frame
    assert keys == dict.fromkeys([0, 6], round(0.25 * CQ_LEVEL_QINDEX[30]))
    done = subprocess.run(["vpxdec", "--i420", "-o", str(tmp_path / "d.yuv"), str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d.yuv").stat().st_size == 10 * 160 * 90 * 3 // 2
