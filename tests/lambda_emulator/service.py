"""The Lambda service API (rest-json, 2015-03-31), the subset excamera's backend uses.

Routes and shapes follow botocore's model, so an unmodified boto3 client reaches this through
``AWS_ENDPOINT_URL_LAMBDA`` and raises the modelled exceptions. Functions live per region (the
region of the request's SigV4 credential scope), with the account's concurrency per region as on
AWS. Emulator-only routes sit under ``/_emulator/`` (see the package docstring).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import math
import os
import re
import resource
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from .httpio import Request, Response
from .runtime import (
    RESERVED_VARIABLES,
    CodeError,
    Environment,
    FunctionSpec,
    Host,
    Invocation,
    Layout,
    Outcome,
    failure,
    unpack_zip,
)

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # RequestResponse request quota
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # Event request quota
CREATE_REQUEST_LIMIT = 69_905_067  # 50 MB of zip, base64-encoded in the JSON body
ZIPPED_LIMIT = 50 * 1024 * 1024
ACCOUNT_TOTAL_CODE = 80_530_636_800  # 75 GB
MIN_UNRESERVED = 100  # reservations may not push the unreserved pool below this
MEMORY_RANGE = (128, 10_240)  # on-demand quotas (botocore's model allows more: managed instances)
TIMEOUT_RANGE = (1, 900)
EPHEMERAL_RANGE = (512, 10_240)
ENV_VARS_LIMIT = 4096
DEFAULT_RETRIES, DEFAULT_EVENT_AGE = 2, 21_600
MAX_RECORDS = 200_000
ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
FUNCTION_REF = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?"
    r"(?:function:)?(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>[A-Za-z0-9_$.-]+))?"
)
CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/")
# CreateFunction / UpdateFunctionConfiguration fields the emulator acts on; any other field
# given a value is refused as "not emulated" rather than accepted and ignored.
CONFIG_FIELDS = {"FunctionName", "Runtime", "Role", "Handler", "Description", "Timeout",
                 "MemorySize", "Environment", "Architectures", "EphemeralStorage", "Tags",
                 "PackageType", "Code", "RevisionId", "Publish"}
FAULT_KINDS = ("throttle", "crash", "timeout", "duplicate")
THROTTLE_REASONS = ("ConcurrentInvocationLimitExceeded", "FunctionInvocationRateLimitExceeded",
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "ReservedFunctionInvocationRateLimitExceeded", "CallerRateLimitExceeded")


class ApiError(Exception):
    """An error response shaped as Lambda sends it (``x-amzn-ErrorType`` + JSON body)."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> Response:
        key = "Message" if self.code in ("ResourceNotFoundException", "ServiceException") else (
            "message")
        body = {"Type": "User" if self.status < 500 else "Service", key: self.message}
        body.update(self.extra)
        return Response.json(self.status, body, {"x-amzn-ErrorType": self.code,
                                                 "x-amzn-RequestId": str(uuid.uuid4())})


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


def not_emulated(what: str) -> ApiError:
    return invalid(f"{what} is not emulated by excamera's Lambda emulator")


@dataclass
class Settings:
    account_concurrency: int = 1000
    role_env: dict = field(default_factory=dict)
    init_timeout_s: float = 10.0  # Lambda's INIT phase limit
    event_retry_delays: tuple = (60.0, 120.0)  # function errors of Event invokes: 1, 2 min
    event_throttle_backoff: tuple = (1.0, 300.0)  # throttled Event invokes: 1 s .. 5 min
    update_seconds: float = 0.0  # how long a create/update stays Pending/InProgress
    max_starting: int = 2 * (os.cpu_count() or 1)  # environments in INIT at once
    # Environments alive at once (0: no cap). This host's memory holds a few hundred real
    # workers' environments, not thousands; at the cap an invocation waits for one of its
    # function's environments to become idle and reuses it, where AWS would start a new one.
    max_environments: int = 0
    account_id: str = "123456789012"


@dataclass
class Function:
    region: str
    name: str
    arn: str
    config: dict  # the FunctionConfiguration fields that are stored as given
    zip_path: Path
    task_root: Path
    code_sha256: str
    code_size: int
    generation: int = 0
    revision: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: str = ""
    busy_until: float = 0.0  # monotonic end of the emulated Pending/InProgress window
    created: bool = False  # busy_until belongs to the create (State Pending)
    reserved: int | None = None
    event_config: dict | None = None
    tags: dict = field(default_factory=dict)
    in_flight: int = 0
    idle: list = field(default_factory=list)
    envs: set = field(default_factory=set)
    deleted: bool = False

    def spec(self) -> FunctionSpec:
        return FunctionSpec(
            self.name, self.region, self.arn, self.config["Handler"], self.config["MemorySize"],
            self.config["Timeout"], dict(self.config.get("Variables") or {}), self.task_root,
            self.generation,
        )


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())


class LambdaService:
    def __init__(self, settings: Settings, layout: Layout, state_dir: Path):
        self.settings = settings
        self.state_dir = state_dir
        self.code_dir = state_dir / "code"
        self.code_dir.mkdir(parents=True, exist_ok=True)
        self.host = Host(layout, dict(settings.role_env), settings.init_timeout_s,
                         state_dir / "envs", state_dir / "logs")
        self.regions: dict[str, dict[str, Function]] = {}
        self.records: list[dict] = []
        self.counts: Counter = Counter()
        self.faults: list[dict] = []
        self.envs: set[Environment] = set()
        self.endpoint = ""
        self._env_ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._start_slots = asyncio.Semaphore(settings.max_starting)
        self._env_change = asyncio.Event()  # set (and replaced) when an environment frees up
        self._queued_starts = 0

    # ------------------------------------------------------------------ dispatch

    async def handle(self, req: Request) -> Response:
        if req.path.startswith("/_emulator/"):
            try:
                return await self._control(req)
            except ApiError as err:
                return Response.json(err.status, {"error": err.message})
        try:
            region = self._authenticate(req)
            return await self._route(region, req)
        except ApiError as err:
            return err.response()

    def _authenticate(self, req: Request) -> str:
        """The caller must sign (SigV4); the signature itself is not checked."""
        auth = req.headers.get("authorization", "")
        if not auth:
            raise ApiError(403, "MissingAuthenticationTokenException",
                           "Missing Authentication Token")
        match = CREDENTIAL.search(auth)
        if not auth.startswith("AWS4-HMAC-SHA256 ") or not match or "x-amz-date" not in (
                req.headers):
            raise ApiError(403, "IncompleteSignatureException",
                           "Authorization header requires a SigV4 Credential scope and "
                           "X-Amz-Date")
        if match["service"] != "lambda":
            raise ApiError(403, "InvalidSignatureException",
                           f"Credential should be scoped to correct service: 'lambda', "
                           f"not '{match['service']}'")
        return match["region"]

    async def _route(self, region: str, req: Request) -> Response:
        m, p = req.method, req.path.rstrip("/")
        if m == "POST" and p == "/2015-03-31/functions":
            return self.create_function(region, self._json(req))
        if m == "GET" and p == "/2016-08-19/account-settings":
            return self.account_settings(region)
        match = re.fullmatch(r"/(\d{4}-\d\d-\d\d)/functions/([^/]+)(/[a-z-]+)?", p)
        if not match:
            raise ApiError(404, "UnknownOperationException", f"no route {m} {p}")
        version, ref, tail = match[1], match[2], match[3] or ""
        fn = self._function(region, ref, req.query.get("Qualifier"))
        route = (m, version, tail)
        if route == ("POST", "2015-03-31", "/invocations"):
            return await self.invoke(fn, req)
        if route == ("GET", "2015-03-31", ""):
            return self.get_function(fn)
        if route == ("GET", "2015-03-31", "/configuration"):
            return Response.json(200, self._configuration(fn))
        if route == ("DELETE", "2015-03-31", ""):
            return self.delete_function(fn)
        if route == ("PUT", "2015-03-31", "/configuration"):
            return self.update_configuration(fn, self._json(req))
        if route == ("PUT", "2015-03-31", "/code"):
            return self.update_code(fn, self._json(req))
        if route == ("PUT", "2019-09-25", "/event-invoke-config"):
            return self.put_event_config(fn, self._json(req))
        if route == ("GET", "2019-09-25", "/event-invoke-config"):
            if fn.event_config is None:
                raise ApiError(404, "ResourceNotFoundException",
                               f"The function {fn.arn} doesn't have an EventInvokeConfig")
            return Response.json(200, fn.event_config)
        if route == ("PUT", "2017-10-31", "/concurrency"):
            return self.put_concurrency(fn, self._json(req))
        if route == ("GET", "2019-09-30", "/concurrency"):
            body = {} if fn.reserved is None else {"ReservedConcurrentExecutions": fn.reserved}
            return Response.json(200, body)
        if route == ("DELETE", "2017-10-31", "/concurrency"):
            fn.reserved = None
            return Response(204)
        raise ApiError(404, "UnknownOperationException", f"no route {m} {p}")

    @staticmethod
    def _json(req: Request) -> dict:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError as exc:
            raise ApiError(400, "InvalidRequestContentException",
                           f"Could not parse request body into json: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContentException", "Request body must be an object")
        return body

    def _function(self, region: str, ref: str, qualifier: str | None) -> Function:
        match = FUNCTION_REF.fullmatch(ref)
        if not match:
            raise invalid(f"Invalid function name or ARN: {ref}")
        qualifier = qualifier or match["qualifier"]
        fn = self.regions.get(match["region"] or region, {}).get(match["name"])
        where = match["region"] or region
        arn = f"arn:aws:lambda:{where}:{self.settings.account_id}:function:{match['name']}"
        if (fn is None or (match["region"] and match["region"] != region)
                or qualifier not in (None, "$LATEST")):
            raise ApiError(404, "ResourceNotFoundException",
                           f"Function not found: {arn}" + (f":{qualifier}" if qualifier else ""))
        return fn

    # ------------------------------------------------------------------ control plane

    def create_function(self, region: str, body: dict) -> Response:
        name = body.get("FunctionName", "")
        if not NAME.fullmatch(name or ""):
            raise invalid(f"Invalid function name: {name!r}")
        functions = self.regions.setdefault(region, {})
        if name in functions:
            raise ApiError(409, "ResourceConflictException", f"Function already exist: {name}")
        self._refuse_unemulated(body)
        if body.get("PackageType", "Zip") != "Zip":
            raise not_emulated(f"PackageType {body['PackageType']}")
        role = body.get("Role", "")
        if not ROLE_ARN.fullmatch(role):
            raise invalid(f"The role defined for the function cannot be assumed by Lambda: "
                          f"{role!r} is not a role ARN")
        config = {"Role": role, "Handler": body.get("Handler"), "Runtime": body.get("Runtime"),
                  "Description": "", "Timeout": 3, "MemorySize": 128, "Variables": {},
                  "Architectures": ["x86_64"], "EphemeralStorage": 512}
        config.update(self._config_changes(body))
        if not config["Handler"]:
            raise invalid("Handler is required for Zip functions")
        code = self._code(body.get("Code") or {})
        arn = f"arn:aws:lambda:{region}:{self.settings.account_id}:function:{name}"
        fn = Function(region, name, arn, config, *code, tags=dict(body.get("Tags") or {}))
        self._touch(fn, created=True)
        functions[name] = fn
        return Response.json(201, self._configuration(fn))

    def _refuse_unemulated(self, body: dict) -> None:
        for key, value in body.items():
            if key not in CONFIG_FIELDS and value not in (None, "", [], {}, False):
                raise not_emulated(key)
        if body.get("Publish"):
            raise not_emulated("Publish (versions)")

    def _config_changes(self, body: dict) -> dict:
        """Validate the configuration fields present in ``body``; return them as stored."""
        out = {}
        if "Runtime" in body and body["Runtime"] != "python3.12":
            raise not_emulated(f"Runtime {body['Runtime']!r} (only python3.12 is)")
        for key in ("Handler", "Runtime", "Role"):
            if key in body:
                out[key] = body[key]
        if "Role" in body and not ROLE_ARN.fullmatch(body["Role"] or ""):
            raise invalid(f"{body['Role']!r} is not a role ARN")
        if "Description" in body:
            if not isinstance(body["Description"], str) or len(body["Description"]) > 256:
                raise invalid("Description must be a string of at most 256 characters")
            out["Description"] = body["Description"]
        for key, (low, high) in (("MemorySize", MEMORY_RANGE), ("Timeout", TIMEOUT_RANGE)):
            if key in body:
                value = body[key]
                if not isinstance(value, int) or not low <= value <= high:
                    raise invalid(f"{key} {value!r} is outside Lambda's on-demand range "
                                  f"{low}..{high}")
                out[key] = value
        if "EphemeralStorage" in body:
            size = (body["EphemeralStorage"] or {}).get("Size", 512)
            if not isinstance(size, int) or not EPHEMERAL_RANGE[0] <= size <= EPHEMERAL_RANGE[1]:
                raise invalid(f"EphemeralStorage.Size {size!r} is outside 512..10240")
            out["EphemeralStorage"] = size
        if "Architectures" in body:
            arch = body["Architectures"] or ["x86_64"]
            if arch != ["x86_64"]:
                raise not_emulated(f"Architectures {arch} (this host runs x86_64 only)")
            out["Architectures"] = arch
        if "Environment" in body:
            variables = (body["Environment"] or {}).get("Variables") or {}
            reserved = sorted(set(variables) & RESERVED_VARIABLES)
            if reserved:
                raise invalid(
                    "Lambda was unable to configure your environment variables because the "
                    "environment variables you have provided contains reserved keys that are "
                    f"currently not supported for modification. Reserved keys used in this "
                    f"request: {', '.join(reserved)}")
            if not all(isinstance(v, str) for v in variables.values()):
                raise invalid("Environment variable values must be strings")
            size = sum(len(k.encode()) + len(v.encode()) for k, v in variables.items())
            if size > ENV_VARS_LIMIT:
                raise invalid(
                    "Lambda was unable to configure your environment variables because the "
                    f"environment variables you have provided exceeded the 4KB limit "
                    f"({size} bytes)")
            out["Variables"] = dict(variables)
        return out

    def _code(self, code: dict) -> tuple[Path, Path, str, int]:
        """Store and unpack a ZipFile; (zip path, task root, CodeSha256, CodeSize)."""
        for key in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"):
            if code.get(key):
                raise not_emulated(f"Code.{key} (send ZipFile)")
        try:
            data = base64.b64decode(code.get("ZipFile") or "", validate=True)
        except (binascii.Error, ValueError):
            raise invalid("Code.ZipFile is not base64") from None
        if not data:
            raise invalid("Code.ZipFile is required")
        if len(data) > ZIPPED_LIMIT:
            raise ApiError(413, "RequestEntityTooLargeException",
                           f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes")
        digest = hashlib.sha256(data)
        hexname = digest.hexdigest()
        root = self.code_dir / hexname
        zip_path = self.code_dir / f"{hexname}.zip"
        if not root.is_dir():
            work = self.code_dir / f".{hexname}.{uuid.uuid4().hex}"
            work.mkdir()
            try:
                unpack_zip(data, work)
            except CodeError as exc:
                shutil.rmtree(work, ignore_errors=True)
                raise invalid(str(exc)) from None
            zip_path.write_bytes(data)
            work.rename(root)
        return zip_path, root, base64.b64encode(digest.digest()).decode(), len(data)

    def _touch(self, fn: Function, created: bool = False) -> None:
        fn.generation += 1
        fn.revision = str(uuid.uuid4())
        fn.last_modified = _now_iso()
        fn.created = created
        fn.busy_until = time.monotonic() + self.settings.update_seconds
        # Environments of the old code or configuration take no more invocations.
        for env in list(fn.idle):
            env.kill()
        fn.idle.clear()
        for env in fn.envs:
            env.doomed = True

    def _check_updatable(self, fn: Function, body: dict) -> None:
        if time.monotonic() < fn.busy_until:
            raise ApiError(409, "ResourceConflictException",
                           "The operation cannot be performed at this time. An update is in "
                           f"progress for resource: {fn.arn}")
        if body.get("RevisionId") not in (None, fn.revision):
            raise ApiError(412, "PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. "
                           "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")

    def update_code(self, fn: Function, body: dict) -> Response:
        self._check_updatable(fn, body)
        if body.get("DryRun"):
            raise not_emulated("DryRun")
        self._refuse_unemulated({k: v for k, v in body.items() if k not in ("ZipFile",
                                                                             "Architectures")})
        if "Architectures" in body:
            self._config_changes({"Architectures": body["Architectures"]})
        fn.zip_path, fn.task_root, fn.code_sha256, fn.code_size = self._code(
            {"ZipFile": body.get("ZipFile")})
        self._touch(fn)
        return Response.json(200, self._configuration(fn))

    def update_configuration(self, fn: Function, body: dict) -> Response:
        self._check_updatable(fn, body)
        self._refuse_unemulated(body)
        fn.config.update(self._config_changes(body))
        self._touch(fn)
        return Response.json(200, self._configuration(fn))

    def delete_function(self, fn: Function) -> Response:
        fn.deleted = True
        del self.regions[fn.region][fn.name]
        for env in list(fn.idle):
            env.kill()
        fn.idle.clear()
        for env in fn.envs:
            env.doomed = True
        return Response(204)

    def _state(self, fn: Function) -> tuple[str, str]:
        busy = time.monotonic() < fn.busy_until
        if busy and fn.created:
            return "Pending", "InProgress"
        return "Active", "InProgress" if busy else "Successful"

    def _configuration(self, fn: Function) -> dict:
        state, update = self._state(fn)
        cfg = fn.config
        out = {
            "FunctionName": fn.name, "FunctionArn": fn.arn, "Runtime": cfg["Runtime"],
            "Role": cfg["Role"], "Handler": cfg["Handler"], "CodeSize": fn.code_size,
            "Description": cfg["Description"], "Timeout": cfg["Timeout"],
            "MemorySize": cfg["MemorySize"], "LastModified": fn.last_modified,
            "CodeSha256": fn.code_sha256, "Version": "$LATEST",
            "TracingConfig": {"Mode": "PassThrough"}, "RevisionId": fn.revision,
            "State": state, "LastUpdateStatus": update, "PackageType": "Zip",
            "Architectures": cfg["Architectures"],
            "EphemeralStorage": {"Size": cfg["EphemeralStorage"]},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn.name}"},
        }
        if state == "Pending":
            out["StateReason"] = "The function is being created."
            out["StateReasonCode"] = "Creating"
        if cfg.get("Variables"):
            out["Environment"] = {"Variables": dict(cfg["Variables"])}
        return out

    def get_function(self, fn: Function) -> Response:
        body = {
            "Configuration": self._configuration(fn),
            # Where the zip can be fetched back, as GetFunction's presigned S3 URL would be.
            "Code": {"RepositoryType": "S3",
                     "Location": f"{self.endpoint}/_emulator/code/{fn.zip_path.name}"},
        }
        if fn.tags:
            body["Tags"] = dict(fn.tags)
        if fn.reserved is not None:
            body["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved}
        return Response.json(200, body)

    def put_event_config(self, fn: Function, body: dict) -> Response:
        if body.get("DestinationConfig"):
            raise not_emulated("DestinationConfig")
        retries = body.get("MaximumRetryAttempts", DEFAULT_RETRIES)
        age = body.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE)
        if not isinstance(retries, int) or not 0 <= retries <= 2:
            raise invalid(f"MaximumRetryAttempts {retries!r} is outside 0..2")
        if not isinstance(age, int) or not 60 <= age <= 21_600:
            raise invalid(f"MaximumEventAgeInSeconds {age!r} is outside 60..21600")
        fn.event_config = {
            "LastModified": time.time(), "FunctionArn": f"{fn.arn}:$LATEST",
            "MaximumRetryAttempts": retries, "MaximumEventAgeInSeconds": age,
            "DestinationConfig": {"OnSuccess": {}, "OnFailure": {}},
        }
        return Response.json(200, fn.event_config)

    def _reserved_total(self, region: str, excluding: Function | None = None) -> int:
        return sum(f.reserved or 0 for f in self.regions.get(region, {}).values()
                   if f is not excluding)

    def put_concurrency(self, fn: Function, body: dict) -> Response:
        value = body.get("ReservedConcurrentExecutions")
        if not isinstance(value, int) or value < 0:
            raise invalid(f"ReservedConcurrentExecutions {value!r} must be an integer >= 0")
        unreserved = (self.settings.account_concurrency
                      - self._reserved_total(fn.region, excluding=fn) - value)
        if unreserved < MIN_UNRESERVED:
            raise invalid(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}].")
        fn.reserved = value
        return Response.json(200, {"ReservedConcurrentExecutions": value})

    def account_settings(self, region: str) -> Response:
        functions = self.regions.get(region, {}).values()
        limit = self.settings.account_concurrency
        return Response.json(200, {
            "AccountLimit": {
                "TotalCodeSize": ACCOUNT_TOTAL_CODE, "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": ZIPPED_LIMIT, "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": limit - self._reserved_total(region),
            },
            "AccountUsage": {"TotalCodeSize": sum(f.code_size for f in functions),
                             "FunctionCount": len(functions)},
        })

    # ------------------------------------------------------------------ invoke

    async def invoke(self, fn: Function, req: Request) -> Response:
        kind = req.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise invalid(f"Invalid InvocationType: {kind}")
        state, _ = self._state(fn)
        if state == "Pending":
            raise ApiError(409, "ResourceConflictException",
                           "The operation cannot be performed at this time. The function is "
                           "currently in the following state: Pending")
        limit = ASYNC_PAYLOAD_LIMIT if kind == "Event" else SYNC_PAYLOAD_LIMIT
        if len(req.body) > limit:
            raise ApiError(413, "RequestTooLargeException",
                           f"Request must be smaller than {limit} bytes for the InvokeFunction "
                           "operation")
        payload = req.body or b"{}"
        try:
            json.loads(payload)
        except ValueError as exc:
            raise ApiError(400, "InvalidRequestContentException",
                           f"Could not parse request body into json: {exc}") from None
        client_context = None
        if req.headers.get("x-amz-client-context"):
            try:
                client_context = base64.b64decode(req.headers["x-amz-client-context"]).decode()
                json.loads(client_context)
            except ValueError:
                raise invalid("Client context must be a valid Base64-encoded JSON object.") \
                    from None
        if kind == "DryRun":
            return Response(204)
        fault = self._take_fault(("throttle",), fn)
        if fault is not None:
            self._throttled(fn, kind, fault.get("reason") or THROTTLE_REASONS[0])
        request_id = str(uuid.uuid4())
        invoked = fn.arn
        if kind == "Event":
            copies = 2 if self._take_fault(("duplicate",), fn) else 1
            for copy in range(copies):
                self._spawn(self._event(fn, request_id, payload, client_context, copy > 0))
            return Response(202, b"", {"x-amzn-RequestId": request_id})
        reason = self._admit(fn)
        if reason:
            self._throttled(fn, kind, reason)
        inv = Invocation(request_id, payload, invoked, client_context)
        outcome = await self._execute(fn, inv, kind, attempt=0)
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST",
                   "x-amzn-RequestId": request_id}
        if outcome.function_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if req.headers.get("x-amz-log-type") == "Tail":
            headers["X-Amz-Log-Result"] = inv.log_tail()
        return Response(200, outcome.body, headers)

    def _throttled(self, fn: Function, kind: str, reason: str) -> NoReturn:
        self.counts["throttles"] += 1
        self._record({"function": fn.name, "region": fn.region, "invocation_type": kind,
                      "status": "throttled", "error_type": reason})
        raise ApiError(429, "TooManyRequestsException", "Rate Exceeded.", Reason=reason)

    def _admit(self, fn: Function) -> str | None:
        """Take a concurrency slot for ``fn``, or say which limit refuses it."""
        if fn.reserved is not None:
            if fn.in_flight >= fn.reserved:
                return "ReservedFunctionConcurrentInvocationLimitExceeded"
        else:
            functions = self.regions.get(fn.region, {}).values()
            in_use = sum(f.in_flight for f in functions if f.reserved is None)
            pool = self.settings.account_concurrency - self._reserved_total(fn.region)
            if in_use >= pool:
                return "ConcurrentInvocationLimitExceeded"
        fn.in_flight += 1
        return None

    async def _execute(self, fn: Function, inv: Invocation, kind: str, attempt: int,
                       duplicate: bool = False) -> Outcome:
        """Run ``inv`` in an idle environment or a new one; the caller took the slot."""
        loop = asyncio.get_running_loop()
        inv.done = loop.create_future()
        inv.fault = self._take_fault(("crash", "timeout"), fn)
        env = None
        try:
            waited_for_env = False
            while True:
                while fn.idle:
                    candidate = fn.idle.pop()
                    if candidate.state == "idle" and not candidate.doomed:
                        env = candidate
                        break
                cap = self.settings.max_environments
                # Cold starts still waiting for a start slot count: they will be environments.
                if env is not None or not cap or len(self.envs) + self._queued_starts < cap:
                    break
                if not waited_for_env:
                    waited_for_env = True
                    self.counts["waited_at_environment_cap"] += 1
                await self._env_change.wait()
            if env is not None:
                env.assign(inv)
                self.counts["warm_starts"] += 1
            else:
                self.counts["cold_starts"] += 1
                env = await self._cold_start(fn, inv)
            outcome = await inv.done
        finally:
            fn.in_flight -= 1
        if env.state == "idle" and not env.doomed and not fn.deleted and not self._closing:
            fn.idle.append(env)
        elif env.state != "dead":
            env.kill()
        self._environment_changed()
        self.counts["invocations"] += 1
        self.counts[{"ok": "ok", "timeout": "timeouts", "crash": "crashes"}.get(
            outcome.status, "function_errors")] += 1
        self._record({
            "request_id": inv.request_id, "function": fn.name, "region": fn.region,
            "invocation_type": kind, "attempt": attempt, "duplicate": duplicate,
            "env": env.id, "pid": env.pid, "cold": inv.cold,
            "init_ms": round(inv.init_ms, 3) if inv.cold else 0.0,
            "queued_ms": round(inv.queued_ms, 3),
            "duration_ms": round(inv.duration_ms, 3), "billed_ms": inv.billed_ms(),
            "memory_mb": env.spec.memory_mb, "max_memory_used_mb": inv.max_memory_mb,
            "status": outcome.status, "error_type": outcome.error_type,
            "started_at": inv.started_at, "ended_at": time.time(),
        })
        return outcome

    async def _cold_start(self, fn: Function, inv: Invocation) -> Environment:
        """A new environment for ``inv``, once one of the start slots is free.

        The slots exist because every environment here shares this host's cores: started all
        at once, a thousand runtimes would share the CPU and all finish INIT together, late
        (and past INIT's 10 s limit); taking turns, they come up one after another.
        """
        waited = time.monotonic()
        self._queued_starts += 1
        try:
            await self._start_slots.acquire()
        finally:
            self._queued_starts -= 1
        try:
            inv.queued_ms = (time.monotonic() - waited) * 1000
            env = Environment(f"e{next(self._env_ids)}", fn.spec(), self.host, self._env_dead)
            fn.envs.add(env)
            self.envs.add(env)
            try:
                await env.start(inv)
            except OSError as exc:
                self._env_dead(env)
                inv.done.set_result(failure("error", "Runtime.Unknown",
                                            f"emulator could not start the runtime: {exc}"))
            await env.initialised
        finally:
            self._start_slots.release()
        return env

    async def _event(self, fn: Function, request_id: str, payload: bytes,
                     client_context: str | None, duplicate: bool) -> None:
        """An Event invocation, queued: throttles wait, function errors retry, old ones drop."""
        received = time.monotonic()
        backoff, backoff_cap = self.settings.event_throttle_backoff
        attempt = 0
        while True:
            config = fn.event_config or {}
            max_age = config.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE)
            retries = config.get("MaximumRetryAttempts", DEFAULT_RETRIES)
            if fn.deleted or time.monotonic() - received > max_age:
                self.counts["events_dropped"] += 1
                self._record({"request_id": request_id, "function": fn.name,
                              "region": fn.region, "invocation_type": "Event",
                              "attempt": attempt, "duplicate": duplicate, "status": "dropped",
                              "error_type": "FunctionDeleted" if fn.deleted
                              else "MaximumEventAgeInSecondsExceeded"})
                return
            busy = time.monotonic() < fn.busy_until and fn.created
            if busy or self._admit(fn) is not None:
                self.counts["event_throttles"] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, backoff_cap)
                continue
            inv = Invocation(request_id, payload, fn.arn, client_context)
            outcome = await self._execute(fn, inv, "Event", attempt, duplicate)
            if not outcome.function_error or attempt >= retries:
                return
            delays = self.settings.event_retry_delays
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            attempt += 1

    def _environment_changed(self) -> None:
        """Wake invocations waiting at the environment cap."""
        self._env_change.set()
        self._env_change = asyncio.Event()

    def _env_dead(self, env: Environment) -> None:
        self.envs.discard(env)
        self._environment_changed()
        functions = self.regions.get(env.spec.region, {})
        fn = functions.get(env.spec.name)
        for owner in [fn] if fn is not None else []:
            owner.envs.discard(env)
            if env in owner.idle:
                owner.idle.remove(env)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ faults, records

    def _take_fault(self, kinds: tuple, fn: Function) -> dict | None:
        for fault in self.faults:
            if fault["kind"] in kinds and fault.get("function") in (None, fn.name):
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    self.faults.remove(fault)
                self.counts[f"faults_{fault['kind']}"] += 1
                return fault
        return None

    def _record(self, record: dict) -> None:
        record["emulated"] = True
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)

    def stats(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy = self._queued_starts + sum(1 for e in self.envs if e.state in ("init", "busy"))
        return {
            "emulated": True,
            **{k: self.counts[k] for k in (
                "invocations", "ok", "function_errors", "timeouts", "crashes", "throttles",
                "event_throttles", "events_dropped", "cold_starts", "warm_starts",
                "waited_at_environment_cap")},
            "faults_applied": {k: self.counts[f"faults_{k}"] for k in FAULT_KINDS},
            "environments": len(self.envs),
            "environments_busy": busy,
            "events_pending": len(self._tasks),
            "emulator_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "emulator_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "environments_rss_mb": round(sum(e.sample_rss_mb() for e in self.envs), 1),
        }

    async def _control(self, req: Request) -> Response:
        m, p = req.method, req.path.rstrip("/")
        if m == "GET" and p == "/_emulator/health":
            return Response.json(200, {"ok": True, "emulated": True})
        if m == "GET" and p == "/_emulator/stats":
            return Response.json(200, self.stats())
        if m == "GET" and p == "/_emulator/records":
            since = int(req.query.get("since", "0") or 0)
            return Response.json(200, {"emulated": True, "records": self.records[since:],
                                       "next": len(self.records)})
        if m == "GET" and p == "/_emulator/environments":
            return Response.json(200, [
                {"id": e.id, "function": e.spec.name, "region": e.spec.region, "pid": e.pid,
                 "state": e.state, "init_ms": round(e.init_ms, 3)}
                for e in sorted(self.envs, key=lambda e: int(e.id[1:]))])
        if p == "/_emulator/faults":
            if m == "POST":
                return Response.json(200, self._add_fault(self._json(req)))
            if m == "DELETE":
                self.faults.clear()
            return Response.json(200, self.faults)
        if m == "POST" and p == "/_emulator/account":
            value = self._json(req).get("concurrent_executions")
            if not isinstance(value, int) or value < 0:
                raise ApiError(400, "", "concurrent_executions must be an integer >= 0")
            self.settings.account_concurrency = value
            return Response.json(200, {"concurrent_executions": value})
        if m == "GET" and p.startswith("/_emulator/code/"):
            path = self.code_dir / p.rsplit("/", 1)[1]
            if re.fullmatch(r"[0-9a-f]{64}\.zip", path.name) and path.is_file():
                return Response(200, path.read_bytes(), {"Content-Type": "application/zip"})
        raise ApiError(404, "", f"no emulator route {m} {p}")

    def _add_fault(self, body: dict) -> list:
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            raise ApiError(400, "", f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        count = body.get("count", 1)
        after = body.get("after_s", 0.0)
        after_log = body.get("after_log")
        reason = body.get("reason")
        if not isinstance(count, int) or count < 1:
            raise ApiError(400, "", "count must be an integer >= 1")
        if not isinstance(after, int | float) or not 0 <= after < math.inf:
            raise ApiError(400, "", "after_s must be a number >= 0")
        if after_log is not None and (kind not in ("crash", "timeout") or not isinstance(
                after_log, str) or not 0 < len(after_log) <= 200):
            raise ApiError(400, "", "after_log applies to crash and timeout faults: "
                           "a string of 1 to 200 characters")
        if reason is not None and (kind != "throttle" or reason not in THROTTLE_REASONS):
            raise ApiError(400, "", f"reason applies to throttle faults: {THROTTLE_REASONS}")
        unknown = set(body) - {"kind", "count", "function", "after_s", "after_log", "reason"}
        if unknown:
            raise ApiError(400, "", f"unknown fault fields: {sorted(unknown)}")
        self.faults.append({"kind": kind, "remaining": count, "function": body.get("function"),
                            "after_s": float(after), "after_log": after_log,
                            "reason": reason})
        return self.faults

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, grace_s: float = 10.0) -> list[int]:
        """Kill every environment (whole process groups) and wait for them; leftover pids."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for env in list(self.envs):
            env.kill()
        deadline = time.monotonic() + grace_s
        while self.envs and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return [e.pid for e in self.envs if e.pid]
