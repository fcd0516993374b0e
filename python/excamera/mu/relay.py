"""The relay: pairs of workers talk through it because workers cannot accept connections.

mu's ``lambda_state_server`` did this job. Each worker dials out over TLS and says::

    Message("hello", {"job": J, "id": I, "peer": P})

and from then on every frame it sends is forwarded to the connection registered as ``(J, P)``,
body unchanged and header with one field set by the relay: ``"from": I``, the sender's worker
id as its certificate proves it (any ``from`` the sender wrote is replaced). A receiver thus
knows which worker of its job sent each frame and refuses one from a worker it does not expect
(the worker's ``recv_blob`` command names the expected sender), so a leaked credential of one
worker cannot feed forged data to any other. Rules, and why:

* **Identity.** The worker's client certificate (see :mod:`excamera.mu.tls`) must name exactly
  ``(J, I)`` and be signed by a CA bound to job J (the trust anchor, or an intermediate whose
  name constraints permit only J); otherwise the relay answers ``relay_error`` (code
  ``identity``) and closes. A worker therefore cannot read another worker's traffic, nor join
  another job, nor can one job's CA act for another job. Every refusal, in the TLS handshake
  or at hello, is logged at info level with the peer's address and the reason.
* **Handshakes.** Unauthenticated peers are bounded by :class:`~excamera.mu.listener.TLSListener`:
  at most ``max_handshakes`` in flight (beyond that connections wait in the kernel's backlog),
  ``max_handshakes_per_address`` from one address (beyond that they are closed at once), each
  within ``hello_timeout`` seconds. Established connections are bounded by ``max_connections``.
* **Duplicates.** A second ``hello`` for a ``(J, I)`` that is still connected is *refused*
  (code ``duplicate``); the connection already registered keeps its slot. Replacing would let
  a copy of a leaked credential silently steal an established session; refusing makes the
  conflict visible, and a genuine reconnect works as soon as the old connection is gone.
* **Order.** Frames from one sender reach the receiver in the order sent; held frames for a
  receiver are delivered, in order, before anything live once it registers.
* **Held messages** ("tombstones" in mu): frames for a peer that is not connected yet are kept
  in memory for ``hold_timeout`` seconds (default 600). Memory is allocated as the bytes
  arrive, never from the announced length, and charged against three quotas: the relay's
  ``max_held_bytes`` (default 1 GiB), the job's ``max_held_job_bytes`` (default a quarter of
  it) and the sender's ``max_held_sender_bytes`` (default half the job's); 0 holds nothing.
  A frame is admitted only if its announced size fits all three (the size is reserved then, so
  concurrent frames cannot overshoot); otherwise its body is read and discarded and the sender
  receives
  ``relay_error`` code ``held_full`` naming the quota, so no message disappears silently,
  older accepted messages are never dropped to make room, and one job cannot fill the relay
  for the others. An expired frame is dropped with a log line and the sender, if still
  connected, gets ``relay_error`` code ``expired``.
* **Stalls.** Once a frame's length prefix has arrived, its header and body must keep coming:
  a sender that sends no byte of it for ``stall_timeout`` seconds (default 60) is told
  ``relay_error`` code ``stalled``, cut off and logged, and its reservation released. Likewise
  a receiver that takes no byte for that long while a frame is written to it is dropped (the
  sender gets ``lost``). Waiting *between* frames is not a stall.
* **Big bodies.** When the receiver is connected a body is streamed in chunks straight from the
  sender's stream to the receiver's, awaiting ``drain()`` after each chunk, so a 64 MB state
  costs at most a chunk or two of relay memory and a slow receiver slows its sender down
  (TCP back-pressure) instead of filling the relay. If either side fails in the middle of a
  frame the receiver's connection is closed, since it holds a partial frame.
* **Scale.** One asyncio task per connection, no threads, no polling: held-message expiry uses
  one timer per frame. Many jobs share one relay; connections are keyed by ``(job, id)``.

Frames whose type starts with ``relay_`` or is ``hello``/``hello_ok`` are reserved for the
relay; a worker that sends one gets ``relay_error`` code ``reserved`` and the frame is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from .listener import MAX_HANDSHAKES, MAX_PER_ADDRESS, TLSListener
from .protocol import (
    MAX_BODY,
    MAX_HEADER,
    PREFIX,
    FrameConnection,
    Message,
    ProtocolError,
    decode_header,
    read_prefix,
    write_message,
)
from .tls import Credentials, IdentityRefused, check_worker, client_context, server_context

log = logging.getLogger("excamera.mu.relay")

Key = tuple[str, int]
# How much of a frame the relay holds per connection while it streams one. Small, because a
# relay of 10,000 workers that all hand off at once holds this much per connection, and on
# its way through 1 GB of fresh memory costs more CPU (page faults) than the copies do;
# what does not fit waits in the sockets.
CHUNK = 1 << 16  # bytes moved per read/write step when streaming a body
STREAM_LIMIT = 1 << 16  # each connection's read buffer: the socket pauses when it is full
WRITE_HIGH = 1 << 16  # a receiver's TLS write buffer: drain() waits beyond this
RESERVED = ("hello", "hello_ok")
SENDER_FIELD = "from"  # set by the relay on every forwarded frame


class RelayError(Exception):
    """The relay refused something or reported a lost message; ``code`` says what."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Stalled(Exception):
    """The sender sent no byte of a started frame for ``stall_timeout`` seconds."""


class _Guard:
    """The stall timer of one connection's frame in progress.

    One timer per frame, which when it fires re-arms itself for what is left of the period
    since the last byte moved (``moved()`` only records the time), instead of one timer per
    read (~10 us each, several per small frame). ``waiting`` says whom the frame waits on: the
    sender (None), whose reader then fails with _Stalled, or a receiver, whose connection is
    then aborted (its pending drain fails and the sender is told ``lost``).
    """

    __slots__ = ("limit", "reader", "last", "queued", "waiting", "blen", "got", "_handle",
                 "_loop")

    def __init__(self, limit: float, reader: asyncio.StreamReader) -> None:
        self.limit = limit
        self.reader = reader
        self._loop = asyncio.get_running_loop()
        self.last = 0.0  # loop time of the last byte moved
        self.queued = False  # waiting for another sender's frame to the same receiver
        self.waiting: _Endpoint | None = None
        self.blen = self.got = 0
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, blen: int) -> None:
        self.blen, self.got, self.waiting = blen, 0, None
        self.last = self._loop.time()
        self._handle = self._loop.call_at(self.last + self.limit, self._check)

    def moved(self) -> None:
        self.last = self._loop.time()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        if self.queued:
            self.last = self._loop.time()
        due = self.last + self.limit
        if due > self._loop.time():
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        dest = self.waiting
        if dest is not None:
            log.warning("dropping receiver %s/%d: it took no byte for %g s", dest.key[0],
                        dest.key[1], self.limit)
            dest.alive = False
            dest.writer.transport.abort()
        else:
            self.reader.set_exception(_Stalled(
                f"no byte of a {self.blen}-byte body for {self.limit:g} s "
                f"({self.got} bytes received)" if self.got or self.blen else
                f"no complete frame header within {self.limit:g} s"))


@dataclass(eq=False)
class _Endpoint:
    """A registered worker connection; ``lock`` keeps whole frames from interleaving."""

    key: Key
    writer: asyncio.StreamWriter
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    alive: bool = True

    def writable(self) -> bool:
        return self.alive and not self.writer.transport.is_closing()


@dataclass(eq=False)
class _Held:
    """A frame waiting for its receiver to connect; ``size`` stays charged to ``sender``."""

    sender: Key
    head: bytes  # length prefix + stamped header
    body: list[bytes]  # as received, chunk by chunk
    size: int
    timer: asyncio.TimerHandle | None = None


@dataclass
class RelayStats:
    connections: int = 0
    registered: int = 0
    refused: int = 0
    forwarded_messages: int = 0
    forwarded_bytes: int = 0
    held_messages: int = 0
    held_bytes: int = 0  # charged against the quotas: held frames plus bodies being read
    expired: int = 0
    rejected_full: int = 0
    stalled: int = 0
    handshakes_refused: int = 0


def _is_reserved(kind: str) -> bool:
    return kind in RESERVED or kind.startswith("relay_")


def _bounded(name: str, value: float, top: float, *, zero_ok: bool = False) -> None:
    if not ((0 <= value if zero_ok else 0 < value) and value <= top):  # also refuses NaN
        low = "at least 0" if zero_ok else "more than 0"
        raise ValueError(f"{name} must be {low} and at most {top}, not {value}")


class Relay:
    """An asyncio TLS relay; run it in-process (coordinator) or via ``excamera relay``.

    Every limit is bounded and checked here (ValueError names the one that is not).
    """

    def __init__(
        self,
        creds: Credentials | ssl.SSLContext,
        *,
        max_held_bytes: int = 1 << 30,
        max_held_job_bytes: int | None = None,
        max_held_sender_bytes: int | None = None,
        hold_timeout: float = 600.0,
        stall_timeout: float = 60.0,
        max_connections: int = 2048,
        hello_timeout: float = 30.0,
        max_handshakes: int = MAX_HANDSHAKES,
        max_handshakes_per_address: int = MAX_PER_ADDRESS,
    ) -> None:
        # quotas of 0 hold nothing: every frame for an absent receiver is refused at once
        _bounded("max_held_bytes", max_held_bytes, 1 << 40, zero_ok=True)
        job = max_held_bytes // 4 if max_held_job_bytes is None else max_held_job_bytes
        sender = job // 2 if max_held_sender_bytes is None else max_held_sender_bytes
        _bounded("max_held_job_bytes", job, max_held_bytes, zero_ok=True)
        _bounded("max_held_sender_bytes", sender, job, zero_ok=True)
        _bounded("hold_timeout", hold_timeout, 7 * 86400)
        _bounded("stall_timeout", stall_timeout, 3600)
        _bounded("hello_timeout", hello_timeout, 3600)
        _bounded("max_connections", max_connections, 1 << 20)
        _bounded("max_handshakes", max_handshakes, 1 << 16)
        _bounded("max_handshakes_per_address", max_handshakes_per_address, max_handshakes)
        self._ssl = creds if isinstance(creds, ssl.SSLContext) else server_context(creds)
        self.max_held_bytes = max_held_bytes
        self.max_held_job_bytes = job
        self.max_held_sender_bytes = sender
        self.hold_timeout = hold_timeout
        self.stall_timeout = stall_timeout
        self.max_connections = max_connections
        self.hello_timeout = hello_timeout
        self._listener = TLSListener(
            self._ssl, self._handle, log=log, max_handshakes=max_handshakes,
            max_per_address=max_handshakes_per_address, handshake_timeout=hello_timeout,
            limit=STREAM_LIMIT, buffered=True,
        )
        self._started = False
        self._conns: dict[Key, _Endpoint] = {}
        self._held: dict[Key, collections.deque[_Held]] = {}
        self._held_bytes = 0  # includes reservations for bodies still being read
        self._job_bytes: collections.Counter[str] = collections.Counter()
        self._sender_bytes: collections.Counter[Key] = collections.Counter()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats = RelayStats()

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port (useful with ``port=0``)."""
        bound = await self._listener.start(host, port)
        self._started = True
        return bound

    async def close(self) -> None:
        """Stop listening, drop every connection and every held message."""
        if self._started:
            await self._listener.close()
            self._started = False
        for w in list(self._writers):
            w.transport.abort()
        for queue in self._held.values():
            for item in queue:
                if item.timer:
                    item.timer.cancel()
        self._held.clear()
        self._held_bytes = 0
        self._job_bytes.clear()
        self._sender_bytes.clear()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def stats(self) -> RelayStats:
        s = self._stats
        s.registered = len(self._conns)
        s.held_messages = sum(len(q) for q in self._held.values())
        s.held_bytes = self._held_bytes
        s.handshakes_refused = self._listener.refusals.count
        return RelayStats(**vars(s))

    def held_by_job(self, job: str) -> int:
        """Bytes charged to ``job``'s quota (held frames and bodies being read)."""
        return self._job_bytes.get(job, 0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one connection -----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        self._stats.connections += 1
        ep: _Endpoint | None = None
        peername = writer.get_extra_info("peername")
        try:
            hello = await self._read_hello(reader, writer)
            if hello is None:
                return
            key, peer = hello
            ep = _Endpoint(key, writer)
            writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
            async with ep.lock:
                # registered before the first await so live senders queue behind the flush
                self._conns[key] = ep
                await write_message(writer, Message("hello_ok", {"job": key[0], "id": key[1]}))
                await self._flush_held(ep)
            log.debug("registered %s/%d -> peer %d from %s", key[0], key[1], peer, peername)
            await self._pump(reader, ep, (key[0], peer))
        except _Stalled as exc:
            self._stats.stalled += 1
            assert ep is not None
            log.warning("cut off %s/%d from %s: %s", ep.key[0], ep.key[1], peername, exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send_error_to(writer, ep, "stalled", str(exc)), 5)
        except ProtocolError as exc:
            log.info("closing %s: %s", ep.key if ep else peername, exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send_error_to(writer, ep, "protocol", str(exc)), 5)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("connection %s ended: %r", ep.key if ep else peername, exc)
        finally:
            if ep is not None:
                ep.alive = False
                if self._conns.get(ep.key) is ep:
                    del self._conns[ep.key]
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)
            if task is not None:
                self._tasks.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, code: str, message: str) -> None:
        self._stats.refused += 1
        log.info("refused %s: %s", writer.get_extra_info("peername"), message)
        with contextlib.suppress(Exception):
            await write_message(writer, Message("relay_error", {"code": code, "error": message}))

    async def _read_hello(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Key, int] | None:
        """Validate the hello against the certificate; None after refusing."""
        try:
            async with asyncio.timeout(self.hello_timeout):
                prefix = await read_prefix(reader)
                if prefix is None:
                    return None
                hlen, blen = prefix
                if blen:
                    await self._refuse(writer, "protocol", "hello must have an empty body")
                    return None
                kind, fields = decode_header(await reader.readexactly(hlen))
        except TimeoutError:
            await self._refuse(writer, "timeout", f"no hello within {self.hello_timeout:g} s")
            return None
        if kind != "hello":
            await self._refuse(writer, "protocol", f"expected hello, got {kind!r}")
            return None
        job, wid, peer = fields.get("job"), fields.get("id"), fields.get("peer")
        if not isinstance(job, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (wid, peer)
        ):
            await self._refuse(writer, "protocol", "hello needs job (str), id (int), peer (int)")
            return None
        try:
            ident = check_worker(writer.get_extra_info("ssl_object"))
        except IdentityRefused as exc:
            await self._refuse(writer, "identity", str(exc))
            return None
        if (ident.job, ident.worker_id) != (job, wid):
            await self._refuse(
                writer, "identity",
                f"certificate is for job {ident.job!r} worker {ident.worker_id}, "
                f"not job {job!r} worker {wid}",
            )
            return None
        key: Key = (job, wid)
        if key in self._conns:
            await self._refuse(
                writer, "duplicate", f"job {job!r} worker {wid} is already connected"
            )
            return None
        if len(self._conns) >= self.max_connections:
            await self._refuse(writer, "full", f"relay is full ({self.max_connections} workers)")
            return None
        return key, peer

    # --- reading under the frame's stall guard ----------------------------------------------
    @staticmethod
    async def _read_chunk(reader: asyncio.StreamReader, guard: _Guard, n: int) -> bytes:
        chunk = await reader.read(n)
        if not chunk:
            raise ProtocolError("connection closed inside a frame body")
        guard.moved()
        guard.got += len(chunk)
        return chunk

    async def _drain(self, dest: _Endpoint) -> bool:
        """Wait until ``dest`` took what was written; False (and ``dest`` dropped) if it failed
        or took nothing for ``stall_timeout`` seconds. For frames outside a pump's guard."""
        try:
            async with asyncio.timeout(self.stall_timeout):
                await dest.writer.drain()
            if dest.writable():  # drain returns quietly after an abort
                return True
        except (ConnectionError, RuntimeError):
            pass
        except TimeoutError:
            log.warning("dropping receiver %s/%d: it took no byte for %g s", dest.key[0],
                        dest.key[1], self.stall_timeout)
        self._drop(dest)
        dest.writer.transport.abort()
        return False

    @staticmethod
    async def _drain_guarded(dest: _Endpoint, guard: _Guard) -> bool:
        guard.waiting = dest
        try:
            await dest.writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        finally:
            guard.waiting = None
        if not dest.writable():  # aborted meanwhile: drain returns quietly after an abort
            return False
        guard.moved()
        return True

    # --- forwarding -----------------------------------------------------------------------
    async def _pump(self, reader: asyncio.StreamReader, src: _Endpoint, dst: Key) -> None:
        """Forward every frame from ``src`` to ``dst`` until EOF."""
        guard = _Guard(self.stall_timeout, reader)
        stamp = b',"%s":%d}' % (SENDER_FIELD.encode(), src.key[1])
        while True:
            prefix = await read_prefix(reader)  # waiting between frames is not a stall
            if prefix is None:
                return
            hlen, blen = prefix
            guard.arm(0)
            try:
                try:
                    raw = await reader.readexactly(hlen)
                except asyncio.IncompleteReadError:
                    raise ProtocolError("connection closed inside a frame header") from None
                guard.moved()
                guard.blen = blen
                kind, fields = decode_header(raw)
                if _is_reserved(kind):
                    await self._discard(reader, guard, blen)
                    self._spawn(self._send_error(src.key, "reserved",
                                                 f"type {kind!r} is reserved"))
                    continue
                if SENDER_FIELD in fields:  # the relay's word replaces the sender's
                    fields[SENDER_FIELD] = src.key[1]
                    header = json.dumps({"type": kind, **fields}, separators=(",", ":")).encode()
                else:  # a JSON object ends in "}": append the field (cheaper than re-encoding)
                    header = raw.rstrip()[:-1] + stamp
                if len(header) > MAX_HEADER:
                    await self._discard(reader, guard, blen)
                    self._spawn(self._send_error(src.key, "protocol", "frame header too long"))
                    continue
                head = PREFIX.pack(len(header), blen) + header
                dest = self._conns.get(dst)
                if dest is not None:
                    outcome = await self._stream(reader, guard, dest, head, blen)
                    if outcome == "delivered":
                        continue
                    if outcome == "lost":
                        self._spawn(self._send_error(
                            src.key, "lost", f"worker {dst[1]} disconnected while a "
                            f"{blen}-byte message was forwarded",
                        ))
                        continue
                    # "absent": the receiver was gone before the first byte; hold it instead
                await self._hold(reader, guard, src, dst, head, blen)
            finally:
                guard.disarm()

    async def _stream(self, reader: asyncio.StreamReader, guard: _Guard, dest: _Endpoint,
                      head: bytes, blen: int) -> str:
        """Copy one frame to ``dest`` chunk by chunk, draining after each chunk.

        Returns "delivered"; "absent" when ``dest`` was already unusable (nothing of the body
        has been read, so the caller can hold the frame); or "lost" when ``dest`` failed
        part-way (the rest of the body is still consumed so the sender's stream stays in sync).
        If the *sender* fails part-way, ``dest`` holds a partial frame and is closed.
        """
        guard.queued = True
        try:
            await dest.lock.acquire()
        finally:
            guard.queued = False
        try:
            if not dest.writable():
                self._drop(dest)
                return "absent"
            try:
                dest.writer.write(head)
            except (ConnectionError, RuntimeError):
                self._drop(dest)
                return "absent"
            ok = await self._drain_guarded(dest, guard) if not blen else True
            got = 0
            try:
                while got < blen:
                    chunk = await self._read_chunk(reader, guard, min(blen - got, CHUNK))
                    got += len(chunk)
                    if ok:
                        try:
                            dest.writer.write(chunk)
                        except (ConnectionError, RuntimeError):
                            ok = False
                        else:
                            ok = await self._drain_guarded(dest, guard)
            except BaseException:
                # the receiver holds a partial frame: its connection is unusable
                self._drop(dest)
                dest.writer.transport.abort()
                raise
            if not ok:
                self._drop(dest)
                dest.writer.transport.abort()
                return "lost"
            self._stats.forwarded_messages += 1
            self._stats.forwarded_bytes += blen
            return "delivered"
        finally:
            dest.lock.release()

    def _drop(self, ep: _Endpoint) -> None:
        ep.alive = False
        if self._conns.get(ep.key) is ep:
            del self._conns[ep.key]

    async def _discard(self, reader: asyncio.StreamReader, guard: _Guard, blen: int) -> None:
        got = 0
        while got < blen:
            got += len(await self._read_chunk(reader, guard, min(blen - got, CHUNK)))

    # --- held messages and their quotas -----------------------------------------------------
    def _over_quota(self, sender: Key, size: int) -> str | None:
        """Which quota ``size`` more bytes from ``sender`` would exceed, or None."""
        if self._sender_bytes[sender] + size > self.max_held_sender_bytes:
            return f"the sender's {self.max_held_sender_bytes}-byte hold quota"
        if self._job_bytes[sender[0]] + size > self.max_held_job_bytes:
            return f"job {sender[0]!r}'s {self.max_held_job_bytes}-byte hold quota"
        if self._held_bytes + size > self.max_held_bytes:
            return f"the relay's {self.max_held_bytes}-byte hold space"
        return None

    def _charge(self, sender: Key, size: int) -> None:
        self._held_bytes += size
        self._job_bytes[sender[0]] += size
        self._sender_bytes[sender] += size

    def _release(self, sender: Key, size: int) -> None:
        self._held_bytes -= size
        for counter, key in ((self._job_bytes, sender[0]), (self._sender_bytes, sender)):
            left = counter[key] - size
            if left > 0:
                counter[key] = left
            else:
                del counter[key]

    async def _hold(self, reader: asyncio.StreamReader, guard: _Guard, src: _Endpoint, dst: Key,
                    head: bytes, blen: int) -> None:
        size = len(head) + blen
        full = self._over_quota(src.key, size)
        if full is not None:
            self._stats.rejected_full += 1
            log.warning("hold quota full: rejected %d bytes from %s/%d for worker %d (%s)",
                        size, src.key[0], src.key[1], dst[1], full)
            self._spawn(self._send_error(
                src.key, "held_full",
                f"worker {dst[1]} is not connected and {full} is full; "
                f"message of {size} bytes dropped",
            ))
            await self._discard(reader, guard, blen)
            return
        # Reserve the announced size (accounting only: memory is taken as bytes arrive) so
        # concurrent frames cannot overshoot a quota.
        self._charge(src.key, size)
        body: list[bytes] = []
        got = 0
        try:
            while got < blen:
                chunk = await self._read_chunk(reader, guard, min(blen - got, CHUNK))
                body.append(chunk)
                got += len(chunk)
        except BaseException:
            self._release(src.key, size)
            raise
        guard.disarm()  # the frame is in; delivering it waits on the receiver, not the sender
        await self._hold_or_deliver(src.key, dst, head, body, size)

    async def _hold_or_deliver(self, sender: Key, dst: Key, head: bytes, body: list[bytes],
                               size: int) -> None:
        """Deliver a fully read frame if ``dst`` is there now, else queue it (``size`` is
        already charged to ``sender`` and stays so while the frame is held)."""
        while (dest := self._conns.get(dst)) is not None:
            async with dest.lock:
                if dest.writable() and await self._write_frame(dest, head, body):
                    self._release(sender, size)
                    return
            self._drop(dest)
        item = _Held(sender, head, body, size)
        self._held.setdefault(dst, collections.deque()).append(item)
        item.timer = asyncio.get_running_loop().call_later(
            self.hold_timeout, self._expire, dst, item
        )

    async def _write_frame(self, dest: _Endpoint, head: bytes, body: list[bytes]) -> bool:
        try:
            dest.writer.write(head)
            dest.writer.writelines(body)
        except (ConnectionError, RuntimeError):
            dest.alive = False
            return False
        if not await self._drain(dest):
            return False
        self._stats.forwarded_messages += 1
        self._stats.forwarded_bytes += sum(len(b) for b in body)
        return True

    async def _flush_held(self, ep: _Endpoint) -> None:
        """Deliver frames held for ``ep`` in arrival order (caller holds ``ep.lock``)."""
        queue = self._held.get(ep.key)
        while queue:
            item = queue[0]
            if not await self._write_frame(ep, item.head, item.body):
                return  # stays held; the connection is gone
            queue.popleft()
            if item.timer:
                item.timer.cancel()
            self._release(item.sender, item.size)
        self._held.pop(ep.key, None)

    def _expire(self, dst: Key, item: _Held) -> None:
        queue = self._held.get(dst)
        if not queue or item not in queue:
            return
        queue.remove(item)
        if not queue:
            del self._held[dst]
        self._release(item.sender, item.size)
        self._stats.expired += 1
        log.warning("dropped a %d-byte message from %s/%d for worker %d: not connected within "
                    "%g s", item.size, item.sender[0], item.sender[1], dst[1], self.hold_timeout)
        self._spawn(self._send_error(
            item.sender, "expired",
            f"worker {dst[1]} did not connect within {self.hold_timeout:g} s; message dropped",
        ))

    async def _send_error(self, key: Key, code: str, message: str) -> None:
        ep = self._conns.get(key)
        if ep is None:
            return
        async with ep.lock:
            if ep.writable():
                await self._write_frame_quiet(ep, Message("relay_error",
                                                          {"code": code, "error": message}))

    async def _write_frame_quiet(self, ep: _Endpoint, msg: Message) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(self.stall_timeout):
                await write_message(ep.writer, msg)

    async def _send_error_to(self, writer: asyncio.StreamWriter, ep: _Endpoint | None,
                             code: str, message: str) -> None:
        msg = Message("relay_error", {"code": code, "error": message})
        if ep is None:
            await write_message(writer, msg)
            return
        async with ep.lock:
            await write_message(writer, msg)


# --- the worker's side ----------------------------------------------------------------------
class RelayClient:
    """A worker's connection to its peer through a relay."""

    def __init__(self, conn: FrameConnection, job: str, my_id: int, peer_id: int) -> None:
        self.job, self.my_id, self.peer_id = job, my_id, peer_id
        self._writer = conn
        self._send_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, host: str, port: int, creds: Credentials | ssl.SSLContext, job: str,
                      my_id: int, peer_id: int, *, server_hostname: str | None = None,
                      timeout: float = 30.0,
                      dial_slots: asyncio.Semaphore | None = None,
                      max_body: int = MAX_BODY) -> RelayClient:
        """Dial the relay, say hello, and wait for ``hello_ok``; RelayError if refused.
        ``max_body`` bounds what the peer may send in one frame: a longer one is refused by
        its length prefix, before any of it is read, and ends the connection.

        ``dial_slots`` is held while the connection and its handshake are in progress (many
        workers of one host share it, so they do not all knock at once); ``timeout`` runs
        from when a slot is free."""
        ctx = creds if isinstance(creds, ssl.SSLContext) else client_context(creds)
        try:
            async with dial_slots or contextlib.nullcontext(), asyncio.timeout(timeout):
                conn = await cls._open(host, port, ctx, server_hostname or host)
                try:
                    await write_message(conn, Message("hello",  # type: ignore[arg-type]
                                                      {"job": job, "id": my_id, "peer": peer_id}))
                    reply = await conn.read()
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError:
            raise RelayError("timeout", f"no answer from relay {host}:{port} within "
                             f"{timeout:g} s") from None
        except (ssl.SSLError, ConnectionError, ProtocolError) as exc:
            raise RelayError("tls", f"relay {host}:{port} refused the connection: {exc}") from None
        if reply is None:
            conn.close()
            raise RelayError("tls", f"relay {host}:{port} closed the connection during hello "
                             "(certificate refused?)")
        if reply.type == "relay_error":
            conn.close()
            raise RelayError(str(reply.get("code", "error")), str(reply.get("error", "")))
        if reply.type != "hello_ok":
            conn.close()
            raise RelayError("protocol", f"expected hello_ok, got {reply.type!r}")
        conn.max_body = max_body  # a longer frame from the peer ends the connection unread
        return cls(conn, job, my_id, peer_id)

    @staticmethod
    async def _open(host: str, port: int, ctx: ssl.SSLContext,
                    server_hostname: str) -> FrameConnection:
        """Connect and handshake, retrying (until the caller's timeout) while the relay cuts
        the handshake short: that is how it sheds handshakes beyond its per-address cap."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                _, conn = await loop.create_connection(
                    FrameConnection, host, port, ssl=ctx, server_hostname=server_hostname)
                return conn
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                    ssl.SSLEOFError) as exc:
                log.debug("relay %s:%d cut the handshake short (%r); retrying", host, port, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)

    async def send(self, body: bytes = b"", msg_type: str = "data", **fields: Any) -> None:
        """Send one frame to the peer (held by the relay if the peer is not connected yet)."""
        if len(msg_type) > MAX_HEADER:
            raise ValueError("message type too long")
        async with self._send_lock:
            await write_message(self._writer, Message(msg_type, fields, body))  # type: ignore[arg-type]

    async def recv(self) -> Message:
        """The next frame from the peer; RelayError for a relay report, EOFError when closed.

        Frames are read as they arrive, whether or not anyone is in ``recv``: that is what
        lets two workers send each other large messages at the same time (if neither read
        until its own send finished, both TCP paths would fill and the pair would deadlock)."""
        try:
            item = await self._writer.read()
        except (ProtocolError, ConnectionError, ssl.SSLError) as exc:
            raise RelayError("connection", f"relay connection failed: {exc}") from None
        if item is None:
            raise EOFError("relay connection closed")
        if item.type == "relay_error":
            raise RelayError(str(item.get("code", "error")), str(item.get("error", "")))
        return item

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 5)

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
