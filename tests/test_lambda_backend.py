"""Whole jobs with ``--backend lambda``: the real zip, run by awslambdaric, in the emulator.

The emulator (tests/lambda_emulator/) stands in for AWS Lambda; it is not AWS, and every figure
here is emulated. The function is the zip ``excamera lambda build`` makes, deployed with
``excamera.awslambda.deploy`` through boto3 to the emulator; storage is moto's S3 server, which
the functions reach with the emulated execution role's credentials. The coordinator runs here,
on 127.0.0.1, and every worker dials it from its own execution environment.

What must hold: the output is byte-identical to the local backend's; throttling is retried; a
crash, a timeout, a duplicate delivery, a payload over the limit and a preflight refusal each
either recover or fail with one clear message naming the worker, and a failed encode leaves no
output; the job's cost is reported (GB-seconds, requests, dollars) and labelled emulated; a
worker whose connection the coordinator drops ends its invocation at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from _shared_paths import shared_dir
from excamera.awslambda.deploy import DeployOptions, deploy
from excamera.mu.backends.aws_lambda import LambdaBackend, LambdaInvocation
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.machines import JobContext, WorkerHandle
from excamera.mu.payload import LaunchPayload
from excamera.xc.y4m import read_y4m, write_y4m

BUCKET = "excamera-test"
ROLE = "arn:aws:iam::123456789012:role/excamera-worker"
PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def clip(tmp_path: Path, frames: int) -> Path:
    header, pictures = read_y4m(shared_dir() / "clips" / "carphone_qcif_120f.y4m")
    out = tmp_path / f"carphone-{frames}.y4m"
    write_y4m(out, pictures[:frames], header.fps)
    return out


def run_encode(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "excamera.cli", "encode", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cloud(s3_env, lambda_emulator_factory, lambda_zip):
    """moto's S3 and the emulator, with the real zip deployed; yields (emulator, function)."""

    def start(timeout_s: int = 120, **options):
        emu = lambda_emulator_factory(role_env={"AWS_ENDPOINT_URL_S3": s3_env}, **options)
        name = deploy(DeployOptions(lambda_zip, ROLE, ["us-east-1"], timeout_s=timeout_s),
                      say=lambda _: None)
        return emu, name

    return start


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The same encodes on the local backend, for comparison (made once)."""
    cache: dict[int, bytes] = {}

    def get(frames: int) -> bytes:
        if frames not in cache:
            d = tmp_path_factory.mktemp(f"local-{frames}")
            out = d / "out.webm"
            done = run_encode(str(clip(d, frames)), "-o", str(out), "--quality", "30")
            assert done.returncode == 0, done.stderr
            cache[frames] = out.read_bytes()
        return cache[frames]

    return get


def lambda_encode(tmp_path: Path, name: str, frames: int, *extra: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out.webm"
    states = tmp_path / "states.jsonl"
    done = run_encode(str(clip(tmp_path, frames)), "-o", str(out), "--quality", "30",
                      "-l", name, "--bucket", f"s3://{BUCKET}/{tmp_path.name}", "-O",
                      str(states), *extra)
    return done, out, states


def runs(records: list[dict], name: str) -> list[dict]:
    """The records of invocations that ran in an environment (not throttled or dropped)."""
    return [r for r in records if r.get("function") == name and "env" in r]


def cost_record(states: Path) -> dict:
    return json.loads(states.read_text().splitlines()[-1])["cost"]


def test_encode_on_lambda_is_byte_identical_to_local(tmp_path, cloud, local_reference):
    emu, name = cloud()
    done, out, states = lambda_encode(tmp_path, name, 30)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == local_reference(30)
    # Five chunks, five workers, five invocations, each one a cold or warm environment of the
    # deployed zip.
    recs = runs(emu.records(), name)
    assert len(recs) == 5, recs
    assert all(r["status"] == "ok" for r in recs), recs
    cost = cost_record(states)
    assert cost["backend"] == "lambda" and cost["emulated"] is True
    assert cost["requests"] == 5 and cost["gb_seconds"] > 0 and cost["usd"] > 0
    assert cost["prices"].startswith("us-east-1 x86_64 prices of ")
    assert "cost (lambda, emulated):" in done.stdout and "5 requests" in done.stdout
    # Billed duration, from the handlers' own accounts, covers at least what the emulator saw
    # them run (its REPORT facts), to within Lambda's 1 ms rounding per invocation.
    ran_ms = sum(r["duration_ms"] for r in recs)
    assert cost["gb_seconds"] * 1024 / 1769 * 1000 >= 0.9 * ran_ms


def test_throttled_invokes_are_retried(tmp_path, cloud, local_reference):
    emu, name = cloud()
    emu.fault("throttle", count=3)
    done, out, states = lambda_encode(tmp_path, name, 12)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == local_reference(12)
    cost = cost_record(states)
    assert cost["details"]["throttled"] == 3
    # Throttled requests are not billed; a straggler's duplicate (a loaded machine) is.
    assert cost["requests"] == 2 + cost["details"].get("duplicates", 0)
    assert emu.stats()["throttles"] >= 3


# A worker logs each operation as it starts it; faults fire at its first one, so the worker is
# certain to be mid-job (connected, with work still to do) however fast the machine is.
MID_JOB = ": op: "


def test_crash_fails_clearly_or_recovers_with_retries(tmp_path, cloud, local_reference):
    emu, name = cloud()
    emu.fault("crash", count=1, after_log=MID_JOB)
    done, out, _ = lambda_encode(tmp_path / "a", name, 12)
    assert done.returncode == 1
    assert not out.exists()
    err = done.stderr
    assert err.startswith("excamera encode: error: job xcenc-"), err
    assert "outputs are incomplete" in err
    assert "Runtime.ExitError" in err and "(attempt 0) failed" in err
    assert "Traceback" not in err.split("stderr tail")[0]

    emu.fault("crash", count=1, after_log=MID_JOB)
    done, out, _ = lambda_encode(tmp_path / "b", name, 12, "--retries", "1")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == local_reference(12)


def test_timed_out_invocation_fails_naming_the_worker(tmp_path, cloud):
    emu, name = cloud(timeout_s=8)
    emu.fault("timeout", count=1, after_log=MID_JOB)
    # A frozen worker is a straggler: with mitigation on, a duplicate would take its place and
    # the job succeed. Off, the timeout itself must end the job, naming the worker.
    done, out, _ = lambda_encode(tmp_path, name, 12, "--straggler-k", "0")
    assert done.returncode == 1
    assert not out.exists()
    assert "Sandbox.Timedout" in done.stderr or "timed out" in done.stderr, done.stderr
    assert "(attempt 0) failed" in done.stderr


def test_duplicate_delivery_is_refused_and_harmless(tmp_path, cloud, local_reference):
    emu, name = cloud()
    emu.fault("duplicate", count=1)
    done, out, _ = lambda_encode(tmp_path, name, 12, "--invocation", "event")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == local_reference(12)
    # The same event ran twice; the second delivery found its token spent and was refused.
    recs = runs(emu.wait_records(lambda rs: len(runs(rs, name)) >= 3), name)
    by_id: dict[str, list[dict]] = {}
    for r in recs:
        by_id.setdefault(r["request_id"], []).append(r)
    twice = [rs for rs in by_id.values() if len(rs) == 2]
    assert len(twice) == 1, by_id
    assert sorted(r["status"] for r in twice[0]) == ["error", "ok"]


def test_preflight_refuses_more_workers_than_the_account_allows(tmp_path, cloud):
    emu, name = cloud(account_concurrency=3)
    done, out, _ = lambda_encode(tmp_path, name, 30)  # five workers
    assert done.returncode == 1 and not out.exists()
    line = done.stderr.strip().splitlines()[0]
    assert "needs 5 simultaneous workers in us-east-1" in line
    assert "unreserved concurrency allows 3" in line
    assert emu.stats()["invocations"] == 0  # refused before launching anything


def test_preflight_refuses_a_function_of_other_code(tmp_path, cloud, lambda_zip):
    emu, _ = cloud()
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(lambda_zip) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "excamera_code.json":
                code = json.loads(data)
                code["python"] = "f" * len(code["python"])
                data = json.dumps(code).encode()
            dst.writestr(info, data)
    name = deploy(DeployOptions(other, ROLE, ["us-east-1"]), say=lambda _: None)
    done, out, _ = lambda_encode(tmp_path, name, 12)
    assert done.returncode == 1 and not out.exists()
    assert "build and deploy this version" in done.stderr
    assert emu.stats()["invocations"] == 0


def test_payload_over_the_limit(cloud, monkeypatch):
    emu, name = cloud()

    async def go() -> tuple[str, str]:
        backend = LambdaBackend(name)
        await backend.prepare(1, "127.0.0.1")
        payload = LaunchPayload("127.0.0.1", 1, "job-x", 7, "t", "c", "k", "a",
                                options={"pad": "x" * (6 * 1024 * 1024)})
        try:
            await backend.launch(payload)
        except Exception as exc:  # the backend's own check, before anything is sent
            refused = str(exc)
        # Past the check, the service itself answers 413; that is final, not retried.
        inv = LambdaInvocation(backend, payload, "us-east-1", payload.to_json().encode())
        assert await inv.wait() == 1
        return refused, inv.stderr_tail()

    refused, tail = asyncio.run(go())
    assert "worker 7: launch payload of" in refused
    assert "exceeds Lambda's 6 MB limit for synchronous invocations" in refused
    assert tail.startswith("invoke refused: HTTP 413 RequestTooLargeException")
    assert emu.stats()["invocations"] == 0


def test_dropping_the_connection_ends_the_invocation(tmp_path, cloud):
    emu, name = cloud(timeout_s=300)

    async def machine(w: WorkerHandle, ctx: JobContext) -> None:
        w.state = "sleeping"
        await w.run(["sleep", "200"], timeout=2.0)

    async def go() -> None:
        coord = Coordinator("hangup", 1, LambdaBackend(name), f"s3://{BUCKET}/h", machine,
                            connect_timeout=60)
        with pytest.raises(JobFailed, match="timed out after 2 s") as err:
            await coord.run()
        assert "worker 0 (attempt 0)" in str(err.value)

    asyncio.run(go())
    rec = runs(emu.wait_records(lambda rs: bool(runs(rs, name))), name)[0]
    # The worker noticed the hang-up, stopped `sleep 200` and returned: the invocation ended
    # long before its 300 s timeout or the sleep's 200 s.
    assert rec["status"] == "ok", rec
    assert rec["duration_ms"] < 60_000, rec
