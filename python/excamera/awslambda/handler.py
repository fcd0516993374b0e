"""The Lambda entry point: one invocation runs one worker, its event being the launch payload.

``handler(event, context)`` parses the event as a :class:`~excamera.mu.payload.LaunchPayload`,
runs ``run_worker`` to completion, and returns a small report::

    {"exit": 0, "init_s": ..., "handler_s": ..., "cpu_s": ..., "warm": ...}

``init_s`` is the time from this module's import to the first invocation (Lambda bills the
INIT phase once per execution environment, so warm invocations report 0); ``handler_s`` is this
invocation's wall time; ``cpu_s`` the CPU time this process and the children it waited for used
during it. Nothing of the environment goes back. A failure raises, so Lambda reports it as a
FunctionError with this module's message naming the worker and what failed.

Lambda reuses a warm process for later invocations: each one gets its own event loop and its
own temporary directory (``run_worker`` makes and removes one), and this module keeps no state
between them except the count of invocations it served.
"""

from __future__ import annotations

import time

_IMPORTED = time.monotonic()  # first, so init_s includes importing everything below

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from excamera.mu.payload import LaunchPayload  # noqa: E402
from excamera.mu.protocol import ProtocolError  # noqa: E402
from excamera.mu.worker import run_worker  # noqa: E402

log = logging.getLogger("excamera")
_invocations = 0
_stderr_handler: logging.Handler | None = None


class PayloadError(ValueError):
    """The event is not a launch payload this code accepts."""


class WorkerFailed(RuntimeError):
    """The worker could not do its job (cannot reach the coordinator, TLS, protocol)."""


def task_root() -> Path:
    """Where the zip is unpacked: ``$LAMBDA_TASK_ROOT`` on Lambda, else this package's parent."""
    root = os.environ.get("LAMBDA_TASK_ROOT")
    return Path(root) if root else Path(__file__).resolve().parents[2]


def _prepend(var: str, entry: str) -> None:
    parts = [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    if entry not in parts:
        os.environ[var] = os.pathsep.join([entry, *parts])


def prepare_environment() -> None:
    """Make the zip's tools reachable by the worker's child processes (idempotent).

    Lambda's PATH does not include the task root's ``bin/`` (where the static vpxenc is), and
    a child Python (``--tools subprocess``) must find the excamera package in the task root.
    """
    root = task_root()
    _prepend("PATH", str(root / "bin"))
    _prepend("PYTHONPATH", str(root))


def parse_event(event: Any) -> LaunchPayload:
    """The launch payload from the event (an object, or its JSON text)."""
    if isinstance(event, dict):
        text: str | bytes = json.dumps(event)
    elif isinstance(event, str | bytes):
        text = event
    else:
        raise PayloadError(f"launch event: expected a JSON object, got {type(event).__name__}")
    try:
        return LaunchPayload.from_json(text)
    except ValueError as exc:
        raise PayloadError(f"launch event: {exc}") from None


def _setup_logging(payload: LaunchPayload) -> None:
    """excamera's loggers write to stderr (Lambda keeps it in the function's log), with this
    invocation's worker id; awslambdaric's root handler is left alone."""
    global _stderr_handler
    if _stderr_handler is None:
        _stderr_handler = logging.StreamHandler(sys.stderr)
        log.addHandler(_stderr_handler)
        log.propagate = False
    _stderr_handler.setFormatter(logging.Formatter(
        f"mu-worker {payload.worker_id} %(asctime)s %(levelname)s %(message)s"))
    log.setLevel(logging.DEBUG if payload.debug else logging.INFO)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Run one worker; returns the report described in the module docstring."""
    global _invocations
    started = time.monotonic()
    cpu_started = _cpu_seconds()
    warm = _invocations > 0
    _invocations += 1
    init_s = 0.0 if warm else started - _IMPORTED

    payload = parse_event(event)
    prepare_environment()
    _setup_logging(payload)
    log.info("worker %d of job %s: %s invocation", payload.worker_id, payload.job_id,
             "warm" if warm else "cold")
    try:
        asyncio.run(run_worker(payload))
    except (ConnectionError, ProtocolError, ssl.SSLError, OSError) as exc:
        raise WorkerFailed(f"worker {payload.worker_id} of job {payload.job_id}: {exc}") from exc
    except Exception as exc:
        raise WorkerFailed(
            f"worker {payload.worker_id} of job {payload.job_id}: {type(exc).__name__}: {exc}"
        ) from exc
    return {
        "exit": 0,
        "init_s": round(init_s, 6),
        "handler_s": round(time.monotonic() - started, 6),
        "cpu_s": round(_cpu_seconds() - cpu_started, 6),
        "warm": warm,
    }
