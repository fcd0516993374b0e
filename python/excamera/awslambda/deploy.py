"""``excamera lambda deploy``: create or update the worker function and wait until it is Active.

The function is named after the package's hash (``excamera-<16 hex digits of its SHA-256>``),
so two versions never mix: a new build is a new function, and deploying the same zip again
changes nothing but the configuration. Its description records the code identity the zip was
built from (``excamera_code.json`` in the zip), which the Lambda backend checks before it
launches anything. Asynchronous invocations are never retried by Lambda (retries 0, events
older than a minute dropped): the coordinator retries, with a fresh token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNTIME = "python3.12"
HANDLER = "excamera.awslambda.handler.handler"
CODE_FILE = "excamera_code.json"
CODE_MARKER = "excamera-code:"
#: Lambda's limits for on-demand functions and direct uploads.
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
MEMORY_RANGE = (128, 10240)
TIMEOUT_RANGE = (1, 900)
WAIT_DELAY_S = 1
WAIT_ATTEMPTS = 300


class DeployError(Exception):
    """The function could not be deployed (one line, names what failed)."""


@dataclass
class DeployOptions:
    zip_path: Path
    role: str
    regions: list[str]
    memory_mb: int = 1769  # one full vCPU: Lambda gives 1 vCPU per 1,769 MB
    timeout_s: int = 300
    architecture: str = "x86_64"
    name: str | None = None
    reserved_concurrency: int | None = None

    def check(self) -> None:
        lo, hi = MEMORY_RANGE
        if not lo <= self.memory_mb <= hi:
            raise DeployError(f"--memory {self.memory_mb}: Lambda allows {lo}..{hi} MB")
        lo, hi = TIMEOUT_RANGE
        if not lo <= self.timeout_s <= hi:
            raise DeployError(f"--timeout {self.timeout_s}: Lambda allows {lo}..{hi} s")
        if not self.role.startswith("arn:"):
            raise DeployError(f"--role {self.role!r}: expected an IAM role ARN "
                              "(arn:aws:iam::ACCOUNT:role/NAME)")
        if not self.regions:
            raise DeployError("no region given")
        if self.architecture not in ("x86_64", "arm64"):
            raise DeployError(f"architecture {self.architecture!r}: expected x86_64 or arm64")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 0:
            raise DeployError("--concurrency must be >= 0")


@dataclass
class Package:
    data: bytes
    sha256_hex: str
    code: dict[str, str]

    @property
    def code_sha256_b64(self) -> str:
        """The package's hash as Lambda reports it (CodeSha256: base64 of the raw digest)."""
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode()

    @property
    def function_name(self) -> str:
        return f"excamera-{self.sha256_hex[:16]}"

    @property
    def description(self) -> str:
        return f"excamera worker; {CODE_MARKER}{json.dumps(self.code, sort_keys=True)}"


def code_of(description: str) -> dict[str, str] | None:
    """The code identity a deploy wrote into a function's description (None if none)."""
    if CODE_MARKER not in description:
        return None
    try:
        obj = json.loads(description.split(CODE_MARKER, 1)[1].strip())
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def read_package(path: Path) -> Package:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeployError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > DIRECT_UPLOAD_LIMIT:
        raise DeployError(f"{path}: {len(data)} bytes is over Lambda's 50 MB limit for a "
                          "direct upload")
    try:
        with zipfile.ZipFile(path) as z:
            code = json.loads(z.read(CODE_FILE))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise DeployError(f"{path}: not a package made by excamera lambda build "
                          f"(no {CODE_FILE})") from None
    return Package(data, hashlib.sha256(data).hexdigest(), code)


def deploy(opts: DeployOptions, *, say: Callable[[str], None] = print,
           client_factory: Callable[[str], Any] | None = None) -> str:
    """Deploy to every region; returns the function's name."""
    opts.check()
    pkg = read_package(opts.zip_path)
    name = opts.name or pkg.function_name
    make = client_factory or _client
    for region in opts.regions:
        _deploy_one(make(region), region, name, pkg, opts, say)
    return name


def _client(region: str) -> Any:
    import boto3

    return boto3.client("lambda", region_name=region)


def _deploy_one(client: Any, region: str, name: str, pkg: Package, opts: DeployOptions,
                say: Callable[[str], None]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    config = {
        "Role": opts.role,
        "Handler": HANDLER,
        "Runtime": RUNTIME,
        "Description": pkg.description,
        "Timeout": opts.timeout_s,
        "MemorySize": opts.memory_mb,
        "EphemeralStorage": {"Size": 512},
    }
    try:
        try:
            current = client.get_function(FunctionName=name)["Configuration"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            current = None
        if current is None:
            client.create_function(FunctionName=name, Code={"ZipFile": pkg.data},
                                   Architectures=[opts.architecture], Publish=False, **config)
            _wait(client, "function_active_v2", name)
            say(f"{region}: created {name}")
        else:
            new_code = current.get("CodeSha256") != pkg.code_sha256_b64
            if new_code:
                client.update_function_code(FunctionName=name, ZipFile=pkg.data,
                                            Architectures=[opts.architecture])
                _wait(client, "function_updated_v2", name)
                say(f"{region}: updated the code of {name}")
            changed = {k: v for k, v in config.items() if current.get(k) != v}
            if changed:
                client.update_function_configuration(FunctionName=name, **config)
                _wait(client, "function_updated_v2", name)
                say(f"{region}: updated {', '.join(sorted(changed))} of {name}")
            elif not new_code:
                say(f"{region}: {name} is up to date")
        client.put_function_event_invoke_config(
            FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60)
        if opts.reserved_concurrency is not None:
            client.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=opts.reserved_concurrency)
    except WaiterError as exc:
        raise DeployError(f"{region}: {name} did not become Active: {exc}") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise DeployError(f"{region}: {err.get('Code', 'error')}: "
                          f"{err.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise DeployError(f"{region}: {exc}") from None


def _wait(client: Any, waiter: str, name: str) -> None:
    client.get_waiter(waiter).wait(
        FunctionName=name, WaiterConfig={"Delay": WAIT_DELAY_S, "MaxAttempts": WAIT_ATTEMPTS})
