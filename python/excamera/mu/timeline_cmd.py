"""``excamera timeline FILE -o plot.png``: draw a job's ``-O`` transitions as a timeline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("timeline", help="plot a job's -O state-transitions file")
    p.add_argument("file", type=Path, help="JSON-lines file written by a job's -O option")
    p.add_argument("-o", dest="out", type=Path, default=Path("timeline.png"),
                   help="output PNG (timeline.png)")
    p.add_argument("--title", default="", help="plot title")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..errors import CommandError
    from .timeline import load_transitions, plot_timeline

    try:
        transitions = load_transitions(args.file)
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    try:
        plot_timeline(transitions, args.out, args.title)
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror}") from None
    workers = len({tr.worker for tr in transitions})
    print(f"timeline: {workers} workers, {len(transitions)} transitions -> {args.out}")
    return 0
