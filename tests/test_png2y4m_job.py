"""End to end png2y4m: the real CLI, real worker processes, real TLS, a local storage dir."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import png
import pytest

from excamera.mu.backends import LocalBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.pipelines.png2y4m import convert_pngs
from excamera.pipelines.png2y4m_job import OPERATION_MODULE, Png2Y4MParams, png2y4m_machine

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"


def write_png16(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 977 + seed * 131) % 65536, (yy * 1543) % 65536,
                    rng.integers(0, 65536, (h, w))], axis=-1).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=16).write(f, rgb.reshape(h, w * 3).tolist())


def make_clip(root: Path, n: int = 30, w: int = 48, h: int = 32) -> list[Path]:
    paths = [root / "clip-png16" / f"{i:08d}.png" for i in range(1, n + 1)]
    for i, p in enumerate(paths, 1):
        write_png16(p, w, h, i)
    return paths


def test_png2y4m_cli_end_to_end(tmp_path: Path) -> None:
    store = tmp_path / "store"
    frames = make_clip(store)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    states = tmp_path / "states.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "excamera.cli", "png2y4m", "-n", "5", "-f", "6", "-v", "clip",
         "-b", str(store), "-t", "0", "-O", str(states), "--progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "5 chunk(s) written" in done.stdout
    out_dir = store / "clip-y4m_06"
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{k:08d}.y4m" for k in range(5)]
    for k in range(5):
        expect = tmp_path / f"expect-{k}.y4m"
        convert_pngs(frames[6 * k : 6 * k + 6], expect)
        got = (out_dir / f"{k:08d}.y4m").read_bytes()
        assert got == expect.read_bytes()
        assert got.startswith(b"YUV4MPEG2 W48 H32") and got.count(b"FRAME\n") == 6
    lines = states.read_text().splitlines()
    assert sum('"state": "done"' in line for line in lines) == 5
    assert "done 5" in done.stderr and "error 0" in done.stderr  # the live view's last frame


def test_png2y4m_cli_failure_exits_nonzero(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_clip(store, n=12)  # -n 3 needs 18 frames: worker 2's keys are missing
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "excamera.cli", "png2y4m", "-n", "3", "-v", "clip",
         "-b", str(store), "-t", "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("excamera png2y4m: error: job png2y4m-")
    assert "worker 2 (attempt 0) failed in state 'retrieving'" in done.stderr
    assert "clip-png16/00000013.png" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def run_job(store: Path, tmp_root: Path, n: int, offset: int = 0) -> object:
    coord = Coordinator(
        "png2y4m", n, LocalBackend(tmp_root=tmp_root), str(store), png2y4m_machine,
        params={"png2y4m": Png2Y4MParams("clip", "png16", 6, offset)},
        operation_modules=[OPERATION_MODULE],
    )
    return asyncio.run(coord.run())


def test_png2y4m_offset(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_clip(store, n=18)
    result = run_job(store, tmp_path / "tmp", n=2, offset=1)
    assert result.outputs == {0: "clip-y4m_06/00000001.y4m", 1: "clip-y4m_06/00000002.y4m"}
    assert not (store / "clip-y4m_06" / "00000000.y4m").exists()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "size"])
def test_png2y4m_bad_input_names_the_key(tmp_path: Path, damage: str) -> None:
    store = tmp_path / "store"
    frames = make_clip(store, n=18)
    bad = frames[13]  # frame 14: worker 2's second frame
    if damage == "missing":
        bad.unlink()
        expect = "clip-png16/00000014.png"
    elif damage == "corrupt":
        bad.write_bytes(bad.read_bytes()[:60])
        expect = "clip-png16/00000014.png"
    else:
        write_png16(bad, 40, 32, 99)
        expect = "clip-png16/00000014.png"
    with pytest.raises(JobFailed) as info:
        run_job(store, tmp_path / "tmp", n=3)
    msg = str(info.value)
    assert "worker 2" in msg and expect in msg, msg
    assert "/tmp" not in msg.split("stderr tail")[0].replace(str(store), "")
    assert not (store / "clip-y4m_06" / "00000002.y4m").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_png2y4m_cli_over_s3(tmp_path: Path, s3_env: str) -> None:
    """`-b s3://bucket/prefix`: PNGs in moto's S3, real workers fetch and upload over HTTP."""
    import boto3

    from conftest import BUCKET

    local = tmp_path / "local"
    frames = make_clip(local, n=12)
    s3 = boto3.client("s3", endpoint_url=s3_env)
    prefix = "p2y-e2e"
    for f in frames:
        s3.upload_file(str(f), BUCKET, f"{prefix}/clip-png16/{f.name}")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "excamera.cli", "png2y4m", "-n", "2", "-f", "6", "-v", "clip",
         "-b", f"s3://{BUCKET}/{prefix}", "-t", "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for k in range(2):
        expect = tmp_path / f"expect-{k}.y4m"
        convert_pngs(frames[6 * k : 6 * k + 6], expect)
        body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/clip-y4m_06/{k:08d}.y4m")["Body"]
        assert body.read() == expect.read_bytes()
