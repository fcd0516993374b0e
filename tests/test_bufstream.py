"""The relay's fixed-buffer reader and the worker's frame connection, on both event loops.

uvloop and asyncio differ in how they drive a BufferedProtocol under TLS (uvloop took a
protocol that was also an ``asyncio.Protocol`` for a ``data_received`` one and dropped every
byte), so the relay's round trips run on each.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
import uvloop

from excamera.mu import tls
from excamera.mu.bufstream import BufferedStreamReader
from excamera.mu.protocol import PREFIX, FrameConnection, ProtocolError
from excamera.mu.relay import Relay, RelayClient, RelayError

MB = 1 << 20


class FakeTransport:
    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


def feed(reader: BufferedStreamReader, data: bytes) -> int:
    """Write as much of ``data`` as the reader's buffer offers, as a transport would."""
    buf = reader._get_buffer()
    n = min(len(buf), len(data))
    buf[:n] = data[:n]
    reader._updated(n)
    return n


def test_reader_pauses_the_socket_when_full_and_resumes_when_read() -> None:
    async def go() -> None:
        reader = BufferedStreamReader(capacity=1024)
        t = FakeTransport()
        reader._transport = t
        data = os.urandom(3000)
        assert feed(reader, data) == 1024
        assert t.paused  # full: the socket waits
        first = await reader.read(100)
        assert first == data[:100]
        got = first + await reader.readexactly(924)
        assert got == data[:1024]
        task = asyncio.ensure_future(reader.readexactly(1976))
        await asyncio.sleep(0)
        assert not t.paused  # a waiting reader resumes the socket
        sent = 1024
        while sent < 3000:
            sent += feed(reader, data[sent:])
            await asyncio.sleep(0)
        assert await task == data[1024:]

    asyncio.run(go())


def test_reader_grows_for_one_long_readexactly_and_reports_eof_with_the_partial() -> None:
    async def go() -> None:
        reader = BufferedStreamReader(capacity=64)
        reader._transport = FakeTransport()
        data = os.urandom(500)
        task = asyncio.ensure_future(reader.readexactly(500))
        at = 0
        while at < 500:
            await asyncio.sleep(0)
            at += feed(reader, data[at:])
        assert await task == data
        feed(reader, b"abc")
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError) as err:
            await reader.readexactly(10)
        assert err.value.partial == b"abc"
        assert await reader.read(10) == b""
        assert reader.at_eof()

    asyncio.run(go())


def test_reader_set_exception_interrupts_a_waiting_read() -> None:
    async def go() -> None:
        reader = BufferedStreamReader(capacity=64)
        reader._transport = FakeTransport()
        task = asyncio.ensure_future(reader.read(10))
        await asyncio.sleep(0)
        reader.set_exception(TimeoutError("stalled"))
        with pytest.raises(TimeoutError):
            await task
        with pytest.raises(TimeoutError):  # and every later read
            await reader.read(1)

    asyncio.run(go())


def test_frame_connection_refuses_a_bad_prefix_and_bounds_a_huge_body() -> None:
    async def go() -> None:
        conn = FrameConnection()

        class T(FakeTransport):
            aborted = False

            def abort(self) -> None:
                self.aborted = True

            def set_write_buffer_limits(self, high: int) -> None:
                pass

        t = T()
        conn.connection_made(t)  # type: ignore[arg-type]
        header = b'{"type":"blob"}'
        wire = PREFIX.pack(len(header), 1 << 31) + header + b"x" * 1000
        at = 0
        while at < len(wire):
            buf = conn.get_buffer(-1)
            n = min(len(buf), len(wire) - at)
            buf[:n] = wire[at:at + n]
            conn.buffer_updated(n)
            at += n
        # a 2 GiB body announced: only one piece of it exists, not 2 GiB
        assert sum(len(p) for p in conn._pieces) <= 16 * MB
        conn.eof_received()
        with pytest.raises(ProtocolError, match="inside a frame"):
            await conn.read()

        bad = FrameConnection()
        bad.connection_made(t)  # type: ignore[arg-type]
        buf = bad.get_buffer(-1)
        buf[:PREFIX.size] = PREFIX.pack(0, 0)
        bad.buffer_updated(PREFIX.size)
        with pytest.raises(ProtocolError, match="header length 0"):
            await bad.read()
        assert t.aborted

    asyncio.run(go())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_relay_exchanges_large_states_on_both_loops(loop: str) -> None:
    """Two workers send each other 3 MB at once through the relay: both arrive intact."""

    async def go() -> None:
        ca = tls.CertificateAuthority.create("bufstream")
        relay = Relay(ca.issue_server())
        port = await relay.start()
        try:
            a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 0), "j", 0, 1)
            b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 1), "j", 1, 0)
            da, db = os.urandom(3 * MB), os.urandom(3 * MB + 17)
            await asyncio.gather(a.send(da, "blob"), b.send(db, "blob"))
            ga, gb = await asyncio.wait_for(asyncio.gather(b.recv(), a.recv()), 60)
            assert hashlib.sha256(ga.body).digest() == hashlib.sha256(da).digest()
            assert hashlib.sha256(gb.body).digest() == hashlib.sha256(db).digest()
            assert ga.get("from") == 0 and gb.get("from") == 1
            await a.close()
            with pytest.raises((EOFError, RelayError)):
                await asyncio.wait_for(a.recv(), 10)
            await b.close()
        finally:
            await relay.close()

    if loop == "uvloop":
        uvloop.run(go())
    else:
        asyncio.run(go())


def test_tuning_for_many_connections_sets_the_collector_in_its_own_process() -> None:
    import subprocess
    import sys

    code = ("import gc; from excamera.mu.evloop import tune_for_many_connections as t; "
            "t(); print(gc.get_threshold()[0], gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["50000", "True"]
