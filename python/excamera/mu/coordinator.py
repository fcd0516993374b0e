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

Remote workers (Lambda, Ray) dial in from elsewhere: the coordinator binds ``host`` but tells
workers ``advertise``; the launch payload carries the coordinator's code identity and the
coordinator refuses a worker whose hello reports other code (a bit-exact hand-off needs the same
codec on both sides), which fails the job at once since a relaunch would run the same code.

Spares (mu's overprovisioning): with ``spares=S`` the coordinator launches S extra workers that
connect and wait. A worker launch (the first, a retry, a duplicate) takes an idle spare when
there is one and hands it the worker's identity (a fresh certificate for that worker id), so a
slow or failed cold start costs nothing; spares never used are told to quit at the end.

Stragglers (``straggler=StragglerPolicy(k)``, see :mod:`excamera.mu.stragglers`): a worker
that has spent k times its peers' median in a phase gets a duplicate, a concurrent attempt of
the same machine; the first instance to finish wins, the other is killed and recorded as
``superseded``. One instance lost while the other runs is not retried; both lost count as one
loss of the worker. Machines must be restartable (as for retries) for this to be on.

Scale: the listener's handshake caps (``max_handshakes``, ``max_handshakes_per_address``; see
:mod:`excamera.mu.listener`) are the coordinator's to set, and its embedded relay takes every
worker, spare and duplicate of the job.
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

from .. import identity, needs
from . import tls
from .backends.base import Backend, BackendError, Cost, WorkerProcess
from .errors import CommandFailed, JobFailed, MuError, WorkerFailure, WorkerLost
from .listener import MAX_HANDSHAKES, MAX_PER_ADDRESS, TLSListener
from .machines import (
    Cmd,
    JobContext,
    Machine,
    Observer,
    Progress,
    StateLog,
    Transition,
    WorkerHandle,
)
from .payload import LaunchPayload
from .protocol import Message, ProtocolError, read_message, write_message
from .stragglers import PhaseClock, Straggler, StragglerPolicy

#: How often the coordinator looks for stragglers (each look costs a few microseconds per
#: phase, not per worker: see PhaseClock.stragglers).
STRAGGLER_TICK = 0.25

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
    #: CPU-seconds the worker's process reported at quit (None if it did not quit cleanly,
    #: or shared its process with other workers).
    cpu_s: float | None = None
    #: The attempt whose output this is (a retry's or a duplicate's when that one finished).
    winner: int = 0
    #: Whether a duplicate of this worker was launched (whichever instance won).
    duplicated: bool = False


@dataclass
class JobResult:
    job_id: str
    elapsed: float
    workers: dict[int, WorkerResult]
    transitions: list[Transition] = field(default_factory=list)
    cost: Cost | None = None
    #: Duplicates launched for stragglers, and how many of them finished first.
    duplicates: int = 0
    duplicates_won: int = 0

    @property
    def outputs(self) -> dict[int, Any]:
        return {k: w.output for k, w in self.workers.items()}


@dataclass
class _Pending:
    worker: int
    future: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter, Message]]
    done: asyncio.Future[None]


class CodeMismatch(MuError):
    """A worker runs other code than the coordinator (not retried: a relaunch runs it too)."""


@dataclass
class _Connected:
    """A launched worker whose hello was accepted."""

    proc: WorkerProcess
    pending: _Pending
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hello: Message


class _Failed(Exception):
    def __init__(self, failure: WorkerFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


@dataclass
class _Line:
    """One worker's instances: attempts numbered in launch order, at most one duplicate."""

    worker: int
    next_attempt: int = 0
    duplicate_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    duplicated: bool = False
    #: attempt -> whether that instance is the duplicate
    running: dict[int, bool] = field(default_factory=dict)


class Coordinator:
    """Run ``machine`` on ``n_workers`` workers started by ``backend``.

    ``ca_cert``/``ca_key``: a long-lived CA to issue this job's intermediate from (else a
    per-job root CA is created). ``server_cert``/``server_key``: the coordinator's own
    certificate under that CA (else one is issued for the advertised host). ``host``: the
    address to listen on; ``advertise``: the address workers dial (default ``host``).
    ``relay``: the (host, port) workers dial for ``connect``; ``embedded_relay=True`` runs one
    in this process with credentials from the job CA, on ``host`` (port ``relay_port``, 0 for
    any free one) and advertised as ``advertise``. ``spares``: extra workers launched to stand
    in for slow or failed launches. ``straggler``: when to duplicate a slow worker (off by
    default: the machine must be restartable). ``max_handshakes`` and
    ``max_handshakes_per_address``: the TLS handshakes in flight that the coordinator (and its
    embedded relay) accept at once, in all and from one address. ``inject_slow``: fault
    injection for tests and benchmarks, worker id -> factor by which that worker's commands
    are slowed (its duplicate's are not).
    ``params`` reach every machine as ``ctx.params``.
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
        advertise: str | None = None,
        spares: int = 0,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        server_cert: Path | None = None,
        server_key: Path | None = None,
        relay: tuple[str, int] | None = None,
        embedded_relay: bool = False,
        relay_port: int = 0,
        retries: int = 0,
        command_timeout: float | None = None,
        connect_timeout: float = 60.0,
        operation_modules: Iterable[str] = (),
        observers: Iterable[Observer] = (),
        debug: bool = False,
        straggler: StragglerPolicy | None = None,
        max_handshakes: int = MAX_HANDSHAKES,
        max_handshakes_per_address: int = MAX_PER_ADDRESS,
        inject_slow: dict[int, float] | None = None,
    ) -> None:
        if n_workers < 1:
            raise ValueError("a job needs at least one worker")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if spares < 0:
            raise ValueError("spares must be >= 0")
        if not (1 <= max_handshakes_per_address <= max_handshakes <= 1 << 16):
            raise ValueError("handshake caps: 1 <= per address <= in all <= 65536")
        for wid, factor in (inject_slow or {}).items():
            if not (isinstance(factor, (int, float)) and 1 <= factor <= 1000):
                raise ValueError(f"inject_slow: worker {wid}'s factor must be 1..1000")
        advertised = advertise or backend.default_advertise(host) or host
        if advertised in ("0.0.0.0", "::", ""):
            raise ValueError(f"workers cannot dial {host or 'an empty address'!r}: give the "
                             "address they should use with --advertise")
        if backend.remote and not backend.shared_storage and not storage_url.startswith("s3://"):
            raise ValueError(
                f"backend {backend.name} runs workers on other machines, which cannot see the "
                f"local storage {storage_url!r}: use s3://bucket[/prefix]"
                + (" (or vouch that every node shares the path with --shared-storage)"
                   if backend.name == "ray" else ""))
        if storage_url.startswith("s3://") and not backend.remote:
            # Local workers run this machine's Python: without boto3 each would fail alike.
            needs.module("boto3", "s3", "s3:// storage")
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
        self.advertise = advertised
        self.spares = spares
        self.code = identity.code_identity()
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.server_cert, self.server_key = server_cert, server_key
        self.relay_addr = relay
        self.embedded_relay = embedded_relay
        self.embedded_relay_port = relay_port
        self.retries = retries
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.operation_modules = list(operation_modules)
        self.observers: list[Observer] = list(observers)
        self.debug = debug
        self.progress = Progress()
        self.log = StateLog(self.progress)
        self._pending: dict[str, _Pending] = {}
        self._authority: tls.JobAuthority | None = None
        self.bound_port: int | None = None
        self._idle: list[_Connected] = []
        self._spare_tasks: list[asyncio.Task[None]] = []
        self._cpu: dict[tuple[int, int], float] = {}
        self.cost: Cost | None = None
        self.straggler = straggler or StragglerPolicy(k=0)
        self.max_handshakes = max_handshakes
        self.max_handshakes_per_address = max_handshakes_per_address
        self.inject_slow = {int(k): float(v) for k, v in (inject_slow or {}).items()}
        self.phases = PhaseClock()
        self._lines: dict[int, _Line] = {}
        self._index = {k: i for i, k in enumerate(self.worker_ids)}
        # Relay ids of duplicates: one per worker, after the workers' and the spares' ids.
        self._dup_base = max(self.worker_ids) + 1 + spares
        self.duplicates = 0
        self.duplicates_won = 0
        self.retried = 0

    # --- setup ------------------------------------------------------------------------------

    def _server_credentials(self) -> tls.Credentials:
        assert self._authority is not None
        if self.server_cert is not None and self.server_key is not None:
            root = self._authority.root_pem
            creds = tls.Credentials.from_files(self.server_cert, self.server_key, self.ca_cert)
            return tls.Credentials(creds.cert_pem, creds.key_pem, root)
        return self._authority.issue_server(self._server_hosts())

    def _server_hosts(self) -> list[str]:
        """The names workers check our certificate against: the advertised address (and the
        bound one, when it is dialable)."""
        return sorted({self.host, self.advertise} - {"0.0.0.0", "::", ""})

    async def _on_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Match a new connection to the launch that is waiting for it, by identity and token."""
        peer = writer.get_extra_info("peername")
        try:
            chain = tls.verified_chain(writer.get_extra_info("ssl_object"))
            ident = tls.worker_of_chain(chain)
            if ident.job != self.job_id:
                raise ProtocolError(f"certificate names no worker of job {self.job_id}")
            # Only a CA this coordinator created signs its workers: a certificate for this job
            # from any other CA under the same long-lived root is refused here too.
            assert self._authority is not None
            if not self._authority.issued(chain[1] if len(chain) > 1 else chain[0]):
                raise ProtocolError(f"certificate was not issued by job {self.job_id}'s CA")
            hello = await asyncio.wait_for(read_message(reader), HELLO_TIMEOUT)
            if hello is None or hello.type != "hello":
                raise ProtocolError("expected a hello frame")
            pending = self._pending.get(str(hello.get("token", "")))
            if pending is None or pending.worker != ident.worker_id:
                # A late start or a second delivery of the same launch (Lambda may deliver an
                # event twice): tell it, so it ends at once and says why.
                await self._refuse(writer, f"no launch of worker {ident.worker_id} awaits this "
                                   "token (a duplicate or late start)")
                raise ProtocolError(f"no launch of worker {ident.worker_id} awaits this token")
            if hello.get("worker") != ident.worker_id or hello.get("job") != self.job_id:
                raise ProtocolError("hello does not match the certificate")
        except (TimeoutError, ProtocolError, ConnectionError, OSError,
                tls.IdentityRefused) as exc:
            log.info("refused connection from %s: %s", peer, exc or type(exc).__name__)
            writer.close()
            return
        del self._pending[str(hello["token"])]
        if pending.future.done():  # the launch gave up on this worker meanwhile
            await self._refuse(writer, f"worker {ident.worker_id}'s launch was abandoned")
            writer.close()
            return
        why = identity.mismatch(self.code, hello.get("code"))
        if why is not None:
            log.warning("refused worker %d from %s: %s", ident.worker_id, peer, why)
            await self._refuse(writer, why)
            writer.close()
            pending.future.set_exception(CodeMismatch(why))
            return
        pending.future.set_result((reader, writer, hello))
        # Keep this handler alive as long as the worker's machine uses the connection.
        with contextlib.suppress(asyncio.CancelledError):
            await pending.done

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
        """Tell an authenticated worker why it is turned away (best effort)."""
        with contextlib.suppress(ConnectionError, OSError):
            await write_message(writer, Message("refused", {"reason": reason}))

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

    def duplicate_id(self, k: int) -> int:
        """The id under which worker ``k``'s duplicate connects (to the relay, in its
        certificate): the relay refuses a second connection of a connected id."""
        return self._dup_base + self._index[k]

    def senders(self, k: int) -> list[int]:
        """The relay ids whose frames count as worker ``k``'s."""
        if self.straggler.enabled and k in self._index:
            return [k, self.duplicate_id(k)]
        return [k]

    def _payload(self, k: int, token: str) -> LaunchPayload:
        assert self._authority is not None and self.bound_port is not None
        creds = self._authority.issue_worker(self.job_id, k)
        relay_host, relay_port = self.relay_addr or ("", 0)
        options: dict[str, Any] = {}
        if self.inject_slow:
            options["inject_slow"] = {str(w): f for w, f in self.inject_slow.items()}
        return LaunchPayload(
            coordinator_host=self.advertise,
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
            options=options,
            code=dict(self.code),
        )

    async def _launch(self, k: int, holder: list[WorkerProcess]) -> _Connected:
        """Launch worker ``k`` and wait for its accepted hello.

        The process goes into ``holder`` as soon as it exists, so a caller that is cancelled or
        fails meanwhile can still stop it.
        """
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        pending = _Pending(k, loop.create_future(), loop.create_future())
        self._pending[token] = pending
        try:
            proc = await self.backend.launch(self._payload(k, token))
            holder.append(proc)
            reader, writer, hello = await self._await_connection(pending, proc)
        except BaseException:
            self._release(pending)
            raise
        finally:
            self._pending.pop(token, None)
        return _Connected(proc, pending, reader, writer, hello)

    @staticmethod
    def _release(pending: _Pending) -> None:
        if not pending.future.done():
            pending.future.cancel()
        if not pending.done.done():
            pending.done.set_result(None)

    def _take_spare(self) -> _Connected | None:
        while self._idle:
            spare = self._idle.pop(0)
            if spare.proc.alive() and not spare.writer.is_closing():
                return spare
            self._release(spare.pending)
        return None

    async def _spare(self, sid: int) -> None:
        """Launch one spare and park it, connected and idle, until a launch takes it."""
        holder: list[WorkerProcess] = []
        try:
            conn = await self._launch(sid, holder)
        except Exception as exc:  # a spare that never arrives costs nothing but itself
            log.info("spare %d did not arrive: %s", sid, exc)
            for proc in holder:
                await self._stop(proc, grace=0.0)
            return
        self._idle.append(conn)

    def _handle(self, k: int, attempt: int, conn: _Connected) -> WorkerHandle:
        return WorkerHandle(k, attempt, conn.reader, conn.writer, self.log,
                            pid=conn.hello.get("pid"), command_timeout=self.command_timeout,
                            senders=self.senders)

    async def _adopt(self, spare: _Connected, k: int, attempt: int, relay_id: int
                     ) -> WorkerHandle:
        """Give an idle spare the identity of worker ``k`` (``relay_id`` in its certificate)."""
        assert self._authority is not None
        creds = self._authority.issue_worker(self.job_id, relay_id)
        handle = self._handle(k, attempt, spare)
        await handle.call(Cmd("adopt", {"worker": relay_id,
                                        "cert_pem": creds.cert_pem.decode(),
                                        "key_pem": creds.key_pem.decode()}))
        return handle

    async def _attempt(self, k: int, attempt: int, ctx: JobContext,
                       relay_id: int | None = None) -> Any:
        """One instance of worker ``k``'s machine; ``relay_id`` names a duplicate."""
        self.log.record(k, attempt, "launching")
        holder: list[WorkerProcess] = []
        conn: _Connected | None = None
        handle: WorkerHandle | None = None
        finished = False
        rid = k if relay_id is None else relay_id
        try:
            spare = self._take_spare()
            if spare is not None:
                conn = spare
                holder.append(spare.proc)
                handle = await self._adopt(spare, k, attempt, rid)
            else:
                conn = await self._launch(rid, holder)
                handle = self._handle(k, attempt, conn)
            handle.state = "connected"
            output = await self.machine(handle, ctx)
            bye = await handle.quit()
            if isinstance(bye.get("cpu_s"), (int, float)):
                self._cpu[(k, attempt)] = float(bye["cpu_s"])
            handle.state = "done"
            finished = True
            return output
        except (WorkerLost, CommandFailed, Exception) as exc:
            last = handle.state if handle is not None else "launching"
            is_lost = isinstance(exc, WorkerLost)
            self.log.record(k, attempt, "lost" if is_lost else "error")
            if isinstance(exc, WorkerLost):
                reason = exc.reason
            elif isinstance(exc, CommandFailed):
                reason = exc.message
            elif isinstance(exc, MuError):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            tail = ""
            for proc in holder:
                if handle is not None:
                    handle.close()
                # A lost or refused worker may still say why on its way out.
                code = await self._stop(
                    proc, grace=1.0 if is_lost or isinstance(exc, CodeMismatch) else 0.0)
                if is_lost and code is not None and "exited" not in reason:
                    reason += f" (process exited with code {code})"
                tail = proc.stderr_tail()
            failure = WorkerFailure(k, attempt, last, reason, tail)
            if is_lost:
                raise _Lost(failure) from exc
            raise _Failed(failure) from exc
        finally:
            if conn is not None:
                self._release(conn.pending)
            if handle is not None:
                handle.close()
            for proc in holder:
                if finished or proc.alive():
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

    async def _drive(self, k: int, ctx: JobContext) -> tuple[Any, int, int]:
        """Worker ``k``'s machine to completion: its first attempt, retries of lost ones, and
        a duplicate when the straggler watch asks for one. Returns (output, attempts
        launched, the winning attempt)."""
        line = self._lines[k] = _Line(k)
        tasks: dict[asyncio.Task[Any], int] = {}
        retries_left = self.retries

        def start(duplicate: bool) -> None:
            attempt = line.next_attempt
            line.next_attempt += 1
            relay_id = self.duplicate_id(k) if duplicate else None
            task = asyncio.create_task(self._attempt(k, attempt, ctx, relay_id),
                                       name=f"worker-{k}-attempt-{attempt}")
            tasks[task] = attempt
            line.running[attempt] = duplicate

        async def stop_others(reason: str) -> None:
            for task, attempt in list(tasks.items()):
                task.cancel()
                self.log.record(k, attempt, reason)
                self.phases.forget(k, attempt)
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()

        start(False)
        wanted = asyncio.create_task(line.duplicate_wanted.wait())
        try:
            while True:
                waiting: set[asyncio.Task[Any]] = set(tasks)
                if not wanted.done():
                    waiting.add(wanted)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if wanted in done and not line.duplicated and tasks:
                    line.duplicated = True
                    start(True)
                for task in done:
                    if task is wanted:
                        continue
                    attempt = tasks.pop(task)
                    duplicate = line.running.pop(attempt)
                    exc = task.exception()
                    if exc is None:
                        if tasks:
                            await stop_others("superseded")
                        if duplicate:
                            self.duplicates_won += 1
                        return task.result(), line.next_attempt, attempt
                    if isinstance(exc, _Lost) and tasks:
                        log.warning("%s; worker %d's other instance goes on",
                                    exc.failure.describe(), k)
                        continue
                    if isinstance(exc, _Lost) and retries_left > 0:
                        retries_left -= 1
                        self.retried += 1
                        log.warning("%s; relaunching (retry %d of %d)", exc.failure.describe(),
                                    self.retries - retries_left, self.retries)
                        start(False)
                        continue
                    await stop_others("error")
                    if isinstance(exc, _Lost):
                        raise _Failed(exc.failure) from None
                    raise exc
        finally:
            wanted.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(wanted, *tasks, return_exceptions=True)

    async def _watch_stragglers(self) -> None:
        """Ask for a duplicate of each instance the policy judges slow, within the budget."""
        budget = self.straggler.budget(self.n_workers)
        while self.duplicates < budget:
            await asyncio.sleep(STRAGGLER_TICK)
            now = time.monotonic() - self.log.t0
            for slow in self.phases.stragglers(now, self.straggler):
                line = self._lines.get(slow.worker)
                if (line is None or line.duplicated or line.running.get(slow.attempt)
                        or len(line.running) != 1):
                    continue  # already duplicated, a duplicate itself, or being retried
                self._duplicate(line, slow)
                if self.duplicates >= budget:
                    return

    def _duplicate(self, line: _Line, slow: Straggler) -> None:
        self.duplicates += 1
        log.warning("%s: launching a duplicate (%d of at most %d)", slow.describe(),
                    self.duplicates, self.straggler.budget(self.n_workers))
        line.duplicate_wanted.set()

    # --- the job ----------------------------------------------------------------------------

    async def run(self) -> JobResult:
        """Run the job to completion; JobFailed if any worker's machine could not finish."""
        self.phases = PhaseClock()
        self.log = StateLog(self.progress, [self.phases, *self.observers])
        job_t0 = time.monotonic()
        from .evloop import raise_fd_limit

        # Per worker: its command connection, its relay connection (when the relay is
        # embedded) and, on Lambda, its invoke request.
        raise_fd_limit(4 * (self.n_workers + self.spares + self.straggler.budget(
            self.n_workers)) + 256)
        try:
            self._authority = tls.job_authority(
                self.job_id, self.ca_cert,
                tls.find_ca_key(self.ca_cert, self.ca_key) if self.ca_cert else None,
            )
            server_ctx = tls.server_context(self._server_credentials())
        except tls.TLSSetupError as exc:
            await self.backend.close()
            raise JobFailed(f"job {self.job_id}: TLS setup failed: {exc}") from None
        try:
            await self.backend.prepare(self.n_workers + self.spares, self.advertise)
        except BackendError as exc:
            await self.backend.close()
            raise JobFailed(f"job {self.job_id}: backend {self.backend.name}: {exc}") from None
        # Handshakes in flight are capped (per listener and per address); see mu/listener.py.
        server = TLSListener(server_ctx, self._on_connect, log=log,
                             handshake_timeout=HELLO_TIMEOUT,
                             max_handshakes=self.max_handshakes,
                             max_per_address=self.max_handshakes_per_address,
                             backlog=max(128, min(self.n_workers, 4096)))
        self.bound_port = await server.start(self.host, self.port)
        relay = None
        if self.embedded_relay:
            from .relay import Relay

            # every worker, spare and duplicate may be connected at once
            everyone = (self.n_workers + self.spares
                        + self.straggler.budget(self.n_workers))
            relay = Relay(self._authority.issue_server(self._server_hosts()),
                          max_connections=max(2048, everyone),
                          max_handshakes=self.max_handshakes,
                          max_handshakes_per_address=self.max_handshakes_per_address)
            port = await relay.start(self.host, self.embedded_relay_port)
            self.relay_addr = (self.advertise, port)
        log.info("job %s: coordinator on %s:%d (advertised as %s), %d workers", self.job_id,
                 self.host, self.bound_port, self.advertise, self.n_workers)
        first_spare = max(self.worker_ids) + 1
        self._spare_tasks = [asyncio.create_task(self._spare(first_spare + j))
                             for j in range(self.spares)]
        ctx = JobContext(self.job_id, self.n_workers, self.progress, self.storage_url,
                         self.params)
        tasks = {asyncio.create_task(self._drive(k, ctx), name=f"worker-{k}"): k
                 for k in self.worker_ids}
        watch = (asyncio.create_task(self._watch_stragglers())
                 if self.straggler.enabled else None)
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
            if watch is not None:
                watch.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, *([watch] if watch else []), return_exceptions=True)
            await self._dismiss_spares()
            await server.close()
            if relay is not None:
                await relay.close()
            await self.backend.close()
            reported = list(self._cpu.values())
            self.cost = self.backend.cost(round(sum(reported), 3) if reported else None)
            if self.duplicates:
                self.cost.details["duplicates"] = self.duplicates
        elapsed = time.monotonic() - job_t0
        if failures:
            failures.sort(key=lambda f: f.worker)
            head = (f"job {self.job_id} failed after {elapsed:.1f} s: "
                    f"{len(failures)} worker(s) failed, outputs are incomplete")
            err = JobFailed("\n".join([head, *(f.describe() for f in failures)]), failures)
            err.cost = self.cost
            raise err
        results: dict[int, WorkerResult] = {}
        timings: dict[tuple[int, int], dict[str, float]] = {}
        for tr in self.log.transitions:
            timings.setdefault((tr.worker, tr.attempt), {}).setdefault(tr.state, tr.t)
        for t, k in tasks.items():
            output, attempts, winner = t.result()
            results[k] = WorkerResult(k, "done", attempts, output, timings.get((k, winner), {}),
                                      self._cpu.get((k, winner)), winner,
                                      self._lines[k].duplicated)
        return JobResult(self.job_id, elapsed, results, list(self.log.transitions), self.cost,
                         self.duplicates, self.duplicates_won)

    async def _dismiss_spares(self) -> None:
        """Stop spares still launching, and tell idle ones to quit (their CPU counts too)."""
        for t in self._spare_tasks:
            t.cancel()
        await asyncio.gather(*self._spare_tasks, return_exceptions=True)
        idle, self._idle = self._idle, []

        async def dismiss(spare: _Connected) -> None:
            handle = WorkerHandle(-1, 0, spare.reader, spare.writer, StateLog(Progress()),
                                  command_timeout=EXIT_GRACE)
            try:
                bye = await handle.quit()
                if isinstance(bye.get("cpu_s"), (int, float)):
                    self._cpu[(-1 - len(self._cpu), 0)] = float(bye["cpu_s"])
            except (WorkerLost, CommandFailed):
                pass
            finally:
                handle.close()
                self._release(spare.pending)
                await self._stop(spare.proc, grace=EXIT_GRACE)

        await asyncio.gather(*(dismiss(s) for s in idle), return_exceptions=True)


class _Lost(Exception):
    def __init__(self, failure: WorkerFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure
