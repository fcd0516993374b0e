"""The backend interface: how a coordinator starts, watches and stops workers.

A backend only launches ``run_worker``-equivalents with a LaunchPayload; it never talks the
command protocol (the worker connects back to the coordinator itself). So a Lambda backend is an
``invoke`` with the payload as its event, a Ray backend a remote task, and the local backend a
subprocess, all behind the same few operations.

A new backend is one module in this package with one :class:`Backend` subclass that sets
``name``; the registry (``excamera.mu.backends``) finds it and ``--backend NAME`` selects it.
Its own command-line options come from ``add_arguments``, and ``from_options`` builds it from
the parsed values.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..payload import LaunchPayload


class BackendError(Exception):
    """The backend cannot run this job as asked (one line, names what failed)."""


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


@dataclass
class Cost:
    """What a job cost on its backend.

    Local and Ray jobs report worker CPU-seconds; Lambda jobs the billed GB-seconds, the number
    of requests and an estimate in dollars at the prices of one named region and date.
    """

    backend: str
    worker_cpu_s: float | None = None
    requests: int | None = None
    gb_seconds: float | None = None
    usd: float | None = None
    #: Where the prices come from (region, architecture, date), when there is a dollar figure.
    prices: str = ""
    #: Figures produced by a stand-in for the real service (the tests' Lambda emulator).
    emulated: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        parts: list[str] = []
        if self.worker_cpu_s is not None:
            parts.append(f"{self.worker_cpu_s:.2f} worker CPU-seconds")
        if self.gb_seconds is not None:
            parts.append(f"{self.gb_seconds:.3f} GB-s billed")
        if self.requests is not None:
            parts.append(f"{self.requests} requests")
        if self.usd is not None:
            parts.append(f"about ${self.usd:.6f} at {self.prices}")
        text = ", ".join(parts) or "not measured"
        return f"cost ({self.backend}{', emulated' if self.emulated else ''}): {text}"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Backend(ABC):
    """Starts workers; ``close()`` stops any still running and releases resources."""

    name = "backend"
    #: Offered by ``--backend`` (the in-process backend is for tests and embedding only).
    cli = True
    #: Workers run on other machines: they dial the coordinator's advertised address, cannot
    #: read a local directory, and must prove they run the coordinator's code.
    remote = False
    #: For a remote backend: whether the user vouched that a local path is shared by all nodes.
    shared_storage = False

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Add this backend's own command-line options (all optional)."""
        return None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Backend:
        """Build the backend from the parsed command-line values."""
        return cls()

    def default_advertise(self, host: str) -> str | None:
        """The address workers dial when no ``--advertise`` was given and the coordinator
        listens on ``host``; None: ``host`` itself."""
        return None

    async def prepare(self, n_workers: int, advertised_host: str) -> None:
        """Check (and reserve) capacity for ``n_workers`` simultaneous workers before any is
        launched; BackendError naming what was asked for and what exists if it cannot."""
        return None

    @abstractmethod
    async def launch(self, payload: LaunchPayload) -> WorkerProcess: ...

    def cost(self, worker_cpu_s: float | None) -> Cost:
        """The job's cost; ``worker_cpu_s`` is what the workers reported at quit."""
        return Cost(self.name, worker_cpu_s=worker_cpu_s)

    async def close(self) -> None:
        return None
