"""The relay over real TLS sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from excamera.mu import tls
from excamera.mu.protocol import PREFIX
from excamera.mu.relay import Relay, RelayClient, RelayError
from excamera.mu.tls import CertificateAuthority, Credentials

PYTHON_SRC = str(Path(__file__).resolve().parents[1] / "python")
CLI = [sys.executable, "-c", "import sys; from excamera.cli import main; sys.exit(main())"]


async def until(condition, what: str, limit: float = 60) -> None:
    """Wait for ``condition()``, checking every 10 ms; the limit only turns a hang into a
    failure (a loaded machine may take seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, f"waited {limit} s for: {what}"
        await asyncio.sleep(0.01)


def run(coro, timeout: float = 120):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


class Setup:
    """A relay on an ephemeral port plus the CA that signs its workers."""

    def __init__(self, **relay_kwargs) -> None:
        self.ca = CertificateAuthority.create("relay-test")
        self.relay = Relay(self.ca.issue_server(), **relay_kwargs)
        self.port = 0

    async def __aenter__(self) -> Setup:
        self.port = await self.relay.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.relay.close()

    async def client(self, job: str, me: int, peer: int,
                     creds: Credentials | ssl.SSLContext | None = None) -> RelayClient:
        creds = creds if creds is not None else self.ca.issue_worker(job, me)
        return await RelayClient.connect("127.0.0.1", self.port, creds, job, me, peer)

    async def check_alive(self) -> None:
        """A fresh pair still works: whatever came before did not break the relay."""
        job = f"alive{os.urandom(3).hex()}"
        a, b = await self.client(job, 0, 1), await self.client(job, 1, 0)
        await a.send(b"ping")
        assert (await b.recv()).body == b"ping"
        await a.close()
        await b.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- pairing -----------------------------------------------------------------------------
@pytest.mark.parametrize("receiver_first", [True, False])
def test_pairing_in_both_orders_preserves_order(receiver_first):
    async def main():
        async with Setup() as s:
            if receiver_first:
                b = await s.client("j", 1, 0)
                a = await s.client("j", 0, 1)
            else:
                a = await s.client("j", 0, 1)
            for i in range(50):
                await a.send(f"m{i}".encode(), seq=i, kind_of="test")
            if not receiver_first:
                await until(lambda: s.relay.stats().held_messages == 50, "the relay holds all 50")
                b = await s.client("j", 1, 0)
            got = [await b.recv() for _ in range(50)]
            assert [m["seq"] for m in got] == list(range(50))
            assert [m.body for m in got] == [f"m{i}".encode() for i in range(50)]
            assert got[0].type == "data" and got[0]["kind_of"] == "test"
            await b.send(b"back", msg_type="reply")
            reply = await a.recv()
            assert (reply.type, reply.body) == ("reply", b"back")
            assert s.relay.stats().held_bytes == 0
            await a.close()
            await b.close()

    run(main())


def test_large_messages_arrive_intact_both_directions_at_once():
    big_a = os.urandom(64 << 20) + b"tail-a"
    big_b = os.urandom(72 << 20)

    async def main():
        async with Setup() as s:
            a = await s.client("j", 0, 1)
            await a.send(big_a, n=1)  # held while b is absent: the relay keeps it whole
            b = await s.client("j", 1, 0)
            # now both stream at once; neither reads before its own send is done
            await asyncio.gather(a.send(big_b[:1], n=2), b.send(big_b, n=3))
            m1 = await b.recv()
            m2 = await b.recv()
            m3 = await a.recv()
            assert (m1["n"], len(m1.body), sha(m1.body)) == (1, len(big_a), sha(big_a))
            assert (m2["n"], m2.body) == (2, big_b[:1])
            assert (m3["n"], len(m3.body), sha(m3.body)) == (3, len(big_b), sha(big_b))
            await a.close()
            await b.close()

    run(main(), timeout=240)


def test_200_pairs_concurrently_in_both_directions():
    pairs = 200

    async def main():
        async with Setup(max_connections=2 * pairs) as s:
            creds = [(s.ca.issue_worker("many", 2 * p), s.ca.issue_worker("many", 2 * p + 1))
                     for p in range(pairs)]

            async def pair(p: int) -> None:
                a_id, b_id = 2 * p, 2 * p + 1
                a, b = await asyncio.gather(s.client("many", a_id, b_id, creds[p][0]),
                                            s.client("many", b_id, a_id, creds[p][1]))

                async def talk(me: RelayClient, other: RelayClient, me_id: int) -> None:
                    for i in range(5):
                        await me.send(f"{me_id}:{i}".encode() * 100, i=i)
                    for i in range(5):
                        m = await me.recv()
                        assert m["i"] == i
                        assert m.body == f"{other.my_id}:{i}".encode() * 100

                await asyncio.gather(talk(a, b, a_id), talk(b, a, b_id))
                await a.close()
                await b.close()

            await asyncio.gather(*(pair(p) for p in range(pairs)))
            st = s.relay.stats()
            assert st.forwarded_messages == pairs * 10
            assert st.registered == 0  # everyone left cleanly

    run(main(), timeout=240)


# --- refusals ----------------------------------------------------------------------------
def test_client_without_certificate_is_refused():
    async def main():
        async with Setup() as s:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cadata=s.ca.root_pem.decode())
            with pytest.raises(RelayError) as err:
                await s.client("j", 0, 1, ctx)
            assert err.value.code == "tls"
            await s.check_alive()

    run(main())


def test_certificate_from_another_ca_is_refused():
    async def main():
        async with Setup() as s:
            other = CertificateAuthority.create("intruder").issue_worker("j", 0)
            # trusts the real relay, but presents a certificate the relay does not trust
            creds = Credentials(other.cert_pem, other.key_pem, s.ca.root_pem)
            with pytest.raises(RelayError) as err:
                await s.client("j", 0, 1, creds)
            assert err.value.code == "tls"
            await s.check_alive()

    run(main())


def test_worker_cannot_register_as_another_worker():
    async def main():
        async with Setup() as s:
            victim_peer = await s.client("j", 5, 4)
            await victim_peer.send(b"secret for worker 4")  # held for worker 4
            with pytest.raises(RelayError, match="worker 3") as err:
                await s.client("j", 4, 5, s.ca.issue_worker("j", 3))
            assert err.value.code == "identity"
            # the coordinator's certificate names no worker either
            with pytest.raises(RelayError, match="names no worker"):
                await s.client("j", 4, 5, s.ca.issue_server())
            assert s.relay.stats().held_messages == 1  # nothing was handed to the impostor
            real = await s.client("j", 4, 5)
            assert (await real.recv()).body == b"secret for worker 4"

    run(main())


def test_expired_worker_certificate_is_refused():
    async def main():
        async with Setup() as s:
            past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
            old = s.ca.issue_worker("j", 0, ttl_seconds=3600, now=past)
            with pytest.raises(RelayError) as err:
                await s.client("j", 0, 1, old)
            assert err.value.code == "tls"
            await s.check_alive()

    run(main())


def test_duplicate_registration_is_refused_and_the_first_keeps_its_slot():
    async def main():
        async with Setup() as s:
            first = await s.client("j", 0, 1)
            with pytest.raises(RelayError, match="already connected") as err:
                await s.client("j", 0, 1)
            assert err.value.code == "duplicate"
            b = await s.client("j", 1, 0)
            await b.send(b"to the first")
            assert (await first.recv()).body == b"to the first"
            await first.close()
            await until(lambda: s.relay.stats().registered == 1, "the relay noticed it left")
            again = await s.client("j", 0, 1)  # a real reconnect after the first left works
            await b.send(b"to the second")
            assert (await again.recv()).body == b"to the second"

    run(main())


def test_reserved_types_are_not_forwarded():
    async def main():
        async with Setup() as s:
            a, b = await s.client("j", 0, 1), await s.client("j", 1, 0)
            await a.send(b"", msg_type="relay_error", code="fake", error="forged")
            with pytest.raises(RelayError) as err:
                await a.recv()
            assert err.value.code == "reserved"
            await a.send(b"real")
            assert (await b.recv()).body == b"real"  # the forged frame never reached b

    run(main())


# --- held messages ------------------------------------------------------------------------
def test_held_messages_expire_and_the_sender_is_told():
    async def main():
        async with Setup(hold_timeout=0.3) as s:
            a = await s.client("j", 0, 1)
            await a.send(b"too early")
            with pytest.raises(RelayError, match="did not connect") as err:
                await asyncio.wait_for(a.recv(), 60)
            assert err.value.code == "expired"
            st = s.relay.stats()
            assert (st.expired, st.held_messages, st.held_bytes) == (1, 0, 0)
            b = await s.client("j", 1, 0)
            await a.send(b"on time")
            assert (await b.recv()).body == b"on time"  # the expired one is gone

    run(main())


def test_held_memory_bound_rejects_new_messages_with_an_error():
    async def main():
        # the relay-wide bound alone: the job and sender quotas are as large
        async with Setup(max_held_bytes=1 << 20, max_held_job_bytes=1 << 20,
                         max_held_sender_bytes=1 << 20) as s:
            a = await s.client("j", 0, 1)
            await a.send(b"x" * 600_000, n=1)
            await a.send(b"y" * 600_000, n=2)  # would exceed 1 MiB held: refused
            with pytest.raises(RelayError, match="full") as err:
                await asyncio.wait_for(a.recv(), 60)
            assert err.value.code == "held_full"
            assert s.relay.stats().rejected_full == 1
            assert s.relay.stats().held_bytes < 1 << 20
            await a.send(b"z", n=3)
            b = await s.client("j", 1, 0)
            got = [await b.recv(), await b.recv()]
            assert [m["n"] for m in got] == [1, 3]
            assert got[0].body == b"x" * 600_000

    run(main())


# --- disconnects --------------------------------------------------------------------------
def test_disconnects_mid_frame_do_not_hurt_the_relay():
    async def main():
        async with Setup() as s:
            # a sender that dies inside a frame body
            ctx = tls.client_context(s.ca.issue_worker("j", 0))
            a = await s.client("j", 0, 1, ctx)
            b = await s.client("j", 1, 0)
            a._writer.write(PREFIX.pack(15, 10_000_000) + b'{"type":"data"}' + b"partial")
            await a._writer.drain()
            a._writer.transport.abort()
            # a receiver that leaves while a big message streams to it
            c, d = await s.client("j", 2, 3), await s.client("j", 3, 2)
            send = asyncio.ensure_future(c.send(os.urandom(48 << 20)))
            await asyncio.sleep(0.05)
            d._writer.transport.abort()
            await send
            with pytest.raises((RelayError, EOFError)):
                await asyncio.wait_for(c.recv(), 60)
            await b.close()
            await s.check_alive()
            assert s.relay.stats().registered == 1  # only c is left

    run(main())


# --- long-lived CA, per-job intermediates ------------------------------------------------
def test_relay_trusting_only_long_lived_ca_accepts_job_intermediate_workers(tmp_path):
    paths = tls.genkeys(tmp_path)

    async def main():
        relay = Relay(Credentials.from_files(paths["server_cert"], paths["server_key"],
                                             paths["ca_cert"]))
        port = await relay.start("127.0.0.1", 0)
        try:
            job_a = tls.job_authority("jobA", paths["ca_cert"], tls.find_ca_key(paths["ca_cert"]))
            job_b = tls.job_authority("jobB", paths["ca_cert"], paths["ca_key"])
            a0 = await RelayClient.connect("127.0.0.1", port, job_a.issue_worker("jobA", 0),
                                           "jobA", 0, 1)
            a1 = await RelayClient.connect("127.0.0.1", port, job_a.issue_worker("jobA", 1),
                                           "jobA", 1, 0)
            await a0.send(b"hello from A0")
            assert (await a1.recv()).body == b"hello from A0"
            b1 = await RelayClient.connect("127.0.0.1", port, job_b.issue_worker("jobB", 1),
                                           "jobB", 1, 0)
            # a worker of job A cannot register into job B
            with pytest.raises(RelayError, match="jobA") as err:
                await RelayClient.connect("127.0.0.1", port, job_a.issue_worker("jobA", 0),
                                          "jobB", 0, 1)
            assert err.value.code == "identity"
            b0 = await RelayClient.connect("127.0.0.1", port, job_b.issue_worker("jobB", 0),
                                           "jobB", 0, 1)
            await b0.send(b"job B only")
            assert (await b1.recv()).body == b"job B only"
            # a per-job root that the relay does not know is refused
            stranger = tls.job_authority("jobA").issue_worker("jobA", 5)
            with pytest.raises(RelayError):
                await RelayClient.connect("127.0.0.1", port, Credentials(
                    stranger.cert_pem, stranger.key_pem, paths["ca_cert"].read_bytes()),
                    "jobA", 5, 6)
        finally:
            await relay.close()

    run(main())


def _unbound_intermediate(root: CertificateAuthority, job: str) -> CertificateAuthority:
    """A per-job CA as coordinators issued them before issue 11: pathlen 0 and nothing else
    (no name constraints, no key-usage limit)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        root._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"old {job} CA")]),
                      key.public_key(), now - dt.timedelta(minutes=5),
                      now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(tls._ca_key_usage(), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key, [root.cert, *root.issuers])


def test_a_job_intermediate_cannot_act_for_another_job(tmp_path, caplog):
    """Issue 11: a certificate signed by job B's intermediate naming jobA/worker/5 got hello_ok."""
    caplog.set_level(logging.INFO, logger="excamera.mu.relay")
    paths = tls.genkeys(tmp_path)
    root = CertificateAuthority.load(paths["ca_cert"], paths["ca_key"])

    async def main():
        relay = Relay(Credentials.from_files(paths["server_cert"], paths["server_key"],
                                             paths["ca_cert"]))
        port = await relay.start("127.0.0.1", 0)
        try:
            victim = await RelayClient.connect("127.0.0.1", port,
                                               root.issue_intermediate("jobA").issue_worker(
                                                   "jobA", 6), "jobA", 6, 5)
            # job B's intermediate signs a certificate for job A's worker 5: name constraints
            # make the handshake fail
            forged = root.issue_intermediate("jobB").issue_worker("jobA", 5)
            with pytest.raises(RelayError) as err:
                await RelayClient.connect("127.0.0.1", port, forged, "jobA", 5, 6)
            assert err.value.code == "tls"
            # an intermediate without constraints (an older coordinator's) passes TLS, but the
            # relay checks that the issuer belongs to the certificate's job
            old = _unbound_intermediate(root, "jobB").issue_worker("jobA", 5)
            with pytest.raises(RelayError, match="not bound to any job") as err:
                await RelayClient.connect("127.0.0.1", port, old, "jobA", 5, 6)
            assert err.value.code == "identity"
            assert relay.stats().forwarded_messages == 0
            await victim.close()
        finally:
            await relay.close()

    run(main())
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
               and r.getMessage().startswith("refused")]
    assert any("subtree violation" in m and "127.0.0.1:" in m for m in refused), refused
    assert any("not bound to any job" in m for m in refused), refused


# --- who sent a frame -----------------------------------------------------------------------
def test_forwarded_frames_carry_the_senders_certified_id():
    async def main():
        async with Setup() as s:
            real = await s.client("j", 0, 2)  # the receiver's expected predecessor
            other = await s.client("j", 1, 2)  # another worker of the job, e.g. a leaked one
            await real.send(b"held", n=1)  # held: worker 2 is not connected yet
            for _ in range(500):
                if s.relay.stats().held_messages == 1:
                    break
                await asyncio.sleep(0.01)
            b = await s.client("j", 2, 0)
            await other.send(b"forged", n=2, **{"from": 0})  # claims to be worker 0
            await real.send(b"live", n=3)
            got = [await b.recv() for _ in range(3)]
            by_n = {m["n"]: m for m in got}
            assert (by_n[1]["from"], by_n[1].body) == (0, b"held")
            assert (by_n[2]["from"], by_n[2].body) == (1, b"forged")  # the relay's word wins
            assert (by_n[3]["from"], by_n[3].body) == (0, b"live")

    run(main())


# --- the command line ---------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CA_CERT", "SRV_CERT", "SRV_KEY")}
    env["PYTHONPATH"] = PYTHON_SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_relay_command_without_certificates_exits_with_one_line():
    proc = subprocess.run([*CLI, "relay", "-t", "0"], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "excamera genkeys" in lines[0], proc.stderr


def test_relay_command_pairs_workers_with_genkeys_output(tmp_path):
    keys = tmp_path / "keys"
    gen = subprocess.run([*CLI, "genkeys", str(keys)], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert gen.returncode == 0, gen.stderr
    env = _env() | {"CA_CERT": str(keys / "ca_cert.pem"), "SRV_KEY": str(keys / "server_key.pem")}
    proc = subprocess.Popen(
        [*CLI, "relay", "-t", "0", "--host", "127.0.0.1", "-s", str(keys / "server_cert.pem"),
         "-n", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(m.group(1))
        ca = CertificateAuthority.load(keys / "ca_cert.pem", keys / "ca_key.pem")

        async def main():
            a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("cli", 0), "cli", 0, 1)
            await a.send(b"through the subprocess")
            b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker("cli", 1), "cli", 1, 0)
            assert (await b.recv()).body == b"through the subprocess"
            await a.close()
            await b.close()

        run(main())
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
