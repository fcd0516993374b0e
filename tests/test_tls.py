"""Certificates and TLS contexts: real handshakes over 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import stat
import tempfile

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from excamera.mu import tls
from excamera.mu.tls import CertificateAuthority, Credentials, WorkerIdentity


def _leaf(creds: Credentials) -> x509.Certificate:
    return x509.load_pem_x509_certificates(creds.cert_pem)[0]


async def _handshake(server: Credentials, client: Credentials | ssl.SSLContext,
                     server_hostname: str = "127.0.0.1") -> WorkerIdentity | None:
    """Run one TLS connection; returns what the server saw as the client's identity."""
    seen: list[WorkerIdentity | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(tls.peer_identity(writer.get_extra_info("ssl_object")))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls.server_context(server))
    port = srv.sockets[0].getsockname()[1]
    try:
        ctx = client if isinstance(client, ssl.SSLContext) else tls.client_context(client)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname
        )
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        data = await reader.read()
        writer.close()
        if data != b"ok":  # TLS 1.3: a refused client often sees only EOF after its handshake
            raise ConnectionError("server dropped the connection")
        return seen[0]
    finally:
        srv.close()
        await srv.wait_closed()


def test_worker_certificate_is_short_lived_client_only_and_names_its_identity():
    ca = CertificateAuthority.create("test")
    creds = ca.issue_worker("job-1", 17, ttl_seconds=600)
    cert = _leaf(creds)
    assert tls.identity_of_certificate(cert) == WorkerIdentity("job-1", 17)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc < now - dt.timedelta(minutes=4)  # skew allowance
    assert cert.not_valid_after_utc - now < dt.timedelta(seconds=601)
    assert creds.ca_pem == ca.root_pem


def test_bad_job_names_and_ids_are_refused():
    ca = CertificateAuthority.create("test")
    with pytest.raises(tls.TLSSetupError, match="job name"):
        ca.issue_worker("a/b", 1)
    with pytest.raises(tls.TLSSetupError, match="worker id"):
        ca.issue_worker("job", -1)


def test_credentials_round_trip_through_json():
    creds = CertificateAuthority.create("test").issue_worker("j", 2)
    back = Credentials.from_dict(json.loads(json.dumps(creds.to_dict())))
    assert back == creds
    with pytest.raises(tls.TLSSetupError, match="missing"):
        Credentials.from_dict({"cert_pem": "x"})


def test_mutual_tls_and_peer_identity():
    ca = CertificateAuthority.create("test")
    server = ca.issue_server()
    assert asyncio.run(_handshake(server, ca.issue_worker("j", 5))) == WorkerIdentity("j", 5)
    # the coordinator's own certificate carries no worker identity
    assert asyncio.run(_handshake(server, ca.issue_server())) is None


def test_client_checks_the_server_name():
    ca = CertificateAuthority.create("test")
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        asyncio.run(_handshake(ca.issue_server(["127.0.0.1"]), ca.issue_worker("j", 1),
                               server_hostname="relay.example"))


def test_contexts_refuse_older_tls():
    ca = CertificateAuthority.create("test")
    assert tls.server_context(ca.issue_server()).minimum_version == ssl.TLSVersion.TLSv1_3
    ctx = tls.client_context(ca.issue_worker("j", 1))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_key_files_do_not_outlive_context_creation(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ca = CertificateAuthority.create("test")
    tls.server_context(ca.issue_server())
    tls.client_context(ca.issue_worker("j", 1))
    assert list(tmp_path.iterdir()) == []


def test_mismatched_key_does_not_load():
    ca = CertificateAuthority.create("test")
    a, b = ca.issue_worker("j", 1), ca.issue_worker("j", 2)
    with pytest.raises(tls.TLSSetupError, match="pair"):
        tls.client_context(Credentials(a.cert_pem, b.key_pem, a.ca_pem))


def test_genkeys_writes_private_keys_0600_and_never_overwrites(tmp_path):
    paths = tls.genkeys(tmp_path / "keys")
    assert set(paths) == {"ca_cert", "ca_key", "server_cert", "server_key"}
    for name in ("ca_key", "server_key"):
        assert stat.S_IMODE(os.stat(paths[name]).st_mode) == 0o600
    ca = CertificateAuthority.load(paths["ca_cert"], paths["ca_key"])
    assert ca.is_root
    server = Credentials.from_files(paths["server_cert"], paths["server_key"], paths["ca_cert"])
    assert asyncio.run(_handshake(server, ca.issue_worker("j", 9))) == WorkerIdentity("j", 9)
    with pytest.raises(tls.TLSSetupError, match="overwrite"):
        tls.genkeys(tmp_path / "keys")
    with pytest.raises(tls.TLSSetupError, match="does not match"):
        CertificateAuthority.load(paths["ca_cert"], paths["server_key"])
    with pytest.raises(tls.TLSSetupError, match="not a CA"):
        CertificateAuthority.load(paths["server_cert"], paths["server_key"])


def test_intermediate_chain_is_accepted_by_a_server_trusting_only_the_root(tmp_path):
    paths = tls.genkeys(tmp_path)
    key = tls.find_ca_key(paths["ca_cert"], env={})
    assert key == paths["ca_key"]  # found beside the certificate
    job_ca = tls.job_authority("jobA", paths["ca_cert"], key)
    assert not job_ca.is_root
    bc = job_ca.worker_ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    worker = job_ca.issue_worker("jobA", 3)
    assert len(x509.load_pem_x509_certificates(worker.cert_pem)) == 2  # leaf + intermediate
    assert worker.ca_pem == paths["ca_cert"].read_bytes()
    server = Credentials.from_files(paths["server_cert"], paths["server_key"], paths["ca_cert"])
    assert asyncio.run(_handshake(server, worker)) == WorkerIdentity("jobA", 3)


def test_pathlen_zero_intermediate_cannot_mint_further_cas():
    root = CertificateAuthority.create("root")
    rogue = root.issue_intermediate("jobA").issue_intermediate("jobA")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(root.issue_server(), rogue.issue_worker("jobA", 1)))


def test_find_ca_key_precedence_and_missing_key(tmp_path):
    cert = tmp_path / "ca_cert.pem"
    assert tls.find_ca_key(cert, "/x/flag.pem", env={"CA_KEY": "/x/env.pem"}).name == "flag.pem"
    assert tls.find_ca_key(cert, None, env={"CA_KEY": "/x/env.pem"}).name == "env.pem"
    assert tls.find_ca_key(cert, None, env={}) is None
    with pytest.raises(tls.TLSSetupError, match="--ca-key"):
        tls.job_authority("j", cert, None)
    assert tls.job_authority("j").is_root  # no long-lived CA: a fresh root for the job


# --- per-job intermediates act for their job only (issue 11) ----------------------------------
def test_job_intermediate_is_bound_to_its_job_client_only_and_short_lived(tmp_path):
    paths = tls.genkeys(tmp_path)
    job = tls.job_authority("jobA", paths["ca_cert"], paths["ca_key"])
    inter = job.worker_ca.cert
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    eku = inter.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    nc = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.UniformResourceIdentifier("jobA.jobs.excamera")]
    assert tls.job_of_issuer(inter) == "jobA"
    # valid for one worker certificate's lifetime plus the margin, not a day
    life = inter.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert life <= dt.timedelta(seconds=tls.WORKER_TTL + tls.ISSUER_MARGIN)
    assert life > dt.timedelta(seconds=tls.WORKER_TTL)
    leaf = _leaf(job.issue_worker("jobA", 3))
    assert leaf.not_valid_after_utc <= inter.not_valid_after_utc
    with pytest.raises(tls.TLSSetupError, match="not 'jobB'"):
        job.issue_worker("jobB", 3)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_job_intermediate_cannot_sign_a_server_a_worker_accepts(tmp_path, host):
    paths = tls.genkeys(tmp_path)
    root = CertificateAuthority.load(paths["ca_cert"], paths["ca_key"])
    rogue_server = root.issue_intermediate("jobA").issue_server([host])
    worker = root.issue_intermediate("jobA").issue_worker("jobA", 1)
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_handshake(rogue_server, worker, server_hostname=host))
    # what the coordinator does instead: servers from the long-lived CA, which workers accept
    job = tls.job_authority("jobA", paths["ca_cert"], paths["ca_key"])
    server = job.issue_server([host])
    assert len(x509.load_pem_x509_certificates(server.cert_pem)) == 1  # signed by the root
    seen = asyncio.run(_handshake(server, job.issue_worker("jobA", 1), server_hostname=host))
    assert seen == WorkerIdentity("jobA", 1)


def test_a_job_intermediate_cannot_sign_for_another_job(tmp_path):
    paths = tls.genkeys(tmp_path)
    root = CertificateAuthority.load(paths["ca_cert"], paths["ca_key"])
    server = Credentials.from_files(paths["server_cert"], paths["server_key"], paths["ca_cert"])
    forged = root.issue_intermediate("jobB").issue_worker("jobA", 5)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        asyncio.run(_handshake(server, forged))
    own = root.issue_intermediate("jobA").issue_worker("jobA", 5)
    assert asyncio.run(_handshake(server, own)) == WorkerIdentity("jobA", 5)
    # job names differing only in case pass name constraints (hosts compare caselessly); the
    # issuer check that relay and coordinator run compares exactly
    chain = x509.load_pem_x509_certificates(
        root.issue_intermediate("joba").issue_worker("jobA", 5).cert_pem) + [root.cert]
    with pytest.raises(tls.IdentityRefused, match="bound to job 'joba'"):
        tls.worker_of_chain(chain)


def test_job_authority_replaces_its_intermediate_before_a_worker_would_outlive_it(tmp_path):
    paths = tls.genkeys(tmp_path)
    job = tls.job_authority("jobA", paths["ca_cert"], paths["ca_key"])
    first = job.worker_ca.cert
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=tls.ISSUER_MARGIN + 60)
    creds = job.issue_worker("jobA", 2, now=later)
    leaf, second = x509.load_pem_x509_certificates(creds.cert_pem)
    assert second != first and second.public_key() != first.public_key()
    assert leaf.not_valid_after_utc <= second.not_valid_after_utc
    assert job.issued(first) and job.issued(second)
    other = tls.job_authority("jobA", paths["ca_cert"], paths["ca_key"])
    assert not job.issued(other.worker_ca.cert)  # same root, same job name, other coordinator


def test_a_certificate_with_another_workers_key_is_refused_in_one_line() -> None:
    import dataclasses

    ca = tls.CertificateAuthority.create("pair")
    one, two = ca.issue_worker("j", 0), ca.issue_worker("j", 1)
    mixed = dataclasses.replace(one, key_pem=two.key_pem)
    with pytest.raises(tls.TLSSetupError, match="do not load as a pair"):
        tls.client_context(mixed)
    ctx = tls.client_context(one)  # the right pair loads, leaf and chain alike
    assert ctx.verify_mode == ssl.CERT_REQUIRED
