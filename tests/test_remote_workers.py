"""What remote workers need from mu, tested with real worker processes on this machine.

- the backend registry and ``--backend`` (a backend's own option selects it, another's is an
  error);
- the coordinator binds one address and advertises another;
- a remote backend refuses a local bucket;
- code identity: a worker running other code is refused, clearly and without retries;
- spares stand in for a lost worker without a new launch;
- a worker whose coordinator hangs up stops its running command and ends by itself (that is how
  a Lambda invocation is ended).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import excamera
from excamera.mu.backends import (
    BackendError,
    LocalBackend,
    backends,
    given_options,
    make_backend,
)
from excamera.mu.backends.aws_lambda import LambdaBackend
from excamera.mu.backends.local import LocalProcess
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.jobopts import add_job_options
from excamera.mu.machines import JobContext, WorkerHandle

PKG = Path(excamera.__file__).resolve().parent


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def pid_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    w.state = "working"
    out = await w.run("echo $PPID")
    return {"pid": int(out.stdout.strip()), "hello_pid": w.pid}


# --- registry and options ------------------------------------------------------------------


def test_registry_finds_every_backend_module() -> None:
    table = backends()
    assert table["local"] is LocalBackend
    assert table["lambda"] is LambdaBackend
    assert not table["inprocess"].cli  # for tests and embedding, not offered by --backend


def parse(*argv: str):
    import argparse

    p = argparse.ArgumentParser()
    add_job_options(p)
    # What the command line hands the registry: the backend options that were given.
    return argparse.Namespace(**given_options(vars(p.parse_args(list(argv)))))


def test_a_backends_own_option_selects_it() -> None:
    assert isinstance(make_backend(None, vars(parse())), LocalBackend)
    lam = make_backend(None, vars(parse("-l", "excamera-abc", "-r", "us-east-1,eu-west-1")))
    assert isinstance(lam, LambdaBackend)
    assert lam.function == "excamera-abc" and lam.regions == ["us-east-1", "eu-west-1"]
    assert [lam.region_of(k) for k in range(4)] == ["us-east-1", "eu-west-1"] * 2


def test_another_backends_option_is_an_error() -> None:
    with pytest.raises(BackendError, match="-l/--function belong.* to the lambda backend, not "
                       "--backend local"):
        make_backend("local", vars(parse("--backend", "local", "-l", "f")))
    with pytest.raises(BackendError, match="options of several backends"):
        make_backend(None, vars(parse("-l", "f", "--stderr-dir", "/tmp/x")))
    with pytest.raises(BackendError, match="needs the function's name"):
        make_backend("lambda", vars(parse("--backend", "lambda")))


def test_remote_backend_refuses_local_bucket(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "excamera.cli", "xcenc", "-n", "2", "-p", "1", "-b",
         str(tmp_path), "-l", "excamera-0123", "-t", "0"],
        env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "backend lambda runs workers on other machines" in lines[0]
    assert "use s3://bucket" in lines[0]


def test_bind_all_without_advertise_is_refused() -> None:
    with pytest.raises(ValueError, match="--advertise"):
        Coordinator("x", 1, LocalBackend(), "", pid_machine, host="0.0.0.0")


def test_workers_dial_the_advertised_address(tmp_path: Path) -> None:
    # Bind 127.0.0.1, advertise "localhost": the payload names localhost, the worker dials it
    # and checks the coordinator's certificate against that name.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        relay_port = probe.getsockname()[1]

    async def relay_machine(w: WorkerHandle, ctx: JobContext) -> dict:
        await w.connect(1 - w.id)  # through the embedded relay, on its fixed port
        await w.close_connect()
        return await pid_machine(w, ctx)

    coord = Coordinator("adv", 2, LocalBackend(tmp_root=tmp_path / "w"), "", relay_machine,
                        host="127.0.0.1", advertise="localhost", connect_timeout=30,
                        embedded_relay=True, relay_port=relay_port)
    result = asyncio.run(coord.run())
    assert sorted(result.outputs) == [0, 1]
    assert coord.relay_addr == ("localhost", relay_port)


def test_payload_carries_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-not-for-workers")
    seen: list[str] = []

    class Spy(LocalBackend):
        async def launch(self, payload):
            seen.append(payload.to_json())
            return await super().launch(payload)

    coord = Coordinator("env", 1, Spy(), "", pid_machine, connect_timeout=30)
    asyncio.run(coord.run())
    assert seen and all("s3cr3t" not in p for p in seen)
    assert '"code": {' in seen[0]  # the coordinator's code identity travels instead


# --- code identity ---------------------------------------------------------------------------


def test_worker_running_other_code_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(PKG, other / "excamera", ignore=shutil.ignore_patterns("__pycache__"))
    # One changed line of Python is other code: the hand-off would not be trusted.
    f = other / "excamera" / "mu" / "operations.py"
    f.write_text(f.read_text() + "\n# a different build\n")
    cmd = [sys.executable, "-c",
           f"import sys; sys.path.insert(0, {str(other)!r}); "
           "from excamera.mu.worker import main; sys.exit(main())"]
    coord = Coordinator("code", 2, LocalBackend(command=cmd, tmp_root=tmp_path / "w"), "",
                        pid_machine, retries=2, connect_timeout=30)
    with pytest.raises(JobFailed) as err:
        asyncio.run(coord.run())
    text = str(err.value)
    assert "the worker runs excamera" in text and "differs in python" in text
    assert "deploy the same build" in text
    # Deterministic, so not retried: one attempt per worker.
    assert "(attempt 0)" in text and "(attempt 1)" not in text
    assert "coordinator refused this worker" in text  # the worker's own last words


# --- spares ----------------------------------------------------------------------------------


async def lose_once_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    w.state = "working"
    await w.connect(w.id + 1)  # the relay checks the (adopted) identity too
    if w.id == 1 and w.attempt == 0:
        await ctx.progress.wait_for(0, "idle_spare_seen")
        w.state = "dying"
        await w.run("kill -9 $PPID")  # the worker process itself
    out = await w.run("echo $PPID")
    await w.close_connect()
    return {"pid": int(out.stdout.strip())}


def test_spare_stands_in_for_a_lost_worker(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_root=tmp_path / "w")
    coord: Coordinator | None = None

    async def machine(w: WorkerHandle, ctx: JobContext) -> dict:
        if w.id == 0:
            while coord is not None and not coord._idle:  # the spare has arrived and waits
                await asyncio.sleep(0.05)
            w.state = "idle_spare_seen"
        return await lose_once_machine(w, ctx)

    coord = Coordinator("spares", 3, backend, "", machine, retries=1, spares=2,
                        embedded_relay=True, connect_timeout=30)
    result = asyncio.run(coord.run())
    assert result.workers[1].attempts == 2
    # 3 workers + 2 spares launched, and no launch for the retry: a spare took it.
    assert len(backend.processes) == 5
    spare_pids = {p.pid for p in backend.processes if p.worker_id >= 3}  # ids after the workers
    assert result.outputs[1]["pid"] in spare_pids
    assert all(not p.alive() for p in backend.processes)  # the unused spare was dismissed
    assert result.cost is not None and result.cost.worker_cpu_s > 0


# --- hang-up ends a running command ------------------------------------------------------------


class _NoKillProcess(LocalProcess):
    """Records that kill() was asked for, but leaves the process to end by itself."""

    async def kill(self) -> None:
        self.kill_requested = True
        await asyncio.wait_for(self.wait(), 30)


class PatientBackend(LocalBackend):
    async def launch(self, payload):
        proc = await super().launch(payload)
        proc.__class__ = _NoKillProcess
        return proc


def test_worker_ends_when_coordinator_hangs_up(tmp_path: Path) -> None:
    async def machine(w: WorkerHandle, ctx: JobContext) -> None:
        w.state = "sleeping"
        await w.run(["sleep", "300"], timeout=1.0)  # lost after 1 s: the coordinator hangs up

    backend = PatientBackend(tmp_root=tmp_path / "w")
    coord = Coordinator("hangup", 1, backend, "", machine, connect_timeout=30)
    with pytest.raises(JobFailed, match="timed out after 1 s"):
        asyncio.run(coord.run())
    proc = backend.processes[0]
    assert getattr(proc, "kill_requested", False)
    assert not proc.alive()
    # It was not killed (-9): it noticed the hang-up, stopped `sleep 300` and returned.
    assert proc.proc.returncode == 0
    assert "coordinator closed the connection during run" in proc.stderr_tail()

