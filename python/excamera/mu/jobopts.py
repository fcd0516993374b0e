"""Options and the run loop that every mu job's subcommand shares.

``add_job_options(parser)`` adds mu's familiar switches (``-n -O -P -D -c -s -k -t``) plus
``--retries``, ``--timeout``, ``--connect-timeout``, ``--progress``, ``--host``/``--advertise``,
``--spares`` and the backend's (``--backend`` and each backend's own options);
``job_backend(args)`` builds the chosen backend; ``run_job(args, make)`` builds the
coordinator, wires the ``-O`` recorder and the live view, runs it under cProfile if ``-P`` was
given, prints the job's cost (also recorded in the ``-O`` file), and turns :class:`JobFailed`
into a one-line-headed error and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .backends import Backend, BackendError, add_backend_options, make_backend
from .coordinator import Coordinator, JobResult
from .errors import JobFailed
from .observe import JsonLinesRecorder, LiveStatus


def add_job_options(parser: argparse.ArgumentParser, *, default_workers: int = 1,
                    default_port: int = 13579) -> None:
    g = parser.add_argument_group("job options (mu)")
    g.add_argument("-n", dest="n_parts", type=int, default=default_workers, metavar="nParts",
                   help=f"number of workers to launch ({default_workers})")
    g.add_argument("-O", dest="out_file", type=Path, metavar="oFile",
                   help="write per-worker state transitions as JSON lines to oFile")
    g.add_argument("-P", dest="profile_file", type=Path, metavar="pFile",
                   help="write cProfile data of the coordinator to pFile")
    g.add_argument("-D", dest="debug", action="store_true", help="enable debug logs")
    g.add_argument("-t", dest="port", type=int, default=default_port, metavar="portNum",
                   help=f"coordinator listens on portNum, 0 for any free port ({default_port})")
    g.add_argument("--host", default="127.0.0.1",
                   help="address the coordinator (and its relay) listen on (127.0.0.1); "
                   "0.0.0.0 for every interface")
    g.add_argument("--advertise", default=None, metavar="HOST",
                   help="address workers dial to reach the coordinator and its relay, when "
                   "it differs from --host (a public address for Lambda workers)")
    g.add_argument("--relay-port", type=int, default=0, metavar="PORT",
                   help="port of the relay the coordinator runs itself (0: any free port); "
                   "fix it to let remote workers through a firewall")
    g.add_argument("--spares", type=int, default=0, metavar="N",
                   help="launch N spare workers that stand in for slow or failed launches and "
                   "retries, mu's overprovisioning (0)")
    g.add_argument("-c", dest="ca_cert", type=Path, default=os.environ.get("CA_CERT"),
                   metavar="caCert", help="long-lived CA certificate (env CA_CERT)")
    g.add_argument("-s", dest="srv_cert", type=Path, default=os.environ.get("SRV_CERT"),
                   metavar="srvCert", help="coordinator certificate (env SRV_CERT)")
    g.add_argument("-k", dest="srv_key", type=Path, default=os.environ.get("SRV_KEY"),
                   metavar="srvKey", help="coordinator key (env SRV_KEY)")
    g.add_argument("--ca-key", type=Path, default=None,
                   help="key of the -c CA, to issue this job's intermediate (env CA_KEY, or "
                   "ca_key.pem beside the CA certificate)")
    g.add_argument("--retries", type=int, default=0,
                   help="relaunch a lost worker's machine up to this many times (0)")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per-command timeout; a worker exceeding it is lost (none)")
    g.add_argument("--connect-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long a launched worker may take to connect (60)")
    g.add_argument("--progress", action="store_true",
                   help="show the live status view even when stderr is not a terminal")
    add_backend_options(parser)


def job_backend(args: argparse.Namespace) -> Backend:
    """The backend the options ask for (``--backend``; mu's ``-l``/``-r`` mean lambda)."""
    try:
        return make_backend(args.backend, vars(args))
    except BackendError as exc:
        raise ValueError(str(exc)) from None


def check_job_options(args: argparse.Namespace) -> None:
    """The shared numeric options in range; a one-line CommandError naming the flag if not."""
    from ..argcheck import check_int, check_number, check_port

    check_port("-t", args.port)
    check_int("--retries", args.retries, minimum=0)
    check_int("--spares", args.spares, minimum=0)
    check_port("--relay-port", args.relay_port)
    if args.timeout is not None:
        check_number("--timeout", args.timeout, above_minimum=True)
    check_number("--connect-timeout", args.connect_timeout, above_minimum=True)


def coordinator_kwargs(args: argparse.Namespace) -> dict:
    """The Coordinator keyword arguments that the shared options determine."""
    if args.n_parts < 1:
        raise ValueError("-n must be at least 1")
    check_job_options(args)
    if (args.srv_cert is None) != (args.srv_key is None):
        raise ValueError("-s and -k go together")
    if args.srv_cert is not None and args.ca_cert is None:
        raise ValueError("-s/-k need the CA certificate -c")
    return {
        "host": args.host,
        "port": args.port,
        "advertise": args.advertise,
        "spares": args.spares,
        "relay_port": args.relay_port,
        "ca_cert": args.ca_cert,
        "ca_key": args.ca_key,
        "server_cert": args.srv_cert,
        "server_key": args.srv_key,
        "retries": args.retries,
        "command_timeout": args.timeout,
        "connect_timeout": args.connect_timeout,
        "debug": args.debug,
    }


def run_job(args: argparse.Namespace, make: Callable[[], Coordinator],
            report: Callable[[JobResult], None] | None = None) -> int:
    """Run the coordinator that ``make()`` builds with the shared observability options."""
    from ..errors import CommandError

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        coord = make()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    recorder = JsonLinesRecorder(args.out_file) if args.out_file else None
    if recorder:
        coord.observers.append(recorder)
    show_live = args.progress or sys.stderr.isatty()

    async def main() -> JobResult:
        if not show_live:
            return await coord.run()
        live = LiveStatus(coord.n_workers, title=coord.job_id)
        coord.observers.append(live)
        async with live:
            return await coord.run()

    profiler = cProfile.Profile() if args.profile_file else None
    try:
        if profiler:
            profiler.enable()
        result = asyncio.run(main())
    except JobFailed as exc:
        # What the failed job cost goes last, after the failures that matter more.
        spent = f"\n{coord.cost.line()}" if coord.cost is not None else ""
        raise CommandError(f"{exc}{spent}") from None
    except OSError as exc:
        raise CommandError(f"coordinator: {exc}") from None
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile_file))
        if recorder:
            if coord.cost is not None:
                recorder.record({"cost": coord.cost.to_json()})
            recorder.close()
    if report:
        report(result)
    if result.cost is not None:
        print(result.cost.line())
    return 0
