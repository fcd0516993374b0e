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


ACTIONS: list[Callable[[argparse._SubParsersAction], None]] = [add_build]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lambda", help="build (and deploy) the AWS Lambda function for workers",
                       description=__doc__.splitlines()[0])
    actions = p.add_subparsers(dest="lambda_action", metavar="ACTION", required=True)
    for add in ACTIONS:
        add(actions)
