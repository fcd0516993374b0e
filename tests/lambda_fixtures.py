"""The Lambda fixtures: the emulator (tests/lambda_emulator/) as a process, and the real zip.

The emulator is not AWS (see its package docstring); every figure it reports is emulated. It runs
as a real subprocess on a free 127.0.0.1 port, and unmodified boto3 clients find it through
``AWS_ENDPOINT_URL_LAMBDA`` (set here, with dummy credentials and region us-east-1). Each test
gets a fresh emulator; on teardown it is stopped with SIGTERM and the test fails if any
execution environment's process outlived it.

``lambda_emulator_factory(**options)`` starts one with options (``role_env``: the variables
functions get as their execution role's, e.g. ``AWS_ENDPOINT_URL_S3`` of the moto server;
``account_concurrency``; ``init_timeout``; ``event_retry_delays``; ``event_throttle_backoff``;
``update_seconds``). Event retry delays and throttle backoff default to AWS's divided by 60
(1 s, 2 s; 0.1 s .. 5 s) so tests do not wait minutes; pass AWS's values to get them.

The deployment package, built once per session and shared (its inputs are cached across
sessions, see excamera.awslambda.build):

- ``lambda_build``: the report of one ``excamera lambda build``; ``lambda_zip``: its path;
- ``lambda_task_root``: that zip unpacked with its file modes, as Lambda lays out /var/task;
- ``lambda_runtime_dir``: awslambdaric for CPython 3.12, the emulator's stand-in for
  /var/runtime; ``python312``: the CPython 3.12 the emulator runs.

Missing tools (pyenv's 3.12, nasm, a deb-src entry) make these fail, never skip.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from excamera.errors import CommandError

REPO = Path(__file__).resolve().parents[1]
ROLE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing"}
START_TIMEOUT_S = 180  # the first start in a fresh clone installs awslambdaric from PyPI


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


class LambdaEmulator:
    """A running emulator: its endpoint, boto3 clients, faults, records and stats."""

    def __init__(self, proc: subprocess.Popen, endpoint: str, state_dir: Path, log: Path):
        self.proc = proc
        self.endpoint = endpoint
        self.state_dir = state_dir
        self.log = log
        self.env_pids: set[int] = set()
        self.stopped_with: int | None = None

    def control(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def client(self, region: str = "us-east-1", **config):
        """A boto3 Lambda client; retries are off unless ``retries=`` says otherwise."""
        import boto3
        from botocore.config import Config

        config.setdefault("retries", {"total_max_attempts": 1})
        config.setdefault("read_timeout", 960)
        return boto3.client("lambda", region_name=region, endpoint_url=self.endpoint,
                            config=Config(**config))

    def fault(self, kind: str, count: int = 1, **options) -> list:
        return self.control("POST", "/_emulator/faults", {"kind": kind, "count": count,
                                                          **options})

    def records(self, since: int = 0) -> list[dict]:
        return self.control("GET", f"/_emulator/records?since={since}")["records"]

    def wait_records(self, predicate, timeout: float = 60.0) -> list[dict]:
        """Poll until ``predicate(records)`` holds; the records then."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            if predicate(records):
                return records
            if time.monotonic() > deadline:
                pytest.fail(f"emulator records did not reach the expected state: {records}")
            time.sleep(0.05)

    def stats(self) -> dict:
        return self.control("GET", "/_emulator/stats")

    def environments(self) -> list[dict]:
        envs = self.control("GET", "/_emulator/environments")
        self.env_pids.update(e["pid"] for e in envs if e["pid"])
        return envs

    def wait_stats(self, key: str, at_least: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while (stats := self.stats())[key] < at_least:
            if time.monotonic() > deadline:
                pytest.fail(f"emulator stat {key} stayed {stats[key]}, expected {at_least}")
            time.sleep(0.05)
        return stats

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the emulator; fail if an environment's runtime process outlived it."""
        if self.proc.poll() is None:
            self.stopped_with = sig
            try:
                self.environments()
            except OSError:
                pass
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("lambda emulator did not stop within 30 s of SIGTERM")
        deadline = time.monotonic() + 10
        while (alive := [p for p in self.env_pids if not process_gone(p)]):
            if time.monotonic() > deadline:
                for pid in alive:
                    os.kill(pid, signal.SIGKILL)
                pytest.fail(f"environment processes outlived the emulator: {alive}")
            time.sleep(0.05)
        return self.proc.returncode


def start_emulator(state_dir: Path, **options) -> LambdaEmulator:
    role_env = {**ROLE_ENV, **(options.pop("role_env", None) or {})}
    cmd = [sys.executable, "-m", "tests.lambda_emulator", "--state-dir", str(state_dir),
           "--port", "0"]
    for key, value in role_env.items():
        cmd += ["--role-env", f"{key}={value}"]
    options.setdefault("event_retry_delays", (1.0, 2.0))
    options.setdefault("event_throttle_backoff", (0.1, 5.0))
    for key, value in options.items():
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / f"{state_dir.name}.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err)
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        proc.wait()
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        pytest.fail("lambda emulator did not start: " + (" | ".join(tail) or "no output"))
    return LambdaEmulator(proc, json.loads(line)["endpoint"], state_dir, log)


@pytest.fixture
def lambda_emulator_factory(tmp_path, monkeypatch):
    started: list[LambdaEmulator] = []

    def start(**options) -> LambdaEmulator:
        emulator = start_emulator(tmp_path / f"lambda-emulator-{len(started)}", **options)
        started.append(emulator)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", emulator.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        return emulator

    yield start
    for emulator in started:
        returncode = emulator.stop()
        if returncode != 0 and not (returncode == -signal.SIGKILL
                                    and emulator.stopped_with == signal.SIGKILL):
            pytest.fail(f"lambda emulator exited with {returncode}: "
                        f"{emulator.log.read_text(errors='replace')[-2000:]}")


@pytest.fixture
def lambda_emulator(lambda_emulator_factory) -> LambdaEmulator:
    """A fresh emulator with default options."""
    return lambda_emulator_factory()


# --------------------------------------------------------------------------- the real package


@pytest.fixture(scope="session")
def lambda_build(tmp_path_factory):
    from excamera.awslambda.build import build

    out = tmp_path_factory.mktemp("lambda") / "excamera-lambda.zip"
    try:
        return build(out)
    except CommandError as exc:
        pytest.fail(f"excamera lambda build: {exc}")


@pytest.fixture(scope="session")
def lambda_zip(lambda_build) -> Path:
    return lambda_build.path


@pytest.fixture(scope="session")
def lambda_task_root(lambda_zip, tmp_path_factory) -> Path:
    from lambda_emulator.runtime import unpack_zip

    root = tmp_path_factory.mktemp("task")
    unpack_zip(lambda_zip.read_bytes(), root)
    return root


@pytest.fixture(scope="session")
def lambda_runtime_dir() -> Path:
    from lambda_emulator.runtime import PrerequisiteError, ensure_runtime

    try:
        return ensure_runtime().runtime
    except PrerequisiteError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def python312() -> Path:
    from lambda_emulator.runtime import PrerequisiteError, find_python312

    try:
        return find_python312()
    except PrerequisiteError as exc:
        pytest.fail(str(exc))
