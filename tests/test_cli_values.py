"""Out-of-range and odd values on the command line: each is one line on stderr naming the flag,
exit 1, before any work starts; and the odd inputs a user meets (a 1x1 clip, an empty file, an
output name without a suffix) do what the message says. Every command runs as a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from excamera.metrics import QualityMeter
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import Picture, write_y4m

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
CLI = [sys.executable, "-m", "excamera.cli"]

pytestmark = pytest.mark.timeout(300)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CA_CERT", "SRV_CERT", "SRV_KEY")}
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=child_env(), capture_output=True,
                          text=True, timeout=timeout)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    """Real certificates, so that a relay with a bad value would otherwise start."""
    d = tmp_path_factory.mktemp("keys") / "k"
    done = subprocess.run([*CLI, "genkeys", str(d)], env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return d


# --- relay --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["-t", "70000"], "-t 70000: a port is 0..65535"),
    (["-t", "-1"], "-t -1: a port is 0..65535"),
    (["--max-held-mb", "-1"], "--max-held-mb -1: must be a finite number at least 0"),
    (["--max-held-mb", "nan"], "--max-held-mb nan: must be a finite number at least 0"),
    (["--hold-timeout", "-5"], "--hold-timeout -5: must be a finite number more than 0"),
    (["--hold-timeout", "0"], "--hold-timeout 0: must be a finite number more than 0"),
    (["--hold-timeout", "inf"], "--hold-timeout inf: must be a finite number more than 0"),
    (["--ssl-buffer-kib", "10000000"], "--ssl-buffer-kib 10000000: must be 16..4096"),
    (["-n", "0"], "-n 0: must be at least 1"),
])
def test_relay_refuses_out_of_range_numbers(tmp_path: Path, keys: Path, args, message) -> None:
    # With valid certificates and a bad value, the relay used to start (or die in bind()); the
    # timeout turns "it started and kept running" into a failure instead of a hang.
    done = run(["relay", "--host", "127.0.0.1", "-c", str(keys / "ca_cert.pem"),
                "-s", str(keys / "server_cert.pem"), "-k", str(keys / "server_key.pem"), *args],
               tmp_path, timeout=30)
    assert one_line(done) == f"excamera relay: error: {message}"


# --- the jobs' shared options and their own --------------------------------------------------

JOB_CASES = [
    (["-t", "70000"], "-t 70000: a port is 0..65535"),
    (["--timeout", "-1"], "--timeout -1: must be a finite number more than 0"),
    (["--timeout", "nan"], "--timeout nan: must be a finite number more than 0"),
    (["--connect-timeout", "0"], "--connect-timeout 0: must be a finite number more than 0"),
    (["--retries", "-1"], "--retries -1: must be at least 0"),
]


@pytest.mark.parametrize("command", ["png2y4m", "xcenc"])
@pytest.mark.parametrize("args,message", JOB_CASES)
def test_job_commands_refuse_out_of_range_numbers(tmp_path: Path, command: str, args,
                                                  message: str) -> None:
    done = run([command, "-b", str(tmp_path), "-v", "none", *args], tmp_path)
    assert one_line(done) == f"excamera {command}: error: {message}"
    assert list(tmp_path.iterdir()) == []  # no worker ran, nothing was written


@pytest.mark.parametrize("args,message", [
    (["-H", "127.0.0.1", "-T", "70000"], "-T 70000: a port is 1..65535"),
    (["-H", "127.0.0.1", "-T", "0"], "-T 0: a port is 1..65535"),
    (["-w", "-5"], "-w -5: the key-frame weight is 0..1, or -1 to match the prediction's "
     "key-frame quality"),
])
def test_xcenc_refuses_its_own_bad_numbers(tmp_path: Path, args, message: str) -> None:
    done = run(["xcenc", "-b", str(tmp_path), "-v", "none", *args], tmp_path)
    assert one_line(done) == f"excamera xcenc: error: {message}"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "one.y4m"
    rng = np.random.default_rng(7)
    write_y4m(path, [Picture(rng.integers(0, 256, (1, 1), np.uint8),
                             rng.integers(0, 256, (1, 1), np.uint8),
                             rng.integers(0, 256, (1, 1), np.uint8)) for _ in range(3)])
    return path


@pytest.mark.parametrize("args,message", [
    *JOB_CASES,
    (["--quality", "64"], "--quality 64: must be 0..63"),
    (["--quality", "-1"], "--quality -1: must be 0..63"),
])
def test_encode_refuses_bad_numbers_before_splitting(tmp_path: Path, tiny_clip: Path, args,
                                                     message: str) -> None:
    done = run(["encode", str(tiny_clip), "-o", "out.ivf", "--bucket", "bucket", *args],
               tmp_path)
    assert one_line(done) == f"excamera encode: error: {message}"
    assert list(tmp_path.iterdir()) == []


# --- encode: a picture smaller than SSIM's window, an empty file ---------------------------

def test_encode_of_a_1x1_clip_reports_ssim_as_not_measured(tmp_path: Path,
                                                          tiny_clip: Path) -> None:
    """A 1x1 video is valid VP8 and what the user asked for: it is encoded, and SSIM, which
    an 11x11 window cannot measure on it, is reported as not measured rather than as a number
    or a failure at the end."""
    done = run(["encode", str(tiny_clip), "-o", "out.ivf"], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "  SSIM      not measured: 1x1 is smaller than its 11x11 window" in done.stdout
    assert "PSNR      Y " in done.stdout
    header, frames = read_ivf(tmp_path / "out.ivf")
    assert (header.width, header.height, len(frames)) == (1, 1, 3)
    vpxdec = subprocess.run(["vpxdec", "--i420", "--md5", str(tmp_path / "out.ivf")],
                            capture_output=True, text=True, timeout=60)
    assert vpxdec.returncode == 0, vpxdec.stderr


def test_quality_meter_measures_ssim_only_where_its_window_fits() -> None:
    meter = QualityMeter()
    meter.add(Picture.blank(10, 16, luma=50), Picture.blank(10, 16, luma=52))
    assert meter.ssim is None and meter.frames == 1 and meter.psnr_y == pytest.approx(
        10 * np.log10(255 ** 2 / 4))
    big = QualityMeter()
    big.add(Picture.blank(11, 11, luma=50), Picture.blank(11, 11, luma=50))
    assert big.ssim == 1.0


@pytest.mark.parametrize("name", ["empty.y4m", "empty.mp4"])
def test_encode_of_an_empty_file_says_it_is_empty(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    line = one_line(run(["encode", name, "-o", "out.ivf"], tmp_path))
    assert line == f"excamera encode: error: {name}: empty file, not a video"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# --- timeline -----------------------------------------------------------------------------

@pytest.fixture
def transitions(tmp_path: Path) -> Path:
    path = tmp_path / "states.jsonl"
    recs = [(0, "launching", 0.0), (0, "running", 0.5), (0, "done", 1.5),
            (1, "launching", 0.0), (1, "running", 0.7), (1, "done", 1.2)]
    path.write_text("".join(json.dumps({"worker": w, "attempt": 0, "state": s, "t": t}) + "\n"
                            for w, s, t in recs))
    return path


@pytest.mark.parametrize("name", ["x.txt", "plot", "plot.svg"])
def test_timeline_refuses_an_output_name_that_is_not_png(tmp_path: Path, transitions: Path,
                                                         name: str) -> None:
    line = one_line(run(["timeline", str(transitions), "-o", name], tmp_path))
    assert line == (f"excamera timeline: error: {name}: the timeline is a PNG image; give an "
                    "output name ending in .png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states.jsonl"]


def test_timeline_writes_exactly_the_png_named(tmp_path: Path, transitions: Path) -> None:
    done = run(["timeline", str(transitions), "-o", "Plot.PNG"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 workers, 6 transitions -> Plot.PNG" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Plot.PNG", "states.jsonl"]
    assert (tmp_path / "Plot.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = one_line(run(["timeline", str(transitions), "-o", "no/such/dir/t.png"], tmp_path))
    assert line == "excamera timeline: error: cannot write no/such/dir/t.png: No such file or " \
        "directory"
