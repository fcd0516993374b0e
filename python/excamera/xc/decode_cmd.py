"""``excamera decode IN.ivf -o OUT.y4m``: decode a VP8 stream with xc."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from excamera.errors import CommandError
from excamera.xc.ivf import IvfError, IvfReader
from excamera.xc.tools import ToolError, decode_ivf
from excamera.xc.y4m import Y4MWriter


class _ReaderGone(Exception):
    """Standard output's reader closed the pipe (not an OSError, so no layer reports it)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode a VP8 IVF file to Y4M",
        description="Decode every frame of a VP8 IVF file with xc and write the shown frames as "
        "Y4M (C420jpeg). Hidden frames (alt-ref) update the state but are not written.",
    )
    p.add_argument("input", type=Path, metavar="IN.ivf")
    p.add_argument("-o", "--output", required=True, metavar="OUT.y4m",
                   help="output file; '-' for standard output, /dev/null to only check")
    p.add_argument("--state", type=Path, metavar="OUT.state",
                   help="also write the final decoder state (as xc-dump does)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = "/dev/stdout" if args.output == "-" else args.output
    try:
        with IvfReader(args.input) as reader:
            fps = (reader.header.rate, reader.header.scale)
    except (IvfError, OSError) as exc:
        raise CommandError(str(exc)) from None
    writer: Y4MWriter | None = None
    shown = 0

    def write(picture) -> None:
        nonlocal writer, shown
        if writer is None:
            writer = Y4MWriter(out, picture.width, picture.height, fps)
        elif (picture.width, picture.height) != (writer.header.width, writer.header.height):
            raise ToolError(f"{args.input}: the frame size changes mid-stream "
                            f"({writer.header.width}x{writer.header.height} -> "
                            f"{picture.width}x{picture.height}); Y4M cannot hold that")
        try:
            writer.write(picture)
        except BrokenPipeError:
            raise _ReaderGone from None
        shown += 1

    try:
        state = decode_ivf(args.input, write)
        if args.state:
            args.state.write_bytes(state.to_bytes())
    except ToolError as exc:
        raise CommandError(str(exc)) from None
    except _ReaderGone:
        # The reader went away (`excamera decode IN -o - | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        raise CommandError(f"{exc.filename or out}: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            try:
                writer.close()
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
