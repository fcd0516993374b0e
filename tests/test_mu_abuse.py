"""The relay and the coordinator under abuse, as real processes on 127.0.0.1 (issue 11).

Memory is measured as the server process's RSS (``/proc/PID/status``), which is what an
operator sees; the relay's own accounting is checked in-process where that is enough. Waits are
for events (a refusal, a cut-off, a delivery), each bounded; no assertion is on a duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _mu_servers import (
    CLI,
    PYTHON_SRC,
    ServerProcess,
    closed_by_server,
    coordinator_process,
    flood,
    relay_process,
)
from excamera.mu.backends import InProcessBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import CommandFailed, JobFailed
from excamera.mu.machines import Cmd
from excamera.mu.protocol import PREFIX
from excamera.mu.relay import Relay, RelayClient, RelayError
from excamera.mu.tls import CertificateAuthority, genkeys

MB = 1 << 20

pytestmark = pytest.mark.timeout(300)


def run(coro, timeout: float = 240):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def handoff(port: int, ca: CertificateAuthority, job: str, size: int) -> bytes:
    """Worker 0 sends ``size`` bytes before worker 1 connects, so the relay must hold them."""
    a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker(job, 0), job, 0, 1)
    await a.send(os.urandom(size))
    await asyncio.sleep(0.2)  # lets the frame reach the relay first (either order passes)
    b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker(job, 1), job, 1, 0)
    got = await asyncio.wait_for(b.recv(), 60)
    await a.close()
    await b.close()
    return got.body


# --- a stalled oversized body ---------------------------------------------------------------
def test_stalled_oversized_body_costs_no_memory_and_is_cut_off(tmp_path: Path) -> None:
    """Issue 11's attack: announce ~1 GB for an absent peer, send 1 KiB, stop."""
    genkeys(tmp_path)
    ca = CertificateAuthority.load(tmp_path / "ca_cert.pem", tmp_path / "ca_key.pem")
    relay = relay_process(tmp_path, "--stall-timeout", "2")

    async def main() -> None:
        assert len(await handoff(relay.port, ca, "warm", MB)) == MB
        before = relay.rss_mb()
        evil = await RelayClient.connect("127.0.0.1", relay.port, ca.issue_worker("evil", 0),
                                         "evil", 0, 1)
        header = b'{"type":"data"}'
        # 1020 MiB fits the relay's default 1 GiB: without quotas it was reserved, allocated
        # and left no room for anyone else's held messages
        evil._writer.write(PREFIX.pack(len(header), 1020 * MB) + header + b"x" * 1024)
        await evil._writer.drain()
        # another job's hand-off still goes through, and the relay did not grow for the attack
        assert len(await handoff(relay.port, ca, "other", 4 * MB)) == 4 * MB
        grown = relay.rss_mb() - before
        assert grown < 64, f"relay RSS grew {grown:.0f} MB under a stalled 1020 MiB body"
        codes = []
        with pytest.raises(EOFError):  # the relay cuts the stalled sender off
            while True:
                try:
                    await asyncio.wait_for(evil.recv(), 60)
                except RelayError as exc:
                    codes.append(exc.code)
                    if exc.code == "connection":
                        raise EOFError from None
        assert "stalled" in codes, codes
        await evil.close()

    try:
        run(main())
        out = relay.output()
    finally:
        relay.stop()
    assert re.search(r"cut off evil/0 from .*no byte of a 1069547520-byte body for 2 s", out), out


def test_job_and_sender_quotas_keep_one_job_from_starving_another(caplog) -> None:
    caplog.set_level(logging.INFO, logger="excamera.mu.relay")
    ca = CertificateAuthority.create("quota-test")

    async def main() -> None:
        relay = Relay(ca.issue_server(), max_held_bytes=8 * MB, max_held_job_bytes=2 * MB,
                      max_held_sender_bytes=MB, stall_timeout=1.0)
        port = await relay.start("127.0.0.1", 0)
        try:
            async def client(job: str, me: int, peer: int) -> RelayClient:
                return await RelayClient.connect("127.0.0.1", port, ca.issue_worker(job, me),
                                                 job, me, peer)
            # one job's two senders fill its 2 MiB quota; a third frame of it is refused
            a, b = await client("greedy", 0, 9), await client("greedy", 1, 9)
            await a.send(b"a" * (MB - 100))
            await b.send(b"b" * (MB - 100))
            c = await client("greedy", 2, 9)
            await c.send(b"c" * 1000)
            with pytest.raises(RelayError, match="job 'greedy'") as err:
                await asyncio.wait_for(c.recv(), 10)
            assert err.value.code == "held_full"
            # a sender over its own quota is refused even with room in the job
            d = await client("solo", 0, 1)
            await d.send(b"d" * (MB + 1))
            with pytest.raises(RelayError, match="sender's") as err:
                await asyncio.wait_for(d.recv(), 10)
            # another job's hand-off is held and delivered meanwhile
            e0 = await client("other", 0, 1)
            await e0.send(b"e" * (MB - 100))
            e1 = await client("other", 1, 0)
            assert (await asyncio.wait_for(e1.recv(), 10)).body == b"e" * (MB - 100)
            assert relay.held_by_job("greedy") == 2 * (MB - 100 + len(b'{"type":"data","from":0}')
                                                       + PREFIX.size)
            # a stalled body inside the quota is reserved, then released when it is cut off
            s = await client("stall", 0, 1)
            header = b'{"type":"data"}'
            s._writer.write(PREFIX.pack(len(header), 500_000) + header + b"x" * 10)
            await s._writer.drain()
            with pytest.raises(RelayError) as err:
                await asyncio.wait_for(s.recv(), 30)
            assert err.value.code == "stalled"
            assert relay.held_by_job("stall") == 0
            assert relay.stats().stalled == 1
        finally:
            await relay.close()

    run(main())
    cut = [r for r in caplog.records if "cut off stall/0" in r.getMessage()]
    assert cut and "no byte of a 500000-byte body" in cut[0].getMessage()


# --- unauthenticated connections --------------------------------------------------------------
async def _flood_and_measure(server: ServerProcess, count: int,
                             legit) -> tuple[float, float, int]:
    """RSS growth with ``count`` raw connections open, the most it grew after they were
    closed (the queued ones then fail their handshakes in a rush), and how many the server
    closed itself."""
    await asyncio.sleep(0.5)
    before = server.rss_mb()
    socks = flood(server.port, count)
    try:
        # bounded wait until the server has dealt with the flood (it closes what is over its
        # caps); a server without caps closes none, so this then ends at its bound
        closed, steady = 0, 0
        for _ in range(150):
            await asyncio.sleep(0.1)
            now = closed_by_server(socks)
            steady = steady + 1 if now == closed else 0
            closed = now
            if closed and steady >= 20:  # the server has settled
                break
        await legit()
        grown = server.rss_mb() - before
    finally:
        for s in socks:
            s.close()
    for _ in range(30):  # bounded: a few seconds for the server to see every close
        await asyncio.sleep(0.1)
        grown = max(grown, server.rss_mb() - before)
    await legit()
    return before, max(grown, server.rss_mb() - before), closed


def test_raw_connections_cannot_exhaust_the_relay(tmp_path: Path) -> None:
    genkeys(tmp_path)
    ca = CertificateAuthority.load(tmp_path / "ca_cert.pem", tmp_path / "ca_key.pem")
    relay = relay_process(tmp_path)  # default caps
    try:
        async def legit() -> None:  # a real pair from another address works during the flood
            assert len(await handoff(relay.port, ca, "legit", 1000)) == 1000

        _, grown, closed = run(_flood_and_measure(relay, 2000, legit))
        out = relay.output()
    finally:
        relay.stop()
    assert grown < 40, f"relay RSS grew {grown:.0f} MB for 2,000 raw connections (or after)"
    assert closed >= 1000  # beyond the per-address cap and its queue: closed at once
    assert re.search(r"refused handshake from 127\.0\.0\.2:\d+: 32 handshakes from this "
                     r"address are in flight and 256 more wait", out), out[-3000:]
    assert "similar lines left out" in out  # the log is rate-limited under a flood


def test_raw_connections_cannot_exhaust_the_coordinator() -> None:
    coord = coordinator_process()
    try:
        async def legit() -> None:  # the listener still completes a handshake from elsewhere
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            _, w = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", coord.port, ssl=ctx, server_hostname="127.0.0.1"), 60)
            w.close()

        _, grown, closed = run(_flood_and_measure(coord, 2000, legit))
        out = coord.output()
    finally:
        coord.stop()
    assert grown < 40, f"coordinator RSS grew {grown:.0f} MB for 2,000 raw connections " \
        "(or after)"
    # its backlog is small (128 for one worker): the kernel holds back the rest, so fewer
    # reach the per-address cap than at the relay
    assert closed > 0
    assert re.search(r"excamera\.mu\.coordinator refused handshake from 127\.0\.0\.2:\d+: "
                     r"32 handshakes", out), out[-3000:]


# --- rejected handshakes are logged ---------------------------------------------------------
def test_relay_logs_refused_handshakes_with_address_and_reason(caplog) -> None:
    caplog.set_level(logging.INFO, logger="excamera.mu.relay")
    ca = CertificateAuthority.create("log-test")
    stranger = CertificateAuthority.create("stranger").issue_worker("j", 0)

    async def main() -> None:
        relay = Relay(ca.issue_server())
        port = await relay.start("127.0.0.1", 0)
        try:
            from excamera.mu.tls import Credentials

            with pytest.raises(RelayError):
                await RelayClient.connect("127.0.0.1", port, Credentials(
                    stranger.cert_pem, stranger.key_pem, ca.root_pem), "j", 0, 1)
            for _ in range(100):  # the server side finishes its handshake after the client
                if relay.stats().handshakes_refused:
                    break
                await asyncio.sleep(0.05)
        finally:
            await relay.close()

    run(main())
    lines = [r for r in caplog.records if r.levelno == logging.INFO
             and r.getMessage().startswith("refused handshake from 127.0.0.1:")]
    assert lines, [r.getMessage() for r in caplog.records]
    assert "certificate verify failed: unable to get local issuer" in lines[0].getMessage()


def test_coordinator_logs_refused_handshakes_with_address_and_reason(caplog) -> None:
    caplog.set_level(logging.INFO, logger="excamera.mu.coordinator")
    stranger = CertificateAuthority.create("stranger")

    class ForgedCredentials(InProcessBackend):
        """Launches real workers whose certificate comes from an unknown CA."""

        async def launch(self, payload):
            creds = stranger.issue_worker(payload.job_id, payload.worker_id)
            payload.cert_pem, payload.key_pem = creds.cert_pem.decode(), creds.key_pem.decode()
            return await super().launch(payload)

    async def machine(w, ctx):
        return None

    coord = Coordinator("forged", 1, ForgedCredentials(), "", machine, connect_timeout=3)
    with pytest.raises(JobFailed, match="did not connect|exited"):
        asyncio.run(coord.run())
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
             and r.getMessage().startswith("refused handshake from 127.0.0.1:")]
    assert lines and "certificate verify failed: unable to get local issuer" in lines[0], lines


# --- forged hand-offs -------------------------------------------------------------------------
async def handoff_machine(w, ctx) -> str:
    """Worker 1 expects its blob from worker 0; worker 2 (a leaked credential of the same job,
    say) sends one to worker 1 first, claiming in its header to be worker 0."""
    if w.id == 1:
        await w.connect(2)
        await ctx.progress.wait_for(2, "sent")
        await w.recv_blob("got.bin", sender=0)
        return (await w.run_op("read_text", path="got.bin"))["text"]
    await w.connect(1)
    if w.id == 2:
        await w.run_op("write_text", path="f.bin", text="forged state")
        await w.call(Cmd("send_blob", {"file": "f.bin", "from": 0}))
        w.state = "sent"
        return "forger"
    await ctx.progress.wait_for(2, "sent")
    await w.run_op("write_text", path="s.bin", text="real state")
    await w.send_blob(file="s.bin")
    return "sender"


def test_recv_blob_refuses_a_blob_from_a_worker_it_does_not_expect() -> None:
    coord = Coordinator("forge", 3, InProcessBackend(), "", handoff_machine, embedded_relay=True)
    with pytest.raises(JobFailed) as err:
        asyncio.run(coord.run())
    msg = str(err.value)
    assert "worker 1" in msg and "refused a 12-byte blob from worker 2; expected one from " \
        "worker 0" in msg, msg


async def op_handoff_machine(w, ctx) -> str:
    """handoff_machine's forgery against an operation that receives through the worker's
    relay link (``OpContext.peer``): xcenc's ``xcenc_recv_state``."""
    if w.id == 1:
        await w.connect(2)
        await ctx.progress.wait_for(2, "sent")
        return (await w.run_op("xcenc_recv_state", sender=0))["sha256"]
    return await handoff_machine(w, ctx)


def test_an_operation_on_the_relay_link_refuses_a_blob_from_a_worker_it_does_not_expect(
        ) -> None:
    from excamera.pipelines.xcenc.ops import OPERATION_MODULE

    coord = Coordinator("forge", 3, InProcessBackend(), "", op_handoff_machine,
                        operation_modules=[OPERATION_MODULE], embedded_relay=True)
    with pytest.raises(JobFailed) as err:
        asyncio.run(coord.run())
    msg = str(err.value)
    assert "worker 1" in msg and "op xcenc_recv_state: refused a 12-byte blob from worker 2; " \
        "expected one from worker 0" in msg, msg


def test_connect_max_blob_refuses_a_longer_blob_by_its_length() -> None:
    """A worker connected with ``max_blob`` refuses a longer blob from its own peer by the
    frame's length prefix, in one line; a refused bound is named."""
    async def machine(w, ctx):
        if w.id == 0:
            await w.connect(1)
            await w.send_blob(data=bytes(1000))
            return "sent"
        with pytest.raises(CommandFailed, match=r"max_blob -1: a byte count 1\.\."):
            await w.call(Cmd("connect", {"peer": 0, "max_blob": -1}))
        await w.connect(0, max_blob=999)
        return await w.recv_blob(sender=0)

    coord = Coordinator("bounded", 2, InProcessBackend(), "", machine, embedded_relay=True)
    with pytest.raises(JobFailed) as err:
        asyncio.run(coord.run())
    msg = str(err.value)
    assert "worker 1" in msg and "frame body length 1000 out of range (at most 999)" in msg, msg


def test_a_relay_client_refuses_an_announced_body_beyond_its_bound_before_it_arrives(
        tmp_path: Path) -> None:
    """The sender announces 1 GiB and sends 1 KiB of it: the receiver's bound refuses the frame
    by its prefix, without waiting for (or allocating) the body."""
    ca = CertificateAuthority.create("bounded")

    async def main() -> str:
        relay = Relay(ca.issue_server())
        port = await relay.start()
        a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 0), "j", 0, 1)
        b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 1), "j", 1, 0,
                                      max_body=1 << 20)
        header = b'{"type":"blob"}'
        a._writer.write(PREFIX.pack(len(header), 1 << 30) + header + bytes(1024))
        await a._writer.drain()
        try:
            with pytest.raises(RelayError) as err:
                await asyncio.wait_for(b.recv(), 60)
            return str(err.value)
        finally:
            await a.close()
            await b.close()
            await relay.close()

    text = run(main())
    assert "frame body length 1073741824 out of range (at most 1048576)" in text
    assert "\n" not in text


def test_recv_blob_takes_the_blob_from_the_expected_worker() -> None:
    async def machine(w, ctx):
        await w.connect(1 - w.id)
        if w.id == 0:
            await w.send_blob(data=b"from zero")
            return None
        return await w.recv_blob(sender=0)

    result = asyncio.run(Coordinator("handoff", 2, InProcessBackend(), "", machine,
                                     embedded_relay=True).run())
    assert result.outputs[1] == b"from zero"


# --- the coordinator accepts only certificates from its own CA ----------------------------
def test_coordinator_refuses_a_same_job_certificate_from_another_intermediate(tmp_path: Path,
                                                                               caplog) -> None:
    """Another coordinator under the same long-lived CA can mint an intermediate for any job
    name; this job's coordinator accepts workers only from the intermediates it issued."""
    caplog.set_level(logging.INFO, logger="excamera.mu.coordinator")
    paths = genkeys(tmp_path)
    root = CertificateAuthority.load(paths["ca_cert"], paths["ca_key"])

    class OtherIntermediate(InProcessBackend):
        async def launch(self, payload):
            creds = root.issue_intermediate(payload.job_id).issue_worker(payload.job_id,
                                                                         payload.worker_id)
            payload.cert_pem, payload.key_pem = creds.cert_pem.decode(), creds.key_pem.decode()
            return await super().launch(payload)

    async def machine(w, ctx):
        return None

    coord = Coordinator("cross", 1, OtherIntermediate(), "", machine, connect_timeout=3,
                        ca_cert=paths["ca_cert"], ca_key=paths["ca_key"])
    with pytest.raises(JobFailed):
        asyncio.run(coord.run())
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
               and r.getMessage().startswith("refused connection from")]
    assert any("was not issued by job cross-" in m for m in refused), refused


# --- every new limit is bounded -------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--stall-timeout", "0"], "--stall-timeout 0: must be a finite number more than 0 and at "
     "most 3600"),
    (["--max-held-job-mb", "-1"], "--max-held-job-mb -1: must be a finite number at least 0 "
     "and at most 1024"),
    (["--max-held-sender-mb", "4096"], "--max-held-sender-mb 4096: must be a finite number at "
     "least 0 and at most 256"),
    (["--max-handshakes", "0"], "--max-handshakes 0: must be 1..65536"),
    (["--max-handshakes-per-address", "1000"], "--max-handshakes-per-address 1000: must be "
     "1..128"),
])
def test_relay_refuses_unbounded_abuse_limits_in_one_line(tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    genkeys(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(PYTHON_SRC))
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "relay", "-t", "0", "--host", "127.0.0.1",
         "-c", str(tmp_path / "ca_cert.pem"), "-s", str(tmp_path / "server_cert.pem"),
         "-k", str(tmp_path / "server_key.pem"), *args],
        capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"excamera relay: error: {message}"], proc.stderr


def test_a_burst_from_one_address_queues_instead_of_being_refused() -> None:
    """Workers behind one address (a NAT, a local backend) beyond the per-address cap wait for
    a handshake slot: none is refused."""
    ca = CertificateAuthority.create("burst")
    creds = [ca.issue_worker("burst", k) for k in range(120)]

    async def main() -> None:
        relay = Relay(ca.issue_server(), max_handshakes=8, max_handshakes_per_address=2)
        port = await relay.start("127.0.0.1", 0)
        try:
            clients = await asyncio.gather(*(
                RelayClient.connect("127.0.0.1", port, creds[k], "burst", k, k ^ 1)
                for k in range(120)))
            assert relay.stats().registered == 120
            assert relay.stats().handshakes_refused == 0
            await clients[0].send(b"through")
            assert (await clients[1].recv()).body == b"through"
            await asyncio.gather(*(c.close() for c in clients))
        finally:
            await relay.close()

    run(main())


async def _connected_pair(stall_timeout: float, test):
    """Run ``test(relay, a, b)`` with workers j/0 and j/1 of an in-process relay paired."""
    ca = CertificateAuthority.create("pair")
    relay = Relay(ca.issue_server(), stall_timeout=stall_timeout)
    port = await relay.start("127.0.0.1", 0)
    try:
        a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 0), "j", 0, 1)
        b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("j", 1), "j", 1, 0)
        await test(relay, a, b)
    finally:
        await relay.close()


def test_a_stall_while_streaming_to_a_connected_receiver(caplog) -> None:
    """The sender stops inside a body the relay is streaming: the sender is cut off and the
    receiver, which holds a partial frame, is disconnected rather than fed a corrupt stream."""
    caplog.set_level(logging.INFO, logger="excamera.mu.relay")

    async def test(relay: Relay, a: RelayClient, b: RelayClient) -> None:
        header = b'{"type":"data"}'
        a._writer.write(PREFIX.pack(len(header), 10 * MB) + header + b"x" * 300_000)
        await a._writer.drain()
        with pytest.raises(RelayError) as err:
            await asyncio.wait_for(a.recv(), 30)
        assert err.value.code == "stalled"
        with pytest.raises(RelayError) as err:
            await asyncio.wait_for(b.recv(), 30)
        assert err.value.code == "connection"  # closed inside the partial frame
        assert relay.stats().stalled == 1

    run(_connected_pair(0.5, test))
    assert any("cut off j/0" in r.getMessage() for r in caplog.records)


def test_a_receiver_that_stops_reading_is_dropped_and_the_sender_told(caplog) -> None:
    caplog.set_level(logging.INFO, logger="excamera.mu.relay")

    async def test(relay: Relay, a: RelayClient, b: RelayClient) -> None:
        b._writer.transport.pause_reading()  # b stops reading: its socket buffers fill up
        await a.send(os.urandom(32 * MB))
        with pytest.raises(RelayError) as err:
            await asyncio.wait_for(a.recv(), 60)
        assert err.value.code == "lost"
        assert relay.stats().registered == 1  # a stays, b was dropped

    run(_connected_pair(0.5, test))
    assert any("dropping receiver j/1: it took no byte for 0.5 s" in r.getMessage()
               for r in caplog.records)
