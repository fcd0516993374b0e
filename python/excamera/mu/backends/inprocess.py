"""InProcessBackend: workers are ``run_worker`` tasks in the coordinator's own event loop.

It exercises the full protocol (TLS, commands, storage) without process start-up cost, which is
how a single test can show one coordinator driving hundreds of workers, and that neither side
needs a thread per worker.
"""

from __future__ import annotations

import asyncio
import traceback

from ..operations import OperationRegistry, builtin_operations
from ..payload import LaunchPayload
from .base import Backend, WorkerProcess


class InProcessWorker(WorkerProcess):
    def __init__(self, worker_id: int, task: asyncio.Task[None]) -> None:
        self.worker_id = worker_id
        self.task = task
        self._error = ""
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._error = "".join(traceback.format_exception(exc))[-4096:]

    def alive(self) -> bool:
        return not self.task.done()

    async def wait(self) -> int | None:
        await asyncio.wait({self.task})
        if self.task.cancelled():
            return -9
        return 1 if self.task.exception() is not None else 0

    async def kill(self) -> None:
        self.task.cancel()
        await self.wait()

    def stderr_tail(self) -> str:
        return self._error


class InProcessBackend(Backend):
    name = "inprocess"
    cli = False

    def __init__(self, registry: OperationRegistry | None = None) -> None:
        self.registry = registry
        self.workers: list[InProcessWorker] = []

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        from ..worker import run_worker

        registry = self.registry
        if registry is None:
            registry = OperationRegistry()
            builtin_operations(registry)
            registry.load_modules(payload.operation_modules)
        task = asyncio.create_task(run_worker(payload, registry))
        w = InProcessWorker(payload.worker_id, task)
        self.workers.append(w)
        return w

    async def close(self) -> None:
        await asyncio.gather(*(w.kill() for w in self.workers), return_exceptions=True)
