"""``excamera timeline FILE -o plot.png``: draw a job's ``-O`` transitions as a timeline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("timeline", help="plot a job's -O state-transitions file")
    p.add_argument("file", type=Path, help="JSON-lines file written by a job's -O option")
    p.add_argument("-o", dest="out", type=Path, default=Path("timeline.png"),
                   help="output PNG, a name ending in .png (%(default)s)")
    p.add_argument("--title", default="", help="plot title")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from .. import needs
    from ..atomicfile import atomic_output
    from ..errors import CommandError
    from .timeline import load_transitions, plot_timeline

    needs.module("matplotlib", "plot", "the timeline plot")  # before reading the input
    # The plot is always a PNG. A name with another suffix (or none) would get a PNG under a
    # misleading name, or, left to matplotlib, a different format or an added ".png".
    if args.out.suffix.lower() != ".png":
        raise CommandError(f"{args.out}: the timeline is a PNG image; give an output name "
                           "ending in .png")
    try:
        transitions = load_transitions(args.file)
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    fig = plot_timeline(transitions, None, args.title)
    try:
        with atomic_output(args.out) as tmp:
            fig.savefig(tmp, dpi=100, format="png")  # type: ignore[attr-defined]
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename or args.out}: {exc.strerror}") from None
    workers = len({tr.worker for tr in transitions})
    print(f"timeline: {workers} workers, {len(transitions)} transitions -> {args.out}")
    return 0
