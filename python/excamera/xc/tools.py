"""The xc command-line tools that keep alfalfa's names: ``xc-dump`` and ``comp-states``.

mu's workers run them as plain executables, so their contracts are their exit codes:
``comp-states`` exits 0 exactly when two states are identical, and mu's convergence check
depends on that. Every failure is one line on stderr naming the file (and frame), never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from excamera.xc.ivf import IvfError, IvfReader

# Only for annotations: numpy and typing cost `excamera decode` and xc-dump their start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    import numpy as np


class ToolError(Exception):
    """A one-line failure for a tool to print before exiting non-zero."""


def decode_ivf(path: Path, on_frame: Callable[[int, int, bytes], None] | None = None):
    """Decode every frame of an IVF file; returns the final State. Errors name file and frame.

    ``on_frame(width, height, record)`` receives each shown frame as its Y4M frame record
    (see :meth:`Decoder.decode_y4m`)."""
    from excamera.xc.codec import DecodeError, Decoder

    decoder = Decoder()
    index = -1
    try:
        with IvfReader(path) as reader:
            for index, frame in enumerate(reader):  # noqa: B007 (named in errors)
                shown = decoder.decode_y4m(frame.data, on_frame is not None)
                if shown is not None and on_frame is not None:
                    on_frame(*shown)
    except DecodeError as exc:
        raise ToolError(f"{path}: {exc}") from None
    except (IvfError, OSError) as exc:
        raise ToolError(str(exc)) from None
    if index < 0:
        raise ToolError(f"{path}: no frames")
    return decoder.state


def load_state(path: Path):
    from excamera.xc.codec import State, StateError

    try:
        return State.from_bytes(path.read_bytes())
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror or exc}") from None
    except StateError as exc:
        raise ToolError(f"{path}: not a valid xc state: {exc}") from None


def resolve_paths(args: argparse.Namespace, cwd: Path | None) -> None:
    """Make the relative ``Path`` arguments of a parsed command line relative to ``cwd``.

    A tool run inside a worker process (``tools_main.run_in_process``) works on the worker's
    files without changing the process's current directory, which other threads share.
    """
    if cwd is None:
        return
    for name, value in vars(args).items():
        if isinstance(value, Path) and not value.is_absolute() and str(value) != "-":
            setattr(args, name, cwd / value)


def _run(prog: str, body: Callable[[argparse.Namespace, TextIO], int],
         parser: argparse.ArgumentParser, argv: list[str] | None, cwd: Path | None,
         out: TextIO | None, err: TextIO | None) -> int:
    args = parser.parse_args(argv)
    resolve_paths(args, cwd)
    try:
        return body(args, out or sys.stdout)
    except ToolError as exc:
        print(f"{prog}: {exc}", file=err or sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _xc_dump(args: argparse.Namespace, out: TextIO) -> int:
    state = decode_ivf(args.input)
    try:
        args.output.write_bytes(state.to_bytes())
    except OSError as exc:
        raise ToolError(f"{args.output}: {exc.strerror or exc}") from None
    return 0


def xc_dump_main(argv: list[str] | None = None, *, cwd: Path | None = None,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xc-dump",
        description="Decode a whole IVF stream and write the decoder's final state.",
    )
    parser.add_argument("input", type=Path, metavar="IN.ivf")
    parser.add_argument("output", type=Path, metavar="OUT.state")
    return _run("xc-dump", _xc_dump, parser, argv, cwd, out, err)


def _planes(state, which: str) -> list[np.ndarray] | None:
    planes = state.reference(which)
    return None if planes is None else list(planes)


def _comp_states(args: argparse.Namespace, out: TextIO) -> int:
    import numpy as np  # here, not at import: xc-dump and `excamera decode` share this module

    try:
        a_bytes, b_bytes = args.a.read_bytes(), args.b.read_bytes()
    except OSError as exc:
        raise ToolError(f"{exc.filename}: {exc.strerror or exc}") from None
    # Both must be states, even when byte-identical: two copies of the same damaged file are
    # an error to report, not a convergence.
    a, b = load_state(args.a), load_state(args.b)
    # Differing bits over the common length, plus every bit of any excess length. The last
    # four bytes are the format's CRC-32 (state.rs), not state: left out of the count.
    a_bytes, b_bytes = a_bytes[:-4], b_bytes[:-4]
    n = min(len(a_bytes), len(b_bytes))
    x = np.bitwise_xor(np.frombuffer(a_bytes, np.uint8, n), np.frombuffer(b_bytes, np.uint8, n))
    diff_bits = int(np.unpackbits(x).sum()) + 8 * abs(len(a_bytes) - len(b_bytes))
    print(diff_bits, file=out)
    if diff_bits == 0:
        return 0
    pa, pb = _planes(a, "last"), _planes(b, "last")
    if pa is None or pb is None or any(x.shape != y.shape for x, y in zip(pa, pb, strict=True)):
        print("last reference frames are not comparable (missing or different sizes)", file=out)
        return 1
    fa = np.concatenate([p.ravel() for p in pa]).astype(np.int16)
    fb = np.concatenate([p.ravel() for p in pb]).astype(np.int16)
    differ = fa != fb
    frac = float(differ.mean())
    mad = float(np.abs(fa - fb)[differ].mean()) if differ.any() else 0.0
    print(f"{frac:.6f} {mad:.4f}", file=out)
    return 1


def comp_states_main(argv: list[str] | None = None, *, cwd: Path | None = None,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="comp-states",
        description="Compare two xc decoder states. Prints the number of differing bits; if any "
        "differ, also the fraction of differing pixels in the last reference frame and their mean "
        "absolute difference. Exit 0 when identical, 1 when they differ, 2 on error.",
    )
    parser.add_argument("a", type=Path, metavar="A.state")
    parser.add_argument("b", type=Path, metavar="B.state")
    return _run("comp-states", _comp_states, parser, argv, cwd, out, err)
