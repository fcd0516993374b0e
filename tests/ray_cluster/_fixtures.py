"""The fixtures of the Ray cluster tests: the real cluster they share (a head and a second
node), the clip, and the local backend's encode of it.

These tests run only inside the network, PID and mount namespaces that
``tests/test_ray_backend.py::test_ray_cluster_in_its_own_namespaces`` creates (``unshare``
with only ``lo`` up): there Ray registers both nodes as 127.0.0.1, where outside it would
advertise the host's own address and send traffic off loopback, and ``ray stop --force``
sees only this cluster's processes, not another Ray on the machine. Their file names do not
match ``test_*.py``, so a plain ``pytest`` run reaches them only through that driver.

Ray is started as a user would: plain ``ray start --head`` (token authentication is off by
default in the pinned Ray) and ``ray start --address``, each node with 2 CPUs for scheduling
and a small object store (by default it takes 30 % of the machine's memory per node). The
nodes get an environment without PYTHONPATH, so a worker can import excamera only from what
the backend ships or from the venv's own install, and the tests tell which one it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _cluster import Cluster, cli_env, encode_argv, only_loopback, processes, ray_pids, rss_mb

from _shared_paths import shared_dir
from excamera.xc.y4m import read_y4m, write_y4m

NETNS_MARK = "EXCAMERA_RAY_NETNS"
METRICS = "EXCAMERA_RAY_METRICS"
PORT = 6379
CPUS_PER_NODE = 2
OBJECT_STORE_BYTES = 100 * 1000 * 1000
FRAMES = 24
RAY_DAEMONS = ("raylet", "gcs_server")


def _ray(*args: str, env: dict[str, str], log: Path) -> float:
    ray_bin = Path(sys.executable).with_name("ray")
    t0 = time.monotonic()
    with open(log, "ab") as out:
        done = subprocess.run([str(ray_bin), *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=240)
    if done.returncode != 0:
        pytest.fail(f"ray {args[0]} {args[1]} failed ({done.returncode}): "
                    f"{log.read_text()[-3000:]}")
    return time.monotonic() - t0


@pytest.fixture(scope="session")
def ray_cluster():
    if os.environ.get(NETNS_MARK) != "1" or not only_loopback():
        pytest.fail("the Ray cluster tests run only inside their own network namespace: "
                    "run tests/test_ray_backend.py (make test does)")
    # Unix socket paths under the temp dir must stay short (108 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="xr", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    log = tmp / "ray-start.log"
    common = [f"--num-cpus={CPUS_PER_NODE}", f"--object-store-memory={OBJECT_STORE_BYTES}",
              "--disable-usage-stats"]
    cluster = Cluster(f"127.0.0.1:{PORT}", 2 * CPUS_PER_NODE, tmp, env)
    try:
        head_s = _ray("start", "--head", f"--port={PORT}", "--include-dashboard=false",
                      f"--temp-dir={tmp / 'ray'}", *common, env=env, log=log)
        node_s = _ray("start", f"--address={cluster.address}", *common, env=env, log=log)
        cluster.metrics.update(head_start_s=round(head_s, 2), node_start_s=round(node_s, 2),
                               idle_cluster_rss_mb=rss_mb(ray_pids()))
        yield cluster
    finally:
        stop = subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                              env=env, capture_output=True, text=True, timeout=120)
        left = {pid: cmd for pid, cmd in processes().items()
                if any(d in cmd for d in RAY_DAEMONS)}
        if os.environ.get(METRICS):
            Path(os.environ[METRICS]).write_text(json.dumps(cluster.metrics, indent=1))
        shutil.rmtree(tmp, ignore_errors=True)
        assert stop.returncode == 0, stop.stderr[-2000:]
        assert not left, f"Ray daemons still running after ray stop --force: {left}"


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """The first frames of the shared carphone clip, cut with the project's Y4M helpers."""
    header, pictures = read_y4m(shared_dir() / "clips" / "carphone_qcif_120f.y4m")
    out = tmp_path_factory.mktemp("clip") / f"carphone_{FRAMES}f.y4m"
    write_y4m(out, pictures[:FRAMES], fps=header.fps)
    return out


@pytest.fixture(scope="session")
def local_reference(ray_cluster: Cluster, clip: Path, tmp_path_factory) -> bytes:
    """The clip encoded by the local backend: what every Ray run must reproduce exactly."""
    d = tmp_path_factory.mktemp("local")
    t0 = time.monotonic()
    done = subprocess.run(encode_argv(clip, d / "out.ivf", d / "bucket"),
                          env=cli_env(ray_cluster), capture_output=True, text=True, timeout=300)
    ray_cluster.metrics["local_encode_s"] = round(time.monotonic() - t0, 2)
    assert done.returncode == 0, done.stderr
    assert "4 chunk(s)" in done.stdout
    return (d / "out.ivf").read_bytes()
