"""The relay: pairs of workers talk through it because workers cannot accept connections.

mu's ``lambda_state_server`` did this job. Each worker dials out over TLS and says::

    Message("hello", {"job": J, "id": I, "peer": P})

and from then on every frame it sends is forwarded, header and body unchanged, to the
connection registered as ``(J, P)``. Rules, and why:

* **Identity.** The worker's client certificate (see :mod:`excamera.mu.tls`) must name exactly
  ``(J, I)``; otherwise the relay answers ``relay_error`` (code ``identity``) and closes. A
  worker therefore cannot read another worker's traffic, nor join another job.
* **Duplicates.** A second ``hello`` for a ``(J, I)`` that is still connected is *refused*
  (code ``duplicate``); the connection already registered keeps its slot. Replacing would let
  a copy of a leaked credential silently steal an established session; refusing makes the
  conflict visible, and a genuine reconnect works as soon as the old connection is gone.
* **Order.** Frames from one sender reach the receiver in the order sent; held frames for a
  receiver are delivered, in order, before anything live once it registers.
* **Held messages** ("tombstones" in mu): frames for a peer that is not connected yet are kept
  in memory for ``hold_timeout`` seconds (default 600). The total is bounded by
  ``max_held_bytes`` (default 1 GiB). A frame that would exceed the bound is *not* kept: its
  body is read and discarded and the sender receives ``relay_error`` code ``held_full``, so no
  message disappears silently and older, already accepted messages are never dropped to make
  room. An expired frame is dropped with a log line and the sender, if still connected, gets
  ``relay_error`` code ``expired``.
* **Big bodies.** When the receiver is connected a body is streamed in chunks straight from the
  sender's stream to the receiver's, awaiting ``drain()`` after each chunk, so a 64 MB state
  costs at most a chunk or two of relay memory and a slow receiver slows its sender down
  (TCP back-pressure) instead of filling the relay.
* **Scale.** One asyncio task per connection, no threads, no polling: held-message expiry uses
  one timer per frame. Many jobs share one relay; connections are keyed by ``(job, id)``.

Frames whose type starts with ``relay_`` or is ``hello``/``hello_ok`` are reserved for the
relay; a worker that sends one gets ``relay_error`` code ``reserved`` and the frame is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from .protocol import (
    MAX_HEADER,
    PREFIX,
    Message,
    ProtocolError,
    decode_header,
    read_message,
    read_prefix,
    write_message,
)
from .tls import Credentials, client_context, peer_identity, server_context

log = logging.getLogger("excamera.mu.relay")

Key = tuple[str, int]
CHUNK = 1 << 20  # bytes moved per read/write step when streaming a body
STREAM_LIMIT = 1 << 18  # StreamReader buffer: pauses the socket beyond twice this
RESERVED = ("hello", "hello_ok")


class RelayError(Exception):
    """The relay refused something or reported a lost message; ``code`` says what."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
    """A frame waiting for its receiver to connect."""

    sender: Key
    head: bytes  # length prefix + header, exactly as received
    body: bytes | bytearray
    timer: asyncio.TimerHandle | None = None

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body)


@dataclass
class RelayStats:
    connections: int = 0
    registered: int = 0
    refused: int = 0
    forwarded_messages: int = 0
    forwarded_bytes: int = 0
    held_messages: int = 0
    held_bytes: int = 0
    expired: int = 0
    rejected_full: int = 0


def _is_reserved(kind: str) -> bool:
    return kind in RESERVED or kind.startswith("relay_")


class Relay:
    """An asyncio TLS relay; run it in-process (coordinator) or via ``excamera relay``."""

    def __init__(
        self,
        creds: Credentials | ssl.SSLContext,
        *,
        max_held_bytes: int = 1 << 30,
        hold_timeout: float = 600.0,
        max_connections: int = 2048,
        hello_timeout: float = 30.0,
    ) -> None:
        self._ssl = creds if isinstance(creds, ssl.SSLContext) else server_context(creds)
        self.max_held_bytes = max_held_bytes
        self.hold_timeout = hold_timeout
        self.max_connections = max_connections
        self.hello_timeout = hello_timeout
        self._server: asyncio.Server | None = None
        self._conns: dict[Key, _Endpoint] = {}
        self._held: dict[Key, collections.deque[_Held]] = {}
        self._held_bytes = 0  # includes reservations for bodies still being read
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats = RelayStats()

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the bound port (useful with ``port=0``)."""
        self._server = await asyncio.start_server(
            self._handle, host, port, ssl=self._ssl, limit=STREAM_LIMIT,
            ssl_handshake_timeout=self.hello_timeout, backlog=4096,
        )
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, drop every connection and every held message."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for queue in self._held.values():
            for item in queue:
                if item.timer:
                    item.timer.cancel()
        self._held.clear()
        self._held_bytes = 0
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def stats(self) -> RelayStats:
        s = self._stats
        s.registered = len(self._conns)
        s.held_messages = sum(len(q) for q in self._held.values())
        s.held_bytes = self._held_bytes
        return RelayStats(**vars(s))

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
            async with ep.lock:
                # registered before the first await so live senders queue behind the flush
                self._conns[key] = ep
                await write_message(writer, Message("hello_ok", {"job": key[0], "id": key[1]}))
                await self._flush_held(ep)
            log.debug("registered %s/%d -> peer %d from %s", key[0], key[1], peer, peername)
            await self._pump(reader, ep, (key[0], peer))
        except ProtocolError as exc:
            log.info("closing %s: %s", ep.key if ep else peername, exc)
            with contextlib.suppress(Exception):
                await self._send_error_to(writer, ep, "protocol", str(exc))
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
        ident = peer_identity(writer.get_extra_info("ssl_object"))
        if ident is None:
            await self._refuse(writer, "identity", "client certificate names no worker")
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

    async def _pump(self, reader: asyncio.StreamReader, src: _Endpoint, dst: Key) -> None:
        """Forward every frame from ``src`` to ``dst`` until EOF."""
        while True:
            prefix = await read_prefix(reader)
            if prefix is None:
                return
            hlen, blen = prefix
            try:
                header = await reader.readexactly(hlen)
            except asyncio.IncompleteReadError:
                raise ProtocolError("connection closed inside a frame header") from None
            kind, _ = decode_header(header)
            if _is_reserved(kind):
                await self._discard(reader, blen)
                self._spawn(self._send_error(src.key, "reserved", f"type {kind!r} is reserved"))
                continue
            head = PREFIX.pack(hlen, blen) + header
            dest = self._conns.get(dst)
            if dest is not None:
                outcome = await self._stream(reader, dest, head, blen)
                if outcome == "delivered":
                    continue
                if outcome == "lost":
                    self._spawn(self._send_error(
                        src.key, "lost",
                        f"worker {dst[1]} disconnected while a {blen}-byte message was forwarded",
                    ))
                    continue
                # "absent": the receiver was gone before the first byte; hold it instead
            await self._hold(reader, src, dst, head, blen)

    async def _stream(self, reader: asyncio.StreamReader, dest: _Endpoint, head: bytes,
                      blen: int) -> str:
        """Copy one frame to ``dest`` chunk by chunk, draining after each chunk.

        Returns "delivered"; "absent" when ``dest`` was already unusable (nothing of the body
        has been read, so the caller can hold the frame); or "lost" when ``dest`` failed
        part-way (the rest of the body is still consumed so the sender's stream stays in sync).
        """
        async with dest.lock:
            if not dest.writable():
                self._drop(dest)
                return "absent"
            ok = True
            remaining = blen
            try:
                dest.writer.write(head)
                if not blen:
                    await dest.writer.drain()
            except (ConnectionError, RuntimeError):
                ok = False
            while remaining:
                chunk = await reader.read(min(remaining, CHUNK))
                if not chunk:
                    raise ProtocolError("connection closed inside a frame body")
                remaining -= len(chunk)
                if ok:
                    try:
                        dest.writer.write(chunk)
                        await dest.writer.drain()
                    except (ConnectionError, RuntimeError):
                        ok = False
            if not ok:
                # the receiver may hold a partial frame: its connection is unusable
                self._drop(dest)
                dest.writer.transport.abort()
                return "lost"
            self._stats.forwarded_messages += 1
            self._stats.forwarded_bytes += blen
            return "delivered"

    def _drop(self, ep: _Endpoint) -> None:
        ep.alive = False
        if self._conns.get(ep.key) is ep:
            del self._conns[ep.key]

    async def _discard(self, reader: asyncio.StreamReader, blen: int) -> None:
        remaining = blen
        while remaining:
            chunk = await reader.read(min(remaining, CHUNK))
            if not chunk:
                raise ProtocolError("connection closed inside a frame body")
            remaining -= len(chunk)

    async def _read_body(self, reader: asyncio.StreamReader, blen: int) -> bytearray:
        body = bytearray(blen)
        view = memoryview(body)
        pos = 0
        while pos < blen:
            chunk = await reader.read(min(blen - pos, CHUNK))
            if not chunk:
                raise ProtocolError("connection closed inside a frame body")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return body

    async def _hold(self, reader: asyncio.StreamReader, src: _Endpoint, dst: Key, head: bytes,
                    blen: int) -> None:
        size = len(head) + blen
        if self._held_bytes + size > self.max_held_bytes:
            await self._discard(reader, blen)
            self._stats.rejected_full += 1
            log.warning("held-message memory full: rejected %d bytes from %s for %s",
                        size, src.key, dst)
            self._spawn(self._send_error(
                src.key, "held_full",
                f"worker {dst[1]} is not connected and the relay's {self.max_held_bytes}-byte "
                f"hold space is full; message of {size} bytes dropped",
            ))
            return
        self._held_bytes += size  # reserve before awaiting so concurrent holds cannot overshoot
        try:
            body = await self._read_body(reader, blen)
        finally:
            self._held_bytes -= size
        await self._hold_or_deliver(src.key, dst, head, body)

    async def _hold_or_deliver(self, sender: Key, dst: Key, head: bytes,
                               body: bytes | bytearray) -> None:
        """Deliver a fully read frame if ``dst`` is there now, else queue it."""
        while (dest := self._conns.get(dst)) is not None:
            async with dest.lock:
                if dest.writable() and await self._write_frame(dest, head, body):
                    return
            self._drop(dest)
        item = _Held(sender, head, body)
        self._held.setdefault(dst, collections.deque()).append(item)
        self._held_bytes += item.size
        item.timer = asyncio.get_running_loop().call_later(
            self.hold_timeout, self._expire, dst, item
        )

    async def _write_frame(self, dest: _Endpoint, head: bytes, body: bytes | bytearray) -> bool:
        try:
            dest.writer.write(head)
            if body:
                dest.writer.write(body)
            await dest.writer.drain()
        except (ConnectionError, RuntimeError):
            dest.alive = False
            return False
        self._stats.forwarded_messages += 1
        self._stats.forwarded_bytes += len(body)
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
            self._held_bytes -= item.size
        self._held.pop(ep.key, None)

    def _expire(self, dst: Key, item: _Held) -> None:
        queue = self._held.get(dst)
        if not queue or item not in queue:
            return
        queue.remove(item)
        if not queue:
            del self._held[dst]
        self._held_bytes -= item.size
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
        with contextlib.suppress(ConnectionError, RuntimeError):
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
    """A worker's connection to its peer through a relay.

    A background task reads incoming frames into a queue as they arrive. That is what lets two
    workers send each other large messages at the same time: if neither read until its own send
    finished, both TCP paths would fill and the pair would deadlock.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 job: str, my_id: int, peer_id: int) -> None:
        self.job, self.my_id, self.peer_id = job, my_id, peer_id
        self._reader, self._writer = reader, writer
        self._inbox: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._reader_task = asyncio.ensure_future(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int, creds: Credentials | ssl.SSLContext, job: str,
                      my_id: int, peer_id: int, *, server_hostname: str | None = None,
                      timeout: float = 30.0) -> RelayClient:
        """Dial the relay, say hello, and wait for ``hello_ok``; RelayError if refused."""
        ctx = creds if isinstance(creds, ssl.SSLContext) else client_context(creds)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=server_hostname or host,
                    limit=STREAM_LIMIT,
                )
                try:
                    await write_message(writer, Message("hello",
                                                        {"job": job, "id": my_id, "peer": peer_id}))
                    reply = await read_message(reader)
                except BaseException:
                    writer.close()
                    raise
        except TimeoutError:
            raise RelayError("timeout", f"no answer from relay {host}:{port} within "
                             f"{timeout:g} s") from None
        except (ssl.SSLError, ConnectionError, ProtocolError) as exc:
            raise RelayError("tls", f"relay {host}:{port} refused the connection: {exc}") from None
        if reply is None:
            writer.close()
            raise RelayError("tls", f"relay {host}:{port} closed the connection during hello "
                             "(certificate refused?)")
        if reply.type == "relay_error":
            writer.close()
            raise RelayError(str(reply.get("code", "error")), str(reply.get("error", "")))
        if reply.type != "hello_ok":
            writer.close()
            raise RelayError("protocol", f"expected hello_ok, got {reply.type!r}")
        return cls(reader, writer, job, my_id, peer_id)

    async def _read_loop(self) -> None:
        try:
            while (msg := await read_message(self._reader)) is not None:
                await self._inbox.put(msg)
            await self._inbox.put(None)
        except (ProtocolError, ConnectionError, ssl.SSLError) as exc:
            await self._inbox.put(exc)
        except asyncio.CancelledError:
            await self._inbox.put(None)
            raise

    async def send(self, body: bytes = b"", msg_type: str = "data", **fields: Any) -> None:
        """Send one frame to the peer (held by the relay if the peer is not connected yet)."""
        if len(msg_type) > MAX_HEADER:
            raise ValueError("message type too long")
        async with self._send_lock:
            await write_message(self._writer, Message(msg_type, fields, body))

    async def recv(self) -> Message:
        """The next frame from the peer; RelayError for a relay report, EOFError when closed."""
        item = await self._inbox.get()
        if item is None:
            self._inbox.put_nowait(None)  # keep reporting EOF to later calls
            raise EOFError("relay connection closed")
        if isinstance(item, BaseException):
            self._inbox.put_nowait(item)
            raise RelayError("connection", f"relay connection failed: {item}")
        if item.type == "relay_error":
            raise RelayError(str(item.get("code", "error")), str(item.get("error", "")))
        return item

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 5)
        self._reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self._reader_task

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
