"""``excamera png2y4m``: mu's png2y4m_server.py as a subcommand, with mu's letters."""

from __future__ import annotations

import argparse

from ..errors import CommandError
from ..mu.coordinator import Coordinator, JobResult
from ..mu.jobopts import add_job_options, coordinator_kwargs, job_backend, run_job
from .png2y4m import DEFAULT_MAX_PIXELS
from .png2y4m_job import OPERATION_MODULE, Png2Y4MParams, png2y4m_machine


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "png2y4m",
        help="convert numbered PNG frames into Y4M chunks with many workers",
        description="Each worker k converts nFrames PNGs <vid>-<inFormat>/%08d.png (from "
        "1 + nFrames*(k+offset)) into <vid>-y4m_<nFrames>/%08d.y4m (number k+offset).",
    )
    add_job_options(p)
    p.add_argument("-f", dest="n_frames", type=int, default=6, metavar="nFrames",
                   help="frames per chunk (%(default)s)")
    p.add_argument("-o", dest="offset", type=int, default=0, metavar="nOffset",
                   help="input chunks to skip (%(default)s)")
    p.add_argument("-v", dest="vid_name", default="sintel-1k", metavar="vidName",
                   help="video name (%(default)s)")
    p.add_argument("-b", dest="bucket", required=True, metavar="bucket",
                   help="storage: a local directory, file://DIR or s3://bucket[/prefix]")
    p.add_argument("-i", dest="in_format", default="png16", metavar="inFormat",
                   help="input format, the key prefix suffix (%(default)s)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse a PNG with more than N pixels (width x height) before decoding "
                   "it: a worker needs about 80 bytes per pixel (%(default)s, 4K UHD)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.n_frames < 1:
        raise CommandError("-f must be at least 1")
    if args.offset < 0:
        raise CommandError("-o must be >= 0")
    if args.max_pixels < 1:
        raise CommandError(f"--max-pixels must be at least 1, not {args.max_pixels}")
    params = Png2Y4MParams(args.vid_name, args.in_format, args.n_frames, args.offset,
                           args.max_pixels)

    def make() -> Coordinator:
        return Coordinator(
            "png2y4m",
            args.n_parts,
            job_backend(args),
            args.bucket,
            png2y4m_machine,
            params={"png2y4m": params},
            operation_modules=[OPERATION_MODULE],
            **coordinator_kwargs(args),
        )

    def report(result: JobResult) -> None:
        keys = [result.outputs[k] for k in sorted(result.outputs)]
        print(f"png2y4m: {len(keys)} chunk(s) written in {result.elapsed:.2f} s "
              f"({keys[0]} .. {keys[-1]})")

    return run_job(args, make, report)
