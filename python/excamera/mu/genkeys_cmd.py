"""``excamera genkeys DIR``: write a long-lived CA and a server certificate (mu's genkeys.sh).

The CA key stays with whoever runs coordinators; a separately-run ``excamera relay`` needs only
``ca_cert.pem``, ``server_cert.pem`` and ``server_key.pem``. See :mod:`excamera.mu.tls` for how
a coordinator turns the CA into per-job intermediates.
"""

from __future__ import annotations

import argparse
import ipaddress
import re

from ..errors import CommandError
from .tls import TLSSetupError, genkeys

# A DNS name as a certificate's subjectAltName may hold (RFC 1123 labels, optionally a
# "*." wildcard in front): letters, digits and inner hyphens, 63 characters a label.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
MAX_DNS_NAME = 253


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "genkeys",
        help="create a long-lived CA and a server certificate for relays and coordinators",
        description="Write ca_cert.pem, ca_key.pem, server_cert.pem and server_key.pem "
        "(keys mode 0600) into DIR.",
    )
    p.add_argument("directory", metavar="DIR", help="where to write the files (created if needed)")
    p.add_argument(
        "--host", action="append", dest="hosts", metavar="NAME_OR_IP",
        help="host name or IP address the server certificate is valid for (repeatable; "
        "default 127.0.0.1 and localhost)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a DNS name, else a one-line :class:`CommandError`."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if len(host) > MAX_DNS_NAME or not _DNS_NAME.match(host):
        raise CommandError(f"--host {host!r} is neither an IP address nor a DNS host name")
    return host


def run(args: argparse.Namespace) -> int:
    # Checked before anything is created, so a bad name leaves nothing behind.
    hosts = [check_host(h) for h in (args.hosts or ["127.0.0.1", "localhost"])]
    try:
        paths = genkeys(args.directory, hosts=hosts, overwrite=args.force)
    except (TLSSetupError, OSError) as exc:
        raise CommandError(str(exc)) from None
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    return 0
