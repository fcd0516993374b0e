"""The worker runtime: one process (or Lambda invocation, or Ray task) that obeys a coordinator.

A worker connects *out* to the coordinator over TLS with its own short-lived certificate, says
hello, then executes typed commands until told to quit. It is the same code whatever runs it:
``run_worker(payload)`` is the entry point and ``python -m excamera.mu.worker`` reads the JSON
launch payload from stdin for the local backend.

Commands run in the order they arrive, so the coordinator may pipeline several (send them all,
then collect the answers). A command sent with ``background: true`` is acknowledged at once and
reports completion later with an ``event`` frame, mu's *nonblock* mode: the worker keeps
answering meanwhile. Commands tagged with the same ``chain`` are skipped once one of them has
failed, which gives mu-style command lists their stop-at-first-failure meaning even when they
are pipelined.

Every worker works in its own temporary directory, removed when it exits, also on error.

The worker keeps reading its connection while a command runs: when the coordinator drops the
connection (which is how it stops a worker it cannot kill directly, such as a Lambda invocation)
the running command is cancelled, its child processes killed, and the worker ends at once.

A worker launched as a spare waits idle until the coordinator sends ``adopt`` with the identity
(worker id, certificate, key) of the worker it is to stand in for.

Peer hand-offs go through the relay (``connect``, ``send_blob``, ``recv_blob``). ``recv_blob``
must name the worker the blob has to come from (field ``from``: an id, or the few ids of one
worker's instances when the coordinator runs a duplicate of it); the relay stamps every frame
with its sender's certified id, and a blob from any other worker fails the command.
``connect``'s optional ``max_blob`` bounds one blob from the peer: a longer one is refused by
its length, before any of it is read (it ends the relay connection).
A coroutine operation may do the same itself through ``OpContext.peer`` (same sending, same
sender check), so a pipeline can pack and send, or receive and unpack, in one command.
``relay_ping``/``relay_echo`` time round trips to the peer through the relay (a latency probe).

Many workers may share one process (a *worker host*, :mod:`excamera.mu.workerhost`): each is
a ``run_worker`` task with its own directory, certificate and connections. ``shared=True``
says so (a worker then reports no CPU time of its own: the process's is everyone's), and
``dial_slots`` (:class:`DialSlots`) bounds how many of them open a connection to one server
at once.

Fault injection (for tests and benchmarks only): a payload whose ``options["inject_slow"]``
maps this worker's id to a factor F makes every command take F times as long (the worker
sleeps F-1 times the command's own time after it), a slow machine as the coordinator sees
it. A duplicate of a worker runs under another id, so it is not slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import resource
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .operations import OpContext, OperationRegistry, builtin_operations
from .payload import LaunchPayload
from .protocol import Message, ProtocolError, read_message, write_message

log = logging.getLogger("excamera.mu.worker")

STDERR_TAIL = 4096
STDOUT_TAIL = 65536
TEMPLATE = re.compile(r"##([A-Za-z_][A-Za-z0-9_]*)##")


class CommandError(Exception):
    """A command failed; the message goes back to the coordinator as the error."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


def _tail(data: bytes, limit: int) -> str:
    return data[-limit:].decode("utf-8", "replace")


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


class DialSlots:
    """Connection attempts in flight, per server, shared by the workers of one process.

    The servers admit a bounded number of handshakes per source address (see
    :mod:`excamera.mu.listener`), and every worker of a host shares its address. One queue
    per server: a worker waiting to reach the relay must not queue behind thousands that
    wait to reach the coordinator.
    """

    def __init__(self, per_server: int) -> None:
        if per_server < 1:
            raise ValueError("dial slots must be at least 1")
        self.per_server = per_server
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}

    def server(self, host: str, port: int) -> asyncio.Semaphore:
        sem = self._slots.get((host, port))
        if sem is None:
            sem = self._slots[(host, port)] = asyncio.Semaphore(self.per_server)
        return sem


class WorkerSession:
    """One connected worker: its directory, variables, relay link and command handlers."""

    def __init__(
        self, payload: LaunchPayload, workdir: Path, registry: OperationRegistry
    ) -> None:
        self.payload = payload
        self.workdir = workdir
        self.registry = registry
        self.variables: dict[str, Any] = {}
        self.failed_chains: set[str] = set()
        self.background: set[asyncio.Task[None]] = set()
        self.writer: asyncio.StreamWriter | None = None
        self.write_lock = asyncio.Lock()
        self.relay: Any = None  # a RelayClient once `connect` ran
        self.prefix = f"worker {payload.worker_id}"
        self.cpu0 = _cpu_seconds()
        self.adopted = False
        self.shared = False  # other workers share this process (a worker host)
        self.dial_slots: DialSlots | None = None
        self.local_dir: Path | None = None  # OpContext.local_dir: only the local backend's
        self._ctx: ssl.SSLContext | None = None
        self.running: asyncio.Task[tuple[bool, dict, bytes]] | None = None  # the command
        self.handlers: dict[str, Callable[[Message], Awaitable[tuple[dict, bytes]]]] = {
            "set": self.cmd_set,
            "get": self.cmd_get,
            "vars": self.cmd_vars,
            "echo": self.cmd_echo,
            "retrieve": self.cmd_retrieve,
            "upload": self.cmd_upload,
            "run": self.cmd_run,
            "op": self.cmd_op,
            "connect": self.cmd_connect,
            "send_blob": self.cmd_send_blob,
            "recv_blob": self.cmd_recv_blob,
            "close_connect": self.cmd_close_connect,
            "adopt": self.cmd_adopt,
            "relay_ping": self.cmd_relay_ping,
            "relay_echo": self.cmd_relay_echo,
        }
        self._storage: Any = None

    # --- substitution and paths -------------------------------------------------------------

    def substitute(self, text: str) -> str:
        """mu's ``##NAME##`` templates: ``##TMPDIR##`` is the work directory, others variables."""

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "TMPDIR":
                return str(self.workdir)
            if name in self.variables:
                return str(self.variables[name])
            raise CommandError(f"unknown template variable ##{name}##")

        return TEMPLATE.sub(repl, text)

    def subst_any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.substitute(value)
        if isinstance(value, list):
            return [self.subst_any(v) for v in value]
        if isinstance(value, dict):
            return {k: self.subst_any(v) for k, v in value.items()}
        return value

    def path(self, name: str) -> Path:
        p = Path(self.substitute(name))
        return p if p.is_absolute() else self.workdir / p

    def storage(self) -> Any:
        if self._storage is None:
            if not self.payload.storage_url:
                raise CommandError("this worker was launched without a storage URL")
            from .storage import open_storage

            self._storage = open_storage(self.payload.storage_url)
        return self._storage

    # --- commands ---------------------------------------------------------------------------

    async def cmd_set(self, msg: Message) -> tuple[dict, bytes]:
        self.variables[str(msg["name"])] = msg["value"]
        return {}, b""

    async def cmd_get(self, msg: Message) -> tuple[dict, bytes]:
        name = str(msg["name"])
        if name not in self.variables:
            raise CommandError(f"no variable {name!r}")
        return {"value": self.variables[name]}, b""

    async def cmd_vars(self, msg: Message) -> tuple[dict, bytes]:
        return {"variables": dict(self.variables)}, b""

    async def cmd_echo(self, msg: Message) -> tuple[dict, bytes]:
        return {"text": msg.get("text", "")}, msg.body

    async def cmd_retrieve(self, msg: Message) -> tuple[dict, bytes]:
        key = self.substitute(str(msg["key"]))
        target = self.path(str(msg["file"]))
        from .storage import StorageError

        try:
            await self.storage().get(key, target)
        except StorageError as exc:
            raise CommandError(f"retrieve {key}: {exc}", key=key) from None
        return {"key": key, "bytes": target.stat().st_size}, b""

    async def cmd_upload(self, msg: Message) -> tuple[dict, bytes]:
        key = self.substitute(str(msg["key"]))
        source = self.path(str(msg["file"]))
        if not source.is_file():
            raise CommandError(f"upload {key}: no local file {source.name!r}", key=key)
        from .storage import StorageError

        try:
            await self.storage().put(source, key)
        except StorageError as exc:
            raise CommandError(f"upload {key}: {exc}", key=key) from None
        return {"key": key, "bytes": source.stat().st_size}, b""

    async def cmd_run(self, msg: Message) -> tuple[dict, bytes]:
        cmd = msg["cmd"]
        check = bool(msg.get("check", True))
        env = dict(os.environ)
        env["TMPDIR"] = str(self.workdir)
        if isinstance(cmd, list):
            argv = [self.substitute(str(a)) for a in cmd]
            if not argv:
                raise CommandError("run: empty argument list")
            shown = " ".join(argv)
            create = asyncio.create_subprocess_exec(*argv, **self._proc_kwargs(env, msg.body))
        else:
            line = self.substitute(str(cmd))
            shown = line
            create = asyncio.create_subprocess_shell(line, **self._proc_kwargs(env, msg.body))
        log.info("%s: run: %s", self.prefix, shown)
        started = time.monotonic()
        try:
            proc = await create
        except OSError as exc:
            raise CommandError(f"run {shown!r}: cannot start: {exc}") from None
        try:
            # stdin is always at EOF after the input (or at once: /dev/null): a tool that reads
            # stdin to EOF (alfalfa's xc-enc waits on it unless given -W) must not hang.
            # (fed while the output is read, so neither side can fill its pipe and wait)
            _, (out, err) = await asyncio.gather(_feed(proc, bytes(msg.body)),
                                                 proc.communicate())
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        fields = {
            "exit_code": proc.returncode,
            "stdout": _tail(out, STDOUT_TAIL),
            "stderr_tail": _tail(err, STDERR_TAIL),
            "seconds": round(time.monotonic() - started, 6),
        }
        if err:
            # Keep the child's complaints in the worker's own stderr too, so a lost worker's
            # report shows what it was doing (in a worker host: this worker's log tail).
            self.stderr_note(_tail(err, 1024))
        if check and proc.returncode != 0:
            last = fields["stderr_tail"].strip().splitlines()
            why = last[-1] if last else "no stderr"
            raise CommandError(
                f"run {shown!r} exited with {proc.returncode}: {why}", **fields
            )
        return fields, b""

    def _proc_kwargs(self, env: dict[str, str], stdin: bytes) -> dict[str, Any]:
        return {
            "stdin": asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            "stdout": asyncio.subprocess.PIPE,
            "stderr": asyncio.subprocess.PIPE,
            "cwd": str(self.workdir),
            "env": env,
        }

    async def cmd_op(self, msg: Message) -> tuple[dict, bytes]:
        name = str(msg["name"])
        args = self.subst_any(msg.get("args") or {})
        if not isinstance(args, dict):
            raise CommandError(f"op {name}: args must be an object")
        log.info("%s: op: %s", self.prefix, name)
        ctx = OpContext(self.workdir, dict(self.variables), self.payload.worker_id,
                        _RelayLink(self, name) if self.relay is not None else None,
                        self.local_dir)
        try:
            result = await self.registry.call(name, ctx, args)
        except KeyError as exc:
            raise CommandError(str(exc.args[0])) from None
        except CommandError:
            raise
        except Exception as exc:  # an operation's failure is the command's answer
            raise CommandError(f"op {name}: {exc}") from None
        return result, b""

    async def cmd_connect(self, msg: Message) -> tuple[dict, bytes]:
        if not self.payload.relay_host:
            raise CommandError("connect: this worker was launched without a relay address")
        peer = int(msg["peer"])
        from .protocol import MAX_BODY

        max_blob = msg.get("max_blob", MAX_BODY)
        if isinstance(max_blob, bool) or not isinstance(max_blob, int) \
                or not 0 < max_blob <= MAX_BODY:
            raise CommandError(f"connect: max_blob {max_blob!r}: a byte count 1..{MAX_BODY}")
        if self.relay is not None:
            await self.relay.close()
            self.relay = None
        from .relay import RelayClient, RelayError

        try:
            self.relay = await RelayClient.connect(
                self.payload.relay_host,
                self.payload.relay_port,
                self.client_context(),
                self.payload.job_id,
                self.payload.worker_id,
                peer,
                dial_slots=self.dial_slots.server(self.payload.relay_host,
                                                  self.payload.relay_port)
                if self.dial_slots else None,
                max_body=max_blob,
            )
        except RelayError as exc:
            raise CommandError(f"connect to relay as peer of {peer}: {exc}") from None
        return {"peer": peer}, b""

    def _need_relay(self, what: str) -> Any:
        if self.relay is None:
            raise CommandError(f"{what}: not connected to the relay (send connect first)")
        return self.relay

    async def cmd_send_blob(self, msg: Message) -> tuple[dict, bytes]:
        relay = self._need_relay("send_blob")
        if msg.get("file"):
            source = self.path(str(msg["file"]))
            if not source.is_file():
                raise CommandError(f"send_blob: no local file {source.name!r}")
            data = await _file_io(source.stat().st_size, source.read_bytes)
        else:
            data = msg.body
        await relay.send(data, "blob")
        return {"bytes": len(data)}, b""

    async def _recv_from(self, what: str, expected: Any) -> Message:
        """The next frame from the peer, which must come from one of the ``expected`` ids."""
        senders = _senders(what, expected)
        relay = self._need_relay(what)
        from .relay import SENDER_FIELD, RelayError

        try:
            frame = await relay.recv()
        except EOFError:
            raise CommandError(f"{what}: the relay closed the connection") from None
        except RelayError as exc:
            raise CommandError(f"{what}: {exc}") from None
        # The relay stamps each frame with its sender's certified id: a frame from any other
        # worker of the job (one with a leaked credential, say) is refused, not used.
        sender = frame.get(SENDER_FIELD)
        if sender not in senders or isinstance(sender, bool):
            who = "no sender (a relay too old to say?)" if sender is None else f"worker {sender}"
            names = " or ".join(str(s) for s in senders)
            raise CommandError(f"{what}: refused a {len(frame.body)}-byte blob from {who}; "
                               f"expected one from worker {names}")
        return frame

    async def cmd_recv_blob(self, msg: Message) -> tuple[dict, bytes]:
        frame = await self._recv_from("recv_blob", msg.get("from"))
        data = frame.body
        if msg.get("file"):
            target = self.path(str(msg["file"]))
            target.parent.mkdir(parents=True, exist_ok=True)
            await _file_io(len(data), target.write_bytes, data)
            return {"bytes": len(data)}, b""
        return {"bytes": len(data)}, data

    async def cmd_relay_ping(self, msg: Message) -> tuple[dict, bytes]:
        """Send ``count`` frames of ``size`` bytes to the peer one at a time, each answered
        by the peer's ``relay_echo``; returns every round trip in microseconds."""
        count, size = int(msg.get("count", 1)), int(msg.get("size", 64))
        if not (1 <= count <= 100_000 and 0 <= size <= 1 << 20):
            raise CommandError("relay_ping: count is 1..100000 and size 0..1 MiB")
        relay = self._need_relay("relay_ping")
        body = os.urandom(size)
        rtts: list[int] = []
        for _ in range(count):
            t0 = time.perf_counter()
            await relay.send(body, "ping")
            frame = await self._recv_from("relay_ping", msg.get("from"))
            rtts.append(round((time.perf_counter() - t0) * 1e6))
            if frame.body != body:
                raise CommandError("relay_ping: the echo differs from what was sent")
        return {"rtt_us": rtts}, b""

    async def cmd_relay_echo(self, msg: Message) -> tuple[dict, bytes]:
        """Send each of the next ``count`` frames from the peer back to it."""
        count = int(msg.get("count", 1))
        if not 1 <= count <= 100_000:
            raise CommandError("relay_echo: count is 1..100000")
        relay = self._need_relay("relay_echo")
        for _ in range(count):
            frame = await self._recv_from("relay_echo", msg.get("from"))
            await relay.send(frame.body, "echo")
        return {"echoed": count}, b""

    async def cmd_adopt(self, msg: Message) -> tuple[dict, bytes]:
        """Take over another worker id (a spare standing in for a launch)."""
        if self.adopted or self.relay is not None or self.variables:
            raise CommandError("adopt: only an idle spare can take a worker's place")
        from cryptography import x509

        from . import tls

        worker = int(msg["worker"])
        try:
            leaf = x509.load_pem_x509_certificate(str(msg["cert_pem"]).encode())
        except ValueError:
            raise CommandError("adopt: not a PEM certificate") from None
        ident = tls.identity_of_certificate(leaf)
        if ident is None or ident.job != self.payload.job_id or ident.worker_id != worker:
            raise CommandError(f"adopt: the certificate does not name worker {worker} of this job")
        self.payload = dataclasses.replace(self.payload, worker_id=worker,
                                           cert_pem=str(msg["cert_pem"]),
                                           key_pem=str(msg["key_pem"]))
        self._ctx = None  # the next relay connection presents the new certificate
        self.prefix = f"worker {worker}"
        self.adopted = True
        return {"worker": worker}, b""

    async def cmd_close_connect(self, msg: Message) -> tuple[dict, bytes]:
        if self.relay is not None:
            await self.relay.close()
            self.relay = None
        return {}, b""

    # --- the loop ---------------------------------------------------------------------------

    def _credentials(self) -> Any:
        from . import tls

        return tls.Credentials.from_dict(
            {
                "cert_pem": self.payload.cert_pem,
                "key_pem": self.payload.key_pem,
                "ca_pem": self.payload.ca_pem,
            }
        )

    def client_context(self) -> ssl.SSLContext:
        """This worker's TLS client context, made once (about 1 ms each) for the coordinator
        and the relay alike, and again only after ``adopt`` changes the certificate."""
        if self._ctx is None:
            from . import tls

            self._ctx = tls.client_context(self._credentials())
        return self._ctx

    def stderr_note(self, text: str) -> None:
        """Text for this worker's stderr (a shared worker host keeps it per worker)."""
        sys.stderr.write(text)
        sys.stderr.flush()

    def slowdown(self) -> float:
        """The injected slowdown factor for this worker's current id (1: none)."""
        table = self.payload.options.get("inject_slow") if self.payload.options else None
        if not isinstance(table, dict):
            return 1.0
        factor = table.get(str(self.payload.worker_id), 1.0)
        return float(factor) if isinstance(factor, (int, float)) and factor > 1 else 1.0

    async def send(self, msg: Message) -> None:
        assert self.writer is not None
        async with self.write_lock:
            await write_message(self.writer, msg)

    async def execute(self, msg: Message) -> tuple[bool, dict, bytes]:
        """Run one command; never raises except on cancellation."""
        started = time.monotonic()
        try:
            return await self._execute(msg)
        finally:
            factor = self.slowdown()
            if factor > 1:  # fault injection: see the module docstring
                await asyncio.sleep((factor - 1) * (time.monotonic() - started))

    async def _execute(self, msg: Message) -> tuple[bool, dict, bytes]:
        op = str(msg.get("op", ""))
        chain = msg.get("chain")
        if chain is not None and chain in self.failed_chains:
            return False, {"message": f"{op}: skipped, an earlier command of its list failed"}, b""
        handler = self.handlers.get(op)
        if handler is None:
            return False, {"message": f"unknown command {op!r}"}, b""
        try:
            fields, body = await handler(msg)
        except CommandError as exc:
            log.warning("%s: %s", self.prefix, exc)
            if chain is not None:
                self.failed_chains.add(chain)
            return False, {"message": str(exc), **exc.fields}, b""
        except (KeyError, ValueError, TypeError) as exc:
            if chain is not None:
                self.failed_chains.add(chain)
            return False, {"message": f"{op}: bad command: {exc!r}"}, b""
        except Exception as exc:  # any other failure is this command's answer, not a crash
            if chain is not None:
                self.failed_chains.add(chain)
            log.warning("%s: %s failed: %r", self.prefix, op, exc)
            return False, {"message": f"{op}: {exc}"}, b""
        return True, fields, body

    async def run_background(self, msg: Message) -> None:
        ok, fields, body = await self.execute(msg)
        try:
            await self.send(Message("event", {"id": msg["id"], "ok": ok, **fields}, body))
        except (ConnectionError, OSError):
            pass

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        from ..identity import code_identity

        await self.send(
            Message(
                "hello",
                {
                    "job": self.payload.job_id,
                    "worker": self.payload.worker_id,
                    "token": self.payload.token,
                    "pid": os.getpid(),
                    "operations": self.registry.names(),
                    "code": code_identity(),
                },
            )
        )
        inbox: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        closed = asyncio.Event()
        pump = asyncio.create_task(self._pump(reader, inbox, closed, self))
        try:
            while True:
                item = await inbox.get()
                if item is None:
                    log.warning("%s: coordinator closed the connection", self.prefix)
                    return
                if isinstance(item, BaseException):
                    raise item
                msg = item
                if msg.type == "refused":
                    raise ProtocolError(
                        f"the coordinator refused this worker: {msg.get('reason', '?')}")
                if msg.type != "cmd":
                    raise ProtocolError(f"expected a cmd frame, got {msg.type!r}")
                if msg.get("op") == "quit":
                    # In a shared process the CPU time is everyone's: report none of it.
                    cpu = {} if self.shared else {"cpu_s": round(_cpu_seconds() - self.cpu0, 3)}
                    await self.send(Message("reply", {"id": msg["id"], "ok": True, **cpu}))
                    return
                if msg.get("background"):
                    await self.send(
                        Message("reply", {"id": msg["id"], "ok": True, "started": True})
                    )
                    task = asyncio.create_task(self.run_background(msg))
                    self.background.add(task)
                    task.add_done_callback(self.background.discard)
                    continue
                # The pump cancels this task if the coordinator hangs up meanwhile: the command
                # (and its child processes) stops rather than finish work nobody will collect.
                current = self.running = asyncio.create_task(self.execute(msg))
                try:
                    ok, fields, body = await current
                except asyncio.CancelledError:
                    if not (closed.is_set() and current.cancelled()):
                        current.cancel()  # this worker itself is being cancelled
                        raise
                    log.warning("%s: coordinator closed the connection during %s", self.prefix,
                                msg.get("op"))
                    return
                finally:
                    self.running = None
                await self.send(Message("reply", {"id": msg["id"], "ok": ok, **fields}, body))
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            for task in list(self.background):
                task.cancel()
            if self.background:
                await asyncio.gather(*self.background, return_exceptions=True)
            if self.relay is not None:
                try:
                    await self.relay.close()
                except Exception:  # closing a dead link is best effort
                    pass

    @staticmethod
    async def _pump(reader: asyncio.StreamReader,
                    inbox: asyncio.Queue[Message | BaseException | None],
                    closed: asyncio.Event, session: WorkerSession) -> None:
        """Read frames ahead of execution, so a hang-up is seen even while a command runs
        (and stops that command)."""
        try:
            while True:
                msg = await read_message(reader)
                if msg is None:
                    break
                inbox.put_nowait(msg)
        except (ProtocolError, ConnectionError, OSError, ssl.SSLError) as exc:
            inbox.put_nowait(exc)
        else:
            inbox.put_nowait(None)
        finally:
            closed.set()
            if session.running is not None:
                session.running.cancel()


class _RelayLink:
    """An operation's view of the worker's relay connection (``OpContext.peer``): the same
    sending and the same sender check as ``send_blob`` and ``recv_blob``."""

    def __init__(self, worker: WorkerSession, op: str) -> None:
        self._worker, self._what = worker, f"op {op}"

    async def send(self, data: bytes) -> None:
        await self._worker._need_relay(self._what).send(data, "blob")

    async def recv(self, expected: int | list[int]) -> bytes:
        return (await self.recv_from(expected))[1]

    async def recv_from(self, expected: int | list[int]) -> tuple[int, bytes]:
        from .relay import SENDER_FIELD

        frame = await self._worker._recv_from(self._what, expected)
        return int(frame[SENDER_FIELD]), frame.body

    @property
    def my_id(self) -> int:
        return int(self._worker._need_relay(self._what).my_id)


INLINE_IO = 1 << 20  # bytes of file I/O done in the loop: less than a thread hop costs


async def _file_io(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``: in the event loop for a small file, in a thread for a large one."""
    if size <= INLINE_IO:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    """Write ``data`` to the child's stdin and close it; a child that exits without reading
    it all is no error (asyncio says so with BrokenPipeError, uvloop with RuntimeError)."""
    if proc.stdin is None:  # no input: stdin is /dev/null
        return
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError, RuntimeError):
        pass
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
        proc.stdin.close()


def _senders(what: str, expected: Any) -> list[int]:
    """``from``: one worker id, or a short list of them (one worker's instances)."""
    ids = expected if isinstance(expected, list) else [expected]
    if not 1 <= len(ids) <= 16 or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise CommandError(f"{what}: 'from', the worker id (or up to 16 ids) the blob must "
                           "come from, is required")
    return ids


async def _connect(payload: LaunchPayload, ctx: ssl.SSLContext,
                   dial_slots: DialSlots | None = None) -> tuple[Any, Any]:
    """Connect to the coordinator, retrying briefly: on a cold start the network may lag."""
    deadline = time.monotonic() + payload.connect_timeout
    delay = 0.05
    slot = (dial_slots.server(payload.coordinator_host, payload.coordinator_port)
            if dial_slots else contextlib.nullcontext())
    while True:
        try:
            async with slot:
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        payload.coordinator_host,
                        payload.coordinator_port,
                        ssl=ctx,
                        server_hostname=payload.coordinator_host,
                    ),
                    timeout=max(0.1, deadline - time.monotonic()),
                )
        except (TimeoutError, OSError) as exc:
            if time.monotonic() + delay >= deadline:
                raise ConnectionError(
                    f"cannot reach coordinator {payload.coordinator_host}:"
                    f"{payload.coordinator_port}: {exc}"
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def run_worker(
    payload: LaunchPayload, registry: OperationRegistry | None = None, *,
    shared: bool = False, dial_slots: DialSlots | None = None,
    session_hook: Callable[[WorkerSession], None] | None = None,
    local_dir: Path | None = None,
) -> None:
    """Run one worker to completion: connect, obey commands until quit, clean up.

    ``shared``: other workers run in this process too (see the module docstring);
    ``dial_slots`` bounds their connection attempts in flight; ``session_hook`` sees the
    session before it connects (a worker host routes its stderr notes with it);
    ``local_dir``: the directory this machine's workers of the job share
    (``OpContext.local_dir``), given by the local backend only.
    Raises on failure to connect or a protocol violation; the temporary directory is removed in
    every case.
    """
    if registry is None:
        registry = OperationRegistry()
        builtin_operations(registry)
        registry.load_modules(payload.operation_modules)

    with tempfile.TemporaryDirectory(prefix=f"mu-{payload.job_id}-{payload.worker_id}-",
                                     ignore_cleanup_errors=shared) as tmp:
        session = WorkerSession(payload, Path(tmp), registry)
        session.shared = shared
        session.dial_slots = dial_slots
        session.local_dir = local_dir
        if session_hook is not None:
            session_hook(session)
        reader, writer = await _connect(payload, session.client_context(), dial_slots)
        log.debug("worker %d: connected, working in %s", payload.worker_id, tmp)
        try:
            await session.serve(reader, writer)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


def main(argv: list[str] | None = None) -> int:
    """``python -m excamera.mu.worker [--local-dir DIR]``: the local backend's process entry
    point (``--local-dir``: ``OpContext.local_dir``, which only that backend gives)."""
    args = list(sys.argv[1:] if argv is None else argv)
    local_dir = None
    if args[:1] == ["--local-dir"] and len(args) == 2:
        local_dir = Path(args[1])
    elif args:
        print(f"mu worker: usage: python -m excamera.mu.worker [--local-dir DIR] (got {args})",
              file=sys.stderr)
        return 2
    raw = sys.stdin.buffer.read()
    try:
        payload = LaunchPayload.from_json(raw)
    except ValueError as exc:
        print(f"mu worker: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if payload.debug else logging.INFO,
        format=f"mu-worker {payload.worker_id} %(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(run_worker(payload, local_dir=local_dir))
    except (ConnectionError, ProtocolError, ssl.SSLError, OSError) as exc:
        print(f"mu worker {payload.worker_id}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
