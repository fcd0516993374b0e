"""``excamera xcenc``: mu's xcenc_server.py as a subcommand, with mu's letters.

Without ``-H`` the coordinator runs a relay of its own (credentials from the job's CA); with
``-H host [-T port]`` workers dial that relay instead (``excamera relay``, whose CA must be the
one given with ``-c``). The flags become an :class:`~.xcenc.plan.XcencParams`, mu's
:class:`~excamera.mu.jobs.JobSettings` and a backend; nothing below this module sees them.
"""

from __future__ import annotations

import argparse
import sys

from ..argcheck import check_port
from ..errors import CommandError
from ..mu.coordinator import JobResult
from ..mu.jobopts import add_job_options, backend_spec, job_backend, job_settings, run_job
from .xcenc.joins import Joins, judge_joins
from .xcenc.machine import clean_handoff, require_pass0_encoder, xcenc_coordinator
from .xcenc.plan import CHAINS, PASS0_ENCODERS, TOOL_MODES, PassPlan, PlanError, XcencParams


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "xcenc",
        help="ExCamera: encode Y4M chunks in parallel, rebasing each onto its predecessor",
        description="Worker k encodes <vid>/%08d.y4m (number k+offset) with vpxenc, then "
        "re-encodes it with xc-enc onto worker k-1's state, handed along through the relay; "
        "outputs <vid>/out/%08d.ivf and <vid>/comp_txt/%08d.txt.",
    )
    add_job_options(p)
    p.add_argument("-o", dest="offset", type=int, default=0, metavar="nOffset",
                   help="input chunks to skip (%(default)s)")
    p.add_argument("-p", dest="passes", default="7", metavar="nPasses|w,x,y,z",
                   help="passes in all, or passes per phase w,x,y,z as mu took them (7 is "
                   "1,0,4,2: pass 0, 4 S-phase, 2 closing); 1 = pass 0 only, chunks "
                   "independent; with fewer passes than workers and no -K, later joins are "
                   "exact only if rebased states converge (%(default)s)")
    p.add_argument("-K", dest="kf_dist", type=int, default=None, metavar="kfDist",
                   help="batch mode: a key frame every kfDist chunks, at most 3 passes, "
                   "every join exact by construction (ExCamera[n,x]'s x; default: one "
                   "wavefront over all chunks)")
    p.add_argument("-S", dest="s_ac_qi", type=int, default=127, metavar="s_ac_qi",
                   help="quantizer index of the S phase, xc-enc --s-ac-qi (%(default)s)")
    p.add_argument("-Y", dest="y_ac_qi", type=int, default=30, metavar="y_ac_qi",
                   help="quality: vpxenc's --cq-level 0..63, whichever encoder runs pass 0 "
                   "(--pass0 xc: xc-enc -y at the quantizer index vpxenc maps it to) "
                   "(%(default)s)")
    p.add_argument("-w", dest="kf_weight", type=float, default=0.75, metavar="W",
                   help="xc-enc -w: the converted first frame of a chunk at quantizer "
                   "W*kf_q + (1-W)*next_q, as mu ran it (%(default)g); -1 lets xc-enc match "
                   "the prediction's key-frame quality instead")
    add_encoder_choices(p)
    p.add_argument("-v", dest="vid_name", default="sintel-1k-y4m_06", metavar="vidName",
                   help="video name: the key prefix of the chunks (%(default)s)")
    p.add_argument("-b", dest="bucket", required=True, metavar="bucket",
                   help="storage: a local directory, file://DIR or s3://bucket[/prefix]")
    p.add_argument("-H", dest="relay_host", default=None, metavar="stHostAddr",
                   help="relay host (default: the coordinator runs its own relay)")
    # Not dest relay_port: that is --relay-port, the port of the relay the coordinator runs
    # itself when there is no -H.
    p.add_argument("-T", dest="relay_host_port", type=int, default=13337, metavar="stHostPort",
                   help="relay port, with -H (%(default)s)")
    p.set_defaults(func=main)


def add_encoder_choices(container: argparse._ActionsContainer) -> None:
    """``--chain``, ``--tools`` and ``--pass0``, which ``excamera encode`` offers too."""
    container.add_argument(
        "--chain", choices=CHAINS, default="excamera",
        help="how batch mode links chunks: excamera keeps references across chunk joins and "
        "lets rebased macroblocks choose among them (smaller at equal quality); mu runs "
        "xc-enc's rebases as mu did (%(default)s)")
    container.add_argument(
        "--tools", choices=TOOL_MODES, default="worker",
        help="run xc-enc, xc-dump and comp-states in the worker's own Python (worker), or as a "
        "new process per step as mu did (subprocess) (%(default)s)")
    container.add_argument(
        "--pass0", choices=PASS0_ENCODERS, default="vpxenc",
        help="pass-0 encoder: vpxenc with mu's settings, or xc's own, xc-enc -y "
        "(%(default)s)")


def xcenc_params(args: argparse.Namespace) -> XcencParams:
    """The plan's parameters from the flags (each refused value named by its flag)."""
    if args.kf_weight < 0 and args.kf_weight != -1:
        raise CommandError(f"-w {args.kf_weight:g}: the key-frame weight is 0..1, or -1 to match "
                           "the prediction's key-frame quality")
    try:
        return XcencParams(
            vid_name=args.vid_name,
            n_parts=args.n_parts,
            offset=args.offset,
            plan=PassPlan.parse(args.passes),
            s_ac_qi=args.s_ac_qi,
            y_ac_qi=args.y_ac_qi,
            kf_weight=None if args.kf_weight < 0 else args.kf_weight,
            kf_dist=args.kf_dist,
            pass0=args.pass0,
            chain=args.chain,
            tools=args.tools,
            handoff_storage=job_settings(args).rereads_inputs,
        )
    except PlanError as exc:
        raise CommandError(str(exc)) from None


def main(args: argparse.Namespace) -> int:
    params = xcenc_params(args)
    require_pass0_encoder(params.pass0, backend_spec(args))
    relay = (args.relay_host, args.relay_host_port) if args.relay_host else None
    if relay is not None:
        check_port("-T", args.relay_host_port, zero_picks=False)
    settings = job_settings(args)  # every value checked before the warning below
    warning = params.wavefront_warning()
    if warning:
        print(f"excamera xcenc: warning: {warning}", file=sys.stderr, flush=True)
    verdict: list[Joins] = []

    def report(result: JobResult) -> None:
        outs = [result.outputs[k] for k in sorted(result.outputs)]
        conv = [o["converged"] for o in outs if o["converged"] is not None]
        passes = [o["passes"] for o in outs]
        print(f"xcenc: {len(outs)} chunk(s) encoded in {result.elapsed:.2f} s "
              f"({outs[0]['output']} .. {outs[-1]['output']}); passes per worker "
              f"{min(passes)}..{max(passes)}; comp-states identical for "
              f"{sum(conv)} of {len(conv)} compared")
        verdict.append(judge_joins(params, result.outputs))
        if params.handoff_storage:
            clean_handoff(params, args.bucket)

    rc = run_job(args, lambda: xcenc_coordinator(params, job_backend(args), args.bucket,
                                                 settings, relay), report)
    # The job ends with its verdict on the joins, after the cost.
    print(verdict[0].summary(), flush=True)
    error = verdict[0].error()
    if error:
        # Every output is uploaded, yet the chunks do not form one stream: not a complete job.
        raise CommandError(error)
    return rc
