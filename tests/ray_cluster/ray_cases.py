"""RayBackend on a real two-node Ray cluster (see conftest.py for how it runs and where).

- ``excamera encode --backend ray`` gives exactly the local backend's bytes;
- the workers run the shipped wheel: their code identity is the coordinator's and their
  ``excamera`` is not this checkout; each task's process is the one that said hello, and its
  title names the worker; the workers reach each other through the embedded relay;
- a worker whose Ray process is killed mid-job fails the job clearly, and ``--retries 1``
  recovers it with the same bytes;
- a job the cluster cannot place fails when the placement timeout expires, naming the CPUs it
  asked for and those the cluster has, and holds nothing afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from _cluster import Cluster, cli_env, encode_argv, our_lines, processes, rss_mb, task_pid

from _shared_paths import REPO
from excamera import identity
from excamera.mu.backends.ray import RayBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.machines import JobContext, WorkerHandle

#: The shared cluster and clip (not a conftest.py: that module name would shadow
#: tests/conftest.py for the rest of a pytest run).
pytest_plugins = ["_fixtures"]


def read_transitions(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return rows


def cost_record(path: Path) -> dict:
    costs = [r["cost"] for r in read_transitions(path) if "cost" in r]
    assert len(costs) == 1, path.read_text()
    return costs[0]


def test_encode_on_ray_is_byte_identical(ray_cluster: Cluster, clip: Path,
                                         local_reference: bytes, tmp_path: Path) -> None:
    out, record = tmp_path / "out.ivf", tmp_path / "transitions.jsonl"
    t0 = time.monotonic()
    done = subprocess.run(
        encode_argv(clip, out, tmp_path / "bucket", "--backend", "ray", "--ray-address",
                    ray_cluster.address, "--shared-storage", "-O", str(record)),
        env=cli_env(ray_cluster), capture_output=True, text=True, timeout=600)
    ray_cluster.metrics["first_ray_encode_s"] = round(time.monotonic() - t0, 2)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == local_reference
    assert "cost (ray): " in done.stdout
    cost = cost_record(record)
    assert cost["backend"] == "ray"
    assert cost["details"]["tasks"] == 4 and cost["details"]["tasks_without_cpu_report"] == 0
    assert cost["worker_cpu_s"] > 0
    # The placement group held 4 bundles of 1 CPU for at least as long as any worker worked.
    assert cost["details"]["reserved_cpu_s"] >= cost["worker_cpu_s"] / 4
    assert cost["details"]["nodes"] == ["127.0.0.1", "127.0.0.1"]
    rows = read_transitions(record)
    launched = {r["worker"]: r["t"] for r in rows if r.get("state") == "launching"}
    hello = {r["worker"]: r["t"] for r in rows if r.get("state") == "connected"}
    ray_cluster.metrics["first_job_launch_to_hello_s"] = sorted(
        round(hello[k] - launched[k], 2) for k in hello)
    start = cost["details"]["task_start_s"]
    ray_cluster.metrics["first_job_task_start_s"] = start
    # A task body starts after its submission and before its worker says hello.
    assert 0 < start["min"] <= start["median"] <= start["max"] < max(
        hello[k] - launched[k] for k in hello)

    # A second job on the same cluster: the wheel comes from the cache, and the output again
    # matches (a cached wheel is still checked against the coordinator's code).
    out2 = tmp_path / "again.ivf"
    t0 = time.monotonic()
    done = subprocess.run(
        encode_argv(clip, out2, tmp_path / "bucket2", "--ray-address", ray_cluster.address,
                    "--shared-storage"),
        env=cli_env(ray_cluster), capture_output=True, text=True, timeout=600)
    ray_cluster.metrics["second_ray_encode_s"] = round(time.monotonic() - t0, 2)
    assert done.returncode == 0, done.stderr
    assert out2.read_bytes() == local_reference


async def where_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    """Where the worker runs: the process that said hello, and what /proc calls it."""
    w.state = "working"
    title = processes().get(w.pid or -1, "")
    await w.connect(w.id ^ 1)  # the neighbour, through the embedded relay
    if w.id == 0:
        await w.send_blob(data=b"state from 0" * 1000)
        got = b""
    else:
        got = await w.recv_blob(sender=0)
    await w.close_connect()
    return {"hello_pid": w.pid, "title": title, "got": len(got),
            "rss_mb": rss_mb([w.pid]) if w.pid else 0.0}


def test_workers_run_the_shipped_wheel(ray_cluster: Cluster, tmp_path: Path,
                                       monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(ray_cluster.tmp / "cache"))
    backend = RayBackend(ray_cluster.address, shared_storage=True)
    # Bound to every interface without --advertise: the workers dial the address Ray knows
    # this node by (here the namespace's only one), for the coordinator and its relay.
    coord = Coordinator("where", 2, backend, str(tmp_path), where_machine, embedded_relay=True,
                        host="0.0.0.0", connect_timeout=120)
    assert coord.advertise == "127.0.0.1"
    result = asyncio.run(coord.run())
    assert coord.relay_addr is not None and coord.relay_addr[0] == "127.0.0.1"
    assert result.outputs[1]["got"] == len(b"state from 0" * 1000)
    want = identity.code_identity()
    for k, task in enumerate(backend.tasks):
        res = task.result
        assert res is not None and res["exit"] == 0, task.stderr_tail()
        assert res["code"] == want
        shipped = Path(res["excamera"]).resolve()
        assert not shipped.is_relative_to(REPO), shipped
        assert "py_modules_files" in shipped.parts[-4], shipped  # Ray's unpacked py_modules
        assert res["pid"] == result.outputs[k]["hello_pid"] != os.getpid()
        assert result.outputs[k]["title"] == f"ray::excamera-{coord.job_id}-worker-{k}"
    ray_cluster.metrics["worker_process_rss_mb"] = [result.outputs[k]["rss_mb"] for k in (0, 1)]
    # This process was the Ray driver and the coordinator (and runs pytest).
    ray_cluster.metrics["driver_process_rss_mb"] = rss_mb([os.getpid()])
    assert not any(t.alive() for t in backend.tasks)


def _encode_killing_last_worker(ray_cluster: Cluster, clip: Path, tmp_path: Path,
                                retries: int) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run the Ray encode and SIGKILL the Ray process of its last worker once that worker
    is past its hello (it cannot finish before the wavefront reaches it)."""
    out, record = tmp_path / "out.ivf", tmp_path / "transitions.jsonl"
    last = 3
    proc = subprocess.Popen(
        encode_argv(clip, out, tmp_path / "bucket", "--ray-address", ray_cluster.address,
                    "--shared-storage", "--retries", str(retries), "-O", str(record)),
        env=cli_env(ray_cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 300
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            rows = read_transitions(record)
            if any(r.get("worker") == last and r.get("attempt") == 0
                   and r.get("state") not in ("launching", "connected") for r in rows):
                killed = task_pid(last)
                assert killed is not None, processes()
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed is not None, f"worker {last} never got past its hello: {stderr}"
    return (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
            read_transitions(record))


def test_killed_worker_fails_the_job_clearly(ray_cluster: Cluster, clip: Path,
                                             tmp_path: Path) -> None:
    done, rows = _encode_killing_last_worker(ray_cluster, clip, tmp_path, retries=0)
    assert done.returncode == 1
    stderr = our_lines(done.stderr)
    assert stderr.startswith("excamera encode: error: job xcenc-"), done.stderr
    assert "1 worker(s) failed, outputs are incomplete" in stderr
    assert "worker 3 (attempt 0) failed" in stderr
    # Ray's own account of the task's end, as the worker's last words: the process died, or
    # (when Ray had not noticed yet) the coordinator's force-cancel ended the task.
    assert re.search(r"WorkerCrashedError|TaskCancelledError",
                     stderr.split("worker 3 (attempt 0) failed", 1)[1]), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out.ivf").exists()
    assert [r["state"] for r in rows if r.get("worker") == 3][-1] == "lost"


def test_killed_worker_is_relaunched_with_retries(ray_cluster: Cluster, clip: Path,
                                                  local_reference: bytes,
                                                  tmp_path: Path) -> None:
    done, rows = _encode_killing_last_worker(ray_cluster, clip, tmp_path, retries=1)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.ivf").read_bytes() == local_reference
    states = [(r["attempt"], r["state"]) for r in rows if r.get("worker") == 3]
    assert (0, "lost") in states and states[-1] == (1, "done")


def test_too_large_job_fails_at_the_placement_timeout(ray_cluster: Cluster, clip: Path,
                                                      tmp_path: Path) -> None:
    # 4 workers of 1.5 CPUs: 6 CPUs where the cluster has 4 (and a node fits one such bundle).
    timeout = 3.0
    t0 = time.monotonic()
    done = subprocess.run(
        encode_argv(clip, tmp_path / "out.ivf", tmp_path / "bucket", "--ray-address",
                    ray_cluster.address, "--shared-storage", "--ray-worker-cpus", "1.5",
                    "--ray-placement-timeout", str(timeout)),
        env=cli_env(ray_cluster), capture_output=True, text=True, timeout=300)
    waited = time.monotonic() - t0
    assert done.returncode == 1
    lines = our_lines(done.stderr).strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "within 3 s (--ray-placement-timeout)" in lines[0]
    assert "4 worker(s) x 1.5 CPU = 6 CPUs at once" in lines[0]
    # What is available right now depends on how soon Ray released the previous job's group.
    assert re.search(rf"the Ray cluster has {ray_cluster.cpus} CPUs \([\d.]+ available\) on 2 "
                     r"node\(s\)$", lines[0]), lines[0]
    assert waited >= timeout  # it waited for the cluster, then gave up
    assert not (tmp_path / "out.ivf").exists()
    assert task_pid(0) is None  # no task was started
