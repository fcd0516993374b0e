"""The ``excamera`` command: one entry point, one subcommand per job or tool.

Each subcommand lives in its own module that exposes ``register(subparsers)``; that function
adds an argparse parser whose ``func`` default takes the parsed namespace and returns an exit
code. Keeping the table here makes ``excamera --help`` list everything in one place.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from excamera.errors import CommandError

__all__ = ["CommandError", "build_parser", "main"]

# (module, description) in the order `excamera --help` shows them.
SUBCOMMANDS: list[str] = [
    "excamera.pipelines.png2y4m_cmd",
    "excamera.pipelines.xcenc_cmd",
    "excamera.pipelines.encode_cmd",
    "excamera.mu.relay_cmd",
    "excamera.mu.genkeys_cmd",
    "excamera.mu.timeline_cmd",
    "excamera.xc.decode_cmd",
    "excamera.awslambda.cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="excamera",
        description="Parallel VP8 encoding with many small workers that hand state to each other.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"excamera {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"excamera {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
