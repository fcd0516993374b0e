"""``excamera genkeys DIR``: write a long-lived CA and a server certificate (mu's genkeys.sh).

The CA key stays with whoever runs coordinators; a separately-run ``excamera relay`` needs only
``ca_cert.pem``, ``server_cert.pem`` and ``server_key.pem``. See :mod:`excamera.mu.tls` for how
a coordinator turns the CA into per-job intermediates.
"""

from __future__ import annotations

import argparse

from ..errors import CommandError
from .tls import TLSSetupError, genkeys


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


def run(args: argparse.Namespace) -> int:
    hosts = args.hosts or ["127.0.0.1", "localhost"]
    try:
        paths = genkeys(args.directory, hosts=hosts, overwrite=args.force)
    except (TLSSetupError, OSError) as exc:
        raise CommandError(str(exc)) from None
    for name, path in paths.items():
        print(f"{name:12s} {path}")
    return 0
