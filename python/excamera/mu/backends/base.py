"""The backend interface: how a coordinator starts, watches and stops workers.

A backend only launches ``python -m excamera.mu.worker``-equivalents with a LaunchPayload; it never
talks the command protocol (the worker connects back to the coordinator itself). So a Lambda
backend is an ``invoke`` with the payload as its event, a Ray backend a remote task, and the
local backend a subprocess, all behind the same three operations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..payload import LaunchPayload


class WorkerProcess(ABC):
    """One launched worker as its backend sees it."""

    worker_id: int

    @abstractmethod
    def alive(self) -> bool:
        """Whether the worker may still be running."""

    @abstractmethod
    async def wait(self) -> int | None:
        """Wait until the worker ended; its exit code if the backend knows one."""

    @abstractmethod
    async def kill(self) -> None:
        """Stop the worker now (idempotent)."""

    @abstractmethod
    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr, for failure reports."""

    @property
    def pid(self) -> int | None:
        return None


class Backend(ABC):
    """Starts workers; ``close()`` stops any still running and releases resources."""

    name = "backend"

    @abstractmethod
    async def launch(self, payload: LaunchPayload) -> WorkerProcess: ...

    async def close(self) -> None:
        return None
