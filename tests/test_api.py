"""The Python API, called directly: ``excamera.encode`` and ``excamera.decode``.

Every figure the result reports is checked against the file written (parsed here, not with
excamera's reader) and against libvpx's vpxdec decoding it; SSIM against scikit-image.
"""

from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import excamera
from _shared_paths import shared_dir, vectors_dir
from excamera.errors import ExcameraError, SettingsError
from excamera.mu.backends import LocalBackend
from excamera.mu.backends.local import default_worker_processes
from excamera.mu.jobs import JobSettings
from excamera.xc.y4m import read_y4m

CLIP = "park_joy_160x90_10f.y4m"


def ivf_frames(path: Path) -> tuple[tuple[int, int, int, int], list[bytes]]:
    """(width, height, rate, scale) and the frames of an IVF file, by the format's layout."""
    data = path.read_bytes()
    assert data[:4] == b"DKIF"
    width, height, rate, scale = struct.unpack_from("<HHII", data, 12)
    frames, pos = [], 32
    while pos < len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        frames.append(data[pos + 12:pos + 12 + size])
        pos += 12 + size
    assert pos == len(data)
    return (width, height, rate, scale), frames


def vpxdec_i420(path: Path, out: Path) -> np.ndarray:
    done = subprocess.run(["vpxdec", "--i420", "-o", str(out), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.fromfile(out, np.uint8)


def vpxdec_md5s(path: Path, cwd: Path) -> list[str]:
    """vpxdec's MD5 of every shown frame's I420 bytes."""
    done = subprocess.run(["vpxdec", "--md5", "--i420", "-o", "f-%4.i420", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [line.split()[0] for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> tuple[Path, excamera.EncodeResult, list]:
    """One encode through the API: 10 frames in 5 chunks of 2, batches of 3, 2 at once; the
    chunks stay in ``bucket``."""
    base = tmp_path_factory.mktemp("api")
    out = base / "out.ivf"
    seen: list = []
    result = excamera.encode(shared_dir() / "clips" / CLIP, out, quality=30, workers=2,
                             chunk=2, batch=3, progress=seen.append, backend="local",
                             backend_options={"stderr_dir": str(base / "stderr")},
                             bucket=str(base / "bucket"))
    # The backend's own option reached it: each worker's stderr is kept (and each worker
    # host's: the local backend runs one per core unless told otherwise).
    assert sorted(p.name for p in (base / "stderr").iterdir()) == [
        f"host-{i}.stderr" for i in range(default_worker_processes())] + [
        f"worker-{k}.stderr" for k in range(5)]
    return out, result, seen


def test_encode_result_matches_the_file_and_vpxdec(encoded, tmp_path: Path) -> None:
    out, result, _ = encoded
    header, pics = read_y4m(shared_dir() / "clips" / CLIP)
    (width, height, rate, scale), frames = ivf_frames(out)

    assert result.output == out and result.file_bytes == out.stat().st_size
    assert result.payload_bytes == sum(len(f) for f in frames)
    assert (result.width, result.height) == (width, height) == (header.width, header.height)
    assert result.fps == (rate, scale) == header.fps
    assert result.chunks == 5

    decoded = vpxdec_i420(out, tmp_path / "dec.i420").reshape(len(pics), -1)
    assert result.frames == len(decoded) == len(pics) == 10
    seconds = result.frames * scale / rate
    assert result.bitrate_kbps == pytest.approx(result.payload_bytes * 8 / seconds / 1000)

    source = np.frombuffer(b"".join(p.to_bytes() for p in pics), np.uint8).reshape(
        len(pics), -1).astype(np.float64)
    err = (decoded.astype(np.float64) - source) ** 2
    ny = width * height
    assert result.psnr_y == pytest.approx(10 * np.log10(255**2 / err[:, :ny].mean()), abs=1e-9)
    assert result.psnr_all == pytest.approx(10 * np.log10(255**2 / err.mean()), abs=1e-9)

    from skimage.metrics import structural_similarity

    per_frame = [structural_similarity(p.y, d[:ny].reshape(height, width), data_range=255,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False)
                 for p, d in zip(pics, decoded, strict=True)]
    assert result.ssim == pytest.approx(float(np.mean(per_frame)), abs=1e-9)
    assert 0.5 < result.ssim < 1.0


def test_workers_quality_equals_the_full_decode_and_verify_catches_a_broken_join(
        encoded) -> None:
    """The figures the workers measured on their own chunks, added up, are those of decoding
    the whole output in one pass as the encode used to (PSNR exactly: the squared errors are
    integers; SSIM to float rounding, the per-frame values being added in another order).
    ``verify`` (``--verify``) agrees on the real stream, and catches a join broken after the
    workers were done: chunk 4 replaced in storage by chunk 1 (two frames each, neither a key
    frame), which the workers' own reports cannot see."""
    from excamera.metrics import QualityMeter
    from excamera.pipelines.encode.run import check_and_measure, verify
    from excamera.pipelines.media import stitch

    out, result, _ = encoded
    source = shared_dir() / "clips" / CLIP
    header, _ = read_y4m(source)
    whole = stitch([out], header.fps)
    full = check_and_measure(source, whole)
    assert result.frames == full.frames == 10
    assert result.psnr_y == full.psnr_y and result.psnr_all == full.psnr_all
    assert result.ssim == pytest.approx(full.ssim, rel=1e-12)

    chunks = sorted((out.parent / "bucket").glob("*/out/*.ivf"))
    assert [c.name for c in chunks] == [f"{k:08d}.ivf" for k in range(5)]
    joined = stitch(chunks, header.fps)
    workers = QualityMeter(full.frames, list(full.sse), list(full.samples), full.ssim_sum,
                           full.ssim_frames)
    verify(source, joined, workers)  # the real stream agrees with itself
    broken = stitch(chunks[:4] + [chunks[1]], header.fps)
    assert broken.shown == joined.shown
    with pytest.raises(ExcameraError, match="do not join exactly"):
        verify(source, broken, workers)
    # and figures that differ from the stream's are refused
    off = QualityMeter(full.frames, [full.sse[0] + 1, *full.sse[1:]], list(full.samples),
                       full.ssim_sum, full.ssim_frames)
    with pytest.raises(ExcameraError, match="--verify: the stitched stream decodes to"):
        verify(source, joined, off)


def test_encode_result_records_every_worker_and_the_cost(encoded) -> None:
    _, result, seen = encoded
    assert result.cost.backend == "local" and result.cost.worker_cpu_s > 0
    assert [w.worker for w in result.workers] == [w.chunk for w in result.workers] == [
        0, 1, 2, 3, 4]
    # Batch mode: the first chunk of a batch re-encodes its key frame milder (a second pass
    # that waits for no one), the second rebases once, the rest twice with the re-decide pass
    # between (``XcencParams.redecide``: four passes).
    assert [w.passes for w in result.workers] == [2, 2, 4, 2, 2]
    for w in result.workers:
        # Worker hosts (the local default) share a process: a worker has no CPU time of
        # its own, the cost above is the hosts'.
        assert w.attempts == 1 and w.cpu_seconds is None
        t = w.timings
        assert t["launching"] <= t["connected"] <= t["pass0"] <= t["upload"] <= t["done"]
        if w.worker % 3 == 0:
            assert t["pass0"] <= t["rekey_p1"] <= t["upload"] and "wait_state_p1" not in t
        else:
            assert t["pass0"] <= t["wait_state_p1"] <= t["reencode_p1"] <= t["upload"]
    # The progress callable saw each worker's state changes, ending with done.
    assert {tr.worker for tr in seen} == {0, 1, 2, 3, 4}
    for k in range(5):
        assert [tr.state for tr in seen if tr.worker == k][-1] == "done"
    assert result.job_id.startswith("xcenc-")
    assert result.wall_seconds >= result.job_seconds > 0


def test_decode_yields_vpxdec_pictures(encoded, tmp_path: Path) -> None:
    out, _, _ = encoded
    got = [hashlib.md5(p.to_bytes()).hexdigest() for p in excamera.decode(out)]
    assert got == vpxdec_md5s(out, tmp_path) and len(got) == 10
    # A conformance vector: a stream libvpx's encoder did not write.
    ivf = sorted(vectors_dir().glob("*.ivf"))[0]
    got = [hashlib.md5(p.to_bytes()).hexdigest() for p in excamera.decode(ivf)]
    assert got == vpxdec_md5s(ivf, tmp_path)
    # WebM, demuxed with PyAV.
    webm = tmp_path / "clip.webm"
    subprocess.run(["vpxenc", "--codec=vp8", "--webm", "--quiet", "--limit=6", "-o", str(webm),
                    str(shared_dir() / "clips" / CLIP)], check=True, timeout=120,
                   capture_output=True)
    got = [hashlib.md5(p.to_bytes()).hexdigest() for p in excamera.decode(webm)]
    assert got == vpxdec_md5s(webm, tmp_path) and len(got) == 6


def test_decode_errors_name_the_file_and_frame(encoded, tmp_path: Path) -> None:
    out, _, _ = encoded
    with pytest.raises(ExcameraError, match=r"not an IVF file") as err:
        excamera.decode(shared_dir() / "clips" / CLIP)  # refused before iterating
    assert "\n" not in str(err.value)
    cut = tmp_path / "cut.ivf"
    cut.write_bytes(out.read_bytes()[:-10])
    pictures = excamera.decode(cut)
    with pytest.raises(ExcameraError, match=r"cut\.ivf: frame 9 is truncated"):
        for _ in pictures:
            pass


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_failed_encode_raises_one_line_and_leaves_nothing(tmp_path: Path,
                                                            monkeypatch) -> None:
    """Bad input, a bad setting and a job whose workers die: each raises ExcameraError with a
    one-line message, and leaves neither output nor temporary files."""
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))
    outdir = tmp_path / "out"
    outdir.mkdir()
    clip = shared_dir() / "clips" / CLIP

    bad = tmp_path / "notvideo.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ExcameraError, match="notvideo.mp4") as err:
        excamera.encode(bad, outdir / "a.webm")
    assert "\n" not in str(err.value)

    with pytest.raises(SettingsError, match=r"^quality 64: must be 0\.\.63$"):
        excamera.encode(clip, outdir / "b.ivf", quality=64)
    with pytest.raises(ExcameraError, match=r"'lambda_fn' is no backend's option"):
        excamera.encode(clip, outdir / "b.ivf", backend="lambda",
                        backend_options={"lambda_fn": "x"})
    with pytest.raises(SettingsError, match=r"^retries -1: must be at least 0$"):
        excamera.encode(clip, outdir / "b.ivf", job=JobSettings(retries=-1))

    # Workers that exit before connecting: the job fails after the input was split.
    dying = LocalBackend(command=[sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(ExcameraError) as err:
        excamera.encode(clip, outdir / "c.ivf", workers=2, chunk=5, backend=dying)
    line = str(err.value)
    assert "\n" not in line
    assert re.fullmatch(r"job xcenc-[0-9a-f]+ failed after [\d.]+ s: \d worker\(s\) failed, "
                        r"outputs are incomplete", line), line
    assert "exited with code 3 before connecting" in err.value.details
    assert err.value.cost is not None and err.value.details.endswith(err.value.cost.line())

    assert leftovers(outdir) == []
    assert leftovers(tmp_root) == []


def test_import_excamera_stays_light() -> None:
    """``import excamera`` and the API's names load none of numpy, PyAV, boto3 or
    cryptography (measured with ``python -X importtime``)."""
    code = ("import sys\n"
            "import excamera\n"
            "from excamera import decode, encode, EncodeResult, ExcameraError, WorkerRecord\n"
            "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stderr.splitlines()
            if line.startswith("import time:") and "cumulative" not in line]
    timed = {row[2].strip(): int(row[1]) for row in rows}
    loaded = set(done.stdout.split())
    assert {"excamera", "excamera.api", "excamera.pipelines.encode.result"} <= loaded
    assert {"excamera", "excamera.api", "excamera.pipelines.encode.result"} <= set(timed)
    heavy = {m for m in loaded | set(timed)
             if m.split(".")[0] in ("numpy", "av", "boto3", "botocore", "cryptography")}
    assert heavy == set()


def test_mu_stands_alone() -> None:
    """mu's typed job runner and its command-line half import nothing of the pipelines."""
    code = ("import sys\n"
            "import excamera.mu.jobopts, excamera.mu.jobs, excamera.mu.backends\n"
            "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "excamera.mu.jobs" in loaded
    assert [m for m in loaded if m.startswith("excamera.pipelines")] == []


def test_backend_options_take_python_values(tmp_path: Path) -> None:
    """``backend_options`` are keyed as the flags' dests and take the flags' parsed types or
    plain Python ones (a list of regions, a str path)."""
    from excamera.mu.backends import BackendSpec, resolve_backend
    from excamera.mu.backends.aws_lambda import LambdaBackend

    lam = resolve_backend("lambda", {"lambda_function": "f",
                                     "lambda_regions": ["us-east-1", "eu-west-1"]})
    assert isinstance(lam, LambdaBackend) and lam.regions == ["us-east-1", "eu-west-1"]
    assert resolve_backend("lambda", {"lambda_function": "f",
                                      "lambda_regions": "us-east-1,eu-west-1"}).regions == [
        "us-east-1", "eu-west-1"]
    # With no name, the owner of the options is chosen, as on the command line.
    assert isinstance(resolve_backend(None, {"lambda_function": "f"}), LambdaBackend)
    local = resolve_backend(BackendSpec("local", {"stderr_dir": str(tmp_path)}))
    assert isinstance(local, LocalBackend) and local.stderr_dir == tmp_path
    # A built backend serves one call and is closed when it ends, even when it was refused.
    root = local.tmp_root
    assert root.is_dir()
    with pytest.raises(ExcameraError, match="backend_options go with a backend's name"):
        excamera.encode(tmp_path / "x.y4m", tmp_path / "x.ivf", backend=local,
                        backend_options={"stderr_dir": "x"})
    assert not root.exists()
    for bad in ({"quality": 99}, {}):  # a refused setting; an input that does not exist
        local = LocalBackend()
        with pytest.raises(ExcameraError):
            excamera.encode(tmp_path / "x.y4m", tmp_path / "x.ivf", backend=local, **bad)
        assert not local.tmp_root.exists()
