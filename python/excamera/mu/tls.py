"""Certificates and TLS contexts for coordinator, workers and relay.

Why this exists
---------------
mu shipped the server's private key to every worker, so any worker (or anyone who read a launch
payload) could impersonate the coordinator. Here every endpoint has its own key, every
connection is TLS 1.3 with *mutual* authentication, and a worker's certificate names exactly
one ``(job, worker_id)`` in a URI subjectAltName ``excamera://<job>.jobs.excamera/worker/<id>``.
The job is the URI's host because X.509 name constraints on URIs apply to the host only: that
is what lets a per-job CA be limited to its own job (below). A worker's certificate is
short-lived and only good for client authentication, so a leaked launch payload is worth one
worker slot of one job for about an hour, and nothing else.

The per-job flow (:class:`JobAuthority`)
----------------------------------------
* **No long-lived CA** (the simple, default case): the coordinator calls
  :func:`job_authority` without paths, which creates a fresh root CA just for this job. It
  issues the coordinator's server certificate and one certificate per worker. An in-process
  relay uses the same job CA. Nothing is written to disk; when the job ends the CA key is gone.
* **A long-lived CA** (``excamera genkeys DIR`` writes ``ca_cert.pem``, ``ca_key.pem``,
  ``server_cert.pem``, ``server_key.pem``): the coordinator is given ``-c/-s/-k`` (CA cert,
  server cert, server key) *plus* the CA key (flag ``--ca-key``, env ``CA_KEY``, or
  ``ca_key.pem`` beside the CA certificate, found by :func:`find_ca_key`). Worker certificates
  are signed by a per-job *intermediate*, and workers present ``leaf + intermediate``, so a
  separately-run ``excamera relay`` that trusts only the long-lived CA (``-c ca_cert.pem``)
  verifies them without ever learning about the job. The intermediate can act for its job
  only:

  - path length 0 (it cannot mint CAs), extended key usage clientAuth only (OpenSSL refuses a
    server certificate whose chain has a CA without serverAuth, so it cannot sign a server a
    worker would accept), and critical name constraints: permitted URI host
    ``<job>.jobs.excamera`` only, every IP address and DNS name excluded. A certificate it
    signs for another job's URI fails verification;
  - it is valid for one worker certificate's lifetime plus a margin, and the coordinator
    replaces it with a fresh one (new key) whenever less than a worker certificate's lifetime
    is left: the job's last intermediate expires at most that long after the job's last
    certificate was issued, however long the job runs;
  - server certificates (the coordinator's own when it has none, an embedded relay's) are
    signed by the long-lived CA itself, which the coordinator holds anyway.

Worker identity is enforced by whoever accepts the connection: :func:`check_worker` reads the
URI SAN from the verified peer certificate and also requires that the CA which signed it
belongs to the same job: either the trust anchor itself (a per-job root, or a long-lived CA
signing workers directly) or an intermediate whose name constraints permit exactly that job.
An unconstrained intermediate (as older coordinators issued) is refused even when it chains
to a trusted root. The relay (or coordinator) then compares the identity with the one the
worker *claims*; the coordinator further requires the issuer to be one of the CAs it created.
A certificate without that SAN (a server certificate) has no worker identity.

All keys are EC P-256: generating one takes well under a millisecond, which matters when a
coordinator issues thousands of worker certificates at launch.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import re
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..atomicfile import write_files_atomically

URI_SUFFIX = ".jobs.excamera"  # the job is the URI's host: <job>.jobs.excamera
CLOCK_SKEW = dt.timedelta(minutes=5)  # backdating so a worker whose clock is a bit behind accepts
JOB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_URI_RE = re.compile(
    r"^excamera://([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.jobs\.excamera/worker/(0|[1-9][0-9]{0,9})$"
)
_HOST_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.jobs\.excamera$")
WORKER_TTL = 3600.0  # seconds a worker certificate is valid
ISSUER_MARGIN = 600.0  # a job intermediate outlives the newest worker certificate by this much


class TLSSetupError(Exception):
    """Certificates or keys could not be created, loaded or used (one-line message)."""


class IdentityRefused(Exception):
    """A verified peer certificate does not prove a worker identity (one-line reason)."""


def job_host(job: str) -> str:
    """The URI host that names ``job`` in worker certificates and job name constraints."""
    return f"{job}{URI_SUFFIX}"


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker certificate says its holder is."""

    job: str
    worker_id: int

    @property
    def uri(self) -> str:
        return f"excamera://{job_host(self.job)}/worker/{self.worker_id}"


@dataclass(frozen=True)
class Credentials:
    """What one endpoint needs: its certificate chain, its private key and the trust anchor.

    ``cert_pem`` is the leaf certificate followed by any intermediates, so a peer that trusts
    only the root can build the path.
    """

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    def to_dict(self) -> dict[str, str]:
        """Plain strings for a JSON launch payload."""
        return {
            "cert_pem": self.cert_pem.decode("ascii"),
            "key_pem": self.key_pem.decode("ascii"),
            "ca_pem": self.ca_pem.decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Credentials:
        try:
            return cls(
                cert_pem=d["cert_pem"].encode("ascii"),
                key_pem=d["key_pem"].encode("ascii"),
                ca_pem=d["ca_pem"].encode("ascii"),
            )
        except (KeyError, AttributeError, UnicodeEncodeError) as exc:
            raise TLSSetupError(f"credentials dict is missing or has a bad field: {exc}") from None

    @classmethod
    def from_files(cls, cert_path: os.PathLike | str, key_path: os.PathLike | str,
                   ca_path: os.PathLike | str) -> Credentials:
        """Load ``-s/-k/-c`` style files (server cert chain, its key, CA cert)."""
        return cls(
            cert_pem=_read(cert_path, "certificate"),
            key_pem=_read(key_path, "private key"),
            ca_pem=_read(ca_path, "CA certificate"),
        )


def _read(path: os.PathLike | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TLSSetupError(f"cannot read {what} {path}: {exc.strerror}") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_job(job: str) -> None:
    if not isinstance(job, str) or not JOB_RE.match(job):
        raise TLSSetupError(
            f"job name {job!r} must be 1-128 characters of letters, digits, '.', '_' or '-'"
        )


class CertificateAuthority:
    """A CA (root or intermediate) that can issue server, worker and intermediate certificates.

    ``chain`` holds this CA's certificate followed by its issuers up to and including the root;
    issued leaves carry ``chain`` minus the root so peers trusting only the root can verify.
    """

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                 issuers: Iterable[x509.Certificate] = ()) -> None:
        self.cert = cert
        self.key = key
        self.issuers = list(issuers)  # parent, grandparent, ..., root; empty for a root

    # --- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, days: float = 3650) -> CertificateAuthority:
        """A new self-signed root CA."""
        key = _new_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "excamera"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(
        cls, cert_path: os.PathLike | str, key_path: os.PathLike | str
    ) -> CertificateAuthority:
        """Load a CA: ``cert_path`` holds the CA cert, optionally followed by its issuers."""
        certs_pem = _read(cert_path, "CA certificate")
        key_pem = _read(key_path, "CA key")
        try:
            certs = x509.load_pem_x509_certificates(certs_pem)
        except ValueError as exc:
            raise TLSSetupError(f"{cert_path} is not a PEM certificate: {exc}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise TLSSetupError(
                f"{key_path} is not an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TLSSetupError(f"{key_path} is not an EC private key")
        if key.public_key().public_numbers() != certs[0].public_key().public_numbers():
            raise TLSSetupError(f"{key_path} does not match the certificate in {cert_path}")
        try:
            bc = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise TLSSetupError(f"{cert_path} is not a CA certificate")
        return cls(certs[0], key, certs[1:])

    # --- views ------------------------------------------------------------------------------
    @property
    def is_root(self) -> bool:
        return not self.issuers

    @property
    def root(self) -> x509.Certificate:
        return self.issuers[-1] if self.issuers else self.cert

    @property
    def cert_pem(self) -> bytes:
        """This CA's certificate followed by its issuers (a chain file)."""
        return b"".join(_cert_pem(c) for c in [self.cert, *self.issuers])

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    @property
    def root_pem(self) -> bytes:
        """The trust anchor at the top of the chain: what every peer should trust."""
        return _cert_pem(self.root)

    def _leaf_chain_pem(self, leaf: x509.Certificate) -> bytes:
        # leaf, this CA (unless it is the root), then intermediates, never the root itself
        chain = [leaf] + ([] if self.is_root else [self.cert, *self.issuers[:-1]])
        return b"".join(_cert_pem(c) for c in chain)

    # --- issuing ----------------------------------------------------------------------------
    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey,
                 not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )

    def issue_intermediate(self, job: str, ttl_seconds: float = WORKER_TTL + ISSUER_MARGIN,
                           now: dt.datetime | None = None) -> CertificateAuthority:
        """A per-job CA that can sign worker certificates of ``job`` and nothing else.

        Path length 0, clientAuth only, name constraints: URI host ``<job>.jobs.excamera``
        permitted, every IP address and DNS name excluded (see the module docstring).
        """
        _check_job(job)
        now = now or _now()
        key = _new_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "excamera"),
            # a unique name: a same-named child would count as "self-issued" and slip past
            # pathlen 0 (RFC 5280 4.2.1.9). The job is shortened to fit the CN's 64
            # characters; the name constraints, not the CN, bind the CA to its job.
            x509.NameAttribute(NameOID.COMMON_NAME,
                               f"excamera job {job[:32]} CA {secrets.token_hex(4)}"),
        ])
        constraints = x509.NameConstraints(
            permitted_subtrees=[x509.UniformResourceIdentifier(job_host(job))],
            excluded_subtrees=[x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
                               x509.IPAddress(ipaddress.ip_network("::/0")),
                               x509.DNSName("")],
        )
        cert = (
            self._builder(subject, key.public_key(), now - CLOCK_SKEW,
                          now + dt.timedelta(seconds=ttl_seconds))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(constraints, critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return CertificateAuthority(cert, key, [self.cert, *self.issuers])

    def issue_server(self, hosts: Iterable[str] = ("127.0.0.1", "localhost"),
                     days: float = 825, now: dt.datetime | None = None) -> Credentials:
        """A certificate for the coordinator or a relay, valid for ``hosts`` (names or IPs).

        It carries both serverAuth and clientAuth so the coordinator can also dial a relay.
        """
        now = now or _now()
        hosts = list(hosts)
        if not hosts:
            raise TLSSetupError("a server certificate needs at least one host name or address")
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        key = _new_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "excamera"),
            # A common name holds at most 64 characters; the SANs carry the names that count.
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
        ])
        cert = (
            self._builder(subject, key.public_key(), now - CLOCK_SKEW,
                          now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                       ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Credentials(self._leaf_chain_pem(cert), _key_pem(key), self.root_pem)

    def issue_worker(self, job: str, worker_id: int, ttl_seconds: float = WORKER_TTL,
                     now: dt.datetime | None = None) -> Credentials:
        """A short-lived client certificate bound to exactly one ``(job, worker_id)``.

        ``now`` exists so tests can mint certificates that are already expired.
        """
        _check_job(job)
        if not isinstance(worker_id, int) or isinstance(worker_id, bool) or not (
            0 <= worker_id < 10**10
        ):
            raise TLSSetupError(f"worker id {worker_id!r} must be an integer in [0, 1e10)")
        now = now or _now()
        ident = WorkerIdentity(job, worker_id)
        key = _new_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "excamera"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{job}/worker/{worker_id}"),
        ])
        cert = (
            self._builder(subject, key.public_key(), now - CLOCK_SKEW,
                          now + dt.timedelta(seconds=ttl_seconds))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(ident.uri)]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Credentials(self._leaf_chain_pem(cert), _key_pem(key), self.root_pem)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


# --- SSL contexts ---------------------------------------------------------------------------
def _load_chain(ctx: ssl.SSLContext, creds: Credentials) -> None:
    """``load_cert_chain`` only reads files: give it one file that no other process can open.

    On Linux it is an anonymous memory file (``memfd_create``), opened through this process's
    own ``/proc/self/fd``: the key never reaches a file system, and nothing is created or
    removed on disk, which took half the time of a worker's TLS setup (1.4 of 2.4 ms, a cost
    paid once per worker, 10,000 times by a host of 10,000 workers). The certificates and the
    key go in one file: OpenSSL then opens and decodes once, 0.4 ms less per context than two
    files. Elsewhere a private directory that is gone right after.
    """
    pem = creds.cert_pem.rstrip(b"\n") + b"\n" + creds.key_pem
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("excamera-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem)
            try:
                ctx.load_cert_chain(f"/proc/self/fd/{fd}")
            except ssl.SSLError as exc:
                raise TLSSetupError(f"certificate and key do not load as a pair: {exc}") from None
        finally:
            os.close(fd)
        return
    tmp = tempfile.mkdtemp(prefix="excamera-tls-")  # mkdtemp creates it 0700
    try:
        os.chmod(tmp, 0o700)
        path = os.path.join(tmp, "chain.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as exc:
            raise TLSSetupError(f"certificate and key do not load as a pair: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_ca(ctx: ssl.SSLContext, creds: Credentials) -> None:
    try:
        ctx.load_verify_locations(cadata=creds.ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise TLSSetupError(f"CA certificate does not load: {exc}") from None


def server_context(creds: Credentials) -> ssl.SSLContext:
    """TLS 1.3 only; every client must present a certificate chaining to ``creds.ca_pem``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    # No session tickets: nothing here resumes a session (a worker dials each server once),
    # and issuing two per handshake cost the server a quarter of its handshake CPU.
    ctx.num_tickets = 0
    _load_ca(ctx, creds)
    _load_chain(ctx, creds)
    return ctx


def client_context(creds: Credentials) -> ssl.SSLContext:
    """TLS 1.3 only; verifies the server's chain and its host name/IP SAN, presents our chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    _load_ca(ctx, creds)
    _load_chain(ctx, creds)
    return ctx


def identity_of_certificate(cert: x509.Certificate) -> WorkerIdentity | None:
    """The worker identity in a certificate's URI SAN, or None if it names no worker."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    found = [
        m for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if (m := _URI_RE.match(uri))
    ]
    if len(found) != 1:  # none, or ambiguous: trust neither
        return None
    return WorkerIdentity(found[0].group(1), int(found[0].group(2)))


@functools.lru_cache(maxsize=256)
def _load_ca_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=256)
def job_of_issuer(cert: x509.Certificate) -> str | None:
    """The job a CA certificate is bound to by its name constraints, or None.

    Bound means: the permitted subtrees are exactly one URI host ``<job>.jobs.excamera``.
    """
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    permitted = list(nc.permitted_subtrees or [])
    if len(permitted) != 1 or not isinstance(permitted[0], x509.UniformResourceIdentifier):
        return None
    m = _HOST_RE.match(permitted[0].value)
    return m.group(1) if m else None


_ENCODING_DER = getattr(ssl._ssl, "ENCODING_DER", 2)  # type: ignore[attr-defined]


def verified_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> list[x509.Certificate]:
    """The peer's verified chain, leaf first and trust anchor last; empty without one."""
    if ssl_object is None:
        return []
    getter = getattr(ssl_object, "get_verified_chain", None)  # public from Python 3.13
    if getter is None:
        # 3.11 and 3.12 have it on the wrapped _ssl object only
        getter = ssl_object._sslobj.get_verified_chain  # type: ignore[union-attr]
    try:
        # 3.13 gives DER bytes; 3.11/3.12 give _ssl.Certificate objects (asked for DER here:
        # half the cost of a PEM round trip, paid for every connection a server accepts).
        # The CAs above the leaf are the same for a whole job: parsed once.
        ders = [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER)
                for c in getter() or []]
        return [x509.load_der_x509_certificate(d) if i == 0 else _load_ca_der(d)
                for i, d in enumerate(ders)]
    except (ValueError, ssl.SSLError):
        return []


def worker_of_chain(chain: list[x509.Certificate]) -> WorkerIdentity:
    """The worker a verified chain proves; IdentityRefused names why it proves none.

    The leaf must name one worker, and the CA that signed it must be the trust anchor itself
    or an intermediate bound (by name constraints) to the leaf's job.
    """
    if not chain:
        raise IdentityRefused("no verified client certificate")
    ident = identity_of_certificate(chain[0])
    if ident is None:
        raise IdentityRefused("client certificate names no worker")
    if len(chain) > 2:
        issuer = chain[1]
        bound = job_of_issuer(issuer)
        if bound != ident.job:
            names = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            who = str(names[0].value) if names else issuer.subject.rfc4514_string()
            what = f"bound to job {bound!r}" if bound else "not bound to any job"
            raise IdentityRefused(
                f"certificate for job {ident.job!r} worker {ident.worker_id} was issued by "
                f"{who!r}, a CA {what}"
            )
    return ident


def check_worker(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> WorkerIdentity:
    """``(job, worker_id)`` proved by a TLS connection's verified peer chain, or IdentityRefused.

    Pass ``writer.get_extra_info("ssl_object")``.
    """
    return worker_of_chain(verified_chain(ssl_object))


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> WorkerIdentity | None:
    """Like :func:`check_worker`, but None instead of a reason."""
    try:
        return check_worker(ssl_object)
    except IdentityRefused:
        return None


# --- long-lived keys and the per-job flow ---------------------------------------------------
GENKEYS_FILES = ("ca_cert.pem", "ca_key.pem", "server_cert.pem", "server_key.pem")


def _make_private_dir(d: Path) -> list[Path]:
    """Create ``d`` (and missing parents) with ``d`` itself mode 0700 whatever the umask.

    Returns the directories created, innermost last, so a failure can remove them again. An
    existing directory is used as it is.
    """
    missing = [p for p in (d, *d.parents) if not p.exists()][::-1]
    created: list[Path] = []
    try:
        for p in missing:
            p.mkdir(mode=0o700 if p == d else 0o777)
            created.append(p)
        if created and created[-1] == d:
            os.chmod(d, 0o700)  # mkdir's mode passes through the umask
    except BaseException:
        _remove_empty(created)
        raise
    return created


def _remove_empty(dirs: list[Path]) -> None:
    for p in reversed(dirs):
        try:
            p.rmdir()
        except OSError:
            return


def genkeys(directory: os.PathLike | str, hosts: Iterable[str] = ("127.0.0.1", "localhost"),
            name: str = "excamera CA", overwrite: bool = False) -> dict[str, Path]:
    """Write a long-lived CA and a server certificate signed by it (keys mode 0600).

    Returns ``{"ca_cert": ..., "ca_key": ..., "server_cert": ..., "server_key": ...}``.
    Refuses to overwrite existing files unless ``overwrite`` so a CA key is never lost by accident.
    The keys are made before anything is written, the directory is created mode 0700, and the
    files go through :func:`excamera.atomicfile.write_files_atomically`: with ``overwrite`` a
    symlink planted at a file's name is replaced, never written through. After a failure no
    file is left half written and no directory this call created is left behind.
    """
    d = Path(directory)
    paths = {f.removesuffix(".pem"): d / f for f in GENKEYS_FILES}
    existing = [str(p) for p in paths.values() if os.path.lexists(p)]
    if existing and not overwrite:
        raise TLSSetupError(f"refusing to overwrite existing {', '.join(existing)}")
    ca = CertificateAuthority.create(name)
    server = ca.issue_server(hosts)
    created = _make_private_dir(d)
    try:
        write_files_atomically([
            (paths["ca_key"], ca.key_pem, 0o600),
            (paths["server_key"], server.key_pem, 0o600),
            (paths["ca_cert"], ca.cert_pem, 0o644),
            (paths["server_cert"], server.cert_pem, 0o644),
        ])
    except BaseException:
        _remove_empty(created)
        raise
    return paths


def find_ca_key(ca_cert_path: os.PathLike | str | None, ca_key: os.PathLike | str | None = None,
                env: Mapping[str, str] | None = None) -> Path | None:
    """Where the long-lived CA key is: ``--ca-key``, else env ``CA_KEY``, else beside the cert."""
    if ca_key:
        return Path(ca_key)
    env = os.environ if env is None else env
    if env.get("CA_KEY"):
        return Path(env["CA_KEY"])
    if ca_cert_path:
        beside = Path(ca_cert_path).with_name("ca_key.pem")
        if beside.exists():
            return beside
    return None


class JobAuthority:
    """The certificates of one job (see "The per-job flow" in the module docstring).

    ``parent`` is the long-lived CA, or None for a fresh per-job root. Worker certificates come
    from :attr:`worker_ca` (the per-job root, or the current job intermediate, replaced when
    less than a worker certificate's lifetime is left); server certificates from the root or
    ``parent``, never from a client-only intermediate.
    """

    def __init__(self, job: str, parent: CertificateAuthority | None = None, *,
                 worker_ttl: float = WORKER_TTL, margin: float = ISSUER_MARGIN,
                 root_ttl: float = 86400) -> None:
        _check_job(job)
        if not (0 < worker_ttl and 0 <= margin):
            raise TLSSetupError("worker certificate lifetime must be > 0 and the margin >= 0")
        self.job = job
        self.worker_ttl = worker_ttl
        self.margin = margin
        self.parent = parent
        self._servers = parent or CertificateAuthority.create(
            f"excamera job {job[:32]} root", days=root_ttl / 86400)
        self._current: CertificateAuthority | None = None if parent else self._servers
        self._issuers: set[bytes] = set()  # DER of every CA that signed this job's workers
        if parent is None:
            self._issuers.add(self._servers.cert.public_bytes(serialization.Encoding.DER))

    @property
    def is_root(self) -> bool:
        """True when workers are signed by a per-job root (no long-lived CA)."""
        return self.parent is None

    @property
    def root_pem(self) -> bytes:
        return self._servers.root_pem

    @property
    def worker_ca(self) -> CertificateAuthority:
        """The CA that signs the next worker certificate (issues a fresh one if due)."""
        return self._worker_ca(_now(), self.worker_ttl)

    def _worker_ca(self, now: dt.datetime, ttl: float) -> CertificateAuthority:
        ca = self._current
        if self.parent is not None and (
            ca is None or ca.cert.not_valid_after_utc - now < dt.timedelta(seconds=ttl)
        ):
            ca = self.parent.issue_intermediate(
                self.job, max(ttl, self.worker_ttl) + self.margin, now)
            self._current = ca
            self._issuers.add(ca.cert.public_bytes(serialization.Encoding.DER))
        assert ca is not None
        return ca

    def issue_worker(self, job: str, worker_id: int, ttl_seconds: float | None = None,
                     now: dt.datetime | None = None) -> Credentials:
        """A worker certificate of this job (``job`` must be this job's name)."""
        if job != self.job:
            raise TLSSetupError(f"this authority issues for job {self.job!r}, not {job!r}")
        ttl = self.worker_ttl if ttl_seconds is None else ttl_seconds
        now = now or _now()
        return self._worker_ca(now, ttl).issue_worker(job, worker_id, ttl, now)

    def issue_server(self, hosts: Iterable[str] = ("127.0.0.1", "localhost"),
                     days: float = 1.0) -> Credentials:
        """A server certificate (coordinator, embedded relay) from the root or long-lived CA."""
        return self._servers.issue_server(hosts, days=days)

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` is one of the CAs this authority signed worker certificates with."""
        return cert.public_bytes(serialization.Encoding.DER) in self._issuers


def job_authority(job: str, ca_cert_path: os.PathLike | str | None = None,
                  ca_key_path: os.PathLike | str | None = None,
                  ttl_seconds: float = 86400) -> JobAuthority:
    """The authority that issues this job's certificates.

    Without a long-lived CA: a fresh root for this job only (valid ``ttl_seconds``). With one
    (cert + key): per-job intermediates under it, so relays trusting the long-lived CA accept
    this job's workers and no other job's certificates pass for this job's.
    """
    _check_job(job)
    if ca_cert_path is None:
        return JobAuthority(job, root_ttl=ttl_seconds)
    if ca_key_path is None:
        raise TLSSetupError(
            f"issuing worker certificates under {ca_cert_path} needs its key: pass --ca-key, "
            "set CA_KEY, or put ca_key.pem beside the CA certificate"
        )
    return JobAuthority(job, CertificateAuthority.load(ca_cert_path, ca_key_path))
