"""mu's job options on the command line: the flags, and what they become.

``add_job_options(parser)`` adds mu's familiar switches (``-n -O -P -D -c -s -k -t``) plus
``--retries``, ``--timeout``, ``--connect-timeout``, ``--progress``, ``--host``/``--advertise``,
``--relay-port``, ``--spares``, ``--straggler-k``, the handshake caps, the fault injection
``--inject-slow`` and the backends' (``--backend`` and each backend's own options). The
flags' dests are the fields of :class:`~excamera.mu.jobs.JobSettings`, so a
setting refused there is shown with its flag. ``job_settings(args)`` and ``backend_spec(args)``
turn the parsed flags into typed values; below them nothing sees argparse. ``run_job(args,
make)`` is the run loop of a job command: it builds the coordinator, runs it with
:func:`excamera.mu.jobs.run_job`, reports, and prints the job's cost.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..argcheck import check_int
from ..errors import CommandError, ExcameraError
from .backends import (
    Backend,
    BackendError,
    BackendSpec,
    add_backend_options,
    given_options,
    make_backend,
)
from .coordinator import Coordinator, JobResult
from .jobs import JobSettings
from .jobs import run_job as run_settled_job
from .listener import MAX_HANDSHAKES, MAX_PER_ADDRESS

JOB_GROUP = "mu job options"


def add_job_options(parser: argparse.ArgumentParser, *, workers: int | None = 1,
                    default_port: int = 13579, user_options: bool = True) -> None:
    """mu's flags in a group of their own, then the backends'.

    ``workers``: the default of ``-n`` (None: no ``-n``, the job decides its workers itself).
    ``user_options=False`` leaves ``--progress`` and ``--backend`` to the caller
    (:func:`add_progress_option`, :func:`~excamera.mu.backends.add_backend_choice`), which
    puts them among its own.
    """
    g = parser.add_argument_group(JOB_GROUP)
    if workers is not None:
        g.add_argument("-n", dest="n_parts", type=int, default=workers, metavar="nParts",
                       help="number of workers to launch (%(default)s)")
    g.add_argument("-O", dest="transitions_file", type=Path, metavar="oFile",
                   help="write per-worker state transitions as JSON lines to oFile, the job's "
                   "cost last")
    g.add_argument("-P", dest="profile_file", type=Path, metavar="pFile",
                   help="write cProfile data of the coordinator to pFile")
    g.add_argument("-D", dest="debug", action="store_true", help="enable debug logs")
    g.add_argument("-t", dest="port", type=int, default=default_port, metavar="portNum",
                   help="coordinator listens on portNum, 0 for any free port (%(default)s)")
    g.add_argument("--host", default="127.0.0.1",
                   help="address the coordinator (and its relay) listen on (%(default)s); "
                   "0.0.0.0 for every interface")
    g.add_argument("--advertise", default=None, metavar="HOST",
                   help="address workers dial to reach the coordinator and its relay, when "
                   "it differs from --host (a public address for Lambda workers)")
    g.add_argument("--relay-port", type=int, default=0, metavar="PORT",
                   help="port of the relay the coordinator runs itself, 0 for any free port "
                   "(%(default)s); fix it to let remote workers through a firewall")
    g.add_argument("--spares", type=int, default=0, metavar="N",
                   help="launch N spare workers that stand in for slow or failed launches and "
                   "retries, mu's overprovisioning (%(default)s)")
    g.add_argument("-c", dest="ca_cert", type=Path, default=os.environ.get("CA_CERT"),
                   metavar="caCert", help="long-lived CA certificate (env CA_CERT)")
    g.add_argument("-s", dest="server_cert", type=Path, default=os.environ.get("SRV_CERT"),
                   metavar="srvCert", help="coordinator certificate (env SRV_CERT)")
    g.add_argument("-k", dest="server_key", type=Path, default=os.environ.get("SRV_KEY"),
                   metavar="srvKey", help="coordinator key (env SRV_KEY)")
    g.add_argument("--ca-key", type=Path, default=None,
                   help="key of the -c CA, to issue this job's intermediate (env CA_KEY, or "
                   "ca_key.pem beside the CA certificate)")
    g.add_argument("--retries", type=int, default=0, metavar="K",
                   help="relaunch a lost worker's machine up to K times (%(default)s)")
    g.add_argument("--timeout", dest="command_timeout", type=float, default=None,
                   metavar="SECONDS",
                   help="per-command timeout; a worker exceeding it is lost (default: none)")
    g.add_argument("--connect-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long a launched worker may take to connect (%(default)g)")
    g.add_argument("--straggler-k", type=float, default=3.0, metavar="K",
                   help="launch a duplicate of a worker that has spent K times its peers' "
                   "median in a phase; the first to finish wins (gg's rule; 0 turns it off) "
                   "(%(default)g)")
    g.add_argument("--max-handshakes", type=int, default=MAX_HANDSHAKES, metavar="N",
                   help="TLS handshakes the coordinator and its relay take at once; more wait "
                   "in the backlog (%(default)s)")
    g.add_argument("--max-handshakes-per-address", type=int, default=MAX_PER_ADDRESS,
                   metavar="N", help="of those, from one address (workers behind one NAT or "
                   "on one host share theirs) (%(default)s)")
    g.add_argument("--inject-slow", action="append", default=None, metavar="WORKER:FACTOR",
                   help="fault injection, for tests and benchmarks: worker WORKER's commands "
                   "take FACTOR times as long (not its duplicate's); repeatable")
    if user_options:
        add_progress_option(g)
    add_backend_options(parser, choice=user_options)


def add_progress_option(group: argparse._ActionsContainer) -> None:
    group.add_argument("--progress", action="store_true",
                       help="show the live status view even when stderr is not a terminal")


def job_settings(args: argparse.Namespace) -> JobSettings:
    """The :class:`JobSettings` the parsed flags ask for."""
    return JobSettings(
        host=args.host, port=args.port, advertise=args.advertise, relay_port=args.relay_port,
        spares=args.spares, retries=args.retries, command_timeout=args.command_timeout,
        connect_timeout=args.connect_timeout, ca_cert=args.ca_cert, ca_key=args.ca_key,
        server_cert=args.server_cert, server_key=args.server_key,
        transitions_file=args.transitions_file, profile_file=args.profile_file,
        debug=args.debug, straggler_k=args.straggler_k, max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.max_handshakes_per_address,
        inject_slow=parse_inject_slow(args.inject_slow or []),
    )


def parse_inject_slow(items: list[str]) -> dict[int, float]:
    """``--inject-slow WORKER:FACTOR`` (repeated) as {worker: factor}; the ranges are
    :class:`JobSettings`' to check."""
    out: dict[int, float] = {}
    for item in items:
        worker, sep, factor = str(item).partition(":")
        try:
            if not sep:
                raise ValueError
            out[int(worker)] = float(factor)
        except ValueError:
            raise CommandError(f"--inject-slow {item}: expected WORKER:FACTOR, e.g. 3:10") from None
    return out


def backend_spec(args: argparse.Namespace) -> BackendSpec:
    """``--backend`` and the backend options given on the command line."""
    return BackendSpec(args.backend, given_options(vars(args)))


def job_backend(args: argparse.Namespace) -> Backend:
    """The backend the flags ask for (``--backend``; mu's ``-l``/``-r`` mean lambda)."""
    spec = backend_spec(args)
    try:
        return make_backend(spec.name, spec.options)
    except BackendError as exc:
        raise ExcameraError(str(exc)) from None


def show_progress(args: argparse.Namespace) -> bool:
    """The live view: asked for with ``--progress``, or when stderr is a terminal."""
    return bool(args.progress) or sys.stderr.isatty()


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def coordinator_kwargs(args: argparse.Namespace) -> dict:
    """The Coordinator keyword arguments that the flags determine (``-n`` checked too)."""
    check_int("n_parts", args.n_parts, minimum=1)
    return job_settings(args).coordinator_kwargs()


def run_job(args: argparse.Namespace, make: Callable[[], Coordinator],
            report: Callable[[JobResult], None] | None = None) -> int:
    """A job command's run: the coordinator ``make()`` builds, run with the flags' settings
    and live view; then ``report`` and the job's cost on stdout."""
    settings = job_settings(args)
    setup_logging(settings.debug)
    try:
        coord = make()
    except (ValueError, BackendError) as exc:
        raise ExcameraError(str(exc)) from None
    result = run_settled_job(coord, settings, show_progress(args))
    if report:
        report(result)
    if result.cost is not None:
        print(result.cost.line())
    return 0
