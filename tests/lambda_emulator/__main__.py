"""Run the Lambda emulator standalone (for tests' subprocess and for benches).

    python -m tests.lambda_emulator --state-dir DIR [--port 0] [--account-concurrency 1000]
        [--role-env KEY=VALUE ...] [--init-timeout 10] [--event-retry-delays 60,120]
        [--event-throttle-backoff 1,300] [--update-seconds 0] [--max-starting 2*CPUS]

Prints one JSON line on stdout when it serves, ``{"endpoint": ..., "pid": ..., "emulated":
true}``, and runs until SIGTERM or SIGINT, which kill every execution environment before it
exits. Missing prerequisites (Python 3.12, awslambdaric) exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
from pathlib import Path

from .httpio import HttpServer
from .runtime import PrerequisiteError, ensure_runtime
from .service import CREATE_REQUEST_LIMIT, LambdaService, Settings


def _pair(text: str) -> tuple[float, float]:
    first, second = (float(x) for x in text.split(","))
    if first < 0 or second < 0:
        raise ValueError(text)
    return first, second


def _role_var(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(text)
    return key, value


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.lambda_emulator",
                                 description="Local AWS Lambda emulator (not AWS).")
    ap.add_argument("--state-dir", type=Path, required=True,
                    help="where code, environments' /tmp and log streams go")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--account-concurrency", type=int, default=1000)
    ap.add_argument("--role-env", type=_role_var, action="append", default=[],
                    metavar="KEY=VALUE",
                    help="a variable every environment gets as its execution role's "
                    "(credentials, endpoints); repeat")
    ap.add_argument("--init-timeout", type=float, default=10.0)
    ap.add_argument("--event-retry-delays", type=_pair, default=(60.0, 120.0), metavar="A,B")
    ap.add_argument("--event-throttle-backoff", type=_pair, default=(1.0, 300.0),
                    metavar="FIRST,CAP")
    ap.add_argument("--update-seconds", type=float, default=0.0,
                    help="how long a create stays Pending and an update InProgress")
    ap.add_argument("--max-starting", type=int, default=2 * (os.cpu_count() or 1),
                    help="environments in INIT at once; further cold starts wait their turn")
    ap.add_argument("--max-environments", type=int, default=0,
                    help="environments alive at once, 0 for no cap; at the cap an invocation "
                    "waits for an idle environment of its function (AWS would start a new one; "
                    "this host's memory cannot hold thousands)")
    args = ap.parse_args(argv)
    if (args.account_concurrency < 0 or args.init_timeout <= 0 or args.update_seconds < 0
            or args.max_starting < 1 or args.max_environments < 0):
        ap.error("--account-concurrency, --init-timeout, --update-seconds and --max-starting "
                 "must be positive")
    return args


async def serve(args: argparse.Namespace) -> int:
    try:
        layout = ensure_runtime()
    except PrerequisiteError as exc:
        print(f"lambda emulator: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        account_concurrency=args.account_concurrency, role_env=dict(args.role_env),
        init_timeout_s=args.init_timeout, event_retry_delays=args.event_retry_delays,
        event_throttle_backoff=args.event_throttle_backoff, update_seconds=args.update_seconds,
        max_starting=args.max_starting, max_environments=args.max_environments,
    )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    service = LambdaService(settings, layout, args.state_dir.resolve())
    server = HttpServer(service.handle, max_body=CREATE_REQUEST_LIMIT + 1024 * 1024)
    port = await server.start(port=args.port, backlog=4096)
    service.endpoint = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"endpoint": service.endpoint, "pid": os.getpid(), "emulated": True}),
          flush=True)
    await stop.wait()
    server.close()
    leftover = await service.shutdown()
    stats = service.stats()
    print(f"lambda emulator: stopped; emulated stats {json.dumps(stats)}", file=sys.stderr)
    if leftover:
        print(f"lambda emulator: environments still alive after shutdown: {leftover}",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    # Each environment holds a few descriptors here (its Runtime API socket and connection,
    # log pipe, pidfd); a thousand of them need more than the usual 1,024.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
