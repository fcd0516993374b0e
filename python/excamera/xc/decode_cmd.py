"""``excamera decode IN -o OUT``: decode a VP8 stream with xc, speaking vpxdec's flags.

The flags, names and output bytes are vpxdec's (libvpx 1.12), so a script written for vpxdec
runs unchanged and ``--md5`` prints the same digests; tests/test_decode_parity.py holds them
equal on every conformance vector. Where vpxdec would write something that is not what it
claims to be, this command stops with an error instead:

- a Y4M output whose frames are not the size its header declares (the container's size: a
  stream whose size changes needs ``--scale`` or ``--i420``);
- the output of a stream that fails to decode part-way: the single output file is not left
  behind, and no MD5 of the part is printed (vpxdec keeps both);
- a stream with no frames to show (vpxdec writes an empty output and exits 0).
"""

from __future__ import annotations

import os
import sys

from excamera.argcheck import check_int
from excamera.atomicfile import atomic_output, is_special, write_atomically
from excamera.errors import CommandError
from excamera.xc.decode_input import Stream, open_stream
from excamera.xc.decode_output import Output, check_pattern

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

# VP8 codes a picture's width and height in 14 bits: a container declaring more is damaged, and
# scaling to it would allocate for a picture no VP8 frame can have.
MAX_DIMENSION = 16383

# The options after IN: (flags, dest, kind, metavar, help); kind is "flag" (store_true), "str"
# or "int". Both the argparse parser and `parse_fast` are made from this table.
OPTIONS: list[tuple[tuple[str, ...], str, str, str | None, str]] = [
    (("-o", "--output"), "output", "str", "PATTERN",
     "output file or name pattern (default: standard output, not a terminal); '-' for "
     "standard output, /dev/null to only check"),
    (("--i420",), "i420", "flag", None, "write raw I420 planes, not Y4M"),
    (("--rawvideo",), "rawvideo", "flag", None, "write raw planes, not Y4M (I420: all VP8 has)"),
    (("--md5",), "md5", "flag", None,
     "write nothing; print the MD5 of what would be written and its name"),
    (("--limit",), "limit", "int", "N",
     "decode at most N frames (packets, hidden ones included); default %(default)s: all"),
    (("--skip",), "skip", "int", "N",
     "skip the first N frames without decoding them (decoding must then start at a key "
     "frame; default %(default)s)"),
    (("-S", "--scale"), "scale", "flag", None,
     "scale every picture to the container's size (the first picture's if the container "
     "gives none) with vpxdec's scaler, so that a stream whose size changes fits one Y4M file"),
    (("--state",), "state", "str", "OUT.state",
     "also write the final decoder state (as xc-dump does)"),
]
# At most one of these (argparse's mutually exclusive group).
_FORMS = ("i420", "rawvideo")
_DEFAULTS = {"flag": False, "int": 0, "str": None}


class _WriteFailed(Exception):
    """Writing the output failed with ``error`` (carried as a non-OSError, so that the decode
    loop does not report it as a failure to read the input)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


class Args:
    """Parsed arguments, as attributes (what argparse's Namespace and types.SimpleNamespace
    are, without importing either module for `parse_fast`)."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode a VP8 IVF or WebM stream to Y4M or I420, as vpxdec does",
        description="Decode a VP8 stream (IVF, or WebM through PyAV) with xc. The options are "
        "vpxdec's, and so are the output bytes and --md5's digests. Hidden frames (alt-ref) "
        "update the state but are not written.",
        epilog="Output patterns: -o may hold %w and %h (the picture's width and height) and "
        "%1 to %9 (the frame number, zero-padded to that many digits). With a frame number, "
        "each shown frame goes to its own file (--i420 or --rawvideo only).",
    )
    p.add_argument("input", metavar="IN", help="an IVF or WebM file; '-' for standard input")
    form = p.add_mutually_exclusive_group()
    for flags, dest, kind, metavar, text in OPTIONS:
        where = form if dest in _FORMS else p
        if kind == "flag":
            where.add_argument(*flags, dest=dest, action="store_true", help=text)
        else:
            where.add_argument(*flags, dest=dest, type=int if kind == "int" else str,
                               default=_DEFAULTS[kind], metavar=metavar, help=text)
    # run() closes every file it writes: the process may end without finalization (cli.exit_now)
    p.set_defaults(func=run, exit_fast=True)


def parse_fast(argv: list[str]) -> Args | None:
    """What argparse makes of ``argv`` (the words after ``decode``) when every word is plain:
    IN once, options spelled in full, a value as the next word or after ``=``. Anything else
    (help, abbreviations, ``--``, values that look like options, errors) gives None, and
    argparse parses it, with its messages. Argparse alone costs a decode's start-up about
    15 ms of imports and parser building (re, gettext, shutil...), 10% of vpxdec's whole run
    on a 640x272 stream of 250 frames; tests/test_cli.py holds the two parsers equal."""
    kinds = {flag: (dest, kind) for flags, dest, kind, _, _ in OPTIONS for flag in flags}
    values: dict[str, object] = {dest: _DEFAULTS[kind] for _, dest, kind, _, _ in OPTIONS}
    inputs = []
    words = iter(argv)
    for word in words:
        if word == "-" or not word.startswith("-"):
            inputs.append(word)
            continue
        flag, eq, value = word.partition("=")
        if flag not in kinds:
            return None
        dest, kind = kinds[flag]
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            continue
        if not eq:
            value = next(words, None)
            if value is None or (value.startswith("-") and value != "-"):
                return None
        if not value:
            return None
        if kind == "int":
            try:
                value = int(value)
            except ValueError:
                return None
        values[dest] = value
    if len(inputs) != 1 or all(values[f] for f in _FORMS):
        return None
    return Args(command="decode", input=inputs[0], **values, func=run, exit_fast=True,
                           _flags={"help": "-h"} | {d: f[0] for f, d, _, _, _ in OPTIONS})


def run(args: argparse.Namespace | Args) -> int:
    check_int("limit", args.limit, minimum=0)
    check_int("skip", args.skip, minimum=0)
    pattern = args.output if args.output is not None else "-"
    check_pattern(pattern)
    y4m = not (args.i420 or args.rawvideo)
    # Started with standard output closed (`>&-`), Python has no sys.stdout: the pictures, or
    # --md5's lines, would have nowhere to go (print() would drop them without a word).
    if sys.stdout is None and (args.md5 or pattern == "-"):
        raise CommandError("standard output is closed")
    if args.output is None and not args.md5 and sys.stdout.isatty():
        raise CommandError("not writing video to a terminal: give -o FILE, or -o - to insist")
    with open_stream(args.input) as stream:
        out = Output(pattern, y4m=y4m, md5=args.md5, size=(stream.width, stream.height),
                     rate=None)
        if y4m and not out.single:
            raise CommandError(f"output pattern {pattern!r}: a frame number (one file per "
                               "frame) needs --i420 or --rawvideo; Y4M is one file")
        if y4m:
            out.rate = stream.y4m_rate()
        try:
            state = _write(args, stream, out)
        except OSError as exc:
            where = "standard output" if out.name == "-" else out.name
            raise CommandError(f"{exc.filename or where}: {exc.strerror or exc}") from None
    if state is None:
        return 141
    if args.state:
        try:
            write_atomically(args.state, state.to_bytes())
        except OSError as exc:
            raise CommandError(f"{exc.filename or args.state}: {exc.strerror or exc}") from None
    return 0


def _write(args: argparse.Namespace, stream: Stream, out: Output):  # noqa: ANN202
    """Decode into ``out``'s destination; the final state, or None (the reader left)."""
    if args.md5 or not out.single:
        return _decode(args, stream, out)
    if out.name == "-":
        out.open(None)
        return _decode(args, stream, out)
    if is_special(out.name):
        # /dev/null, a FIFO, a terminal: written in place, as atomic_output would have it
        # (which it would reach through pathlib, an import a short decode cannot afford).
        out.open(out.name)
        try:
            return _decode(args, stream, out)
        finally:
            out.close()
    # A regular output file appears only once every frame decoded: a cut or invalid stream
    # must not leave a file behind that looks complete.
    with atomic_output(out.name) as tmp:
        out.open(tmp)
        try:
            return _decode(args, stream, out)
        finally:
            out.close()


def _decode(args: argparse.Namespace, stream: Stream, out: Output):  # noqa: ANN202
    """Decode into ``out``; the final decoder state, or None when the reader of a pipe left."""
    from excamera._xc import StreamDecoder

    decoder = StreamDecoder(None)
    packets = stream.packets()
    skipped = sum(1 for _ in zip(range(args.skip), packets, strict=False))
    # One file, written as it decodes: the decoder writes each picture from its own rows, and
    # from a regular IVF file it also reads the frames itself, all in one call.
    direct = out.single and not out.md5 and not args.scale
    rest = stream.unread() if direct else None
    try:
        if rest is not None:
            number = _decode_rest(decoder, rest, stream, out, args.limit)
        else:
            number = _decode_packets(args, stream, out, decoder, packets, skipped, direct)
        if number == 0:
            raise CommandError(f"{stream.name}: no frames"
                               + (f" after the {args.skip} skipped" if args.skip else ""))
        if out.frames == 0:
            raise CommandError(f"{stream.name}: no shown frames to write")
        try:
            out.finish()
        except OSError as exc:
            raise _WriteFailed(exc) from None
    except _WriteFailed as failed:
        if isinstance(failed.error, BrokenPipeError):
            # The reader went away (`excamera decode IN -o - | head`): stop quietly, as cat does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return None
        raise failed.error from None
    return decoder.state


def _decode_packets(args: argparse.Namespace, stream: Stream, out: Output, decoder,  # noqa: ANN001
                    packets: Iterator[bytes], skipped: int, direct: bool) -> int:
    """Decode ``packets`` one by one into ``out``; the number of packets decoded."""
    from excamera._xc import DecodeError

    target: tuple[int, int] | None = None
    number = 0
    for number, data in enumerate(packets, start=1):
        index = skipped + number - 1  # in the file, for errors (as xc-dump counts)
        try:
            if args.scale:
                planes = decoder.decode(data)
                shown = None if planes is None else _scaled(planes, stream, target)
                if shown is not None:
                    target = shown[:2]
            else:
                shown = decoder.decode_y4m(data, not direct)
        except DecodeError as exc:
            raise CommandError(f"{stream.name}: frame {index}: {exc}") from None
        if shown is not None:
            width, height, record = shown
            if out.y4m and out.single and (width, height) != out.size:
                raise _resized(stream, out, index, width, height)
            try:
                if direct:
                    out.frame_from(decoder)
                else:
                    out.frame(number, width, height, memoryview(record)[6:], record)
            except OSError as exc:
                raise _WriteFailed(exc) from None
        if number == args.limit:
            break
    return number


def _decode_rest(decoder, rest: tuple[int, int, int], stream: Stream, out: Output,  # noqa: ANN001
                 limit: int) -> int:
    """Decode the frames of a regular IVF file from where ``rest`` says (``Stream.unread``)
    into ``out``'s single file in one call to the decoder, which reads, decodes and writes them
    itself: the Python loop in `_decode` costs about 20 K instructions a frame besides the
    decoding. The errors are that loop's. The number of frames read."""
    fd, offset, index = rest
    try:
        target, header = out.decoder_target()
        read, shown, error, resized = decoder.decode_ivf_to(
            fd, offset, index, stream.name, target, out.y4m, header, limit,
            out.size if out.y4m else None)
    except OSError as exc:
        # Reads of a regular file and writes alike: reported as `_decode` reports a write.
        raise _WriteFailed(exc) from None
    out.frames += shown
    if error is not None:
        raise CommandError(error)
    if resized is not None:
        raise _resized(stream, out, *resized)
    return read


def _resized(stream: Stream, out: Output, index: int, width: int, height: int) -> CommandError:
    return CommandError(f"{stream.name}: frame {index}: the size changes to {width}x{height} "
                        f"from the {out.size[0]}x{out.size[1]} the container declares, and a "
                        "Y4M file holds one size: use --scale, or --i420")


def _scaled(planes, stream: Stream, target: tuple[int, int] | None):  # noqa: ANN001, ANN202
    """(width, height, Y4M record) of a decoded picture scaled to the output size, which is
    fixed by the first picture: the container's size, or that picture's if it gives none."""
    from excamera.xc.scale import scale_picture
    from excamera.xc.y4m import Picture

    picture = Picture(*planes)
    if target is None:
        target = (stream.width, stream.height)
        if not (stream.width and stream.height):
            target = (picture.width, picture.height)
        if max(target) > MAX_DIMENSION:
            raise CommandError(f"{stream.name}: cannot scale to the container's size "
                               f"{target[0]}x{target[1]}: VP8 pictures are at most "
                               f"{MAX_DIMENSION}x{MAX_DIMENSION}")
    if (picture.width, picture.height) != target:
        picture = scale_picture(picture, *target)
    return picture.width, picture.height, b"FRAME\n" + picture.to_bytes()
