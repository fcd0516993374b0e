"""The Ray backend: its options, its failures without Ray, the wheel it ships, and (through
``test_ray_cluster_in_its_own_namespaces``) the tests in ``tests/ray_cluster/`` on a real
two-node Ray cluster.

Those run in a fresh network namespace (``unshare --net`` with only ``lo`` up, so Ray
registers its nodes as 127.0.0.1 and nothing leaves loopback), PID namespace (so
``ray stop --force`` and the tests' process checks see only this cluster, and everything in it
dies with the namespace) and mount namespace (for that namespace's /proc). Nothing in this file
starts Ray outside them: even looking up this node's address makes Ray probe the network.
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

from _shared_paths import REPO, shared_dir
from conftest import free_port
from excamera.mu.backends import BackendError, backends, given_options, make_backend
from excamera.mu.backends.ray import RayBackend, shipped_code, unreachable_nodes
from excamera.mu.coordinator import Coordinator
from excamera.mu.jobopts import add_job_options
from excamera.wheel import build_wheel, source_checkout

CLUSTER_TESTS = REPO / "tests" / "ray_cluster"
#: How many tests ray_cluster/ holds: the driver checks that every one of them ran and passed.
CLUSTER_TEST_COUNT = 5


def parse(*argv: str):
    import argparse

    p = argparse.ArgumentParser()
    add_job_options(p)
    # What the command line hands the registry: the backend options that were given.
    return argparse.Namespace(**given_options(vars(p.parse_args(list(argv)))))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- options -------------------------------------------------------------------------------


def test_ray_options_select_the_ray_backend() -> None:
    assert backends()["ray"] is RayBackend
    b = make_backend(None, vars(parse("--ray-address", "10.1.2.3:6379")))
    assert isinstance(b, RayBackend) and b.address == "10.1.2.3:6379"
    assert b.remote and not b.shared_storage
    b = make_backend(None, vars(parse("--shared-storage", "--ray-placement-timeout", "5",
                                      "--ray-worker-cpus", "2")))
    assert isinstance(b, RayBackend) and b.shared_storage
    assert b.placement_timeout == 5.0 and b.cpus == 2.0
    assert isinstance(make_backend("ray", vars(parse("--backend", "ray"))), RayBackend)
    with pytest.raises(BackendError, match=r"--ray-address belong.* to the ray backend, not "
                       "--backend local"):
        make_backend("local", vars(parse("--backend", "local", "--ray-address", "h:1")))
    with pytest.raises(BackendError, match="options of several backends"):
        make_backend(None, vars(parse("--shared-storage", "-l", "fn")))
    with pytest.raises(BackendError, match="--ray-placement-timeout 0: must be a finite number "
                       "more than 0"):
        make_backend(None, vars(parse("--ray-placement-timeout", "0")))
    with pytest.raises(BackendError, match="--ray-worker-cpus nan: must be a finite number"):
        make_backend(None, vars(parse("--ray-worker-cpus", "nan")))
    with pytest.raises(BackendError, match="--ray-wheel /nonexistent.whl: no such file"):
        make_backend(None, vars(parse("--ray-wheel", "/nonexistent.whl")))


def test_local_bucket_needs_shared_storage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use s3://bucket.*--shared-storage"):
        Coordinator("x", 1, RayBackend(), str(tmp_path), None)  # type: ignore[arg-type]
    coord = Coordinator("x", 1, RayBackend(shared_storage=True), str(tmp_path), None)  # type: ignore[arg-type]
    assert coord.storage_url == str(tmp_path)
    # Loopback needs no other default than itself; only a wildcard bind asks Ray.
    assert coord.advertise == "127.0.0.1"


def test_bad_or_dead_cluster_address_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="expected HOST:PORT of the head node"):
        make_backend(None, vars(parse("--ray-address", "headnode")))
    with pytest.raises(BackendError, match="Ray Client addresses are not supported"):
        make_backend(None, vars(parse("--ray-address", "ray://head:10001")))
    # Nothing listens there: the job fails at once instead of ray.init retrying for minutes.
    port = free_port()
    clip = shared_dir() / "clips" / "carphone_qcif_120f.y4m"
    done = subprocess.run(
        [sys.executable, "-m", "excamera.cli", "encode", str(clip), "-o",
         str(tmp_path / "o.ivf"), "--ray-address", f"127.0.0.1:{port}", "--shared-storage",
         "--bucket", str(tmp_path / "b")],
        env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"no Ray cluster at 127.0.0.1:{port}: cannot connect (Connection refused)" in lines[0]
    assert not (tmp_path / "o.ivf").exists()


def test_remote_nodes_cannot_dial_a_loopback_coordinator() -> None:
    assert unreachable_nodes("127.0.0.1", ["127.0.0.1"]) == []
    assert unreachable_nodes("127.0.0.1", ["127.0.0.1", "10.0.0.7"]) == ["10.0.0.7"]
    assert unreachable_nodes("localhost", ["192.0.2.4"]) == ["192.0.2.4"]
    assert unreachable_nodes("10.0.0.2", ["10.0.0.7", "127.0.0.1"]) == []


def test_without_ray_one_line_says_what_to_install(tmp_path: Path) -> None:
    # None in sys.modules makes `import ray` fail as it does where Ray is not installed.
    code = ("import runpy, sys; sys.modules['ray'] = None; "
            "sys.argv = ['excamera'] + sys.argv[1:]; "
            "runpy.run_module('excamera.cli', run_name='__main__')")
    clip = shared_dir() / "clips" / "carphone_qcif_120f.y4m"
    done = subprocess.run(
        [sys.executable, "-c", code, "encode", str(clip), "-o", str(tmp_path / "o.ivf"),
         "--backend", "ray", "--shared-storage", "--bucket", str(tmp_path / "b")],
        env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "the ray backend needs ray, which is not installed: pip install 'excamera[ray]'" \
        in lines[0]
    assert not (tmp_path / "o.ivf").exists()


# --- the wheel the workers run ---------------------------------------------------------------


def test_shipped_wheel_is_this_code_and_other_code_is_refused(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = source_checkout()
    assert repo == REPO
    wheel = build_wheel(repo, tmp_path / "wheel")
    pkg, info = shipped_code(wheel)
    assert pkg.name == "excamera" and (pkg / "mu" / "backends" / "ray.py").is_file()
    assert info.name.startswith("excamera-") and info.name.endswith(".dist-info")
    assert any(pkg.glob("_xc*.so"))
    assert not pkg.is_relative_to(REPO)
    # Cached: the same wheel is not unpacked again.
    stamp = pkg.stat().st_mtime_ns
    assert shipped_code(wheel)[0].stat().st_mtime_ns == stamp
    # Without a wheel: this checkout's, built once and cached under its code identity.
    from excamera import identity

    built = shipped_code()
    key = "-".join(identity.code_identity()[k] for k in ("version", "xc_build", "python"))
    assert built[0] == tmp_path / "cache" / "excamera" / "ray" / key / "unpacked" / "excamera"
    assert [p.name for p in built] == [pkg.name, info.name]

    # The same wheel with one line of Python changed is other code.
    other = tmp_path / "other" / wheel.name
    other.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "excamera/mu/operations.py":
                data += b"\n# a different build\n"
            dst.writestr(item, data)
    with pytest.raises(BackendError, match="not this coordinator's code: the wheel holds "
                       r"excamera .* \(differs in python\)"):
        shipped_code(other)

    not_a_wheel = tmp_path / wheel.name
    not_a_wheel.write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="cannot read the wheel"):
        shipped_code(not_a_wheel)


# --- the cluster tests, in their namespaces ---------------------------------------------------


@pytest.mark.timeout(1500)
def test_ray_cluster_in_its_own_namespaces(tmp_path: Path) -> None:
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    assert unshare and ip, "the Ray cluster tests need unshare (util-linux) and ip (iproute2)"
    metrics = tmp_path / "metrics.json"
    files = sorted(str(p) for p in CLUSTER_TESTS.glob("ray_*.py"))
    assert files, f"no Ray cluster tests in {CLUSTER_TESTS}"
    # bash stays PID 1 of the namespace (a command follows pytest), so it reaps the Ray
    # daemons that `ray start` leaves behind; --kill-child takes the namespace down with us.
    script = (f"{ip} link set lo up || exit 97\n"
              f"{sys.executable} -m pytest -q -p no:cacheprovider --durations=0 "
              f"{' '.join(files)}\nstatus=$?\nexit $status\n")
    env = dict(os.environ, EXCAMERA_RAY_NETNS="1", EXCAMERA_RAY_METRICS=str(metrics))
    done = subprocess.run(
        [unshare, "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "bash", "-c",
         script], cwd=REPO, env=env, capture_output=True, text=True, timeout=1400)
    out = done.stdout + done.stderr
    (tmp_path / "inner.log").write_text(out)
    print(out[-6000:])
    failed = "\n".join(ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR")))
    if metrics.exists():
        print("ray cluster metrics:", json.dumps(json.loads(metrics.read_text())))
    assert "Operation not permitted" not in done.stderr, \
        f"cannot create the namespaces (run as root): {done.stderr.strip()}"
    assert done.returncode != 97, f"cannot bring lo up in the namespace: {out[-2000:]}"
    assert done.returncode == 0, f"{failed}\n{out[-6000:]}"
    summary = out.strip().splitlines()[-1]
    assert re.search(rf"\b{CLUSTER_TEST_COUNT} passed\b", summary), summary
    assert not re.search(r"failed|error|skipped", summary), summary
