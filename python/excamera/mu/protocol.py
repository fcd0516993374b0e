"""The wire protocol shared by coordinator, workers and relay.

mu spoke colon-separated strings (``retrieve:key\\0file``) and answered ``OK:``/``FAIL(``.
Here every message is one frame::

    u32 big-endian  header length H
    u64 big-endian  body length B
    H bytes         header: a UTF-8 JSON object with at least {"type": str}
    B bytes         body: opaque bytes (a blob, a state, a file's content), often empty

The header carries typed fields, the body carries bulk data without any encoding, so a 64 MB
state is forwarded as it is. Limits stop a hostile or broken peer from making us allocate
without bound.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass, field
from typing import Any

PREFIX = struct.Struct(">IQ")
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far beyond any real command
MAX_BODY = 1 << 32  # 4 GiB


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


@dataclass
class Message:
    """One protocol frame: a typed JSON header plus an optional binary body."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def encode(self) -> bytes:
        header = json.dumps({"type": self.type, **self.fields}, separators=(",", ":")).encode()
        return PREFIX.pack(len(header), len(self.body)) + header + self.body


def decode_header(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("frame header has no string 'type'")
    kind = obj.pop("type")
    return kind, obj


async def read_prefix(reader: asyncio.StreamReader,
                      max_body: int = MAX_BODY) -> tuple[int, int] | None:
    """Read a frame's length prefix; None on a clean EOF before any byte. A body longer than
    ``max_body`` is refused here, before any of it is read."""
    try:
        raw = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a frame prefix") from None
    hlen, blen = PREFIX.unpack(raw)
    if hlen == 0 or hlen > MAX_HEADER:
        raise ProtocolError(f"frame header length {hlen} out of range")
    if blen > max_body:
        raise ProtocolError(f"frame body length {blen} out of range (at most {max_body})")
    return hlen, blen


async def read_message(reader: asyncio.StreamReader,
                       max_body: int = MAX_BODY) -> Message | None:
    """Read one message; None when the peer closed the connection between frames."""
    prefix = await read_prefix(reader, max_body)
    if prefix is None:
        return None
    hlen, blen = prefix
    try:
        header = await reader.readexactly(hlen)
        body = await reader.readexactly(blen) if blen else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    kind, fields = decode_header(header)
    return Message(kind, fields, body)


WRITE_PIECE = 1 << 16


async def write_message(writer: asyncio.StreamWriter, msg: Message) -> None:
    """Write one message and wait until the transport has taken it (flow control).

    A large body goes in pieces, each drained before the next is encrypted: a TLS transport
    encrypts whatever it is given at once, so a whole body would sit there twice (plain and
    encrypted) until the socket took it."""
    header = json.dumps({"type": msg.type, **msg.fields}, separators=(",", ":")).encode()
    writer.write(PREFIX.pack(len(header), len(msg.body)) + header)
    body = memoryview(msg.body)
    for at in range(0, len(body), WRITE_PIECE):
        writer.write(body[at:at + WRITE_PIECE])
        await writer.drain()
    if not body:
        await writer.drain()


BODY_PIECE = 16 << 20  # a body is allocated at most this much ahead of the bytes received


class WriteFlow(asyncio.BufferedProtocol):
    """Write flow control for a BufferedProtocol: ``drain`` waits while the transport's
    buffer is over its high-water mark and raises ConnectionResetError once the connection is
    lost, as a StreamWriter's does (which calls ``_drain_helper`` and ``_get_close_waiter``).

    Not asyncio's FlowControlMixin: that is an ``asyncio.Protocol``, and uvloop then takes the
    subclass for a ``data_received`` protocol and never asks it for a buffer."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._paused = False
        self._lost: BaseException | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drains()

    def _writer_lost(self, exc: BaseException | None) -> None:
        """Call from ``connection_lost``: ends every wait, now and later."""
        self._lost = exc if exc is not None else ConnectionResetError("closed")
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake_drains()

    def _wake_drains(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drain_helper(self) -> None:
        if self._lost is None and self._paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._lost is not None:
            raise ConnectionResetError(f"connection lost: {self._lost}")

    def _get_close_waiter(self, stream: Any = None) -> asyncio.Future[None]:
        return self._closed

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


class FrameConnection(WriteFlow):
    """One connection's frames, read straight into the buffers they end up in.

    A StreamReader copies every byte three times on its way to a frame body (the TLS layer's
    fresh read chunk, its own growing buffer, then the slice ``readexactly`` returns), and a
    host of 5,000 workers receiving at once spends a third of its time faulting in the pages
    those copies need (``bench/scale.py``'s storm). Here the TLS layer decrypts into the
    frame's own buffer: a header into a bytearray of its length, a body into one of its
    length, allocated at most ``BODY_PIECE`` ahead of what has arrived, so a peer that
    announces a huge body and sends nothing costs nothing.

    Complete messages go to ``inbox`` in order; a clean EOF between frames puts None, and a
    failure (a bad frame, EOF inside one, a lost connection) puts the exception. The write
    side offers what a StreamWriter does (``write``, ``drain``, ``close``, ``wait_closed``,
    ``transport``, ``get_extra_info``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.inbox: asyncio.Queue[Message | BaseException | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self._prefix = bytearray(PREFIX.size)
        self._stage = 0  # 0: prefix, 1: header, 2: body
        self._buf = memoryview(self._prefix)
        self._have = 0
        self._blen = 0
        self.max_body = MAX_BODY  # a longer frame is refused by its prefix, before its body
        self._kind = ""
        self._fields: dict[str, Any] = {}
        self._pieces: list[bytearray] = []
        self._got = 0  # body bytes in finished pieces
        self._done = False

    # --- reading -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # drain() waits beyond this: what write_message holds encrypted per piece
        transport.set_write_buffer_limits(high=WRITE_PIECE)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buf[self._have:]

    def buffer_updated(self, nbytes: int) -> None:
        self._have += nbytes
        try:
            while self._have == len(self._buf) and not self._done:
                self._advance()
        except ProtocolError as exc:
            self._fail(exc)

    def _advance(self) -> None:
        """The current buffer is full: move to the frame's next part, or finish it."""
        if self._stage == 0:
            hlen, blen = PREFIX.unpack(self._prefix)
            if hlen == 0 or hlen > MAX_HEADER:
                raise ProtocolError(f"frame header length {hlen} out of range")
            if blen > self.max_body:
                raise ProtocolError(f"frame body length {blen} out of range "
                                    f"(at most {self.max_body})")
            self._stage, self._blen = 1, blen
            self._set(bytearray(hlen))
        elif self._stage == 1:
            self._kind, self._fields = decode_header(bytes(self._buf))
            self._stage, self._pieces, self._got = 2, [], 0
            self._next_piece()
        else:
            self._got += len(self._buf)
            self._next_piece()

    def _next_piece(self) -> None:
        left = self._blen - self._got
        if left > 0:
            piece = bytearray(min(left, BODY_PIECE))
            self._pieces.append(piece)
            self._set(piece)
            return
        pieces = self._pieces
        body: bytes | bytearray = (b"" if not pieces else pieces[0] if len(pieces) == 1
                                   else b"".join(pieces))
        self.inbox.put_nowait(Message(self._kind, self._fields, body))  # type: ignore[arg-type]
        self._stage, self._pieces, self._fields = 0, [], {}
        self._set(self._prefix)

    def _set(self, buf: bytearray) -> None:
        self._buf, self._have = memoryview(buf), 0

    def _fail(self, exc: BaseException) -> None:
        if not self._done:
            self._done = True
            self.inbox.put_nowait(exc)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        if self._stage == 0 and self._have == 0:
            if not self._done:
                self._done = True
                self.inbox.put_nowait(None)
        else:
            self._fail(ProtocolError("connection closed inside a frame"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._done = True
            clean = exc is None and self._stage == 0 and self._have == 0
            self.inbox.put_nowait(None if clean else exc if exc is not None
                                  else ProtocolError("connection closed inside a frame"))
        self._writer_lost(exc)

    # --- writing (what StreamWriter offers) --------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        await self._drain_helper()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default) if self.transport else default

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def read(self) -> Message | None:
        """The next message; None after a clean EOF (and on every later call)."""
        item = await self.inbox.get()
        if item is None or isinstance(item, BaseException):
            self.inbox.put_nowait(item)  # keep reporting it
        if isinstance(item, BaseException):
            raise item
        return item
