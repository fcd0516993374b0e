"""Files the commands write: complete or absent, never written through a planted symlink, keys in
a private directory, and every failure one line on stderr.

``excamera genkeys`` and ``excamera decode`` run as real processes; failures while writing are
real ones too (``/dev/full``, a file-size limit set with setrlimit in the child).
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from _shared_paths import shared_dir
from excamera.atomicfile import atomic_output, write_files_atomically
from excamera.mu.tls import CertificateAuthority, Credentials
from excamera.xc.ivf import IvfWriter, read_ivf

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
CLI = [sys.executable, "-m", "excamera.cli"]
KEY_FILES = ["ca_cert.pem", "ca_key.pem", "server_cert.pem", "server_key.pem"]

pytestmark = pytest.mark.timeout(120)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run(args: list[str], cwd: Path, preexec=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=child_env(), capture_output=True,
                          text=True, timeout=90, preexec_fn=preexec)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


# --- genkeys ------------------------------------------------------------------------------

def test_genkeys_directory_is_private_whatever_the_umask(tmp_path: Path) -> None:
    done = run(["genkeys", "outer/keys"], tmp_path, preexec=lambda: os.umask(0))
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "outer" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "outer").stat().st_mode) == 0o777  # a parent: as asked
    modes = {f: stat.S_IMODE((keys / f).stat().st_mode) for f in KEY_FILES}
    assert modes == {"ca_cert.pem": 0o644, "ca_key.pem": 0o600, "server_cert.pem": 0o644,
                     "server_key.pem": 0o600}
    assert sorted(p.name for p in keys.iterdir()) == KEY_FILES  # no temporary file left


def test_genkeys_force_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    assert run(["genkeys", "keys"], tmp_path).returncode == 0
    keys = tmp_path / "keys"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (keys / "ca_key.pem").unlink()
    (keys / "ca_key.pem").symlink_to(victim)
    # Without --force a planted symlink counts as an existing file.
    assert "refusing to overwrite" in one_line(run(["genkeys", "keys"], tmp_path))
    done = run(["genkeys", "--force", "keys"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert not (keys / "ca_key.pem").is_symlink()
    assert stat.S_IMODE((keys / "ca_key.pem").stat().st_mode) == 0o600
    # The new set belongs together: the CA key signs, the server certificate chains to it.
    ca = CertificateAuthority.load(keys / "ca_cert.pem", keys / "ca_key.pem")
    assert ca.is_root
    Credentials.from_files(keys / "server_cert.pem", keys / "server_key.pem",
                           keys / "ca_cert.pem")


@pytest.mark.parametrize("host", ["", "two words", "-lead.example", "trail-.example",
                                  "a" * 64 + ".example", "under_score.example", "a..b",
                                  "x" * 250 + ".example"])
def test_genkeys_bad_host_is_one_line_and_creates_nothing(tmp_path: Path, host: str) -> None:
    line = one_line(run(["genkeys", f"--host={host}", "new/keys"], tmp_path))
    assert line == (f"excamera genkeys: error: --host {host!r} is neither an IP address nor a "
                    "DNS host name")
    assert list(tmp_path.iterdir()) == []


def test_genkeys_accepts_addresses_wildcards_and_long_names(tmp_path: Path) -> None:
    long_name = "a" * 60 + "." + "b" * 30 + ".example.com"  # longer than a common name may be
    done = run(["genkeys", "--host", long_name, "--host", "*.example.org", "--host", "::1",
                "--host", "10.0.0.7", "keys"], tmp_path)
    assert done.returncode == 0, done.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "keys" / "server_cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [long_name, "*.example.org"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["::1", "10.0.0.7"]


def _limit_file_size() -> None:
    # Files may not grow past 200 bytes (a key is ~240): the write fails with EFBIG, a real
    # error from the kernel, after the directory was made.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_genkeys_failing_write_leaves_no_directory_and_no_file(tmp_path: Path) -> None:
    line = one_line(run(["genkeys", "outer/keys"], tmp_path, preexec=_limit_file_size))
    assert line.startswith("excamera genkeys: error: ") and "File too large" in line, line
    assert "outer/keys/ca_key.pem" in line
    assert list(tmp_path.iterdir()) == []
    # Into an existing directory: no file of the set appears, and the directory stays.
    (tmp_path / "mine").mkdir()
    one_line(run(["genkeys", "mine"], tmp_path, preexec=_limit_file_size))
    assert list((tmp_path / "mine").iterdir()) == []


# --- the shared helper --------------------------------------------------------------------

def test_atomic_output_publishes_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert dest.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [dest]
    with atomic_output(dest) as tmp:
        assert tmp.parent == tmp_path and tmp != dest
        tmp.write_bytes(b"new")
        assert dest.read_bytes() == b"old"  # nothing visible before the block ends
    assert dest.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [dest]


def test_atomic_output_writes_through_links_and_into_devices(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(target)
    with atomic_output(link) as tmp:
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    with atomic_output("/dev/null") as tmp:
        assert tmp == Path("/dev/null")  # a device cannot be renamed over; it is written
    with pytest.raises(OSError) as info, atomic_output(tmp_path / "no" / "dir" / "x") as tmp:
        pass
    assert info.value.filename == str(tmp_path / "no" / "dir" / "x")
    # /dev/stdout redirected to a file: the file gets the output, /dev/stdout stays a link.
    out = tmp_path / "redirected"
    code = ("import sys; from excamera.atomicfile import atomic_output\n"
            "with atomic_output('/dev/stdout') as p: open(p, 'wb').write(b'via stdout')\n")
    with open(out, "wb") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, env=child_env(), check=True,
                       timeout=60)
    assert out.read_bytes() == b"via stdout" and Path("/dev/stdout").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "redirected", "target"]


def test_write_files_atomically_writes_all_before_renaming_any(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"old a")
    with pytest.raises(OSError) as info:
        write_files_atomically([(a, b"new a", 0o600), (tmp_path / "missing" / "b", b"x", 0o600)])
    assert a.read_bytes() == b"old a" and sorted(tmp_path.iterdir()) == [a]
    assert info.value.filename == str(tmp_path / "missing" / "b")
    write_files_atomically([(a, b"new a", 0o600), (b, b"new b", 0o644)])
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")
    assert stat.S_IMODE(a.stat().st_mode) == 0o600 and stat.S_IMODE(b.stat().st_mode) == 0o644


# --- decode -------------------------------------------------------------------------------

def vector() -> Path:
    return shared_dir() / "vp8-test-vectors" / "vp80-00-comprehensive-001.ivf"


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_decode_of_a_bad_stream_leaves_no_output(tmp_path: Path, cut: str) -> None:
    bad = tmp_path / "bad.ivf"
    if cut == "truncated":
        bad.write_bytes(vector().read_bytes()[:3000])  # frames 0..4 decode, frame 5 is cut
    else:
        # Frame 10 of 30 claims to be a key frame without the key-frame start code.
        header, frames = read_ivf(vector())
        frames = [f.data for f in frames]
        frames[10] = bytes([frames[10][0] & 0xFE]) + frames[10][1:3] + bytes(3) + frames[10][6:]
        with IvfWriter(bad, header.width, header.height) as w:
            for f in frames:
                w.write(f)
    line = one_line(run(["decode", str(bad), "-o", "out.y4m", "--state", "out.state"],
                        tmp_path))
    assert line.startswith(f"excamera decode: error: {bad}: frame "), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ivf"]
    # An earlier output stays as it was.
    (tmp_path / "out.y4m").write_bytes(b"earlier")
    one_line(run(["decode", str(bad), "-o", "out.y4m"], tmp_path))
    assert (tmp_path / "out.y4m").read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ivf", "out.y4m"]


def test_decode_to_a_full_device_is_one_line(tmp_path: Path) -> None:
    line = one_line(run(["decode", str(vector()), "-o", "/dev/full"], tmp_path))
    assert line == "excamera decode: error: /dev/full: No space left on device"
    line = one_line(run(["decode", str(vector()), "-o", "/dev/null", "--state", "/dev/full"],
                        tmp_path))
    assert line == "excamera decode: error: /dev/full: No space left on device"


def test_decode_output_appears_complete(tmp_path: Path) -> None:
    done = run(["decode", str(vector()), "-o", "out.y4m", "--state", "out.state"], tmp_path)
    assert done.returncode == 0, done.stderr
    data = (tmp_path / "out.y4m").read_bytes()
    assert data.startswith(b"YUV4MPEG2 W176 H144") and data.count(b"FRAME\n") == 29
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.state", "out.y4m"]
