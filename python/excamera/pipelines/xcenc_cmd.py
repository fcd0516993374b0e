"""``excamera xcenc``: mu's xcenc_server.py as a subcommand, on the local backend.

Without ``-H`` the coordinator runs a relay of its own (credentials from the job's CA); with
``-H host [-T port]`` workers dial that relay instead (``excamera relay``, whose CA must be the
one given with ``-c``).
"""

from __future__ import annotations

import argparse

from ..argcheck import check_port
from ..errors import CommandError
from ..mu.coordinator import Coordinator, JobResult
from ..mu.jobopts import add_job_options, coordinator_kwargs, job_backend, run_job
from .xcenc.machine import clean_handoff, job_params, require_pass0_encoder, xcenc_machine
from .xcenc.ops import OPERATION_MODULE
from .xcenc.plan import PassPlan, PlanError, XcencParams


def add_xcenc_options(p: argparse.ArgumentParser) -> None:
    """The encoder's own switches (mu's letters), shared with ``excamera encode``."""
    p.add_argument("-S", dest="s_ac_qi", type=int, default=127, metavar="s_ac_qi",
                   help="quantizer index of the S phase, xc-enc --s-ac-qi (127)")
    p.add_argument("-Y", dest="y_ac_qi", type=int, default=30, metavar="y_ac_qi",
                   help="quality: vpxenc --cq-level for pass 0 (xc-enc -y with --pass0 xc) (30)")
    p.add_argument("-w", dest="kf_weight", type=float, default=0.75, metavar="W",
                   help="xc-enc -w: the converted first frame of a chunk at quantizer "
                   "W*kf_q + (1-W)*next_q, as mu ran it (0.75); -1 lets xc-enc match the "
                   "prediction's key-frame quality instead")
    p.add_argument("--chain", choices=("excamera", "mu"), default="excamera",
                   help="how batch mode (-K) links chunks: excamera keeps references across "
                   "chunk joins and lets rebased macroblocks choose among them (smaller at equal "
                   "quality); mu runs xc-enc's rebases as mu did (excamera)")
    p.add_argument("--tools", choices=("worker", "subprocess"), default="worker",
                   help="run xc-enc, xc-dump and comp-states in the worker's own Python "
                   "(worker), or as a new process per step as mu did (subprocess) (worker)")
    p.add_argument("--pass0", choices=("vpxenc", "xc"), default="vpxenc",
                   help="pass-0 encoder: vpxenc with mu's settings, or xc-enc -y (vpxenc)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "xcenc",
        help="ExCamera: encode Y4M chunks in parallel, rebasing each onto its predecessor",
        description="Worker k encodes <vid>/%%08d.y4m (number k+offset) with vpxenc, then "
        "re-encodes it with xc-enc onto worker k-1's state, handed along through the relay; "
        "outputs <vid>/out/%%08d.ivf and <vid>/comp_txt/%%08d.txt.",
    )
    add_job_options(p)
    p.add_argument("-o", dest="offset", type=int, default=0, metavar="nOffset",
                   help="input chunks to skip (0)")
    p.add_argument("-p", dest="passes", default="7", metavar="nPasses|w,x,y,z",
                   help="passes in all (7 = pass 0, 4 S-phase, 2 closing), or passes per phase "
                   "w,x,y,z as in mu (1,0,3,2); 1 = pass 0 only, chunks independent")
    p.add_argument("-K", dest="kf_dist", type=int, default=None, metavar="kfDist",
                   help="batch mode: a key frame every kfDist chunks, at most 3 passes "
                   "(ExCamera[n,x]'s x; default: one wavefront over all chunks)")
    add_xcenc_options(p)
    p.add_argument("-v", dest="vid_name", default="sintel-1k-y4m_06", metavar="vidName",
                   help="video name: the key prefix of the chunks ('sintel-1k-y4m_06')")
    p.add_argument("-b", dest="bucket", required=True, metavar="bucket",
                   help="storage: a local directory, file://DIR or s3://bucket[/prefix]")
    p.add_argument("-H", dest="relay_host", default=None, metavar="stHostAddr",
                   help="relay host (default: the coordinator runs its own relay)")
    p.add_argument("-T", dest="relay_port", type=int, default=13337, metavar="stHostPort",
                   help="relay port, with -H (13337)")
    p.set_defaults(func=main)


def make_params(args: argparse.Namespace, *, vid_name: str | None = None,
                n_parts: int | None = None, kf_dist: int | None = None,
                cpu_slots: int | None = None) -> XcencParams:
    if args.kf_weight < 0 and args.kf_weight != -1:
        raise CommandError(f"-w {args.kf_weight:g}: the key-frame weight is 0..1, or -1 to match "
                           "the prediction's key-frame quality")
    try:
        return XcencParams(
            vid_name=vid_name or args.vid_name,
            n_parts=n_parts if n_parts is not None else args.n_parts,
            offset=getattr(args, "offset", 0),
            plan=PassPlan.parse(args.passes),
            s_ac_qi=args.s_ac_qi,
            y_ac_qi=args.y_ac_qi,
            kf_weight=None if args.kf_weight < 0 else args.kf_weight,
            kf_dist=kf_dist if kf_dist is not None else getattr(args, "kf_dist", None),
            pass0=args.pass0,
            chain=args.chain,
            tools=args.tools,
            handoff_storage=args.retries > 0,
            cpu_slots=cpu_slots,
        )
    except PlanError as exc:
        raise CommandError(str(exc)) from None


def make_coordinator(args: argparse.Namespace, params: XcencParams, storage: str) -> Coordinator:
    relay = (args.relay_host, args.relay_port) if getattr(args, "relay_host", None) else None
    if relay is not None:
        check_port("-T", args.relay_port, zero_picks=False)
    return Coordinator(
        "xcenc",
        params.n_parts,
        job_backend(args),
        storage,
        xcenc_machine,
        params=job_params(params),
        operation_modules=[OPERATION_MODULE],
        relay=relay,
        embedded_relay=relay is None,
        **coordinator_kwargs(args),
    )


def main(args: argparse.Namespace) -> int:
    params = make_params(args)
    require_pass0_encoder(args.pass0, args.backend, vars(args))

    def report(result: JobResult) -> None:
        outs = [result.outputs[k] for k in sorted(result.outputs)]
        conv = [o["converged"] for o in outs if o["converged"] is not None]
        passes = [o["passes"] for o in outs]
        print(f"xcenc: {len(outs)} chunk(s) encoded in {result.elapsed:.2f} s "
              f"({outs[0]['output']} .. {outs[-1]['output']}); passes per worker "
              f"{min(passes)}..{max(passes)}; comp-states identical for "
              f"{sum(conv)} of {len(conv)} compared")
        if params.handoff_storage:
            clean_handoff(params, args.bucket)

    return run_job(args, lambda: make_coordinator(args, params, args.bucket), report)
