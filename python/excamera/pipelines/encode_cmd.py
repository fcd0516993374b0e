"""``excamera encode INPUT -o OUTPUT``: the command line over :func:`excamera.encode`.

The user's options come first (output, quality, workers, backend, bucket, progress), then the
encoder's, then mu's knobs and each backend's in groups of their own. The flags' dests are
``excamera.encode``'s keyword names, so a refused value is named by its flag. The flags
become keyword arguments, mu's :class:`~excamera.mu.jobs.JobSettings` and a
:class:`~excamera.mu.backends.BackendSpec`; nothing below sees argparse. What the encode does
is described in :mod:`excamera.pipelines.encode`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..mu.backends import add_backend_choice
from ..mu.jobopts import (
    add_job_options,
    add_progress_option,
    backend_spec,
    job_settings,
    setup_logging,
    show_progress,
)
from .encode.settings import DEFAULT_QUALITY, PASSES, default_workers
from .xcenc.plan import MAX_REDECIDE_LEVELS, REDECIDE_LEVELS
from .xcenc_cmd import add_encoder_choices


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        usage="%(prog)s INPUT -o OUTPUT [--quality Q | --target-bitrate KBPS] [--workers N] "
        "[--backend NAME] "
        "[options]",
        help="encode a video to VP8 (IVF or WebM) with ExCamera's parallel workers",
        description="Split INPUT into chunks, encode them in parallel (pass 0 by vpxenc, then "
        "each chunk rebased onto its predecessor's state with xc-enc), stitch the result into "
        "OUTPUT (.ivf, or .webm with the input's audio) and report size, bitrate, PSNR, SSIM "
        "and cost.",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="Y4M, or any video PyAV decodes")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                   help="output file, .ivf or .webm; written only once the encode is checked")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=int, default=None, metavar="Q",
                      help="constant quality: vpxenc's --cq-level, 0 (best) .. 63, whichever "
                      f"encoder runs pass 0 (default {DEFAULT_QUALITY})")
    rate.add_argument("--target-bitrate", type=float, default=None, metavar="KBPS",
                      help="the whole file's bitrate in kbit/s, within 5%%: whole trial "
                      "encodes at per-chunk qualities until it lands (an average: no maximum "
                      "bitrate or buffer model)")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="encodes running at once (this machine's CPU count, %(default)s)")
    add_backend_choice(p)
    p.add_argument("--bucket", default=None, metavar="URL",
                   help="storage for chunks and outputs: a directory or s3://bucket/prefix "
                   "(default: a temporary directory, removed afterwards)")
    p.add_argument("--no-audio", action="store_true",
                   help="leave the input's audio out (by default a .webm output keeps it: Opus "
                   "and Vorbis copied, anything else transcoded to Opus)")
    p.add_argument("--verify", action="store_true",
                   help="also decode the stitched stream in full after the job and check that "
                   "it joins exactly and gives the quality the workers reported")
    add_progress_option(p)

    enc = p.add_argument_group("encoder (ExCamera[chunk,batch])")
    enc.add_argument("--chunk", type=int, default=6, metavar="N",
                     help="frames per chunk, one worker each (%(default)s)")
    enc.add_argument("--batch", type=int, default=16, metavar="N",
                     help="chunks per key frame (%(default)s)")
    enc.add_argument("--passes", type=int, choices=PASSES, default=3,
                     help="3: pass 0, then each chunk rebased onto its predecessor; 1: pass 0 "
                     "alone, every chunk independent with a key frame (%(default)s)")
    add_encoder_choices(enc)
    enc.add_argument("--kf-weight", type=float, default=0.75, metavar="W",
                     help="a rebased chunk's first frame at quantizer W*kf_q + (1-W)*next_q, "
                     "as mu ran it (%(default)g); -1 matches the key frame's quality instead")
    enc.add_argument("--redecide-levels", type=int, default=REDECIDE_LEVELS,
                     choices=range(1, MAX_REDECIDE_LEVELS + 1), metavar="N",
                     help="parallel re-decide passes per chunk of the excamera chain, each "
                     "against the predecessor's output of the level before, 1.."
                     f"{MAX_REDECIDE_LEVELS}: more give smaller files for more CPU; the chunk "
                     "at position e of a batch runs at most e - 1 (%(default)s)")
    add_job_options(p, workers=None, default_port=0, user_options=False)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..api import encode

    settings = job_settings(args)
    setup_logging(settings.debug)
    result = encode(
        args.input, args.output, quality=args.quality, target_bitrate=args.target_bitrate,
        workers=args.workers,
        backend=backend_spec(args), progress=show_progress(args), chunk=args.chunk,
        batch=args.batch, passes=args.passes, pass0=args.pass0, chain=args.chain,
        tools=args.tools, kf_weight=None if args.kf_weight == -1 else args.kf_weight,
        redecide_levels=args.redecide_levels,
        audio=not args.no_audio, bucket=args.bucket, job=settings, verify=args.verify,
    )
    if result.audio_dropped and not args.no_audio:  # not asked for: the output cannot hold it
        print(f"excamera encode: note: {args.output} holds video only, the input's audio was "
              "dropped (write .webm to keep it)", file=sys.stderr)
    print("\n".join(result.summary()))
    return 0
