"""Tests of the Lambda emulator itself (tests/lambda_emulator/), with a hand-made zip.

Every call goes through an unmodified boto3 client (or raw HTTP where the point is what a client
sends) to the emulator process, which runs the zip's handler under awslambdaric in Python 3.12.
The figures it reports are emulated; these tests assert behaviour and order, not timings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import locale
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from lambda_fixtures import REPO, process_gone

ROLE = "arn:aws:iam::123456789012:role/excamera-test"

HANDLER = r'''
import json, os, resource, socket, subprocess, sys, time

COUNT = 0
print("init: handler module imported")


def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action")
    print("handling", action, "count", COUNT)
    if action == "env":
        return {"env": dict(os.environ), "cwd": os.getcwd(), "sys_path": sys.path,
                "modes": {p: os.stat(p).st_mode & 0o777 for p in ("bin/tool", "data.txt")},
                "tool": subprocess.run(["bin/tool"], capture_output=True, text=True).stdout,
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}
    if action == "raise":
        raise ValueError("boom " + str(event.get("tag")))
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(event["code"])
    if action == "hang_with_child":
        child = subprocess.Popen(["sleep", "300"])
        with open(event["pidfile"], "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        time.sleep(600)
    if action == "connect":
        with socket.create_connection(("127.0.0.1", event["port"])) as sock:
            sock.sendall(context.aws_request_id.encode() + b"\n")
            sock.recv(1)
    if action == "big":
        return "x" * event["n"]
    if action == "size":
        return {"len": len(event["blob"])}
    return {"count": COUNT, "pid": os.getpid(), "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "memory": context.memory_limit_in_mb, "version": "v1"}
'''


def make_zip(files: dict[str, tuple[str, int]]) -> bytes:
    """A zip as a build would make it: fixed dates, Unix modes in external_attr."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (text, mode) in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.create_system = 3
            zf.writestr(info, text)
    return buf.getvalue()


def handler_zip(source: str = HANDLER) -> bytes:
    return make_zip({
        "h.py": (source, 0o644),
        "bin/tool": ("#!/bin/sh\necho tool ran\n", 0o755),
        "data.txt": ("data\n", 0o640),
    })


def create(client, name="fn", zip_bytes=None, **kw):
    kw.setdefault("Timeout", 30)
    return client.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler=kw.pop("Handler", "h.handler"),
        Code={"ZipFile": zip_bytes or handler_zip()}, **kw)


def invoke(client, name="fn", event=None, **kw):
    resp = client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **kw)
    resp["body"] = json.loads(resp["Payload"].read() or b"null")
    if "LogResult" in resp:
        resp["log"] = base64.b64decode(resp["LogResult"]).decode(errors="replace")
    return resp


def host_has_locale(name: str) -> bool:
    try:
        saved = locale.setlocale(locale.LC_CTYPE)
        locale.setlocale(locale.LC_CTYPE, name)
    except locale.Error:
        return False
    locale.setlocale(locale.LC_CTYPE, saved)
    return True


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


# --------------------------------------------------------------------------- control plane


def test_control_plane_through_boto3(lambda_emulator):
    client = boto3.client("lambda", config=Config(retries={"total_max_attempts": 1}))
    zip_v1 = handler_zip()
    created = create(client, zip_bytes=zip_v1, MemorySize=512, Timeout=60,
                     Environment={"Variables": {"STAGE": "one"}})
    expected_sha = base64.b64encode(hashlib.sha256(zip_v1).digest()).decode()
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["CodeSha256"] == expected_sha and created["CodeSize"] == len(zip_v1)
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn"

    got = client.get_function(FunctionName="fn")
    cfg = got["Configuration"]
    assert (cfg["State"], cfg["LastUpdateStatus"]) == ("Active", "Successful")
    assert (cfg["MemorySize"], cfg["Timeout"], cfg["Runtime"]) == (512, 60, "python3.12")
    assert cfg["Environment"]["Variables"] == {"STAGE": "one"}
    with urllib.request.urlopen(got["Code"]["Location"]) as resp:
        assert resp.read() == zip_v1
    with pytest.raises(client.exceptions.ResourceConflictException):
        create(client)

    zip_v2 = handler_zip(HANDLER.replace('"version": "v1"', '"version": "v2"'))
    updated = client.update_function_code(FunctionName="fn", ZipFile=zip_v2)
    assert updated["CodeSha256"] == base64.b64encode(hashlib.sha256(zip_v2).digest()).decode()
    assert updated["RevisionId"] != cfg["RevisionId"]
    client.get_waiter("function_updated_v2").wait(FunctionName="fn")
    client.update_function_configuration(FunctionName="fn", MemorySize=1024, Timeout=900,
                                         Environment={"Variables": {"STAGE": "two"}})
    cfg = client.get_function_configuration(FunctionName="fn")
    assert (cfg["MemorySize"], cfg["Timeout"]) == (1024, 900)
    assert cfg["Environment"]["Variables"] == {"STAGE": "two"}
    assert invoke(client)["body"]["version"] == "v2"
    with pytest.raises(client.exceptions.PreconditionFailedException):
        client.update_function_configuration(FunctionName="fn", Timeout=5, RevisionId="stale")

    assert client.put_function_event_invoke_config(
        FunctionName="fn", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60,
    )["MaximumRetryAttempts"] == 0
    event_cfg = client.get_function_event_invoke_config(FunctionName="fn")
    assert (event_cfg["MaximumRetryAttempts"], event_cfg["MaximumEventAgeInSeconds"]) == (0, 60)

    assert client.get_function_concurrency(FunctionName="fn").get(
        "ReservedConcurrentExecutions") is None
    client.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=50)
    assert client.get_function_concurrency(
        FunctionName="fn")["ReservedConcurrentExecutions"] == 50
    settings = client.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 950
    assert settings["AccountUsage"] == {"TotalCodeSize": len(zip_v2), "FunctionCount": 1}
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="minimum"):
        client.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=901)
    client.delete_function_concurrency(FunctionName="fn")
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000

    # Functions live per region, as on AWS.
    with pytest.raises(lambda_emulator.client("eu-west-1").exceptions.ResourceNotFoundException):
        lambda_emulator.client("eu-west-1").get_function(FunctionName="fn")
    client.delete_function(FunctionName="fn")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_configuration(FunctionName="fn")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"MemorySize": 10_241}, "MemorySize 10241 is outside"),
        ({"Timeout": 901}, "Timeout 901 is outside"),
        ({"Runtime": "python3.11"}, "python3.11"),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "reserved keys"),
        ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, "4KB"),
        ({"Architectures": ["arm64"]}, "arm64"),
        ({"Layers": ["arn:aws:lambda:us-east-1:123456789012:layer:l:1"]}, "Layers is not"),
        ({"Role": "not-a-role"}, "role"),
        ({"Code": {"ZipFile": b"not a zip"}}, "Could not unzip"),
        ({"Code": {"ZipFile": make_zip({"../evil.py": ("", 0o644)})}}, "Invalid path"),
    ],
)
def test_create_refuses_what_lambda_refuses(lambda_emulator, changes, message):
    client = lambda_emulator.client()
    request = {"FunctionName": "bad", "Runtime": "python3.12", "Role": ROLE,
               "Handler": "h.handler", "Code": {"ZipFile": handler_zip()}, **changes}
    with pytest.raises(client.exceptions.InvalidParameterValueException, match=message):
        client.create_function(**request)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="bad")


def test_pending_and_in_progress_states_are_waited_for(lambda_emulator_factory):
    emulator = lambda_emulator_factory(update_seconds=1.5)
    client = emulator.client()
    assert create(client)["State"] == "Pending"
    with pytest.raises(client.exceptions.ResourceConflictException, match="Pending"):
        invoke(client)
    client.get_waiter("function_active_v2").wait(FunctionName="fn")
    assert invoke(client)["body"]["count"] == 1
    client.update_function_configuration(FunctionName="fn", Timeout=10)
    assert client.get_function_configuration(FunctionName="fn")["LastUpdateStatus"] == (
        "InProgress")
    with pytest.raises(client.exceptions.ResourceConflictException, match="in progress"):
        client.update_function_configuration(FunctionName="fn", Timeout=11)
    client.get_waiter("function_updated_v2").wait(FunctionName="fn")
    assert client.get_function_configuration(FunctionName="fn")["Timeout"] == 10


def test_requests_must_be_signed(lambda_emulator):
    url = lambda_emulator.endpoint + "/2015-03-31/functions/fn/invocations"
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"))
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    unsigned = lambda_emulator.client(signature_version=UNSIGNED)
    with pytest.raises(ClientError) as excinfo:
        unsigned.get_account_settings()
    assert error_code(excinfo) == "MissingAuthenticationTokenException"


# --------------------------------------------------------------------------- invoke


def test_sync_invoke_tail_log_and_warm_reuse(lambda_emulator):
    client = lambda_emulator.client()
    create(client, MemorySize=256)
    first = invoke(client, event={"action": "count"}, LogType="Tail")
    second = invoke(client, event={"action": "count"}, LogType="Tail")
    assert first["StatusCode"] == 200 and "FunctionError" not in first
    assert first["ExecutedVersion"] == "$LATEST"
    # One process served both: its module-level counter went on.
    assert (first["body"]["count"], second["body"]["count"]) == (1, 2)
    assert first["body"]["pid"] == second["body"]["pid"]
    assert first["body"]["memory"] == "256" and 0 < first["body"]["remaining_ms"] <= 30_000
    rid = first["body"]["request_id"]
    assert first["ResponseMetadata"]["RequestId"] == rid
    log = first["log"]
    assert log.index("INIT_START") < log.index("init: handler module imported") < log.index(
        f"START RequestId: {rid}") < log.index("handling count count 1") < log.index(
        f"END RequestId: {rid}") < log.index(f"REPORT RequestId: {rid}")
    assert "Init Duration:" in log and log.rstrip().endswith("(emulated)")
    assert "INIT_START" not in second["log"] and "Init Duration" not in second["log"]

    records = [r for r in lambda_emulator.records() if r["status"] == "ok"]
    assert [r["cold"] for r in records] == [True, False]
    assert all(r["emulated"] and r["memory_mb"] == 256 for r in records)
    assert records[0]["init_ms"] > 0 and records[1]["init_ms"] == 0
    assert records[0]["billed_ms"] >= records[0]["init_ms"] + records[0]["duration_ms"]
    stats = lambda_emulator.stats()
    assert (stats["cold_starts"], stats["warm_starts"], stats["invocations"]) == (1, 1, 2)


def test_tail_is_the_last_4kb(lambda_emulator):
    source = HANDLER.replace('    action = event.get("action")\n',
                             '    action = event.get("action")\n    print("y" * 10000)\n')
    client = lambda_emulator.client()
    create(client, zip_bytes=handler_zip(source))
    resp = invoke(client, LogType="Tail")
    assert len(base64.b64decode(resp["LogResult"])) == 4096
    assert "REPORT RequestId" in resp["log"] and "INIT_START" not in resp["log"]


def test_function_error_shape(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    resp = invoke(client, event={"action": "raise", "tag": 7}, LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    body = resp["body"]
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "boom 7")
    assert any("raise ValueError" in line for line in body["stackTrace"])
    assert "[ERROR] ValueError: boom 7" in resp["log"]
    # A handler exception leaves the environment usable.
    assert invoke(client)["body"]["count"] == 2


def test_init_error(lambda_emulator):
    client = lambda_emulator.client()
    create(client, Handler="missing.handler")
    resp = invoke(client)
    assert resp["FunctionError"] == "Unhandled"
    assert resp["body"]["errorType"] == "Runtime.ImportModuleError"
    assert "missing" in resp["body"]["errorMessage"]
    assert lambda_emulator.records()[-1]["status"] == "init_error"


def test_environment_is_built_from_scratch(lambda_emulator_factory, monkeypatch):
    # The marker is in the test's environment and so in the emulator's: neither may leak.
    monkeypatch.setenv("EXCAMERA_EMULATOR_MARKER", "leaked")
    emulator = lambda_emulator_factory(role_env={"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"})
    client = emulator.client()
    create(client, Environment={"Variables": {"STAGE": "test"}})
    got = invoke(client, event={"action": "env"})["body"]
    env = got["env"]
    assert "EXCAMERA_EMULATOR_MARKER" not in env
    # Python itself adds LC_CTYPE (PEP 538 coercion) where the host lacks Lambda's locale.
    assert set(env) - ({"LC_CTYPE"} if not host_has_locale("en_US.UTF-8") else set()) == {
        "PATH", "LD_LIBRARY_PATH", "LANG", "PYTHONPATH", "TMPDIR", "STAGE", "_HANDLER",
        "AWS_EXECUTION_ENV", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR", "TZ", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "_X_AMZN_TRACE_ID",
    }
    assert env["STAGE"] == "test" and env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12" and env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn" and env["_HANDLER"] == "h.handler"
    task_root = env["LAMBDA_TASK_ROOT"]
    assert got["cwd"] == task_root and got["sys_path"][0] == task_root
    assert env["PYTHONPATH"] == env["LAMBDA_RUNTIME_DIR"] in got["sys_path"]
    assert f"{task_root}:{task_root}/lib" in env["LD_LIBRARY_PATH"]
    assert not any(".venv" in p or ("site-packages" in p and os.listdir(p))
                   for p in got["sys_path"] if os.path.isdir(p))
    assert env["TMPDIR"].startswith(str(emulator.state_dir)) and os.path.isdir(env["TMPDIR"])
    # AWS's task root is read-only: Python wrote no bytecode into this one either.
    assert os.path.isfile(f"{task_root}/h.py")
    assert not [p for p in os.listdir(task_root) if p == "__pycache__"]
    # The zip's modes survive unpacking: bin/tool runs, data.txt keeps 0640.
    assert got["modes"] == {"bin/tool": 0o755, "data.txt": 0o640}
    assert got["tool"] == "tool ran\n"
    assert got["nofile"] == [1024, 1024]  # Lambda's quota, not the emulator's raised limit


@pytest.mark.parametrize("where", ["pyenv", "explicit"])
def test_missing_python312_is_one_clear_line(tmp_path, where):
    env = {k: v for k, v in os.environ.items() if k != "EXCAMERA_LAMBDA_PYTHON"}
    if where == "pyenv":
        env["PYENV_ROOT"] = str(tmp_path / "pyenv")
        expected = (f"Python 3.12 not found in {tmp_path}/pyenv/versions (install it with "
                    "`pyenv install 3.12`, or set EXCAMERA_LAMBDA_PYTHON to a python3.12)")
    else:
        env["EXCAMERA_LAMBDA_PYTHON"] = str(tmp_path / "python3.12")
        expected = f"EXCAMERA_LAMBDA_PYTHON={tmp_path}/python3.12 is not an executable"
    done = subprocess.run(
        [sys.executable, "-m", "tests.lambda_emulator", "--state-dir", str(tmp_path / "s")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"lambda emulator: {expected}"]


def test_payload_limits(lambda_emulator):
    client = lambda_emulator.client()
    create(client)

    def payload(size: int) -> bytes:
        head = b'{"action": "size", "blob": "'
        return head + b"b" * (size - len(head) - 2) + b'"}'

    ok = client.invoke(FunctionName="fn", Payload=payload(6 * 1024 * 1024))
    assert json.loads(ok["Payload"].read())["len"] == 6 * 1024 * 1024 - 30
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="fn", Payload=payload(6 * 1024 * 1024 + 1))
    assert client.invoke(FunctionName="fn", InvocationType="Event",
                         Payload=payload(1024 * 1024))["StatusCode"] == 202
    # The event runs in the background; once it is done, the one environment is idle again and
    # every invocation below lands in it until it is retired.
    lambda_emulator.wait_records(lambda rs: len([r for r in rs if "env" in r]) >= 2)
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="fn", InvocationType="Event", Payload=payload(1024 * 1024 + 1))
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="fn", Payload=b"{not json")
    assert client.invoke(FunctionName="fn", InvocationType="DryRun")["StatusCode"] == 204
    # A response over 6 MB is a function error, as on Lambda.
    big = invoke(client, event={"action": "big", "n": 6 * 1024 * 1024 + 10})
    assert big["FunctionError"] == "Unhandled"
    assert big["body"]["errorType"] == "Function.ResponseSizeTooLarge"
    assert invoke(client)["body"]["count"] == 1  # in a new environment


def test_timeout_kills_the_process_group(lambda_emulator, tmp_path):
    client = lambda_emulator.client()
    create(client, Timeout=2)
    pidfile = tmp_path / "pids"
    resp = invoke(client, event={"action": "hang_with_child", "pidfile": str(pidfile)},
                  LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert resp["body"]["errorType"] == "Sandbox.Timedout"
    assert resp["body"]["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert "Task timed out after 2.00 seconds" in resp["log"] and "Status: timeout" in resp["log"]
    runtime_pid, child_pid = map(int, pidfile.read_text().split())
    deadline = time.monotonic() + 10
    while not (process_gone(runtime_pid) and process_gone(child_pid)):
        assert time.monotonic() < deadline, "timed-out environment's processes survived"
        time.sleep(0.05)
    record = lambda_emulator.records()[-1]
    assert record["status"] == "timeout" and record["duration_ms"] >= 2000
    # The next invocation gets a new environment.
    after = invoke(client)
    assert after["body"]["count"] == 1 and after["body"]["pid"] != runtime_pid


def test_timeout_fault_freezes_the_next_invocation(lambda_emulator):
    client = lambda_emulator.client()
    create(client, Timeout=1)
    warm_pid = invoke(client)["body"]["pid"]
    lambda_emulator.fault("timeout")
    resp = invoke(client)
    assert resp["body"]["errorType"] == "Sandbox.Timedout"
    assert resp["body"]["errorMessage"].endswith("Task timed out after 1.00 seconds")
    after = invoke(client)["body"]
    assert after["count"] == 1 and after["pid"] != warm_pid
    assert [r["status"] for r in lambda_emulator.records()] == ["ok", "timeout", "ok"]
    assert lambda_emulator.stats()["faults_applied"]["timeout"] == 1


def test_crashes_are_runtime_exit_errors(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    resp = invoke(client, event={"action": "exit", "code": 3})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["body"]["errorType"] == "Runtime.ExitError"
    assert resp["body"]["errorMessage"].endswith("Runtime exited with error: exit status 3")
    pid = invoke(client)["body"]["pid"]
    lambda_emulator.fault("crash")
    resp = invoke(client, event={"action": "sleep", "seconds": 30})
    assert resp["body"]["errorType"] == "Runtime.ExitError"
    assert resp["body"]["errorMessage"].endswith("Runtime exited with error: signal: killed")
    after = invoke(client)["body"]
    assert after["count"] == 1 and after["pid"] != pid
    assert [r["status"] for r in lambda_emulator.records()] == ["crash", "ok", "crash", "ok"]
    assert [r["cold"] for r in lambda_emulator.records()] == [True, True, False, True]


# --------------------------------------------------------------------------- throttling


def test_throttle_fault_raises_the_modelled_exception_then_succeeds(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    lambda_emulator.fault("throttle", count=2)
    for _ in range(2):
        with pytest.raises(client.exceptions.TooManyRequestsException) as excinfo:
            invoke(client)
        assert excinfo.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert invoke(client)["body"]["count"] == 1
    # botocore classifies it as throttling: with its retries on, one 429 is retried away.
    lambda_emulator.fault("throttle", reason="ReservedFunctionConcurrentInvocationLimitExceeded")
    retrying = lambda_emulator.client(retries={"mode": "standard", "total_max_attempts": 3})
    resp = retrying.invoke(FunctionName="fn", Payload=b"{}")
    assert resp["ResponseMetadata"]["RetryAttempts"] == 1
    stats = lambda_emulator.stats()
    assert stats["throttles"] == 3 and stats["faults_applied"]["throttle"] == 3
    assert [r["status"] for r in lambda_emulator.records()] == [
        "throttled", "throttled", "ok", "throttled", "ok"]


def test_reserved_concurrency_throttles_sync_invokes(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    client.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=2)
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(invoke, client, "fn", {"action": "sleep", "seconds": 3})
                   for _ in range(2)]
        lambda_emulator.wait_stats("environments_busy", 2)
        with pytest.raises(client.exceptions.TooManyRequestsException) as excinfo:
            invoke(client)
        assert excinfo.value.response["Reason"] == (
            "ReservedFunctionConcurrentInvocationLimitExceeded")
        assert all(f.result()["StatusCode"] == 200 for f in running)
    assert "FunctionError" not in invoke(client)
    client.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=0)
    with pytest.raises(client.exceptions.TooManyRequestsException):
        invoke(client)


def test_account_concurrency_throttles_sync_and_queues_events(lambda_emulator_factory):
    emulator = lambda_emulator_factory(account_concurrency=1)
    client = emulator.client()
    create(client)
    assert client.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(invoke, client, "fn", {"action": "sleep", "seconds": 2})
        emulator.wait_stats("environments_busy", 1)
        with pytest.raises(client.exceptions.TooManyRequestsException) as excinfo:
            invoke(client)
        assert excinfo.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
        # An Event invoke is accepted and waits for the slot instead.
        queued = client.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")
        assert queued["StatusCode"] == 202
        assert first.result()["StatusCode"] == 200
    rid = queued["ResponseMetadata"]["RequestId"]
    records = emulator.wait_records(
        lambda rs: any(r.get("request_id") == rid and r["status"] == "ok" for r in rs))
    sync_ok = next(r for r in records if r["status"] == "ok" and r["invocation_type"] ==
                   "RequestResponse")
    event_ok = next(r for r in records if r.get("request_id") == rid)
    assert event_ok["started_at"] >= sync_ok["ended_at"]
    assert emulator.stats()["event_throttles"] >= 1


# --------------------------------------------------------------------------- Event invokes


def send_event(client, event=None) -> str:
    resp = client.invoke(FunctionName="fn", InvocationType="Event",
                         Payload=json.dumps(event or {}).encode())
    assert resp["StatusCode"] == 202
    return resp["ResponseMetadata"]["RequestId"]


def attempts(emulator, request_id: str, expect: int, settle_s: float = 1.0) -> list[dict]:
    """The records of ``request_id`` once there are ``expect`` and no more within settle_s."""
    emulator.wait_records(
        lambda rs: len([r for r in rs if r.get("request_id") == request_id]) >= expect)
    time.sleep(settle_s)
    mine = [r for r in emulator.records() if r.get("request_id") == request_id]
    assert len(mine) == expect, mine
    return mine


def test_event_invokes_retry_function_errors(lambda_emulator_factory):
    emulator = lambda_emulator_factory(event_retry_delays=(0.2, 0.4))
    client = emulator.client()
    create(client)
    client.put_function_event_invoke_config(FunctionName="fn", MaximumRetryAttempts=1)
    ok_id = send_event(client)
    fail_id = send_event(client, {"action": "raise"})
    assert [(r["attempt"], r["status"], r["error_type"]) for r in attempts(emulator, fail_id, 2)
            ] == [(0, "error", "ValueError"), (1, "error", "ValueError")]
    assert [r["status"] for r in attempts(emulator, ok_id, 1)] == ["ok"]
    client.put_function_event_invoke_config(FunctionName="fn", MaximumRetryAttempts=0)
    assert len(attempts(emulator, send_event(client, {"action": "raise"}), 1)) == 1


def test_duplicate_delivery_fault(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    lambda_emulator.fault("duplicate")
    mine = attempts(lambda_emulator, send_event(client), 2)
    assert all(r["status"] == "ok" and r["attempt"] == 0 for r in mine)
    assert sorted(r["duplicate"] for r in mine) == [False, True]
    # Only the next one: a second Event invoke is delivered once.
    attempts(lambda_emulator, send_event(client), 1)


def test_queued_event_is_dropped_when_its_function_is_deleted(lambda_emulator):
    client = lambda_emulator.client()
    create(client)
    client.put_function_concurrency(FunctionName="fn", ReservedConcurrentExecutions=0)
    rid = send_event(client)
    lambda_emulator.wait_stats("event_throttles", 2)
    client.delete_function(FunctionName="fn")
    assert [(r["status"], r["error_type"]) for r in attempts(lambda_emulator, rid, 1)] == [
        ("dropped", "FunctionDeleted")]


# --------------------------------------------------------------------------- lifecycle, scale


def test_shutdown_leaves_no_process(lambda_emulator_factory, tmp_path):
    emulator = lambda_emulator_factory()
    client = emulator.client()
    create(client)
    pidfile = tmp_path / "pids"
    client.invoke(FunctionName="fn", InvocationType="Event",  # a busy environment, with a child
                  Payload=json.dumps({"action": "hang_with_child", "pidfile": str(pidfile)}))
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runtime_pid, child_pid = map(int, pidfile.read_text().split())
    invoke(client)  # and an idle one
    envs = emulator.environments()
    assert len(envs) == 2 and runtime_pid in {e["pid"] for e in envs}
    assert emulator.stop() == 0  # also fails the test if an environment outlived it
    assert process_gone(runtime_pid) and process_gone(child_pid)
    assert not (emulator.state_dir / "envs").exists() or not any(
        (emulator.state_dir / "envs").iterdir())


def test_environments_die_with_a_killed_emulator(lambda_emulator_factory):
    emulator = lambda_emulator_factory()
    client = emulator.client()
    create(client)
    client.invoke(FunctionName="fn", InvocationType="Event",
                  Payload=json.dumps({"action": "sleep", "seconds": 300}).encode())
    emulator.wait_stats("environments_busy", 1)
    invoke(client)
    pids = {e["pid"] for e in emulator.environments()}
    assert len(pids) == 2
    # SIGKILL gives the emulator no chance to clean up; PR_SET_PDEATHSIG ends the runtimes.
    assert emulator.stop(signal.SIGKILL) == -signal.SIGKILL


def test_many_concurrent_environments(lambda_emulator):
    """100 Event invokes whose handlers all connect back and wait: all run at once."""
    n = 100
    client = lambda_emulator.client(max_pool_connections=16)
    create(client, Timeout=120)
    server = socket.create_server(("127.0.0.1", 0), backlog=n)
    port = server.getsockname()[1]
    conns: list[socket.socket] = []
    t0 = time.monotonic()

    def accept_all():
        server.settimeout(120)
        while len(conns) < n:
            conn, _ = server.accept()
            conns.append(conn)

    acceptor = threading.Thread(target=accept_all)
    acceptor.start()
    payload = json.dumps({"action": "connect", "port": port}).encode()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: client.invoke(
            FunctionName="fn", InvocationType="Event", Payload=payload)["StatusCode"], range(n)))
    t_submitted = time.monotonic() - t0
    acceptor.join(timeout=150)
    t_all_connected = time.monotonic() - t0
    assert codes == [202] * n and len(conns) == n
    peak = lambda_emulator.stats()
    assert peak["environments_busy"] == n and peak["cold_starts"] == n
    ids = {c.makefile("rb").readline().strip().decode() for c in conns}
    for c in conns:
        c.sendall(b"x")
        c.close()
    server.close()
    records = lambda_emulator.wait_records(
        lambda rs: len([r for r in rs if r["status"] == "ok"]) == n)
    assert {r["request_id"] for r in records} == ids
    print(f"\nemulated: {n} Event invokes submitted in {t_submitted:.2f} s, all {n} handlers "
          f"connected after {t_all_connected:.2f} s; emulator CPU {peak['emulator_cpu_s']} s, "
          f"max RSS {peak['emulator_max_rss_mb']} MB; environments' RSS "
          f"{peak['environments_rss_mb']} MB", file=sys.stderr)


def test_environment_cap_reuses_idle_environments(lambda_emulator_factory):
    """At --max-environments, invocations wait for an idle environment instead of starting more
    (a deviation from AWS for this host's memory, off by default)."""
    emu = lambda_emulator_factory(max_environments=2)
    client = emu.client(max_pool_connections=8)
    create(client, Timeout=60)
    payload = json.dumps({"action": "sleep", "seconds": 0.5}).encode()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.invoke(FunctionName="fn", Payload=payload),
                                range(6)))
    assert all(r["StatusCode"] == 200 and "FunctionError" not in r for r in results)
    stats = emu.stats()
    assert stats["cold_starts"] == 2 and stats["warm_starts"] == 4
    assert stats["waited_at_environment_cap"] >= 1
    assert stats["environments"] <= 2
