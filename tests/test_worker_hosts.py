"""Worker hosts: many mu workers as tasks of a few long-lived processes (--worker-processes),
and bench/scale.py's whole path (coordinator, separate relay, hosts) at a few hundred."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _shared_paths import REPO, shared_dir
from excamera.mu.backends import LocalBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.machines import JobContext, WorkerHandle

PYTHON_DIR = REPO / "python"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def encode(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "excamera.cli", "encode", *args],
                          env=child_env(), capture_output=True, text=True, timeout=900)


def test_an_encode_is_byte_identical_whether_workers_share_processes_or_not(
        tmp_path: Path) -> None:
    """Issue 12's last bar: the same bytes and the same measured quality from a process per
    worker (--worker-processes 0) as from worker hosts, which the command runs by default."""
    src = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    common = ["--chunk", "2", "--batch", "3", "--workers", "2", "--quality", "30"]
    own = encode(str(src), "-o", str(tmp_path / "own.ivf"), *common, "--worker-processes", "0")
    assert own.returncode == 0, own.stderr
    log = tmp_path / "shared.jsonl"
    shared = encode(str(src), "-o", str(tmp_path / "shared.ivf"), *common, "-O", str(log))
    assert shared.returncode == 0, shared.stderr
    assert (tmp_path / "shared.ivf").read_bytes() == (tmp_path / "own.ivf").read_bytes()
    assert "5 chunk(s)" in shared.stdout

    def quality(out: str) -> list[str]:  # the workers' PSNR and SSIM sums, as printed
        return [line for line in out.splitlines() if line.split()[:1] in (["PSNR"], ["SSIM"])]

    assert len(quality(own.stdout)) == 2 and quality(shared.stdout) == quality(own.stdout)
    # the job's cost is the hosts' CPU time
    cost = json.loads(log.read_text().splitlines()[-1])["cost"]
    assert cost["backend"] == "local" and cost["worker_cpu_s"] > 0


def test_the_command_line_and_the_api_run_one_worker_host_per_core() -> None:
    from excamera.mu.backends import BackendSpec, resolve_backend
    from excamera.mu.backends.local import default_worker_processes

    assert default_worker_processes() == min(os.cpu_count() or 1, 1024)
    hosted = resolve_backend(BackendSpec("local", {}))
    own = resolve_backend(BackendSpec("local", {"worker_processes": 0}))
    assert isinstance(hosted, LocalBackend) and isinstance(own, LocalBackend)
    assert hosted.worker_processes == default_worker_processes() and own.worker_processes == 0
    assert LocalBackend().worker_processes == 0  # built directly: a process per worker


async def pid_machine(w: WorkerHandle, ctx: JobContext) -> int:
    w.state = "working"
    return int((await w.run("echo $PPID")).stdout)


def test_workers_run_in_k_processes() -> None:
    backend = LocalBackend(worker_processes=2)
    coord = Coordinator("hosts", 12, backend, "", pid_machine)
    result = asyncio.run(coord.run())
    parents = set(result.outputs.values())
    assert len(parents) == 2  # every worker's shell is a child of one of the two hosts
    assert all(w.cpu_s is None for w in result.workers.values())  # a host's CPU is shared


async def failing(w: WorkerHandle, ctx: JobContext) -> None:
    w.state = "talking"
    await w.run(f"echo 'worker {w.id} was here' >&2")
    if w.id == 3:
        await ctx.progress.wait_for(2, "talking")
        await w.run("echo 'codec exploded' >&2; exit 4")
    await w.run_op("sleep", seconds=60)


def test_a_failed_worker_is_reported_with_its_own_log_not_its_neighbours(
        tmp_path: Path) -> None:
    backend = LocalBackend(worker_processes=1, tmp_root=tmp_path / "tmp")
    coord = Coordinator("tails", 4, backend, "", failing)
    with pytest.raises(JobFailed) as info:
        asyncio.run(coord.run())
    msg = str(info.value)
    assert "worker 3 (attempt 0) failed in state 'talking'" in msg
    assert "codec exploded" in msg and "worker 3 was here" in msg
    assert "worker 2 was here" not in msg
    assert not (tmp_path / "tmp").exists() or list((tmp_path / "tmp").rglob("*")) == []


async def survivor(w: WorkerHandle, ctx: JobContext) -> int:
    w.state = "working"
    if w.attempt == 0 and w.id == 0:
        # host 0 dies under this worker (and whoever else it runs)
        os.kill(int((await w.run("echo $PPID")).stdout), signal.SIGKILL)
        await w.run_op("sleep", seconds=60)
    await w.run_op("sleep", seconds=0.2)
    return w.attempt


def test_a_host_that_dies_loses_its_workers_and_retries_place_them_on_the_other() -> None:
    backend = LocalBackend(worker_processes=2)
    coord = Coordinator("hostdeath", 6, backend, "", survivor, retries=1)
    result = asyncio.run(asyncio.wait_for(coord.run(), 120))
    retried = {k for k, w in result.workers.items() if w.attempts == 2}
    assert 0 in retried and len(retried) == 3  # host 0 had workers 0, 2 and 4
    assert backend.hosts[0].proc.returncode == -signal.SIGKILL


#: The keys issue 10 asks bench/scale.py for, each run.
SCALE_KEYS = ("workers", "connected", "handoffs_ok", "connect_all_s", "pair_rtt_p50_ms",
              "pair_rtt_p99_ms", "storm_s", "coordinator_rss_mb", "relay_rss_mb", "fds")


def test_scale_bench_runs_200_workers_through_the_same_path(tmp_path: Path) -> None:
    """bench/scale.py at 200 workers: a separate relay, the coordinator, two worker hosts;
    every worker connects and every hand-off arrives intact (timings are the bench's). It
    prints what it writes, with the issue's keys."""
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--workers", "200",
                           "--rounds", "100", "--json", str(out)],
                          env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    assert json.loads(done.stdout) == res
    assert set(SCALE_KEYS) <= set(res) and set(res) - set(SCALE_KEYS) == {"settings", "detail"}
    assert (res["workers"], res["connected"], res["handoffs_ok"]) == (200, 200, 200)
    for key in ("connect_all_s", "pair_rtt_p50_ms", "pair_rtt_p99_ms", "storm_s",
                "coordinator_rss_mb", "relay_rss_mb"):
        assert res[key] > 0, key
    assert res["pair_rtt_p50_ms"] <= res["pair_rtt_p99_ms"]
    # each server holds a connection per worker, and the hosts two per worker between them
    fds = res["detail"]["fds_connected"]
    assert fds["coordinator"] >= 200 and fds["relay"] >= 200
    assert fds["host0"] + fds["host1"] >= 400
    assert res["fds"] == fds["coordinator"] + fds["relay"]
