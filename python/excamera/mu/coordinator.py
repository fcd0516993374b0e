"""The coordinator: launches workers, accepts their TLS connections and drives one machine each.

One asyncio task per worker runs that worker's machine (an ``async def``, see
:mod:`excamera.mu.machines`); one reader task per connection matches answers to commands. There
is no thread per worker and no polling loop, so a single coordinator drives thousands of
workers, as mu's select() loop did, but with machines that read top to bottom.

Failure handling: a worker that exits, drops its connection or lets a command time out is
*lost*. With ``retries=K`` its machine is relaunched from the start on a fresh worker up to K
times (machines must therefore be restartable: they may only write outputs under
deterministic keys). A command the worker answers with an error (a missing key, a non-zero
exit) is deterministic and fails the job at once. When the job fails every other worker is
stopped and :class:`JobFailed` names each failed worker with its last state and stderr tail;
a failed job returns no result, so partial output is never presented as complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tls
from .backends.base import Backend, WorkerProcess
from .errors import CommandFailed, JobFailed, WorkerFailure, WorkerLost
from .machines import (
    JobContext,
    Machine,
    Observer,
    Progress,
    StateLog,
    Transition,
    WorkerHandle,
)
from .payload import LaunchPayload
from .protocol import Message, ProtocolError, read_message

log = logging.getLogger("excamera.mu.coordinator")

HELLO_TIMEOUT = 15.0
EXIT_GRACE = 5.0


@dataclass
class WorkerResult:
    """What one worker's machine produced, and when each of its states was first reached."""

    worker: int
    final_state: str
    attempts: int
    output: Any
    timings: dict[str, float]


@dataclass
class JobResult:
    job_id: str
    elapsed: float
    workers: dict[int, WorkerResult]
    transitions: list[Transition] = field(default_factory=list)

    @property
    def outputs(self) -> dict[int, Any]:
        return {k: w.output for k, w in self.workers.items()}


@dataclass
class _Pending:
    worker: int
    future: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter, Message]]
    done: asyncio.Future[None]


class _Failed(Exception):
    def __init__(self, failure: WorkerFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


class Coordinator:
    """Run ``machine`` on ``n_workers`` workers started by ``backend``.

    ``ca_cert``/``ca_key``: a long-lived CA to issue this job's intermediate from (else a
    per-job root CA is created). ``server_cert``/``server_key``: the coordinator's own
    certificate under that CA (else one is issued for ``host``). ``relay``: the (host, port)
    workers dial for ``connect``; ``embedded_relay=True`` runs one in this process with
    credentials from the job CA. ``params`` reach every machine as ``ctx.params``.
    """

    def __init__(
        self,
        job_name: str,
        n_workers: int,
        backend: Backend,
        storage_url: str,
        machine: Machine,
        *,
        params: dict[str, Any] | None = None,
        worker_ids: Iterable[int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        server_cert: Path | None = None,
        server_key: Path | None = None,
        relay: tuple[str, int] | None = None,
        embedded_relay: bool = False,
        retries: int = 0,
        command_timeout: float | None = None,
        connect_timeout: float = 60.0,
        operation_modules: Iterable[str] = (),
        observers: Iterable[Observer] = (),
        debug: bool = False,
    ) -> None:
        if n_workers < 1:
            raise ValueError("a job needs at least one worker")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.job_id = f"{job_name}-{secrets.token_hex(4)}"
        tls._check_job(self.job_id)
        self.n_workers = n_workers
        self.worker_ids = list(worker_ids) if worker_ids is not None else list(range(n_workers))
        if len(self.worker_ids) != n_workers or len(set(self.worker_ids)) != n_workers:
            raise ValueError("worker_ids must be n_workers distinct ids")
        self.backend = backend
        self.storage_url = storage_url
        self.machine = machine
        self.params = dict(params or {})
        self.host = host
        self.port = port
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.server_cert, self.server_key = server_cert, server_key
        self.relay_addr = relay
        self.embedded_relay = embedded_relay
        self.retries = retries
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.operation_modules = list(operation_modules)
        self.observers: list[Observer] = list(observers)
        self.debug = debug
        self.progress = Progress()
        self.log = StateLog(self.progress)
        self._pending: dict[str, _Pending] = {}
        self._authority: tls.CertificateAuthority | None = None
        self.bound_port: int | None = None

    # --- setup ------------------------------------------------------------------------------

    def _server_credentials(self) -> tls.Credentials:
        assert self._authority is not None
        if self.server_cert is not None and self.server_key is not None:
            root = self._authority.root_pem
            creds = tls.Credentials.from_files(self.server_cert, self.server_key, self.ca_cert)
            return tls.Credentials(creds.cert_pem, creds.key_pem, root)
        return self._authority.issue_server([self.host])

    async def _on_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Match a new connection to the launch that is waiting for it, by identity and token."""
        peer = writer.get_extra_info("peername")
        ident = tls.peer_identity(writer.get_extra_info("ssl_object"))
        try:
            if ident is None or ident.job != self.job_id:
                raise ProtocolError(f"certificate names no worker of job {self.job_id}")
            hello = await asyncio.wait_for(read_message(reader), HELLO_TIMEOUT)
            if hello is None or hello.type != "hello":
                raise ProtocolError("expected a hello frame")
            pending = self._pending.get(str(hello.get("token", "")))
            if pending is None or pending.worker != ident.worker_id:
                raise ProtocolError(f"no launch of worker {ident.worker_id} awaits this token")
            if hello.get("worker") != ident.worker_id or hello.get("job") != self.job_id:
                raise ProtocolError("hello does not match the certificate")
        except (TimeoutError, ProtocolError, ConnectionError, OSError) as exc:
            log.warning("refused connection from %s: %s", peer, exc)
            writer.close()
            return
        del self._pending[str(hello["token"])]
        if pending.future.done():  # the launch gave up on this worker meanwhile
            writer.close()
            return
        pending.future.set_result((reader, writer, hello))
        # Keep this handler alive as long as the worker's machine uses the connection.
        with contextlib.suppress(asyncio.CancelledError):
            await pending.done

    # --- one worker -------------------------------------------------------------------------

    async def _await_connection(
        self, pending: _Pending, proc: WorkerProcess
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Message]:
        """The worker's connection, or WorkerLost if it exits or does not connect in time."""
        exited = asyncio.ensure_future(proc.wait())
        try:
            done, _ = await asyncio.wait(
                {pending.future, exited},
                timeout=self.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not exited.done():
                exited.cancel()
        if pending.future in done:
            return pending.future.result()
        pending.future.cancel()
        if exited in done:
            raise WorkerLost(
                pending.worker, f"exited with code {exited.result()} before connecting"
            )
        raise WorkerLost(
            pending.worker, f"did not connect within {self.connect_timeout:g} s"
        )

    async def _attempt(self, k: int, attempt: int, ctx: JobContext) -> Any:
        assert self._authority is not None and self.bound_port is not None
        creds = self._authority.issue_worker(self.job_id, k)
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        pending = _Pending(k, loop.create_future(), loop.create_future())
        self._pending[token] = pending
        relay_host, relay_port = self.relay_addr or ("", 0)
        payload = LaunchPayload(
            coordinator_host=self.host,
            coordinator_port=self.bound_port,
            job_id=self.job_id,
            worker_id=k,
            token=token,
            cert_pem=creds.cert_pem.decode(),
            key_pem=creds.key_pem.decode(),
            ca_pem=creds.ca_pem.decode(),
            storage_url=self.storage_url,
            relay_host=relay_host,
            relay_port=relay_port,
            operation_modules=self.operation_modules,
            connect_timeout=self.connect_timeout,
            debug=self.debug,
        )
        self.log.record(k, attempt, "launching")
        proc: WorkerProcess | None = None
        handle: WorkerHandle | None = None
        finished = False
        try:
            proc = await self.backend.launch(payload)
            reader, writer, hello = await self._await_connection(pending, proc)
            handle = WorkerHandle(
                k, attempt, reader, writer, self.log,
                pid=hello.get("pid"), command_timeout=self.command_timeout,
            )
            handle.state = "connected"
            output = await self.machine(handle, ctx)
            await handle.quit()
            handle.state = "done"
            finished = True
            return output
        except (WorkerLost, CommandFailed, Exception) as exc:
            last = self.log.last.get(k, "")
            is_lost = isinstance(exc, WorkerLost)
            self.log.record(k, attempt, "lost" if is_lost else "error")
            reason = exc.reason if isinstance(exc, WorkerLost) else (
                exc.message if isinstance(exc, CommandFailed) else f"{type(exc).__name__}: {exc}"
            )
            tail = ""
            if proc is not None:
                if handle is not None:
                    handle.close()
                code = await self._stop(proc, grace=1.0 if is_lost else 0.0)
                if is_lost and code is not None and "exited" not in reason:
                    reason += f" (process exited with code {code})"
                tail = proc.stderr_tail()
            failure = WorkerFailure(k, attempt, last, reason, tail)
            if is_lost:
                raise _Lost(failure) from exc
            raise _Failed(failure) from exc
        finally:
            self._pending.pop(token, None)
            if not pending.future.done():
                pending.future.cancel()
            if not pending.done.done():
                pending.done.set_result(None)
            if handle is not None:
                handle.close()
            if proc is not None and (finished or proc.alive()):
                # A clean quit lets the worker remove its own directory; then it must exit.
                await self._stop(proc, grace=EXIT_GRACE if finished else 0.0)

    async def _stop(self, proc: WorkerProcess, grace: float) -> int | None:
        if grace > 0:
            try:
                return await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                pass
        await proc.kill()
        return await proc.wait()

    async def _drive(self, k: int, ctx: JobContext) -> tuple[Any, int]:
        for attempt in range(self.retries + 1):
            try:
                return await self._attempt(k, attempt, ctx), attempt + 1
            except _Lost as lost:
                if attempt >= self.retries:
                    raise _Failed(lost.failure) from None
                log.warning("%s; relaunching (retry %d of %d)", lost.failure.describe(),
                            attempt + 1, self.retries)
        raise AssertionError("unreachable")

    # --- the job ----------------------------------------------------------------------------

    async def run(self) -> JobResult:
        """Run the job to completion; JobFailed if any worker's machine could not finish."""
        self.log = StateLog(self.progress, self.observers)
        job_t0 = time.monotonic()
        try:
            self._authority = tls.job_authority(
                self.job_id, self.ca_cert,
                tls.find_ca_key(self.ca_cert, self.ca_key) if self.ca_cert else None,
            )
            server_ctx = tls.server_context(self._server_credentials())
        except tls.TLSSetupError as exc:
            await self.backend.close()
            raise JobFailed(f"job {self.job_id}: TLS setup failed: {exc}") from None
        server = await asyncio.start_server(
            self._on_connect, self.host, self.port, ssl=server_ctx,
            backlog=max(128, min(self.n_workers, 4096)), ssl_handshake_timeout=HELLO_TIMEOUT,
        )
        self.bound_port = server.sockets[0].getsockname()[1]
        relay = None
        if self.embedded_relay:
            from .relay import Relay

            relay = Relay(self._authority.issue_server([self.host]))
            self.relay_addr = (self.host, await relay.start(self.host, 0))
        log.info("job %s: coordinator on %s:%d, %d workers", self.job_id, self.host,
                 self.bound_port, self.n_workers)
        ctx = JobContext(self.job_id, self.n_workers, self.progress, self.storage_url,
                         self.params)
        tasks = {asyncio.create_task(self._drive(k, ctx), name=f"worker-{k}"): k
                 for k in self.worker_ids}
        failures: list[WorkerFailure] = []
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if any(t.exception() is not None for t in done):
                    break
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t, k in tasks.items():
                if t.cancelled():
                    continue
                exc = t.exception()
                if isinstance(exc, _Failed):
                    failures.append(exc.failure)
                elif exc is not None:
                    failures.append(WorkerFailure(k, -1, self.log.last.get(k, ""),
                                                  f"{type(exc).__name__}: {exc}", ""))
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            server.close()
            if relay is not None:
                await relay.close()
            await self.backend.close()
        elapsed = time.monotonic() - job_t0
        if failures:
            failures.sort(key=lambda f: f.worker)
            head = (f"job {self.job_id} failed after {elapsed:.1f} s: "
                    f"{len(failures)} worker(s) failed, outputs are incomplete")
            raise JobFailed("\n".join([head, *(f.describe() for f in failures)]), failures)
        results: dict[int, WorkerResult] = {}
        for t, k in tasks.items():
            output, attempts = t.result()
            timings: dict[str, float] = {}
            for tr in self.log.transitions:
                if tr.worker == k and tr.attempt == attempts - 1:
                    timings.setdefault(tr.state, tr.t)
            results[k] = WorkerResult(k, self.log.last.get(k, ""), attempts, output, timings)
        return JobResult(self.job_id, elapsed, results, list(self.log.transitions))


class _Lost(Exception):
    def __init__(self, failure: WorkerFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure
