"""Named Python operations that a worker can run, extended by pipelines.

mu could only run executables shipped in the Lambda bundle. Here a worker's ``run`` command may
instead name an operation, a Python callable registered under a name. A pipeline module exposes
``register_operations(registry)``; the launch payload lists those modules, so the worker process
(local, Lambda or Ray) imports exactly the operations its job needs. The registry is an object
passed around, not a module-level dict, so two jobs in one process never see each other's ops.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class PeerLink(Protocol):
    """The worker's relay connection, as an operation may use it (``OpContext.peer``): what
    ``send_blob`` and ``recv_blob`` do, without a file in between or a round trip to the
    coordinator. Only a coroutine operation can use it (it runs in the worker's loop)."""

    async def send(self, data: bytes) -> None:
        """Send one blob to the peer the worker connected to."""
        ...

    async def recv(self, expected: int | list[int]) -> bytes:
        """The next blob, which must come from worker ``expected`` (or one of those ids, a
        worker's instances); a blob from any other is refused as ``recv_blob`` refuses it."""
        ...

    async def recv_from(self, expected: int | list[int]) -> tuple[int, bytes]:
        """``recv``, and the id the relay certified the blob's sender by (one of
        ``expected``)."""
        ...

    @property
    def my_id(self) -> int:
        """The id the relay stamps on what this worker sends (a duplicate's own id)."""
        ...


@dataclass
class OpContext:
    """What an operation may use: the worker's private directory, its variables, (once the
    worker connected to the relay) its peer link and, on one machine, ``local_dir``.

    ``local_dir``: a directory that every worker of this job's backend can reach and no one
    else, given only by a backend whose workers all run on this machine (the local backend,
    on the worker's or its host's command line, never in the launch payload); None
    elsewhere (Lambda, Ray). Peers may put bulk bytes there and send only their hash through
    the relay (``pipelines/xcenc/handoff.py``)."""

    workdir: Path
    variables: dict[str, str] = field(default_factory=dict)
    worker_id: int = -1
    peer: PeerLink | None = None
    local_dir: Path | None = None

    def path(self, name: str | Path) -> Path:
        """Resolve a file argument: relative names live in the worker's directory."""
        p = Path(name)
        return p if p.is_absolute() else self.workdir / p


Operation = Callable[..., Any]
SMALL = 1 << 20


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

    def make_blob(ctx: OpContext, path: str, size: int, seed: int) -> dict[str, Any]:
        data = hashlib.shake_256(b"excamera blob %d" % seed).digest(size)
        ctx.path(path).write_bytes(data)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def file_digest(ctx: OpContext, path: str) -> dict[str, Any]:
        data = ctx.path(path).read_bytes()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    # Small ones run in the loop (a thread hop costs more than hashing 100 KB), big ones not.
    async def blob(ctx: OpContext, path: str, size: int, seed: int) -> dict[str, Any]:
        """``size`` bytes that depend on ``seed`` only (a stand-in state of a known digest)."""
        if not 0 <= int(size) <= 1 << 30:
            raise ValueError("blob: size is 0..1 GiB")
        if int(size) <= SMALL:
            return make_blob(ctx, path, int(size), int(seed))
        return await asyncio.to_thread(make_blob, ctx, path, int(size), int(seed))

    async def digest(ctx: OpContext, path: str) -> dict[str, Any]:
        if ctx.path(path).stat().st_size <= SMALL:
            return file_digest(ctx, path)
        return await asyncio.to_thread(file_digest, ctx, path)

    registry.register("sleep", sleep)
    registry.register("write_text", write_text)
    registry.register("read_text", read_text)
    registry.register("blob", blob)
    registry.register("digest", digest)
