"""``excamera lambda deploy`` against the control plane of moto's standalone server.

moto cannot run a function without docker, but its Lambda control plane is AWS's API as botocore
models it: create, update, the Active/updated waiters, get, the event-invoke configuration and
reserved concurrency. The package here is a small hand-made zip in the shape the build makes
(its ``excamera_code.json``); the real zip runs in the emulator tests.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest

from excamera.awslambda.deploy import (
    HANDLER,
    DeployError,
    DeployOptions,
    code_of,
    deploy,
    read_package,
)

CODE = {"version": "0.1.0", "xc_build": "0" * 16, "python": "1" * 16}
ASSUME = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


def make_zip(path: Path, marker: str, code: dict | None = CODE) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("excamera/awslambda/handler.py", f"def handler(e, c):\n    return {marker!r}\n")
        if code is not None:
            z.writestr("excamera_code.json", json.dumps(code))
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def role(s3_env) -> str:
    iam = boto3.client("iam", endpoint_url=s3_env)
    try:
        return iam.create_role(RoleName="excamera-worker",
                               AssumeRolePolicyDocument=json.dumps(ASSUME))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName="excamera-worker")["Role"]["Arn"]


def test_create_then_update_then_unchanged(tmp_path: Path, role: str, s3_env) -> None:
    said: list[str] = []
    z1 = make_zip(tmp_path / "a.zip", "one")
    opts = DeployOptions(z1, role, ["us-east-1", "eu-west-1"], memory_mb=2048, timeout_s=120,
                         reserved_concurrency=50)
    name = deploy(opts, say=said.append)
    digest = hashlib.sha256(z1.read_bytes()).hexdigest()
    assert name == f"excamera-{digest[:16]}"  # named after the package's hash
    assert said == [f"us-east-1: created {name}", f"eu-west-1: created {name}"]
    for region in ("us-east-1", "eu-west-1"):
        c = boto3.client("lambda", region_name=region)
        cfg = c.get_function(FunctionName=name)["Configuration"]
        assert cfg["State"] == "Active"
        assert cfg["Runtime"] == "python3.12" and cfg["Handler"] == HANDLER
        assert cfg["MemorySize"] == 2048 and cfg["Timeout"] == 120
        assert cfg["CodeSha256"] == base64.b64encode(bytes.fromhex(digest)).decode()
        assert code_of(cfg["Description"]) == CODE
        eic = c.get_function_event_invoke_config(FunctionName=name)
        assert eic["MaximumRetryAttempts"] == 0 and eic["MaximumEventAgeInSeconds"] == 60
        assert c.get_function_concurrency(FunctionName=name)[
            "ReservedConcurrentExecutions"] == 50

    # The same package again: nothing to do but say so.
    said.clear()
    assert deploy(opts, say=said.append) == name
    assert said == [f"us-east-1: {name} is up to date", f"eu-west-1: {name} is up to date"]

    # A configuration change is applied in place; a new package is a new function.
    said.clear()
    opts.memory_mb = 3008
    opts.regions = ["us-east-1"]
    deploy(opts, say=said.append)
    assert said == [f"us-east-1: updated MemorySize of {name}"]
    c = boto3.client("lambda", region_name="us-east-1")
    assert c.get_function_configuration(FunctionName=name)["MemorySize"] == 3008
    z2 = make_zip(tmp_path / "b.zip", "two")
    assert deploy(DeployOptions(z2, role, ["us-east-1"]), say=said.append) != name


def test_update_code_under_a_given_name(tmp_path: Path, role: str, s3_env) -> None:
    said: list[str] = []
    z1 = make_zip(tmp_path / "a.zip", "first")
    z2 = make_zip(tmp_path / "b.zip", "second")
    deploy(DeployOptions(z1, role, ["us-east-1"], name="excamera-pinned"), say=said.append)
    deploy(DeployOptions(z2, role, ["us-east-1"], name="excamera-pinned"), say=said.append)
    assert said[-1] == "us-east-1: updated the code of excamera-pinned"
    cfg = boto3.client("lambda", region_name="us-east-1").get_function_configuration(
        FunctionName="excamera-pinned")
    assert cfg["CodeSha256"] == read_package(z2).code_sha256_b64


def test_bad_inputs_are_one_line(tmp_path: Path, role: str, s3_env) -> None:
    z = make_zip(tmp_path / "a.zip", "x")
    for opts, want in [
        (DeployOptions(z, role, ["us-east-1"], memory_mb=64), "Lambda allows 128..10240 MB"),
        (DeployOptions(z, role, ["us-east-1"], timeout_s=1000), "Lambda allows 1..900 s"),
        (DeployOptions(z, "my-role", ["us-east-1"]), "expected an IAM role ARN"),
        (DeployOptions(make_zip(tmp_path / "n.zip", "x", code=None), role, ["us-east-1"]),
         "not a package made by excamera lambda build"),
        (DeployOptions(tmp_path / "missing.zip", role, ["us-east-1"]), "No such file"),
    ]:
        with pytest.raises(DeployError, match=want) as err:
            deploy(opts, say=lambda _: None)
        assert "\n" not in str(err.value)
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * (50 * 1024 * 1024 + 1))
    with pytest.raises(DeployError, match="over Lambda's 50 MB limit"):
        deploy(DeployOptions(big, role, ["us-east-1"]), say=lambda _: None)


def test_deploy_command_prints_the_function_name(tmp_path: Path, role: str, s3_env) -> None:
    import os
    import subprocess
    import sys

    z = make_zip(tmp_path / "a.zip", "cli")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "python")
    run = [sys.executable, "-m", "excamera.cli", "lambda", "deploy", str(z), "--role", role,
           "-r", "us-west-2", "--memory", "1024"]
    done = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    assert name == read_package(z).function_name
    assert f"us-west-2: created {name}" in done.stderr
    cfg = boto3.client("lambda", region_name="us-west-2").get_function_configuration(
        FunctionName=name)
    assert cfg["MemorySize"] == 1024
    bad = subprocess.run([*run[:-1], "99999"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("excamera lambda: error: --memory 99999: Lambda allows "
                                  "128..10240 MB")
