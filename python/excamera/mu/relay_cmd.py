"""``excamera relay``: a standalone relay (mu's ``lambda_state_server``).

Workers behind NAT or in a function sandbox cannot accept connections, so each pair meets at a
relay. The relay needs a server certificate and the CA that signs worker certificates (or the
root above the per-job intermediates): create them once with ``excamera genkeys DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import signal
import ssl
import sys
import time

from ..argcheck import check_int, check_number, check_port
from ..errors import CommandError
from .evloop import (
    LOOPS,
    MAX_TLS_BUFFER_KIB,
    loop_name,
    raise_fd_limit,
    set_tls_buffer,
    tune_for_many_connections,
)
from .evloop import run as run_loop
from .listener import MAX_HANDSHAKES, MAX_PER_ADDRESS, MAX_WAITING_PER_ADDRESS
from .relay import Relay
from .tls import Credentials, TLSSetupError, server_context

# asyncio allocates this buffer for every connection: a bound keeps a typo from costing
# gigabytes per worker.
MAX_SSL_BUFFER_KIB = MAX_TLS_BUFFER_KIB


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "relay",
        help="run a TLS relay that pairs workers which cannot accept connections",
        description="Forward messages between worker pairs (job, id) <-> (job, peer). "
        "Certificates: -c/-s/-k or env CA_CERT, SRV_CERT, SRV_KEY (see `excamera genkeys`).",
    )
    p.add_argument("-n", dest="n_parts", type=int, default=1024, metavar="nParts",
                   help="capacity: at most this many worker pairs, 2*nParts connections "
                   "(%(default)s)")
    p.add_argument("-t", dest="port", type=int, default=13337, metavar="port",
                   help="TCP port to listen on (0 picks a free one; %(default)s)")
    p.add_argument("--host", default="0.0.0.0",
                   help="address to listen on (%(default)s: workers dial in from outside)")
    p.add_argument("-c", dest="ca_cert", default=os.environ.get("CA_CERT"), metavar="CA_CERT",
                   help="CA certificate that worker certificates chain to (env CA_CERT)")
    p.add_argument("-s", dest="srv_cert", default=os.environ.get("SRV_CERT"), metavar="SRV_CERT",
                   help="server certificate chain (env SRV_CERT)")
    p.add_argument("-k", dest="srv_key", default=os.environ.get("SRV_KEY"), metavar="SRV_KEY",
                   help="server private key (env SRV_KEY)")
    p.add_argument("--max-held-mb", type=float, default=1024.0,
                   help="memory for messages whose receiver is not connected yet "
                   "(MiB, %(default)g; 0 holds none)")
    p.add_argument("--hold-timeout", type=float, default=600.0,
                   help="seconds a message waits for its receiver before it is dropped "
                   "(%(default)g)")
    # abuse bounds (see excamera.mu.relay and excamera.mu.listener)
    p.add_argument("--max-held-job-mb", type=float, default=None,
                   help="held-message quota of one job (MiB; default a quarter of --max-held-mb)")
    p.add_argument("--max-held-sender-mb", type=float, default=None,
                   help="held-message quota of one sender (MiB; default half the job's)")
    p.add_argument("--stall-timeout", type=float, default=60.0,
                   help="seconds a started frame may go without a byte before its sender is "
                   "cut off (%(default)g)")
    p.add_argument("--max-handshakes", type=int, default=MAX_HANDSHAKES,
                   help="TLS handshakes in flight; more wait in the backlog (%(default)s)")
    p.add_argument("--max-handshakes-per-address", type=int, default=MAX_PER_ADDRESS,
                   help=f"TLS handshakes in flight from one address; more wait (up to "
                   f"{MAX_WAITING_PER_ADDRESS}), then are closed (%(default)s)")
    p.add_argument("--ssl-buffer-kib", type=int, default=64,
                   help="asyncio's per-connection TLS read buffer (KiB, 16..4096, "
                   "%(default)s; 0 keeps asyncio's 256): it is most of a connection's memory")
    p.add_argument("--loop", choices=LOOPS, default="asyncio",
                   help="event loop: asyncio's, uvloop (the scale extra), or auto (uvloop when "
                   "installed) (%(default)s)")
    p.add_argument("-D", dest="debug", action="store_true", help="debug logging")
    p.add_argument("-P", dest="profile", metavar="pFile", help="write cProfile stats to pFile")
    p.set_defaults(func=run)


def _mib(value: float | None) -> int | None:
    return None if value is None else int(value * (1 << 20))


async def serve(args: argparse.Namespace, creds: Credentials | ssl.SSLContext) -> None:
    try:
        relay = Relay(
            creds,
            max_held_bytes=_mib(args.max_held_mb),
            max_held_job_bytes=_mib(args.max_held_job_mb),
            max_held_sender_bytes=_mib(args.max_held_sender_mb),
            hold_timeout=args.hold_timeout,
            stall_timeout=args.stall_timeout,
            max_connections=2 * args.n_parts,
            max_handshakes=args.max_handshakes,
            max_handshakes_per_address=args.max_handshakes_per_address,
        )
    except ValueError as exc:
        raise CommandError(f"relay: {exc}") from None
    try:
        port = await relay.start(args.host, args.port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"excamera relay: listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await relay.close()
        logging.getLogger("excamera.mu.relay").info("stopped: %s", relay.stats())


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option in range, before anything starts."""
    check_int("-n", args.n_parts, minimum=1)
    check_port("-t", args.port)
    check_number("--max-held-mb", args.max_held_mb)  # 0: hold nothing, refuse at once
    check_number("--hold-timeout", args.hold_timeout, above_minimum=True)
    job_mb = args.max_held_mb / 4 if args.max_held_job_mb is None else args.max_held_job_mb
    if args.max_held_job_mb is not None:
        check_number("--max-held-job-mb", job_mb, maximum=args.max_held_mb)
    if args.max_held_sender_mb is not None:
        check_number("--max-held-sender-mb", args.max_held_sender_mb, maximum=job_mb)
    check_number("--stall-timeout", args.stall_timeout, above_minimum=True, maximum=3600)
    check_int("--max-handshakes", args.max_handshakes, minimum=1, maximum=1 << 16)
    check_int("--max-handshakes-per-address", args.max_handshakes_per_address, minimum=1,
              maximum=args.max_handshakes)
    if args.ssl_buffer_kib != 0:
        check_int("--ssl-buffer-kib", args.ssl_buffer_kib, minimum=16, maximum=MAX_SSL_BUFFER_KIB)
    try:
        loop_name(args.loop)
    except ValueError as exc:
        raise CommandError(f"--loop {args.loop}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    check_options(args)
    missing = [flag for flag, v in (("-c", args.ca_cert), ("-s", args.srv_cert),
                                    ("-k", args.srv_key)) if not v]
    if missing:
        raise CommandError(
            f"no certificates ({' '.join(missing)} missing): pass -c CA_CERT -s SRV_CERT "
            "-k SRV_KEY or set CA_CERT, SRV_CERT, SRV_KEY; create them with `excamera genkeys DIR`"
        )
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # each pair is two sockets, plus a margin for the listener and handshakes in flight
    raise_fd_limit(4 * args.n_parts + 64)
    try:
        creds = Credentials.from_files(args.srv_cert, args.srv_key, args.ca_cert)
        ctx = server_context(creds)
    except TLSSetupError as exc:
        raise CommandError(str(exc)) from None
    if args.ssl_buffer_kib:
        # asyncio zero-fills this buffer for every TLS connection (256 KiB in 3.11-3.13), which
        # dominates a relay's memory per worker. This process is only the relay, so tuning the
        # class attribute here changes nothing else; the library's Relay never touches it.
        set_tls_buffer(args.ssl_buffer_kib)
    tune_for_many_connections()
    # CPU time, not wall time: what a relay sharing its machine costs
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler:
        profiler.enable()
    try:
        run_loop(serve(args, ctx), args.loop)
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    return 0
