"""Exceptions shared by the coordinator, worker handles and backends."""

from __future__ import annotations


class MuError(Exception):
    """Base class of mu's errors."""


class CommandFailed(MuError):
    """A worker answered a command with an error (missing key, non-zero exit, ...).

    This is the worker reporting a deterministic failure, so it is not retried.
    """

    def __init__(self, worker: int, op: str, message: str, reply: dict | None = None) -> None:
        super().__init__(f"worker {worker}: {op} failed: {message}")
        self.worker = worker
        self.op = op
        self.message = message
        self.reply = reply or {}


class WorkerLost(MuError):
    """The worker process went away: it exited, dropped its connection or timed out.

    The machine may be relaunched on a fresh worker when the job allows retries.
    """

    def __init__(self, worker: int, reason: str) -> None:
        super().__init__(f"worker {worker}: {reason}")
        self.worker = worker
        self.reason = reason


class JobFailed(MuError):
    """The job did not complete; its outputs must not be presented as complete."""

    def __init__(self, message: str, failures: list[WorkerFailure] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []
        #: What the job cost up to its failure (a backends.Cost), when it got that far.
        self.cost = None


class WorkerFailure:
    """What is known about one failed worker, for the failure report."""

    def __init__(
        self, worker: int, attempt: int, last_state: str, error: str, stderr_tail: str
    ) -> None:
        self.worker = worker
        self.attempt = attempt
        self.last_state = last_state
        self.error = error
        self.stderr_tail = stderr_tail

    def describe(self) -> str:
        lines = [
            f"worker {self.worker} (attempt {self.attempt}) failed in state "
            f"{self.last_state!r}: {self.error}"
        ]
        tail = self.stderr_tail.strip()
        if tail:
            lines.append("  stderr tail:")
            lines.extend("    " + line for line in tail.splitlines()[-12:])
        return "\n".join(lines)
