"""A StreamReader whose bytes are decrypted straight into one fixed buffer per connection.

asyncio's StreamReader takes data as new bytes objects: under TLS each read allocates a
fresh chunk (up to 256 KiB) that the reader then copies into its own growing buffer. A relay
forwarding 10,000 hand-offs at once spent most of its page faults there (``bench/scale.py``'s
storm: 42% of the relay's faults, each fault a fresh page the kernel zeroes). Here the TLS
layer writes into one buffer that lives as long as the connection (a ``BufferedProtocol``):
16 KiB at first, doubled up to ``capacity`` as frames need; when it is full the socket is
paused until the reader takes some.

Only what the relay reads with is offered: ``readexactly``, ``read``, ``exception``,
``set_exception``, ``at_eof``. ``open_buffered`` gives the protocol and reader for a
connection, and a real ``asyncio.StreamWriter`` writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .protocol import WriteFlow

FIRST_BUFFER = 16384  # a connection's first buffer: one TLS record


class BufferedStreamReader:
    """The reading half, over one buffer of at most ``capacity`` bytes (grown beyond it only
    for one longer ``readexactly``, whose caller bounds it)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._capacity = capacity
        self._buf = bytearray()  # allocated at the first read: idle connections cost nothing
        self._r = self._w = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport: Any = None
        self._paused = False
        self._want = 0  # bytes a readexactly waits for (it may need more than capacity)

    # --- the protocol's side ----------------------------------------------------------------
    def _get_buffer(self) -> memoryview:
        n = len(self._buf)
        if not n or n < self._want or (self._w == n and self._r == 0):
            # first read, a long readexactly, or full: grow (doubling up to capacity), so an
            # idle connection holds a few KiB, not the whole buffer
            size = max(self._want, min(self._capacity, max(2 * n, FIRST_BUFFER)))
            grown = bytearray(size)
            grown[: self._w - self._r] = self._buf[self._r:self._w]
            self._buf, self._w, self._r = grown, self._w - self._r, 0
        elif self._r and n - self._w < n // 4:
            used = self._w - self._r
            self._buf[:used] = self._buf[self._r:self._w]
            self._r, self._w = 0, used
        return memoryview(self._buf)[self._w:]

    def _updated(self, n: int) -> None:
        self._w += n
        if (self._w == len(self._buf) and len(self._buf) >= self._capacity and not self._paused
                and self._transport is not None):
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None

    # --- the reader's side ------------------------------------------------------------------
    def exception(self) -> BaseException | None:
        return self._exc

    def at_eof(self) -> bool:
        return self._eof and self._r == self._w

    async def _wait(self) -> None:
        if self._exc is not None:
            raise self._exc
        self._resume()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _take(self, n: int) -> bytes:
        data = bytes(memoryview(self._buf)[self._r:self._r + n])
        self._r += n
        if self._r == self._w:
            self._r = self._w = 0
        return data

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (at least one), or b"" at EOF."""
        while self._r == self._w:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait()
        return self._take(min(n, self._w - self._r))

    async def readexactly(self, n: int) -> bytes:
        """``n`` bytes; asyncio.IncompleteReadError if EOF comes first."""
        self._want = n
        try:
            while self._w - self._r < n:
                if self._exc is not None:
                    raise self._exc
                if self._eof:
                    partial = self._take(self._w - self._r)
                    raise asyncio.IncompleteReadError(partial, n)
                await self._wait()
        finally:
            self._want = 0
        return self._take(n)


class BufferedStreamProtocol(WriteFlow):
    """Feeds a :class:`BufferedStreamReader`; flow control for its StreamWriter."""

    def __init__(self, reader: BufferedStreamReader) -> None:
        super().__init__()
        self._reader = reader

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._reader._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader._get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._reader._updated(nbytes)

    def eof_received(self) -> bool:
        self._reader.feed_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._reader.feed_eof()
        else:
            self._reader.set_exception(exc)
        self._writer_lost(exc)


def open_buffered(capacity: int = 1 << 16) -> tuple[BufferedStreamProtocol, BufferedStreamReader]:
    """A protocol and its reader for one connection (call inside the running loop)."""
    reader = BufferedStreamReader(capacity)
    return BufferedStreamProtocol(reader), reader
