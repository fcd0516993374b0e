"""``excamera encode``: the one-line command, end to end with real workers, vpxenc, PyAV."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _shared_paths import shared_dir
from excamera.metrics import QualityMeter, ssim
from excamera.xc.tools_main import entry_point
from excamera.xc.y4m import Picture, read_y4m

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
FRAMES = 120


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def encode(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "excamera.cli", "encode", *args],
                          env=child_env(), capture_output=True, text=True, timeout=timeout)


def ffmpeg_count(path: Path) -> int:
    done = subprocess.run(["ffmpeg", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(re.findall(r"frame=\s*(\d+)", done.stderr)[-1])


def vpxdec_raw(path: Path, out: Path) -> int:
    done = subprocess.run(["vpxdec", "--i420", "--summary", "-o", str(out), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stderr.split("decoded frames/")[1].split(" showed")[0])


def summary_value(stdout: str, pattern: str) -> float:
    m = re.search(pattern, stdout)
    assert m, stdout
    return float(m.group(1))


@pytest.mark.parametrize("source,suffix", [("carphone_qcif_120f.y4m", ".webm"),
                                           ("carphone_qcif_120f.mp4", ".ivf")])
def test_encode_end_to_end(tmp_path: Path, source: str, suffix: str) -> None:
    src = shared_dir() / "clips" / source
    out = tmp_path / f"out{suffix}"
    done = encode(str(src), "-o", str(out), "--workers", "2", "--passes", "1", "--quality", "24")
    assert done.returncode == 0, done.stderr
    assert f"frames    {FRAMES} (176x144" in done.stdout
    assert "20 chunk(s)" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no partial files left

    # Exactly the input's frame count, in both reference decoders.
    assert ffmpeg_count(out) == FRAMES
    raw = tmp_path / "dec.yuv"
    assert vpxdec_raw(out, raw) == FRAMES

    # PSNR from the summary equals an independent computation on vpxdec's output.
    if source.endswith(".y4m"):
        _, pics = read_y4m(src)
        ref = np.stack([np.concatenate([p.y.ravel(), p.u.ravel(), p.v.ravel()]) for p in pics])
    else:
        ref_raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-f", "rawvideo",
                                  "-pix_fmt", "yuv420p", "-"], capture_output=True,
                                 timeout=120, check=True).stdout
        ref = np.frombuffer(ref_raw, np.uint8).reshape(FRAMES, -1)
    dec = np.fromfile(raw, np.uint8).reshape(FRAMES, -1)
    err = (dec.astype(np.float64) - ref) ** 2
    ny = 176 * 144
    psnr_y = 10 * np.log10(255**2 / err[:, :ny].mean())
    psnr_all = 10 * np.log10(255**2 / err.mean())
    assert summary_value(done.stdout, r"PSNR\s+Y ([\d.]+)") == pytest.approx(psnr_y, abs=0.006)
    assert summary_value(done.stdout, r"YUV ([\d.]+) dB") == pytest.approx(psnr_all, abs=0.006)
    assert 30 < psnr_y < 60
    ssim_v = summary_value(done.stdout, r"SSIM\s+([\d.]+)")
    assert 0.9 < ssim_v < 1.0
    kbps = summary_value(done.stdout, r"bitrate\s+([\d.]+) kbit/s")
    payload = summary_value(done.stdout, r"\((\d+) bytes of VP8")
    assert kbps == pytest.approx(payload * 8 / (FRAMES * 1001 / 30000) / 1000, rel=1e-3)
    if suffix == ".webm":
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v",
                                "-show_entries", "packet=pts,flags", "-of", "csv", str(out)],
                               capture_output=True, text=True, check=True).stdout.split()
        pts = [int(line.split(",")[1]) for line in probe]
        assert pts == sorted(pts) and len(pts) == FRAMES
        keys = [i for i, line in enumerate(probe) if line.split(",")[2].startswith("K")]
        assert keys == list(range(0, FRAMES, 6))  # pass 0 only: every chunk has a key frame


def test_encode_bad_input_one_line_no_output(tmp_path: Path) -> None:
    bad = tmp_path / "notvideo.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    out = tmp_path / "out.webm"
    done = encode(str(bad), "-o", str(out), "--passes", "1")
    assert done.returncode == 1
    assert done.stderr.startswith("excamera encode: error: ")
    assert len(done.stderr.strip().splitlines()) == 1 and "notvideo.mp4" in done.stderr
    assert not out.exists()
    done = encode(str(bad), "-o", str(tmp_path / "out.mkv"))
    assert done.returncode == 1 and ".ivf or .webm" in done.stderr


@pytest.mark.skipif(entry_point("xc-enc") is None,
                    reason="needs the encoder xc-enc (excamera.xc.enc not built)")
def test_encode_full_excamera_default(tmp_path: Path) -> None:
    src = shared_dir() / "clips" / "carphone_qcif_120f.y4m"
    out = tmp_path / "out.webm"
    done = encode(str(src), "-o", str(out), "--workers", "2", "--batch", "4")
    assert done.returncode == 0, done.stderr
    assert "passes 7 (per worker 1..3)" in done.stdout
    assert ffmpeg_count(out) == FRAMES
    assert vpxdec_raw(out, tmp_path / "dec.yuv") == FRAMES


@pytest.mark.skipif(entry_point("xc-enc") is None,
                    reason="needs the encoder xc-enc (excamera.xc.enc not built)")
def test_tools_in_the_worker_give_the_subprocess_result(tmp_path: Path) -> None:
    """``--tools worker`` (the default: xc-enc, xc-dump, comp-states run in the worker's own
    Python) and ``--tools subprocess`` (a process per step, as mu ran them) write the same
    bytes, for both chains."""
    src = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    for chain in ("excamera", "mu"):
        outs = []
        for tools in ("worker", "subprocess"):
            out = tmp_path / f"{chain}-{tools}.ivf"
            done = encode(str(src), "-o", str(out), "--workers", "2", "--chunk", "2",
                          "--batch", "4", "--quality", "30", "--chain", chain, "--tools", tools)
            assert done.returncode == 0, done.stderr
            outs.append(out.read_bytes())
        assert outs[0] == outs[1], chain


@pytest.mark.skipif(entry_point("xc-enc") is None,
                    reason="needs the encoder xc-enc (excamera.xc.enc not built)")
def test_pass0_xc_over_several_batches(tmp_path: Path) -> None:
    """With ``--pass0 xc`` every chunk records the state it was encoded from, a fresh one for
    the key-frame chunks that start batches; those decode from any state, so the join check
    must not hold them to it (it once did, failing every multi-batch xc encode)."""
    src = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    out = tmp_path / "out.ivf"
    done = encode(str(src), "-o", str(out), "--workers", "2", "--chunk", "2", "--batch", "2",
                  "--pass0", "xc", "--quality", "30")
    assert done.returncode == 0, done.stderr
    assert vpxdec_raw(out, tmp_path / "dec.yuv") == 10


def test_quality_meter_and_ssim_properties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    u = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    v = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    a = Picture(y, u, v)
    assert ssim(y, y) == pytest.approx(1.0)
    noisy = np.clip(y.astype(int) + rng.integers(-20, 21, y.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(y, noisy) < 0.99
    m = QualityMeter()
    m.add(a, Picture(np.clip(y.astype(int) + 2, 0, 255).astype(np.uint8), u, v))
    diff = np.clip(y.astype(int) + 2, 0, 255) - y
    mse_y = float(np.mean(diff.astype(float) ** 2))
    assert m.psnr_y == pytest.approx(10 * np.log10(255**2 / mse_y))
    total = diff.size + u.size + v.size
    assert m.psnr_all == pytest.approx(10 * np.log10(255**2 * total / np.sum(diff**2.0)))
