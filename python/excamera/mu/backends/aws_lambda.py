"""LambdaBackend: each worker is one invocation of a deployed function (``excamera lambda``).

The invocation's event is the launch payload; the function's handler runs the same worker
runtime as every other backend, which dials back to the coordinator and the relay.

- **Invocation.** Synchronous (``RequestResponse``) by default: throttling comes back at once as
  a 429, a failed worker's error and the tail of its log come back with the answer, and Lambda
  never retries behind the coordinator's back. ``--invocation event`` fires and forgets, as mu
  did; the function must then be deployed with retries off (``excamera lambda deploy`` does
  that), and a lost worker is noticed only by its silence.
- **Launch.** Every launch is its own coroutine and connection, so thousands go out at once.
  429 and 5xx answers and network errors are retried with exponential backoff and full jitter
  until the launch deadline (the job's connect timeout).
- **Before the first launch** (``prepare``): each region's function must exist, be Active, and
  carry this coordinator's code identity (``excamera lambda deploy`` records it); the account's
  (or the function's reserved) concurrency must cover the workers sent to that region, and a
  job that needs more is refused with both numbers.
- **Payload.** Checked against Lambda's limits before sending: 6 MB synchronous, 1 MB
  asynchronous.
- **Killing.** Lambda cannot stop one invocation from outside. The coordinator ends a worker by
  closing its connection; the worker runtime then cancels what it runs and returns, which ends
  the invocation. A launch still in flight (throttled, or not yet connected) is abandoned, and
  if it starts later its worker finds its token spent and exits.
- **Regions.** Workers are spread over ``--regions`` round-robin by worker id, as mu spread them;
  each region needs the function deployed under the same name.
- **Cost.** GB-seconds from each invocation's own account of its init and handler time (or,
  for an invocation that never answered properly, the time the coordinator waited for it),
  requests, and dollars at the prices in ``excamera/awslambda/prices.json``. Figures from an
  endpoint that is not AWS are labelled emulated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

from ...awslambda.deploy import code_of
from ...awslambda.invoke import InvokeError, InvokeResult, LambdaEndpoint, invoke
from ...awslambda.pricing import LambdaBill
from ..payload import LaunchPayload
from .base import Backend, BackendError, Cost, WorkerProcess

log = logging.getLogger("excamera.mu.backends.aws_lambda")

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
ASYNC_PAYLOAD_LIMIT = 1024 * 1024
#: Lambda's hard limits for on-demand functions.
MAX_TIMEOUT_S = 900
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 10.0
KILL_GRACE_S = 5.0
LOOPBACK = ("127.", "localhost", "::1")


def retryable(res: InvokeResult) -> bool:
    return res.status == 429 or res.status >= 500


class LambdaInvocation(WorkerProcess):
    """One worker: an Invoke request in flight, then (synchronously) the worker's lifetime."""

    def __init__(self, backend: LambdaBackend, payload: LaunchPayload, region: str,
                 body: bytes) -> None:
        self.worker_id = payload.worker_id
        self.backend = backend
        self.region = region
        self._body = body
        # Invocations are retried until the worker would have had to connect anyway.
        self._launch_deadline = backend.launch_deadline or payload.connect_timeout
        self._tail = ""
        self._code: int | None = None
        self._stopped = asyncio.Event()
        self.throttles = 0
        self.task = asyncio.create_task(self._run(), name=f"lambda-invoke-{payload.worker_id}")

    async def _run(self) -> int:
        b = self.backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._launch_deadline
        attempt = 0
        sync = b.invocation == "RequestResponse"
        while True:
            started = loop.time()
            try:
                res = await invoke(b.endpoints[self.region], b.function, self._body,
                                   invocation_type=b.invocation,
                                   read_timeout=b.timeout_s + 60 if sync else 30)
            except InvokeError as exc:
                res = None
                why = str(exc)
            else:
                why = f"{res.error_type}: {res.message}" if res.status >= 300 else ""
            if res is not None and not retryable(res) and res.status < 300:
                return self._finished(res, loop.time() - started, sync)
            if res is not None and not retryable(res):
                # 4xx other than 429: the request itself is wrong (too large, no such
                # function, not allowed); trying again changes nothing.
                self._tail = f"invoke refused: HTTP {res.status} {why}"
                return 1
            if res is not None and res.status == 429:
                self.throttles += 1
                b.throttles += 1
            attempt += 1
            delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))
            if loop.time() + delay > deadline:
                self._tail = (f"invoke gave up after {attempt} attempt(s) over "
                              f"{self._launch_deadline:g} s; last: {why}")
                return 1
            log.info("worker %d: invoke %s; retrying in %.2f s", self.worker_id, why, delay)
            await asyncio.sleep(delay)

    def _finished(self, res: InvokeResult, waited: float, sync: bool) -> int:
        b = self.backend
        if not sync:  # 202: queued; the worker's own connection is all we will hear of it
            b.bill.requests += 1
            b.unbilled += 1
            return 0
        report = res.json() if res.function_error is None else {}
        seconds = waited
        if isinstance(report.get("handler_s"), (int, float)):
            seconds = float(report["handler_s"]) + float(report.get("init_s") or 0.0)
        b.bill.add(seconds, b.memory_mb[self.region])
        if res.function_error is not None:
            err = res.json()
            self._tail = (f"function error ({res.function_error}): "
                          f"{err.get('errorType', '?')}: {err.get('errorMessage', '')}\n"
                          f"{res.log_tail}")
            return 1
        self._tail = res.log_tail
        exit_code = report.get("exit", 0)
        return int(exit_code) if isinstance(exit_code, int) else 1

    def alive(self) -> bool:
        if self.backend.invocation == "Event":
            return not self._stopped.is_set() and (not self.task.done()
                                                   or self.task.result() == 0)
        return not self.task.done()

    async def wait(self) -> int | None:
        if self.backend.invocation == "Event":
            # Nothing tells us when an asynchronous invocation ends; a failure to launch does.
            code = await asyncio.shield(self.task)
            if code != 0:
                return code
            await self._stopped.wait()
            return None
        return await asyncio.shield(self.task)

    async def kill(self) -> None:
        # The coordinator has closed this worker's connection (that is what ends a running
        # invocation); give the answer a moment to arrive so its cost and log are known.
        self._stopped.set()
        if not self.task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.task), KILL_GRACE_S)
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def stderr_tail(self) -> str:
        return self._tail


class LambdaBackend(Backend):
    """Workers are invocations of ``function`` (deployed by ``excamera lambda deploy``)."""

    name = "lambda"
    remote = True

    def __init__(self, function: str, *, regions: list[str] | None = None,
                 invocation: str = "sync", launch_deadline: float | None = None) -> None:
        if not function:
            raise BackendError("the lambda backend needs the function's name (-l/--function)")
        if invocation not in ("sync", "event"):
            raise BackendError(f"invocation {invocation!r}: expected sync or event")
        from ... import needs

        needs.module("boto3", "lambda", "the lambda backend")  # before any job starts
        self.function = function
        self.regions = regions or [_default_region()]
        self.invocation = "RequestResponse" if invocation == "sync" else "Event"
        #: How long a throttled invocation is retried; None: the job's connect timeout.
        self.launch_deadline = launch_deadline
        self.endpoints: dict[str, LambdaEndpoint] = {}
        self.memory_mb: dict[str, int] = {}
        self.architecture = "x86_64"
        self.timeout_s = MAX_TIMEOUT_S
        self.bill = LambdaBill()
        self.throttles = 0
        #: Asynchronous invocations, whose duration only CloudWatch's REPORT lines tell.
        self.unbilled = 0
        self.invocations: list[LambdaInvocation] = []

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("-l", "--function", dest="lambda_function", default=None,
                           metavar="fnName",
                           help="the deployed function's name (excamera lambda deploy prints "
                           "it); selects the lambda backend")
        group.add_argument("-r", "--regions", dest="lambda_regions", default=None,
                           metavar="r1,r2,...",
                           help="regions to spread workers over, round-robin (AWS_REGION or "
                           "us-east-1); selects the lambda backend")
        group.add_argument("--invocation", dest="lambda_invocation", default="sync",
                           choices=("sync", "event"),
                           help="synchronous invocations report each worker's end, error and "
                           "log tail; event is mu's fire-and-forget (%(default)s)")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LambdaBackend:
        regions = options.get("lambda_regions")
        return cls(
            str(options.get("lambda_function") or ""),
            # "r1,r2" as the flag gives it, or a list from the Python API.
            regions=[r.strip() for r in (regions.split(",") if isinstance(regions, str)
                                         else regions) if r.strip()] if regions else None,
            invocation=str(options.get("lambda_invocation") or "sync"),
        )

    def region_of(self, worker_id: int) -> str:
        return self.regions[worker_id % len(self.regions)]

    async def prepare(self, n_workers: int, advertised_host: str) -> None:
        from ... import identity

        want = identity.code_identity()
        need: dict[str, int] = {}
        for k in range(n_workers):
            need[self.region_of(k)] = need.get(self.region_of(k), 0) + 1
        for region, count in need.items():
            try:
                ep = await asyncio.to_thread(LambdaEndpoint.for_region, region)
            except Exception as exc:
                raise BackendError(f"{region}: cannot set up a Lambda client: {exc}") from None
            self.endpoints[region] = ep
            if ep.is_aws and advertised_host.startswith(LOOPBACK):
                raise BackendError(
                    f"Lambda workers cannot dial {advertised_host}: listen with --host 0.0.0.0 "
                    "and give the address they should use with --advertise")
            config, allowed, source = await asyncio.to_thread(self._describe, ep)
            if config.get("State") not in (None, "Active"):
                raise BackendError(f"function {self.function} in {region} is "
                                   f"{config.get('State')} ({config.get('StateReason', '')}), "
                                   "not Active")
            deployed = code_of(config.get("Description", ""))
            if deployed is not None and identity.mismatch(want, deployed):
                raise BackendError(
                    f"function {self.function} in {region} runs "
                    f"{identity.describe(deployed)}, this coordinator "
                    f"{identity.describe(want)}: build and deploy this version "
                    "(excamera lambda build, excamera lambda deploy)")
            if deployed is None:
                log.warning("function %s in %s records no code identity; each worker's hello "
                            "is still checked", self.function, region)
            self.memory_mb[region] = int(config.get("MemorySize") or 128)
            self.timeout_s = min(self.timeout_s, int(config.get("Timeout") or MAX_TIMEOUT_S))
            self.architecture = (config.get("Architectures") or ["x86_64"])[0]
            if allowed is not None and count > allowed:
                raise BackendError(
                    f"the job needs {count} simultaneous workers in {region} but {source} "
                    f"allows {allowed}; use fewer workers, more regions (-r), or ask AWS for "
                    "a higher concurrency quota")

    def _describe(self, ep: LambdaEndpoint) -> tuple[dict[str, Any], int | None, str]:
        """The function's configuration and how many instances of it may run at once."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = ep.client()
        try:
            config = client.get_function_configuration(FunctionName=self.function)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise BackendError(f"no function {self.function} in {ep.region}: deploy it "
                                   "with excamera lambda deploy") from None
            raise BackendError(f"{ep.region}: {exc}") from None
        except BotoCoreError as exc:
            raise BackendError(f"{ep.region}: {exc}") from None
        try:
            reserved = client.get_function_concurrency(FunctionName=self.function).get(
                "ReservedConcurrentExecutions")
            if reserved is not None:
                return config, int(reserved), "the function's reserved concurrency"
            limits = client.get_account_settings().get("AccountLimit", {})
            unreserved = limits.get("UnreservedConcurrentExecutions")
            if unreserved is not None:
                return config, int(unreserved), "the account's unreserved concurrency"
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"{ep.region}: cannot read the concurrency limits: {exc}") from None
        return config, None, ""

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        body = payload.to_json().encode()
        limit = SYNC_PAYLOAD_LIMIT if self.invocation == "RequestResponse" else ASYNC_PAYLOAD_LIMIT
        if len(body) > limit:
            raise BackendError(
                f"worker {payload.worker_id}: launch payload of {len(body)} bytes exceeds "
                f"Lambda's {limit // (1024 * 1024)} MB limit for "
                f"{'synchronous' if limit == SYNC_PAYLOAD_LIMIT else 'asynchronous'} "
                "invocations")
        region = self.region_of(payload.worker_id)
        if region not in self.endpoints:
            raise BackendError(f"region {region} was not prepared")
        inv = LambdaInvocation(self, payload, region, body)
        self.invocations.append(inv)
        return inv

    def cost(self, worker_cpu_s: float | None) -> Cost:
        bill = self.bill
        emulated = any(not ep.is_aws for ep in self.endpoints.values())
        return Cost(
            self.name, worker_cpu_s=worker_cpu_s, requests=bill.requests,
            gb_seconds=round(bill.gb_seconds, 6), usd=round(bill.usd(self.architecture), 8),
            prices=LambdaBill.price_label(self.architecture), emulated=emulated,
            details={"throttled": self.throttles, "function": self.function,
                     "event_invocations_without_duration": self.unbilled,
                     "regions": self.regions,
                     "memory_mb": sorted(set(self.memory_mb.values()))},
        )

    async def close(self) -> None:
        await asyncio.gather(*(inv.kill() for inv in self.invocations), return_exceptions=True)


def _default_region() -> str:
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

