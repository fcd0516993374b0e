"""The installable wheel, as a user who runs ``pip install excamera-*.whl`` gets it.

One wheel is built per session by ``make wheel``'s builder (``python -m excamera.wheel``) and
installed into one fresh venv per session, without any extra: its dependencies come from PyPI
(pip's cache), and nothing of this checkout is on its path. Every command runs from a temporary
directory with ``PYTHONPATH`` and the other ``PYTHON*`` variables unset, as ``python -I -m
excamera`` (or the venv's own ``excamera`` script), so a test passes only if the installed
package works by itself: the extension, the sample inside the package, the console scripts.

The core install must encode, decode, relay and make keys; each optional part must say in one
line which extra it needs; a missing vpxenc must say which package provides it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from _shared_paths import REPO

SAMPLE = REPO / "python" / "excamera" / "samples" / "carphone_qcif_30f.y4m.xz"
CHUNK = 6


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "excamera.wheel", "-o", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    wheels = list(out.glob("*.whl"))
    assert [str(w) for w in wheels] == [done.stdout.strip()]
    return wheels[0]


def _clean_path() -> str:
    """PATH without any directory of this checkout (its .venv/bin, say)."""
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not Path(d).resolve().is_relative_to(REPO))


class Venv:
    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.home = home  # the cwd of every command: no checkout, nothing else

    def env(self, path: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        env["PATH"] = path if path is not None else _clean_path()
        return env

    def run(self, *args: str, path: str | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        """``python -I -m excamera ARGS`` in the venv."""
        return subprocess.run([str(self.python), "-I", "-m", "excamera", *args],
                              cwd=cwd or self.home, env=self.env(path), capture_output=True,
                              text=True, timeout=timeout)

    def python_code(self, code: str) -> str:
        done = subprocess.run([str(self.python), "-I", "-c", code], cwd=self.home,
                              env=self.env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("wheel-venv")
    home = tmp_path_factory.mktemp("wheel-home")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "v")], check=True,
                   timeout=120)
    v = Venv(root / "v", home)
    # This checkout's pip installs into the new venv (--python), which then has no pip of its
    # own: nothing of the checkout is imported by the venv's interpreter.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(v.python), "install", "-q",
         "--disable-pip-version-check", str(wheel)],
        cwd=home, env=v.env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return v


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def sample_bytes() -> bytes:
    import lzma

    return lzma.decompress(SAMPLE.read_bytes())


# --- the wheel itself ------------------------------------------------------------------------


def _glibc_versions(elf: Path) -> set[tuple[int, ...]]:
    out = subprocess.run([tool("objdump"), "-T", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    return {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", out)}


def test_wheel_is_abi3_manylinux_2_17_and_needs_no_newer_glibc(wheel, tmp_path) -> None:
    assert re.fullmatch(r"excamera-[^-]+-cp311-abi3-([a-z0-9_.]+)\.whl", wheel.name), wheel.name
    tags = wheel.name[:-4].split("-")[-1].split(".")
    assert "manylinux_2_17_x86_64" in tags, tags
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        so = [n for n in names if n.startswith("excamera/_xc") and n.endswith(".so")]
        assert so == ["excamera/_xc.abi3.so"], names
        (tmp_path / "x.so").write_bytes(zf.read(so[0]))
        # The sample travels inside the package, byte for byte the checkout's.
        assert zf.read("excamera/samples/carphone_qcif_30f.y4m.xz") == SAMPLE.read_bytes()
    assert not [n for n in names if n.startswith("samples/")]
    # An outside reading of the symbol versions (binutils), not maturin's own check.
    versions = _glibc_versions(tmp_path / "x.so")
    assert versions and max(versions) <= (2, 17), sorted(versions)


def test_installed_package_runs_from_the_venv_alone(venv) -> None:
    where = json.loads(venv.python_code(
        "import json, sys, excamera, excamera._xc;"
        " print(json.dumps([excamera.__file__, excamera._xc.__file__, sys.path]))"))
    site = venv.root.resolve()
    for f in where[:2]:
        assert Path(f).resolve().is_relative_to(site), where
    for entry in where[2]:
        assert not Path(entry or ".").resolve().is_relative_to(REPO), entry


def test_installed_metadata_core_extras_and_dev(venv) -> None:
    reqs = [Requirement(r) for r in json.loads(venv.python_code(
        "import json, importlib.metadata as m; print(json.dumps(m.requires('excamera')))"))]
    core = {r.name: r for r in reqs if r.marker is None}
    assert set(core) == {"numpy", "cryptography", "rich", "pypng", "av"}
    # av: the tested major version (18.x) is allowed, the next one is not.
    assert core["av"].specifier.contains("18.1.0") and not core["av"].specifier.contains("19.0")
    extras: dict[str, set[str]] = {}
    for r in reqs:
        if r.marker is None:
            continue
        for extra in ("s3", "plot", "lambda", "ray", "scale", "dev"):
            if r.marker.evaluate({"extra": extra}):
                extras.setdefault(extra, set()).add(str(r).split(";")[0].strip())
    assert extras["s3"] == {"boto3>=1.34"}
    assert extras["plot"] == {"matplotlib>=3.8"}
    assert extras["lambda"] == {"boto3>=1.34"}
    assert extras["ray"] == {"ray[default]==2.60.0"}
    assert extras["scale"] == {"uvloop>=0.19"}
    # dev is what make setup installs for make test: every extra, with the same specifiers.
    for extra in ("s3", "plot", "lambda", "ray", "scale"):
        assert extras[extra] <= extras["dev"], (extra, extras[extra] - extras["dev"])
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv.python), "check"],
                          cwd=venv.home, env=venv.env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the core install at work ----------------------------------------------------------------


def _count_frames(video: Path) -> tuple[str, int]:
    out = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(video)],
        capture_output=True, text=True, check=True).stdout
    stream = json.loads(out)["streams"][0]
    return stream["codec_name"], int(stream["nb_read_frames"])


def test_demo_runs_from_the_installed_wheel(venv) -> None:
    out = venv.home / "demo"
    done = subprocess.run([str(venv.root / "bin" / "excamera"), "demo", str(out)],
                          cwd=venv.home, env=venv.env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "carphone.y4m").read_bytes() == sample_bytes()
    assert _count_frames(out / "carphone.webm") == ("vp8", 30)
    # The plot is the plot extra's: the demo says so in one line and still succeeds.
    assert ("demo: no per-worker timeline: the timeline plot needs matplotlib, which is not "
            "installed: pip install 'excamera[plot]'") in done.stdout.splitlines()
    assert not (out / "encode-timeline.png").exists()


def _y4m_frames(data: bytes) -> list[bytes]:
    """The pictures of a Y4M stream (each FRAME's payload), headers aside."""
    parts = data.split(b"FRAME")
    return [p.split(b"\n", 1)[1] for p in parts[1:]]


@pytest.fixture(scope="session")
def clip(venv) -> Path:
    """The sample, as the installed package reads it (importlib.resources)."""
    path = venv.home / "clip.y4m"
    code = ("import sys; from excamera.demo import sample_y4m;"
            " sys.stdout.buffer.write(sample_y4m())")
    with open(path, "wb") as f:
        subprocess.run([str(venv.python), "-I", "-c", code], cwd=venv.home, env=venv.env(),
                       stdout=f, check=True, timeout=60)
    assert path.read_bytes() == sample_bytes()
    return path


def test_encode_and_decode_from_the_installed_wheel(venv, clip, tmp_path) -> None:
    out = tmp_path / "out.ivf"
    done = venv.run("encode", str(clip), "-o", str(out), "--bucket", str(tmp_path / "bucket"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"frames\s+30 \(176x144", done.stdout), done.stdout
    # Decoded by the installed xc and by libvpx: the same 30 pictures.
    ours = venv.run("decode", str(out), "-o", str(tmp_path / "xc.y4m"))
    assert ours.returncode == 0, ours.stderr
    subprocess.run([tool("vpxdec"), "-o", str(tmp_path / "vpx.y4m"), str(out)],
                   check=True, timeout=120)
    frames = _y4m_frames((tmp_path / "xc.y4m").read_bytes())
    assert len(frames) == 30
    assert frames == _y4m_frames((tmp_path / "vpx.y4m").read_bytes())


def test_genkeys_relay_and_xcenc_from_the_installed_wheel(venv, clip, tmp_path) -> None:
    # The chunks as encode leaves them in its bucket, then mu's xcenc through a separate relay
    # that holds genkeys' keys.
    bucket = tmp_path / "bucket"
    done = venv.run("encode", str(clip), "-o", str(tmp_path / "e.ivf"), "--bucket", str(bucket),
                    "--passes", "1")
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "keys"
    done = venv.run("genkeys", str(keys))
    assert done.returncode == 0, done.stderr
    relay = subprocess.Popen(
        [str(venv.python), "-I", "-m", "excamera", "relay", "-t", "0", "--host", "127.0.0.1",
         "-c", str(keys / "ca_cert.pem"), "-s", str(keys / "server_cert.pem"),
         "-k", str(keys / "server_key.pem"), "-n", "8"],
        cwd=venv.home, env=venv.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = relay.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, (line, relay.stderr.read() if relay.poll() is not None else "")
        done = venv.run("xcenc", "-n", "5", "-K", "16", "-b", str(bucket), "-v", "clip-y4m_06",
                        "-H", "127.0.0.1", "-T", m.group(1), "-c", str(keys / "ca_cert.pem"),
                        "-s", str(keys / "server_cert.pem"), "-k", str(keys / "server_key.pem"),
                        "-t", "0")
        assert done.returncode == 0, done.stderr
        assert "xcenc: 5 chunk(s) encoded" in done.stdout, done.stdout
    finally:
        relay.terminate()
        _, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    outs = sorted(p.name for p in (bucket / "clip-y4m_06" / "out").iterdir())
    assert outs == [f"{k:08d}.ivf" for k in range(5)]


# --- what the core install lacks, in one line ------------------------------------------------


@pytest.mark.parametrize("extra, args", [
    ("plot", ["timeline", "missing.jsonl", "-o", "t.png"]),
    ("s3", ["encode", "{clip}", "-o", "x.ivf", "--bucket", "s3://bucket/prefix"]),
    ("s3", ["xcenc", "-n", "1", "-b", "s3://bucket/prefix", "-t", "0"]),
    ("ray", ["xcenc", "-n", "1", "-b", "s3://bucket/prefix", "-t", "0", "--backend", "ray"]),
    ("lambda", ["xcenc", "-n", "1", "-b", "s3://bucket/prefix", "-t", "0", "-l", "fn"]),
    ("lambda", ["lambda", "deploy", "missing.zip", "--role",
                "arn:aws:iam::123456789012:role/excamera"]),
])
def test_a_missing_extra_says_what_to_install(venv, clip, tmp_path, extra, args) -> None:
    done = venv.run(*[a.format(clip=clip) for a in args], cwd=tmp_path)
    assert done.returncode == 1
    assert one_line(done).endswith(f"is not installed: pip install 'excamera[{extra}]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # and left nothing behind


def _path_without_vpxenc() -> str:
    dirs = [d for d in _clean_path().split(os.pathsep) if not (Path(d) / "vpxenc").exists()]
    assert dirs, "PATH holds nothing but vpxenc's directory"
    return os.pathsep.join(dirs)


def test_a_missing_vpxenc_names_its_package_and_xc(venv, clip, tmp_path) -> None:
    path = _path_without_vpxenc()
    for command in (["encode", str(clip), "-o", str(tmp_path / "x.ivf")],
                    ["xcenc", "-n", "1", "-b", str(tmp_path / "b"), "-t", "0"]):
        done = venv.run(*command, path=path)
        assert done.returncode == 1
        line = one_line(done)
        assert "vpxenc is not installed on PATH" in line
        assert "apt-get install vpx-tools" in line and "--pass0 xc" in line
    assert not (tmp_path / "x.ivf").exists() and not (tmp_path / "b").exists()
    # The way out it names works under the same PATH.
    done = venv.run("encode", str(clip), "-o", str(tmp_path / "x.ivf"), "--pass0", "xc",
                    path=path)
    assert done.returncode == 0, done.stderr
    assert _count_frames(tmp_path / "x.ivf") == ("vp8", 30)
