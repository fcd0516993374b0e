"""A worker host: one long-lived process that runs many mu workers as asyncio tasks.

A process per worker costs a Python start-up (about 0.2 s and 40 MB) and a process slot per
worker; a machine with two cores cannot start thousands of them. A worker host is started
once (one per core, say) by the local backend (``--worker-processes K``) and runs each worker
it is handed as a ``run_worker`` task on its event loop: the same runtime, its own directory,
certificate, coordinator connection and relay connection, so nothing about the protocol,
TLS or relay changes. CPU-heavy operations already run in threads (the codec releases the
GIL) or as child processes (vpxenc), so workers in one host do not wait on each other's
computations.

Its parent talks to it in JSON lines. On stdin::

    {"launch": SLOT, "payload": {...launch payload...}}
    {"kill": SLOT}

and on stdout, once per worker::

    {"exited": SLOT, "code": C, "tail": "the worker's last log lines"}

with C = 0 after a clean quit, 1 after a failure (the tail says which), -9 when killed. End of
stdin ends every worker still running and then the host. Each worker's log lines (and its
child processes' complaints) go to a bounded tail of its own, reported with its exit, so a
lost worker's report quotes that worker, not its neighbours; the host's own stderr gets only
what concerns the host.

Connection attempts of the host's workers are paced (``--dial-slots`` per server, held from
the TCP connect to the end of the TLS handshake): the servers take a bounded number of
handshakes per source address, and a host of thousands of workers is one address.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import json
import logging
import ssl
import sys
import traceback
from pathlib import Path
from typing import Any

from .evloop import (
    LOOPS,
    loop_name,
    raise_fd_limit,
    run,
    set_tls_buffer,
    tune_for_many_connections,
)
from .operations import OperationRegistry, builtin_operations
from .payload import LaunchPayload
from .protocol import ProtocolError
from .worker import DialSlots, WorkerSession, run_worker

DIAL_SLOTS = 64
TAIL_BYTES = 8 * 1024
LINE_LIMIT = 1 << 20  # a launch line: the payload's certificates and options


class _Tail:
    """The last ``limit`` bytes of one worker's log, line by line."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.lines: collections.deque[str] = collections.deque()
        self.size = 0

    def add(self, text: str) -> None:
        for line in text.splitlines():
            self.lines.append(line)
            self.size += len(line) + 1
        while self.size > self.limit and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self.lines)[-self.limit:]


_current: contextvars.ContextVar[_Tail | None] = contextvars.ContextVar("mu_worker_tail",
                                                                        default=None)


class _RouteHandler(logging.Handler):
    """A record logged inside a worker's task goes to that worker's tail; others to stderr."""

    def __init__(self, stderr: logging.Handler) -> None:
        super().__init__()
        self.stderr = stderr

    def emit(self, record: logging.LogRecord) -> None:
        tail = _current.get()
        if tail is None:
            self.stderr.handle(record)
            return
        try:
            tail.add(self.format(record))
        except Exception:  # a bad record must not take the host down
            self.handleError(record)


class WorkerHost:
    """The host's state: its workers by slot, their registries, the pacing of dials."""

    def __init__(self, out: asyncio.StreamWriter | None, dial_slots: int,
                 local_dir: Path | None = None) -> None:
        self.out = out
        self.local_dir = local_dir
        self.dial_slots = DialSlots(dial_slots)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.tails: dict[int, _Tail] = {}
        self.killed: set[int] = set()
        self._registries: dict[tuple[str, ...], OperationRegistry] = {}

    def registry(self, modules: list[str]) -> OperationRegistry:
        key = tuple(modules)
        reg = self._registries.get(key)
        if reg is None:
            reg = OperationRegistry()
            builtin_operations(reg)
            reg.load_modules(list(modules))
            self._registries[key] = reg
        return reg

    def report(self, obj: dict[str, Any]) -> None:
        if self.out is not None and not self.out.is_closing():
            self.out.write((json.dumps(obj) + "\n").encode())

    def launch(self, slot: int, raw: Any) -> None:
        tail = self.tails[slot] = _Tail()
        if slot in self.tasks:
            tail.add(f"worker host: slot {slot} is taken")
            self.report({"exited": slot, "code": 2, "tail": tail.text()})
            return
        try:
            payload = LaunchPayload.from_dict(raw)
            registry = self.registry(payload.operation_modules)
        except (ValueError, ImportError) as exc:
            tail.add(f"mu worker: {exc}")
            self.report({"exited": slot, "code": 2, "tail": tail.text()})
            return
        task = asyncio.create_task(self._run(slot, payload, registry, tail),
                                   name=f"worker-{payload.worker_id}")
        self.tasks[slot] = task

    async def _run(self, slot: int, payload: LaunchPayload, registry: OperationRegistry,
                   tail: _Tail) -> None:
        _current.set(tail)  # this task's context only (and the tasks and threads it starts)

        def hook(session: WorkerSession) -> None:
            session.stderr_note = tail.add  # type: ignore[method-assign]

        code = 0
        try:
            await run_worker(payload, registry, shared=True, dial_slots=self.dial_slots,
                             session_hook=hook, local_dir=self.local_dir)
        except asyncio.CancelledError:
            code = -9
        except (ConnectionError, ProtocolError, ssl.SSLError, OSError) as exc:
            tail.add(f"mu worker {payload.worker_id}: {exc}")
            code = 1
        except Exception:  # report any other failure as this worker's, keep the host
            tail.add(traceback.format_exc())
            code = 1
        finally:
            self.tasks.pop(slot, None)
            if slot in self.killed:
                code = -9
                self.killed.discard(slot)
            self.report({"exited": slot, "code": code, "tail": self.tails.pop(slot).text()})

    def kill(self, slot: int) -> None:
        task = self.tasks.get(slot)
        if task is not None:
            self.killed.add(slot)
            task.cancel()

    async def stop_all(self) -> None:
        for slot in list(self.tasks):
            self.kill(slot)
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def serve(dial_slots: int, local_dir: Path | None = None) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        sys.stdout)
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    host = WorkerHost(out, dial_slots, local_dir)
    try:
        while line := await reader.readline():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                print(f"worker host: not a JSON line: {line[:80]!r}", file=sys.stderr)
                return 2
            if "launch" in msg:
                host.launch(int(msg["launch"]), msg.get("payload"))
            elif "kill" in msg:
                host.kill(int(msg["kill"]))
            await out.drain()
    finally:
        await host.stop_all()
        await out.drain()
        out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m excamera.mu.workerhost``, started by the local backend."""
    p = argparse.ArgumentParser(prog="python -m excamera.mu.workerhost",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dial-slots", type=int, default=DIAL_SLOTS,
                   help="connections to one server being opened at once by this host's "
                   f"workers ({DIAL_SLOTS})")
    p.add_argument("--loop", choices=LOOPS, default="auto",
                   help="event loop: uvloop when installed (auto), or asyncio's")
    p.add_argument("--tls-buffer-kib", type=int, default=64,
                   help="asyncio's per-connection TLS read buffer in KiB (64)")
    p.add_argument("--local-dir", type=Path, default=None,
                   help="a directory shared by this machine's workers of the job, for bulk "
                   "hand-offs (OpContext.local_dir; the local backend gives it)")
    p.add_argument("-D", dest="debug", action="store_true", help="debug logging")
    p.add_argument("-P", dest="profile", metavar="FILE",
                   help="write cProfile data (CPU time) of the host to FILE at its end")
    args = p.parse_args(argv)
    if not 1 <= args.dial_slots <= 4096:
        p.error("--dial-slots is 1..4096")
    try:
        set_tls_buffer(args.tls_buffer_kib)
        loop = loop_name(args.loop)
        tune_for_many_connections()
    except ValueError as exc:
        p.error(str(exc))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("worker host %(asctime)s %(levelname)s %(message)s"))
    route = _RouteHandler(stderr)
    # milliseconds since the host started: cheaper than a formatted date, line by line
    route.setFormatter(logging.Formatter("%(relativeCreated)d ms %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, handlers=[route])
    raise_fd_limit(1 << 20)  # up to the hard limit: two connections per worker
    if not args.profile:
        return run(serve(args.dial_slots, args.local_dir), loop)
    import cProfile
    import time

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        return run(serve(args.dial_slots, args.local_dir), loop)
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    sys.exit(main())
