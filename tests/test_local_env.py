"""The local backend gives a worker an allow-listed environment, not the coordinator's whole one:
checked in a real worker process, by the environment its ``run`` command sees."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

import excamera
from excamera.mu.backends import LocalBackend
from excamera.mu.backends.local import S3_ENV, WORKER_ENV, worker_environment
from excamera.mu.coordinator import Coordinator
from excamera.mu.machines import JobContext, WorkerHandle

pytestmark = pytest.mark.timeout(120)

SECRETS = {
    "MY_SECRET_TOKEN": "tok-123",
    "GITHUB_TOKEN": "ghp-456",
    "DATABASE_PASSWORD": "pw-789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "aws-id",
    "AWS_SESSION_TOKEN": "aws-session",
}


async def env_machine(w: WorkerHandle, ctx: JobContext) -> dict[str, str]:
    w.state = "env"
    # NUL-separated so that values with newlines cannot fake a variable.
    out = (await w.run([sys.executable, "-c", "import os, sys; sys.stdout.write("
                        "'\\0'.join(f'{k}={v}' for k, v in os.environ.items()))"])).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def worker_env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "C")
    coord = Coordinator("env", 1, LocalBackend(tmp_root=tmp_path / "tmp"), str(tmp_path / "b"),
                        env_machine)
    return asyncio.run(coord.run()).outputs[0]


def test_a_local_worker_gets_no_unrelated_secret(tmp_path: Path, monkeypatch) -> None:
    env = worker_env(tmp_path, monkeypatch)
    for name in SECRETS:  # local storage: not even the AWS credentials are needed
        assert name not in env, name
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert env["LANG"] == "C.UTF-8" and env["LC_TIME"] == "C"
    assert env["TMPDIR"].startswith(str(tmp_path / "tmp"))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(
        Path(excamera.__file__).resolve().parent.parent)
    allowed = set(WORKER_ENV) | {"TMPDIR", "PYTHONPATH", "PWD", "SHLVL", "_"}
    extra = {k for k in env if k not in allowed and not k.startswith("LC_")}
    assert extra == set(), extra


def test_the_allow_list_admits_aws_credentials_only_for_s3_storage() -> None:
    source = {"PATH": "/bin", "LC_ALL": "C", "MY_SECRET_TOKEN": "x", "AWS_ACCESS_KEY_ID": "id",
              "AWS_SECRET_ACCESS_KEY": "secret", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_SOMETHING_NEW": "y"}
    assert worker_environment(source, "/some/dir") == {"PATH": "/bin", "LC_ALL": "C"}
    assert worker_environment(source, "file:///some/dir") == {"PATH": "/bin", "LC_ALL": "C"}
    s3 = worker_environment(source, "s3://bucket/prefix")
    assert s3 == {"PATH": "/bin", "LC_ALL": "C", "AWS_ACCESS_KEY_ID": "id",
                  "AWS_SECRET_ACCESS_KEY": "secret", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                  "AWS_DEFAULT_REGION": "us-east-1"}
    assert "MY_SECRET_TOKEN" not in S3_ENV and "AWS_SOMETHING_NEW" not in S3_ENV
