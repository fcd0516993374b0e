"""The ``excamera`` command: one entry point, one subcommand per job or tool.

Each subcommand lives in its own module that exposes ``register(subparsers)``; that function
adds an argparse parser whose ``func`` default takes the parsed namespace and returns an exit
code. The table here names every subcommand with its one-line help, so ``excamera --help``
lists everything without importing any of them, and a command line imports only the module of
the subcommand it names (the others pull in asyncio, numpy, cryptography: tens of milliseconds
each, which every short command and every worker would otherwise pay at start-up).

Every failure is an :class:`~excamera.errors.ExcameraError`: its line, then its details, on
stderr, and exit 1. A setting refused by a typed settings object names the field (``port``);
here it is shown with the flag whose dest is that field (``-t``).
"""

from __future__ import annotations

import os
import sys

from excamera.errors import CommandError, ExcameraError, SettingsError

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    import argparse

__all__ = ["CommandError", "SUBCOMMANDS", "build_parser", "flag_names", "main", "parse_fast"]

# name -> (module, the help line `excamera --help` shows), in the order it shows them. Each
# module's own `add_parser(name, help=...)` says the same (tests/test_cli.py holds them equal).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "png2y4m": ("excamera.pipelines.png2y4m_cmd",
                "convert numbered PNG frames into Y4M chunks with many workers"),
    "xcenc": ("excamera.pipelines.xcenc_cmd",
              "ExCamera: encode Y4M chunks in parallel, rebasing each onto its predecessor"),
    "encode": ("excamera.pipelines.encode_cmd",
               "encode a video to VP8 (IVF or WebM) with ExCamera's parallel workers"),
    "relay": ("excamera.mu.relay_cmd",
              "run a TLS relay that pairs workers which cannot accept connections"),
    "genkeys": ("excamera.mu.genkeys_cmd",
                "create a long-lived CA and a server certificate for relays and coordinators"),
    "timeline": ("excamera.mu.timeline_cmd", "plot a job's -O state-transitions file"),
    "decode": ("excamera.xc.decode_cmd",
               "decode a VP8 IVF or WebM stream to Y4M or I420, as vpxdec does"),
    "lambda": ("excamera.awslambda.cmd", "build (and deploy) the AWS Lambda function for workers"),
    "demo": ("excamera.demo", "encode the bundled 30-frame sample with five local workers"),
}

ALL = object()
"""``build_parser(ALL)`` registers every subcommand's full parser."""


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand a command line names: its first argument, unless that is an option (the
    top-level parser has only ``-h``, so anything else first is a subcommand or an error)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _module(name: str) -> object:
    """The module ``name``, imported. Not through importlib, whose package imports warnings:
    together about half a millisecond of every command's start-up."""
    __import__(name)
    return sys.modules[name]


def build_parser(command: str | object | None = ALL) -> argparse.ArgumentParser:
    """The parser, with the full parser of ``command`` (a name, ``ALL`` or None) and, for the
    other subcommands, placeholders that carry only their help line."""
    import argparse  # not at import time: see `parse_fast`

    parser = argparse.ArgumentParser(
        prog="excamera",
        description="Parallel VP8 encoding with many small workers that hand state to each other.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        if command is ALL or command == name:
            _module(module_name).register(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    for registered in sub.choices.values():
        registered.set_defaults(_flags=flag_names(registered))
    return parser


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's dest -> the flag a user types for it (its first option string)."""
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def parse_fast(command: str, argv: list[str]) -> object | None:
    """The parsed arguments of ``command`` from its module's ``parse_fast``, which a module may
    offer for plain command lines, or None (then argparse parses them). Importing argparse and
    building a parser cost about 15 ms, as much as a short decode's work."""
    quick = getattr(_module(SUBCOMMANDS[command][0]), "parse_fast", None)
    return quick(argv) if quick is not None else None


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` and return its exit status. Without ``argv`` this is the
    process's own command line (the console script, ``python -m excamera``), and a command whose
    arguments carry ``exit_fast`` ends the process here when that is safe (`exit_now`)."""
    own = argv is None
    argv = sys.argv[1:] if argv is None else argv
    command = chosen_command(argv)
    args = parse_fast(command, argv[1:]) if command in SUBCOMMANDS else None
    if args is None:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
    status = _run(args)
    if own and getattr(args, "exit_fast", False):
        exit_now(status)
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except ExcameraError as exc:
        flags = getattr(args, "_flags", {})
        line = exc.render(flags) if isinstance(exc, SettingsError) else str(exc)
        print(f"excamera {args.command}: error: {line}", file=sys.stderr)
        if exc.details:
            print(exc.details, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"excamera {args.command}: interrupted", file=sys.stderr)
        return 130


def exit_now(status: int) -> None:
    """End the process with ``status`` without the interpreter's finalization, if nothing is
    left for it to do; otherwise return (and the interpreter ends as usual).

    Finalization frees every module and object one by one and runs a last garbage collection:
    about 2.5 ms of CPU after a decode, as much as 2% of vpxdec's whole run on a 640x272 stream
    of 250 frames. Only a command that closes every file it writes says it may be skipped
    (``exit_fast``), and even then it is not skipped when something is registered with atexit,
    another thread runs, or standard output or error cannot be flushed: then the interpreter's
    own exit reports that (and exits 120), as it would have."""
    # Nothing can be registered with atexit before something imports it.
    atexit = sys.modules.get("atexit")
    if atexit is not None and getattr(atexit, "_ncallbacks", lambda: 1)():
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                return
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
