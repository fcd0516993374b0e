"""``excamera lambda ACTION``: make and manage the AWS Lambda function the workers run in.

Each action is one ``add_<action>(actions)`` function that adds its parser and sets ``func``;
``ACTIONS`` lists them in the order ``excamera lambda --help`` shows them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from excamera.errors import CommandError


def add_build(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "build",
        help="make the deployment zip (mu's lambdaize)",
        description="Make one deployment zip for the python3.12 runtime (x86_64): the excamera"
        " package with its Rust extension, the worker's pinned dependencies, a static"
        " bin/vpxenc. The same inputs give the same bytes. Refuses any ELF that needs a glibc"
        " newer than 2.34 or a library the runtime lacks, and a zip over Lambda's limits.",
    )
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FUNCTION.zip")
    p.add_argument("--wheel", type=Path, metavar="PATH",
                   help="use this excamera wheel instead of building one with maturin")
    p.add_argument("--vpxenc", type=Path, metavar="PATH",
                   help="use this static vpxenc instead of packaging/vpxenc/build.sh's")
    p.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from .build import build

    for given in (args.wheel, args.vpxenc):
        if given is not None and not given.is_file():
            raise CommandError(f"{given}: no such file" if not given.exists()
                               else f"{given}: not a file")
    if args.output.is_dir():
        raise CommandError(f"{args.output}: is a directory; give the zip's file name")

    def log(msg: str) -> None:
        print(f"excamera lambda build: {msg}", file=sys.stderr)

    report = build(args.output, wheel=args.wheel, vpxenc=args.vpxenc, log=log)
    print(f"{report.path}: {report.zipped / 1_048_576:.1f} MiB zipped,"
          f" {report.unzipped / 1_048_576:.1f} MiB unzipped, {report.files} files,"
          f" {report.elf_files} ELF (newest glibc needed: {report.newest_glibc or 'none'}),"
          f" sha256 {report.sha256}, {report.seconds:.1f} s")
    return 0


def add_deploy(actions: argparse._SubParsersAction) -> None:
    from .deploy import DeployOptions

    d = DeployOptions
    p = actions.add_parser(
        "deploy",
        help="create or update the worker function from a zip and wait until it is Active",
        description="Create (or update) the Lambda function that runs the workers, named after "
        "the zip's hash so that two versions never mix, in one or several regions; wait until "
        "it is Active; turn Lambda's own retries of asynchronous invocations off. Prints the "
        "function's name, which jobs take with -l.",
    )
    p.add_argument("zip", type=Path, metavar="FUNCTION.zip", help="made by excamera lambda build")
    p.add_argument("--role", required=True, metavar="ARN",
                   help="the execution role's ARN (the README lists what it must allow)")
    p.add_argument("-r", "--regions", default=None, metavar="r1,r2,...",
                   help="regions to deploy to (AWS_REGION or us-east-1)")
    p.add_argument("--memory", type=int, default=d.memory_mb, metavar="MB",
                   help=f"memory size; Lambda gives one vCPU per 1,769 MB ({d.memory_mb})")
    p.add_argument("--timeout", type=int, default=d.timeout_s, metavar="SECONDS",
                   help=f"longest a worker may run, at most 900 ({d.timeout_s})")
    p.add_argument("--name", default=None,
                   help="function name (default: excamera-<the zip's hash>)")
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="reserve this much concurrency for the function (none)")
    p.set_defaults(func=run_deploy)


def run_deploy(args: argparse.Namespace) -> int:
    import os

    from .. import needs
    from .deploy import DeployError, DeployOptions, deploy

    needs.module("boto3", "lambda", "excamera lambda deploy")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    regions = [r.strip() for r in (args.regions or region).split(",") if r.strip()]
    opts = DeployOptions(args.zip, args.role, regions, memory_mb=args.memory,
                         timeout_s=args.timeout, name=args.name,
                         reserved_concurrency=args.concurrency)
    try:
        name = deploy(opts, say=lambda msg: print(f"excamera lambda deploy: {msg}",
                                                  file=sys.stderr))
    except DeployError as exc:
        raise CommandError(str(exc)) from None
    print(name)
    return 0


ACTIONS: list[Callable[[argparse._SubParsersAction], None]] = [add_build, add_deploy]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lambda", help="build (and deploy) the AWS Lambda function for workers",
                       description=__doc__.splitlines()[0])
    actions = p.add_subparsers(dest="lambda_action", metavar="ACTION", required=True)
    for add in ACTIONS:
        add(actions)
