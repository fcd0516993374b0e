"""Named Python operations that a worker can run, extended by pipelines.

mu could only run executables shipped in the Lambda bundle. Here a worker's ``run`` command may
instead name an operation, a Python callable registered under a name. A pipeline module exposes
``register_operations(registry)``; the launch payload lists those modules, so the worker process
(local, Lambda or Ray) imports exactly the operations its job needs. The registry is an object
passed around, not a module-level dict, so two jobs in one process never see each other's ops.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OpContext:
    """What an operation may use: the worker's private directory and its variables."""

    workdir: Path
    variables: dict[str, str] = field(default_factory=dict)
    worker_id: int = -1

    def path(self, name: str | Path) -> Path:
        """Resolve a file argument: relative names live in the worker's directory."""
        p = Path(name)
        return p if p.is_absolute() else self.workdir / p


Operation = Callable[..., Any]


class OperationRegistry:
    """Maps operation names to callables ``op(ctx: OpContext, **kwargs) -> dict | None``.

    A synchronous callable runs in a thread (it is usually CPU-bound, e.g. image conversion), so
    the worker's event loop keeps answering the coordinator meanwhile; a coroutine function runs
    in the loop.
    """

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def register(self, name: str, op: Operation) -> None:
        if name in self._ops and self._ops[name] is not op:
            raise ValueError(f"operation {name!r} is already registered")
        self._ops[name] = op

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def load_modules(self, modules: list[str]) -> None:
        """Import each module and let its ``register_operations(registry)`` add its ops."""
        for name in modules:
            module = importlib.import_module(name)
            hook = getattr(module, "register_operations", None)
            if hook is None:
                raise ValueError(f"module {name} has no register_operations(registry)")
            hook(self)

    async def call(self, name: str, ctx: OpContext, kwargs: dict[str, Any]) -> dict[str, Any]:
        op = self._ops.get(name)
        if op is None:
            known = ", ".join(self.names()) or "none"
            raise KeyError(f"unknown operation {name!r} (registered: {known})")
        if inspect.iscoroutinefunction(op):
            result = await op(ctx, **kwargs)
        else:
            result = await asyncio.to_thread(op, ctx, **kwargs)
        if result is None:
            return {}
        if not isinstance(result, dict):
            return {"result": result}
        return result


def builtin_operations(registry: OperationRegistry) -> None:
    """Small operations every worker has, useful for tests and health checks."""

    async def sleep(ctx: OpContext, seconds: float = 0.0) -> dict[str, Any]:
        await asyncio.sleep(float(seconds))
        return {"slept": float(seconds)}

    def write_text(ctx: OpContext, path: str, text: str) -> dict[str, Any]:
        target = ctx.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return {"bytes": len(text.encode())}

    def read_text(ctx: OpContext, path: str) -> dict[str, Any]:
        return {"text": ctx.path(path).read_text()}

    registry.register("sleep", sleep)
    registry.register("write_text", write_text)
    registry.register("read_text", read_text)
