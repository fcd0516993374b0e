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
    STATIC_KEY_WEIGHT,
    PassPlan,
    XcencParams,
)
from excamera.xc.ivf import IvfReader
from vp8_headers import parse_frame


def vpxdec_agrees(frames: list[bytes], ivf: Path, tmp_path: Path) -> int:
    """vpxdec decodes ``ivf`` (``frames``) to the pictures xc's decoder gives, MD5 for MD5:
    how many it decoded."""
    import hashlib

    from excamera.xc.codec import Decoder

    dec = Decoder()
    ours = [hashlib.md5(p.to_bytes()).hexdigest() for f in frames
            if (p := dec.decode(f)) is not None]
    done = subprocess.run(["vpxdec", "--md5", "--i420", "-o", "x-%4.i420", str(ivf)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines() if line.strip()] == ours
    return len(ours)


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
    assert "--static-key" not in p.rekey_argv(16)  # calibrated on floored pass-0 key frames
    floored = XcencParams("v", 20, plan=PassPlan.parse(3), kf_dist=16, mild_batch_keys=True,
                          pass0_key_floor=True)
    argv = floored.rekey_argv(16)
    assert argv[argv.index("--static-key") + 1] == f"{STATIC_KEY_WEIGHT:g}"
    assert "--floored-key" in argv  # the static measure's reference ratio for a floored pass 0
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


def test_a_static_batch_start_gets_a_stronger_key_frame(tmp_path: Path) -> None:
    """``excamera encode`` on bigbuckbunny's static opening: the batch-start chunk's pass 0
    reads static, so its key frame is at (1 - STATIC_KEY_WEIGHT) of the level's quantizer,
    not 0.25 of it (park_joy's busy batch starts keep 0.25: the test above); the later chunk's
    converted first frame is unaffected, and vpxdec decodes the stream to xc's pictures."""
    from excamera.xc.y4m import read_y4m, write_y4m

    src, out = tmp_path / "bbb12.y4m", tmp_path / "out.ivf"
    _, pics = read_y4m(shared_dir() / "clips" / "bigbuckbunny_320x180_48f.y4m")
    write_y4m(src, pics[:12], fps=(24, 1))
    excamera.encode(src, out, quality=36, workers=2, chunk=6, batch=16)
    with IvfReader(out) as r:
        frames = [f.data for f in r]
    q = CQ_LEVEL_QINDEX[36]
    assert parse_frame(frames[0]).key_frame
    assert parse_frame(frames[0]).y_ac_qi == round((1 - STATIC_KEY_WEIGHT) * q) < round(0.25 * q)
    # (1 - 0.86) of the level's quantizer: 7 here (0.79, the weight measured best before the
    # re-decide pass kept the old golden as alt-ref, gave 11, and 0.82, before it decided every
    # frame anew, 9; bench/compression-ideas.md).
    assert parse_frame(frames[0]).y_ac_qi == 7
    assert not any(parse_frame(f).key_frame for f in frames[1:])
    assert vpxdec_agrees(frames, out, tmp_path) == 12


def test_redecided_chunks_keep_the_old_golden_and_decode(tmp_path: Path) -> None:
    """``excamera encode`` on three chunks: the third runs the re-decide pass
    (``XcencParams.redecide``); every converted first frame copies the old golden to alt-ref
    rather than refreshing it, and vpxdec decodes the stream to xc's pictures."""
    from excamera.xc.y4m import read_y4m, write_y4m

    src, out = tmp_path / "c18.y4m", tmp_path / "out.ivf"
    _, pics = read_y4m(shared_dir() / "clips" / "carphone_qcif_120f.y4m")
    write_y4m(src, pics[:18], fps=(30, 1))
    result = excamera.encode(src, out, quality=30, workers=2, chunk=6, batch=16)
    assert [w.passes for w in result.workers] == [2, 2, 4]
    with IvfReader(out) as r:
        frames = [f.data for f in r]
    for i in (6, 12):
        h = parse_frame(frames[i])
        assert (h.key_frame, h.refresh_golden, h.refresh_altref, h.copy_to_altref) == (
            False, True, False, 2)
    assert vpxdec_agrees(frames, out, tmp_path) == 18
