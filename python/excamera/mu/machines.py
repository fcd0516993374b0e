"""Worker state machines as plain coroutines.

mu described each worker as a chain of state classes written in reverse order and drove them
from a select() loop. Here a machine is an ``async def`` that reads top to bottom::

    async def png2y4m_worker(w: WorkerHandle, ctx: JobContext) -> None:
        w.state = "retrieving"
        await w.retrieve_many(keys, files)        # pipelined: all requests in flight at once
        w.state = "converting"
        await w.run_op("png2y4m", pngs=files, out="out.y4m")
        await w.upload("out.y4m", out_key)

Loops and if/else are Python's own; ``await ctx.progress.wait_for(worker=k - 1, state="x")``
waits (on an asyncio.Event, no polling) until another worker's machine reaches state ``x``;
concurrent sub-machines are ``asyncio.gather``/``TaskGroup``. Assigning ``w.state`` records
``(worker, state, time)`` for the ``-O`` log, the live view and the timeline plot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import CommandFailed, WorkerLost
from .protocol import Message, ProtocolError, read_message, write_message

log = logging.getLogger("excamera.mu.machines")

# ---------------------------------------------------------------------------------------------
# State transitions and progress


@dataclass(frozen=True)
class Transition:
    """One state change of one worker, ``t`` in seconds since the job started."""

    worker: int
    attempt: int
    state: str
    t: float

    def to_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "attempt": self.attempt, "state": self.state, "t": self.t}


class Observer(Protocol):
    def on_transition(self, tr: Transition) -> None: ...


class Progress:
    """Which states each worker has reached, with one asyncio.Event per (worker, state).

    Events are created on first use by either side, so waiting for a state that is reached
    later, or was reached earlier, both work, and thousands of waiters cost no polling.
    """

    def __init__(self) -> None:
        self._events: dict[tuple[int, str], asyncio.Event] = {}

    def _event(self, worker: int, state: str) -> asyncio.Event:
        key = (worker, state)
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def mark(self, worker: int, state: str) -> None:
        self._event(worker, state).set()

    def reached(self, worker: int, state: str) -> bool:
        ev = self._events.get((worker, state))
        return ev is not None and ev.is_set()

    async def wait_for(self, worker: int, state: str) -> None:
        await self._event(worker, state).wait()


class StateLog:
    """Records every transition with its time and fans it out to observers."""

    def __init__(self, progress: Progress, observers: Iterable[Observer] = ()) -> None:
        self.t0 = time.monotonic()
        self.progress = progress
        self.observers: list[Observer] = list(observers)
        self.transitions: list[Transition] = []
        self.last: dict[int, str] = {}

    def record(self, worker: int, attempt: int, state: str) -> Transition:
        tr = Transition(worker, attempt, state, round(time.monotonic() - self.t0, 6))
        self.transitions.append(tr)
        self.last[worker] = state
        self.progress.mark(worker, state)
        log.debug("worker %d (attempt %d) -> %s at %.3f s", worker, attempt, state, tr.t)
        for obs in self.observers:
            obs.on_transition(tr)
        return tr


@dataclass
class JobContext:
    """What every machine shares: the job's identity, parameters and the progress board."""

    job_id: str
    n_workers: int
    progress: Progress
    storage_url: str
    params: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Commands


@dataclass
class Cmd:
    """One worker command, built with the class methods below (mu's ``retrieve:key\\0file``)."""

    op: str
    fields: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def set(cls, name: str, value: Any) -> Cmd:
        return cls("set", {"name": name, "value": value})

    @classmethod
    def get(cls, name: str) -> Cmd:
        return cls("get", {"name": name})

    @classmethod
    def echo(cls, text: str = "", data: bytes = b"") -> Cmd:
        return cls("echo", {"text": text}, data)

    @classmethod
    def retrieve(cls, key: str, file: str) -> Cmd:
        return cls("retrieve", {"key": key, "file": file})

    @classmethod
    def upload(cls, file: str, key: str) -> Cmd:
        return cls("upload", {"file": file, "key": key})

    @classmethod
    def run(cls, cmd: str | list[str], check: bool = True, stdin: bytes = b"") -> Cmd:
        return cls("run", {"cmd": cmd, "check": check}, stdin)

    @classmethod
    def op_(cls, name: str, **args: Any) -> Cmd:
        return cls("op", {"name": name, "args": args})

    @classmethod
    def connect(cls, peer: int, max_blob: int | None = None) -> Cmd:
        return cls("connect", {"peer": peer, **({"max_blob": max_blob} if max_blob else {})})

    @classmethod
    def send_blob(cls, file: str | None = None, data: bytes = b"") -> Cmd:
        return cls("send_blob", {"file": file} if file else {}, data)

    @classmethod
    def recv_blob(cls, sender: int | list[int], file: str | None = None) -> Cmd:
        """Receive the next blob, which must come from worker ``sender`` (or one of a few ids:
        a worker's instances; the relay says who sent each frame, the worker refuses any
        other)."""
        return cls("recv_blob", {"from": sender, **({"file": file} if file else {})})

    @classmethod
    def close_connect(cls) -> Cmd:
        return cls("close_connect")


@dataclass
class RunResult:
    """A ``run`` command's outcome: exit code, stdout and the tail of stderr."""

    exit_code: int
    stdout: str
    stderr_tail: str
    seconds: float


class BackgroundCommand:
    """A command the worker runs in the background (mu's nonblock mode).

    ``await bg.result()`` waits for its completion event and raises CommandFailed on failure.
    """

    def __init__(self, handle: WorkerHandle, cmd: Cmd, event: asyncio.Future[Message]) -> None:
        self.handle = handle
        self.cmd = cmd
        self._event = event

    def done(self) -> bool:
        return self._event.done()

    async def result(self, timeout: float | None = None) -> Message:
        msg = await self.handle._wait(self._event, self.cmd.op, timeout)
        return self.handle._check(self.cmd.op, msg)


# ---------------------------------------------------------------------------------------------
# The handle


class WorkerHandle:
    """The coordinator's side of one connected worker: one method per command.

    A single reader task per connection matches replies to requests by id, so any number of
    commands may be in flight, and the coordinator needs no thread per worker.
    """

    def __init__(
        self,
        worker_id: int,
        attempt: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: StateLog,
        *,
        pid: int | None = None,
        command_timeout: float | None = None,
        on_lost: Callable[[], Awaitable[str]] | None = None,
        senders: Callable[[int], list[int]] | None = None,
    ) -> None:
        self.id = worker_id
        self.attempt = attempt
        #: The relay ids whose frames count as worker k's: [k], plus the id its duplicate
        #: would have when the coordinator may run one (see excamera.mu.stragglers).
        self.senders = senders or (lambda k: [k])
        self._state = ""
        self.pid = pid
        self.command_timeout = command_timeout
        self._reader = reader
        self._writer = writer
        self._log = log
        self._ids = itertools.count(1)
        self._chains = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._events: dict[int, asyncio.Future[Message]] = {}
        self._lost: WorkerLost | None = None
        self._write_lock = asyncio.Lock()
        self._reader_task = asyncio.create_task(self._read_loop())

    # state --------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """This instance's last state (another instance of the same worker has its own)."""
        return self._state

    @state.setter
    def state(self, name: str) -> None:
        self._state = name
        self._log.record(self.id, self.attempt, name)

    # transport ----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "connection closed by the worker"
        try:
            while True:
                msg = await read_message(self._reader)
                if msg is None:
                    break
                table = self._replies if msg.type == "reply" else self._events
                if msg.type not in ("reply", "event"):
                    reason = f"unexpected {msg.type!r} frame"
                    break
                fut = table.pop(int(msg.get("id", -1)), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (ProtocolError, ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        except asyncio.CancelledError:
            reason = "connection closed by the coordinator"
            raise
        finally:
            self._fail_all(WorkerLost(self.id, reason))

    def _fail_all(self, exc: WorkerLost) -> None:
        if self._lost is None:
            self._lost = exc
        for table in (self._replies, self._events):
            for fut in table.values():
                if not fut.done():
                    fut.set_exception(self._lost)
                    # A machine may never await this one (a pipelined reply after an earlier
                    # failure, a background event): mark it seen so asyncio does not log
                    # "Future exception was never retrieved"; awaiters still get the error.
                    fut.exception()
            table.clear()

    async def _submit(
        self, cmd: Cmd, *, chain: str | None = None, background: bool = False
    ) -> tuple[asyncio.Future[Message], asyncio.Future[Message] | None]:
        if self._lost is not None:
            raise self._lost
        loop = asyncio.get_running_loop()
        cid = next(self._ids)
        reply: asyncio.Future[Message] = loop.create_future()
        self._replies[cid] = reply
        event: asyncio.Future[Message] | None = None
        if background:
            event = loop.create_future()
            self._events[cid] = event
        fields: dict[str, Any] = {"id": cid, "op": cmd.op, **cmd.fields}
        if chain is not None:
            fields["chain"] = chain
        if background:
            fields["background"] = True
        log.debug("worker %d <- %s #%d", self.id, cmd.op, cid)
        try:
            async with self._write_lock:
                await write_message(self._writer, Message("cmd", fields, cmd.body))
        except (ConnectionError, OSError) as exc:
            self._fail_all(WorkerLost(self.id, f"connection lost while sending: {exc}"))
            raise self._lost from None  # type: ignore[misc]
        return reply, event

    async def _wait(
        self, fut: asyncio.Future[Message], op: str, timeout: float | None = None
    ) -> Message:
        limit = timeout if timeout is not None else self.command_timeout
        if limit is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            self._fail_all(WorkerLost(self.id, f"command {op!r} timed out after {limit:g} s"))
            self.close()
            raise self._lost from None  # type: ignore[misc]

    def _check(self, op: str, msg: Message) -> Message:
        if not msg.get("ok"):
            raise CommandFailed(self.id, op, str(msg.get("message", "failed")), msg.fields)
        return msg

    def close(self) -> None:
        """Drop the connection (the worker exits when it sees EOF)."""
        self._reader_task.cancel()
        self._writer.close()

    @property
    def lost(self) -> WorkerLost | None:
        return self._lost

    # generic ------------------------------------------------------------------------------

    async def call(self, cmd: Cmd, timeout: float | None = None) -> Message:
        """Send one command and wait for its answer; CommandFailed if the worker says error."""
        reply, _ = await self._submit(cmd)
        return self._check(cmd.op, await self._wait(reply, cmd.op, timeout))

    async def pipeline(self, cmds: list[Cmd], *, stop_on_failure: bool = True) -> list[Message]:
        """Send all commands at once, then collect all answers (mu's command lists, pipelined).

        With ``stop_on_failure`` the commands form a chain on the worker: after the first
        failure the rest are skipped there, and the first failure is raised here.
        """
        chain = f"c{next(self._chains)}" if stop_on_failure else None
        futs = [(cmd, (await self._submit(cmd, chain=chain))[0]) for cmd in cmds]
        replies = [await self._wait(fut, cmd.op) for cmd, fut in futs]
        for (cmd, _), msg in zip(futs, replies, strict=True):
            self._check(cmd.op, msg)
        return replies

    async def command_list(self, cmds: list[Cmd]) -> list[Message]:
        """mu-style command list: in order, stop at the first failure, answers in order."""
        return await self.pipeline(cmds, stop_on_failure=True)

    async def start(self, cmd: Cmd) -> BackgroundCommand:
        """Start ``cmd`` in the worker's background; returns once the worker accepted it."""
        reply, event = await self._submit(cmd, background=True)
        self._check(cmd.op, await self._wait(reply, cmd.op))
        assert event is not None
        return BackgroundCommand(self, cmd, event)

    # one method per command ---------------------------------------------------------------

    async def set(self, name: str, value: Any) -> None:
        await self.call(Cmd.set(name, value))

    async def get(self, name: str) -> Any:
        return (await self.call(Cmd.get(name)))["value"]

    async def variables(self) -> dict[str, Any]:
        return (await self.call(Cmd("vars")))["variables"]

    async def echo(self, text: str = "", data: bytes = b"") -> Message:
        return await self.call(Cmd.echo(text, data))

    async def retrieve(self, key: str, file: str) -> None:
        await self.call(Cmd.retrieve(key, file))

    async def retrieve_many(self, keys: list[str], files: list[str]) -> None:
        if len(keys) != len(files):
            raise ValueError("retrieve_many needs as many files as keys")
        await self.pipeline([Cmd.retrieve(k, f) for k, f in zip(keys, files, strict=True)])

    async def upload(self, file: str, key: str) -> None:
        await self.call(Cmd.upload(file, key))

    async def upload_many(self, files: list[str], keys: list[str]) -> None:
        if len(keys) != len(files):
            raise ValueError("upload_many needs as many keys as files")
        await self.pipeline([Cmd.upload(f, k) for f, k in zip(files, keys, strict=True)])

    async def run(
        self, cmd: str | list[str], *, check: bool = True, stdin: bytes = b"",
        timeout: float | None = None,
    ) -> RunResult:
        msg = await self._run_msg(Cmd.run(cmd, check, stdin), check, timeout)
        return RunResult(
            int(msg.get("exit_code", -1)),
            str(msg.get("stdout", "")),
            str(msg.get("stderr_tail", "")),
            float(msg.get("seconds", 0.0)),
        )

    async def _run_msg(self, cmd: Cmd, check: bool, timeout: float | None) -> Message:
        reply, _ = await self._submit(cmd)
        msg = await self._wait(reply, cmd.op, timeout)
        if not msg.get("ok") and (check or "exit_code" not in msg.fields):
            self._check(cmd.op, msg)
        return msg

    async def run_op(self, name: str, /, **args: Any) -> dict[str, Any]:
        """Run a registered Python operation on the worker; returns its result fields."""
        msg = await self.call(Cmd.op_(name, **args))
        return {k: v for k, v in msg.fields.items() if k not in ("id", "ok")}

    async def connect(self, peer: int, max_blob: int | None = None) -> None:
        """Connect the worker to the relay as (job, its id, ``peer``); ``max_blob`` bounds
        the bytes of one blob it will take from the peer (the protocol's 4 GiB if None)."""
        await self.call(Cmd.connect(peer, max_blob))

    async def send_blob(self, file: str | None = None, data: bytes = b"") -> None:
        await self.call(Cmd.send_blob(file, data))

    async def recv_blob(self, file: str | None = None, *, sender: int,
                        timeout: float | None = None) -> bytes:
        """Receive the next blob, sent by worker ``sender``: into ``file`` on the worker, or
        returned. A blob from any other worker fails the command (CommandFailed). A
        duplicate of ``sender`` sends under its own id, which counts as ``sender``'s."""
        ids = self.senders(sender)
        return (await self.call(Cmd.recv_blob(ids if len(ids) > 1 else ids[0], file),
                                timeout)).body

    async def close_connect(self) -> None:
        await self.call(Cmd.close_connect())

    async def quit(self) -> Message:
        """Tell the worker to finish; its answer carries the CPU-seconds it used (``cpu_s``)."""
        return await self.call(Cmd("quit"))


Machine = Callable[[WorkerHandle, JobContext], Awaitable[Any]]
