"""``excamera decode IN.ivf -o OUT.y4m``: decode a VP8 stream with xc."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from excamera.atomicfile import atomic_output, write_atomically
from excamera.errors import CommandError
from excamera.xc.ivf import IvfError, IvfReader
from excamera.xc.tools import ToolError, decode_ivf
from excamera.xc.y4m import Y4MWriter


class _WriteFailed(Exception):
    """Writing the output failed with ``error`` (carried as a non-OSError, so that the decode
    loop does not report it as a failure to read the input)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


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
    try:
        with IvfReader(args.input) as reader:
            fps = (reader.header.rate, reader.header.scale)
    except (IvfError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if args.output == "-":
        # Standard output is whatever the shell connected, never a name to rename over.
        return _decode(args, "/dev/stdout", "standard output", fps)
    # A regular output file appears only once every frame decoded: a cut or invalid stream
    # must not leave a Y4M behind that looks complete.
    try:
        with atomic_output(args.output) as tmp:
            return _decode(args, tmp, args.output, fps)
    except OSError as exc:
        raise CommandError(f"{exc.filename or args.output}: {exc.strerror or exc}") from None


def _decode(args: argparse.Namespace, out: str | os.PathLike[str], name: str,
            fps: tuple[int, int]) -> int:
    """Decode ``args.input`` into the Y4M file ``out`` (called ``name`` in errors); 0, or 141
    when the reader of a pipe went away."""
    writer: Y4MWriter | None = None
    shown = 0

    def write(width: int, height: int, record: bytes) -> None:
        nonlocal writer, shown
        if writer is None:
            writer = Y4MWriter(out, width, height, fps)
        elif (width, height) != (writer.header.width, writer.header.height):
            raise ToolError(f"{args.input}: the frame size changes mid-stream "
                            f"({writer.header.width}x{writer.header.height} -> "
                            f"{width}x{height}); Y4M cannot hold that")
        try:
            writer.write_record(record)
        except OSError as exc:
            raise _WriteFailed(exc) from None
        shown += 1

    try:
        try:
            state = decode_ivf(args.input, write)
        except _WriteFailed as failed:
            raise failed.error from None
        finally:
            if writer is not None:
                writer.close()  # the last data is flushed here: a full disk may show only now
        if shown == 0:
            raise ToolError(f"{args.input}: no shown frames to write")
    except ToolError as exc:
        raise CommandError(str(exc)) from None
    except BrokenPipeError:
        # The reader went away (`excamera decode IN -o - | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        where = exc.filename if exc.filename not in (None, str(out)) else name
        raise CommandError(f"{where}: {exc.strerror or exc}") from None
    if args.state:
        try:
            write_atomically(args.state, state.to_bytes())
        except OSError as exc:
            raise CommandError(f"{exc.filename or args.state}: {exc.strerror or exc}") from None
    return 0
