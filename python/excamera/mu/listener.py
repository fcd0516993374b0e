"""A TLS listener that bounds what unauthenticated peers can cost: the relay's and coordinator's.

``asyncio.start_server(ssl=...)`` accepts every connection the kernel has queued and gives each a
TLS protocol with its read buffer (256 KiB in Python 3.11-3.13) before the peer has proved
anything. 2,000 idle TCP connections cost a relay about 220 MB and a coordinator about 450 MB,
which stayed allocated after they left. Here the handshake is the only phase without an
identity, and it is bounded three ways:

* **Per listener**: while ``max_handshakes`` handshakes are in flight the listener does not
  accept. Further connections wait in the kernel's backlog, where they cost this process
  nothing, and are taken as soon as a handshake ends, so a burst of thousands of real workers
  queues instead of being refused.
* **Per source address**: one address may have at most ``max_per_address`` handshakes in flight,
  so one host cannot hold every slot. Its further connections wait, accepted but without any
  TLS state (a socket each), in a queue of at most ``max_waiting_per_address`` (and
  ``max_waiting`` for all addresses); each handshake that ends hands its slot to the next of
  its address. Beyond the queue, or after waiting longer than the handshake timeout, a
  connection is closed. A burst of workers behind one address (a NAT, or a local backend)
  therefore queues; what is still refused is retried by the workers.
* **In time**: a handshake must finish within ``handshake_timeout`` seconds.

An established connection holds no slot: only handshakes are limited, so the number of
authenticated connections (10,000 workers on one machine) is up to the listener's owner.
Every refused handshake (over a cap, timed out, or failing certificate verification) is
logged at info level with the peer's address and the reason, at most ``LOG_BURST`` lines at
once and ``LOG_RATE`` a second after that, so a flood cannot flood the log; the number of lines
left out is reported with the next one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .bufstream import open_buffered

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Each handshake in flight holds asyncio's TLS buffer (256 KiB unless tuned): at most ~32 MB.
# 128 in flight at ~50 ms round trips is ~2,500 handshakes a second, more than a core signs.
MAX_HANDSHAKES = 128
MAX_PER_ADDRESS = 32
MAX_WAITING_PER_ADDRESS = 256  # accepted sockets without TLS state: a file descriptor each
MAX_WAITING = 1024
LOG_BURST = 50
LOG_RATE = 5.0


class RefusalLog:
    """Info-level lines for refused peers, rate-limited (a token bucket)."""

    def __init__(self, log: logging.Logger, burst: int = LOG_BURST, rate: float = LOG_RATE) -> None:
        self.log = log
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self.suppressed = 0
        self.count = 0

    def refused(self, peer: Any, reason: str) -> None:
        self.count += 1
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1:
            self.suppressed += 1
            return
        self._tokens -= 1
        more = f" ({self.suppressed} similar lines left out)" if self.suppressed else ""
        self.suppressed = 0
        self.log.info("refused handshake from %s: %s%s", _addr(peer), reason, more)


def _addr(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS: {exc.reason}"
    return str(exc) or type(exc).__name__


class TLSListener:
    """Accept TCP connections, run the TLS handshake under the caps above, then ``handler``."""

    def __init__(self, ctx: ssl.SSLContext, handler: Handler, *, log: logging.Logger,
                 max_handshakes: int = MAX_HANDSHAKES, max_per_address: int = MAX_PER_ADDRESS,
                 max_waiting_per_address: int = MAX_WAITING_PER_ADDRESS,
                 max_waiting: int = MAX_WAITING, handshake_timeout: float = 30.0,
                 limit: int = 1 << 16, backlog: int = 4096, buffered: bool = False) -> None:
        """``limit``: the StreamReader's limit, or with ``buffered`` the capacity of a
        :class:`~excamera.mu.bufstream.BufferedStreamReader` (for bulk traffic)."""
        if min(max_handshakes, max_per_address) < 1 or min(max_waiting,
                                                             max_waiting_per_address) < 0:
            raise ValueError("handshake caps must be at least 1, queue bounds at least 0")
        if not 0 < handshake_timeout <= 3600:
            raise ValueError("the handshake timeout must be in (0, 3600] seconds")
        self.ctx = ctx
        self.handler = handler
        self.max_handshakes = max_handshakes
        self.max_per_address = max_per_address
        self.max_waiting_per_address = max_waiting_per_address
        self.max_waiting = max_waiting
        self.handshake_timeout = handshake_timeout
        self.limit = limit
        self.buffered = buffered
        self.backlog = backlog
        self.refusals = RefusalLog(log)
        self._slots = asyncio.Semaphore(max_handshakes)
        self._per_address: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[tuple[socket.socket, Any, float]]] = {}
        self._n_waiting = 0
        self._sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()  # tasks still in the handshake
        self._tasks: set[asyncio.Task[None]] = set()  # every connection's task (strong refs)

    @property
    def in_flight(self) -> int:
        """Handshakes accepted and not finished yet."""
        return sum(self._per_address.values())

    async def start(self, host: str, port: int) -> int:
        """Bind every address ``host`` resolves to; returns the port (useful with ``port=0``)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        seen: set[tuple[Any, ...]] = set()
        try:
            for family, kind, proto, _, addr in infos:
                if addr in seen:
                    continue
                seen.add(addr)
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self._sockets) > 1:  # every address on the same port
                    addr = (addr[0], self._sockets[0].getsockname()[1], *addr[2:])
                sock.bind(addr)
                sock.listen(self.backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._accepting = [asyncio.ensure_future(self._accept_loop(s)) for s in self._sockets]
        return self._sockets[0].getsockname()[1]

    def _close_sockets(self) -> None:
        for s in self._sockets:
            s.close()
        self._sockets.clear()
        self._close_waiting()

    def _close_waiting(self) -> None:
        for queue in self._waiting.values():
            for conn, _, _ in queue:
                conn.close()
        self._waiting.clear()
        self._n_waiting = 0

    async def close(self) -> None:
        """Stop accepting and abandon handshakes in flight; established connections stay."""
        self._close_waiting()  # first, so that no ending handshake starts a waiting one
        tasks = [*self._accepting, *self._handshakes]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._accepting.clear()
        self._close_sockets()

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                conn, peer = await loop.sock_accept(lsock)
            except OSError as exc:  # out of descriptors, mostly: wait instead of spinning
                self._slots.release()
                self.refusals.log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            except BaseException:
                self._slots.release()
                raise
            addr = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            if self._per_address.get(addr, 0) < self.max_per_address:
                self._per_address[addr] = self._per_address.get(addr, 0) + 1
                self._start(conn, peer, addr)
                continue
            self._slots.release()  # a waiting connection holds no listener slot
            queue = self._waiting.get(addr)
            waiting = len(queue) if queue else 0
            if waiting < self.max_waiting_per_address and self._n_waiting < self.max_waiting:
                if queue is None:
                    queue = self._waiting[addr] = collections.deque()
                queue.append((conn, peer, loop.time()))
                self._n_waiting += 1
                continue
            conn.close()
            self.refusals.refused(peer, f"{self.max_per_address} handshakes from this address "
                                  f"are in flight and {waiting} more wait")

    def _start(self, conn: socket.socket, peer: Any, addr: str) -> None:
        task = asyncio.ensure_future(self._serve(conn, peer, addr))
        self._handshakes.add(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _handshake_done(self, addr: str) -> None:
        """Hand the slot to the next waiting connection of ``addr``, else give it back."""
        queue = self._waiting.get(addr)
        now = asyncio.get_running_loop().time()
        while queue:
            conn, peer, since = queue.popleft()
            self._n_waiting -= 1
            if not queue:
                del self._waiting[addr]
            if now - since > self.handshake_timeout:
                conn.close()
                self.refusals.refused(peer, f"waited over {self.handshake_timeout:g} s for a "
                                      "handshake slot")
                continue
            self._start(conn, peer, addr)
            return
        left = self._per_address[addr] - 1
        if left:
            self._per_address[addr] = left
        else:
            del self._per_address[addr]
        self._slots.release()

    async def _serve(self, conn: socket.socket, peer: Any, addr: str) -> None:
        loop = asyncio.get_running_loop()
        reader: Any
        protocol: Any
        if self.buffered:
            protocol, reader = open_buffered(self.limit)
        else:
            reader = asyncio.StreamReader(limit=self.limit)
            protocol = asyncio.StreamReaderProtocol(reader)
        task = asyncio.current_task()
        try:
            try:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=self.ctx,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
            except OSError as exc:  # ssl.SSLError, resets and the handshake timeout included
                conn.close()
                self.refusals.refused(peer, _reason(exc))
                # The exception's traceback holds the frame whose future holds the exception:
                # a cycle that would keep this handshake's TLS buffer (256 KiB) alive until
                # the cyclic collector runs, hundreds of them under a flood.
                exc.__traceback__ = None
                return
            except BaseException:
                conn.close()
                raise
        finally:
            self._handshake_done(addr)
            if task is not None:
                self._handshakes.discard(task)
        # StreamWriter asks a StreamReader for its exception; the buffered protocol's drain
        # reports a lost connection itself
        writer = asyncio.StreamWriter(transport, protocol, None if self.buffered else reader,
                                      loop)
        try:
            await self.handler(reader, writer)
        except Exception:  # the handler's own bug: keep the listener serving, say what it was
            self.refusals.log.exception("connection handler for %s failed", _addr(peer))
        finally:
            if not transport.is_closing():
                with contextlib.suppress(Exception):
                    transport.close()
