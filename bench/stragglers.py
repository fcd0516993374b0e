"""The makespan of an encode with one straggler, with and without gg-style duplicates.

The job is ``excamera encode`` (local workers, the full ExCamera plan in batch mode). One
worker is made a straggler with the fault injection ``--inject-slow WORKER:FACTOR``: each of
its commands takes FACTOR times as long (10 by default: ten times the normal phase time).
Three configurations, each run ``--runs`` times (the shortest kept, the least disturbed by
the machine's other load):

* ``calm``: no straggler (mitigation on, as by default, so its cost is in the baseline);
* ``straggler_k0``: the straggler, mitigation off (``--straggler-k 0``);
* ``straggler_k3``: the straggler, mitigation on (``--straggler-k 3``, the default).

Makespan is the encode job's own time (the coordinator's, from the first launch to the last
worker's end), as the command's summary reports it; each run's output must be byte-identical
to the calm run's, and the duplicates launched are read from its ``-O`` record.

Usage: ``python bench/stragglers.py [--clip carphone_qcif_120f.y4m] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from _common import settings, shared_dir  # noqa: E402

CONFIGS = {
    "calm": [],
    "straggler_k0": ["--straggler-k", "0"],
    "straggler_k3": ["--straggler-k", "3"],
}


def encode_once(args: argparse.Namespace, extra: list[str], out: Path, log: Path
                ) -> dict[str, Any]:
    src = shared_dir() / "clips" / args.clip
    env = os.environ | {"PYTHONPATH": str(ROOT / "python")}
    cmd = [sys.executable, "-m", "excamera.cli", "encode", str(src), "-o", str(out),
           "--chunk", str(args.chunk), "--batch", str(args.batch), "--workers",
           str(args.workers), "-O", str(log), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"bench: encode failed:\n{done.stderr[-3000:]}")
    m = re.search(r"encode ([0-9.]+), stitch", done.stdout)
    if not m:
        raise SystemExit(f"bench: no job time in the summary:\n{done.stdout}")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    dups = [(r["worker"], r["attempt"]) for r in records
            if r.get("state") == "launching" and r.get("attempt", 0) > 0]
    won = [(r["worker"], r["attempt"]) for r in records
           if r.get("state") == "done" and (r.get("worker"), r.get("attempt")) in dups]
    return {"makespan_s": float(m[1]), "duplicates": len(dups), "duplicates_won": len(won),
            "workers": len({r["worker"] for r in records if "worker" in r}),
            "output": out.read_bytes()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default="carphone_qcif_120f.y4m")
    ap.add_argument("--chunk", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4,
                    help="encodes at once on this machine (excamera encode --workers)")
    ap.add_argument("--slow-worker", type=int, default=5)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    slow = ["--inject-slow", f"{args.slow_worker}:{args.factor:g}"]
    results: dict[str, Any] = {}
    reference: bytes | None = None
    with tempfile.TemporaryDirectory(prefix="stragglers-") as tmp:
        for run in range(args.runs):
            for name, extra in CONFIGS.items():
                flags = extra + (slow if name != "calm" else [])
                r = encode_once(args, flags, Path(tmp) / f"{name}-{run}.ivf",
                                Path(tmp) / f"{name}-{run}.jsonl")
                out = r.pop("output")
                if reference is None:
                    reference = out
                r["identical_to_calm"] = out == reference
                results.setdefault(name, []).append(r)
                print(name, run, r, file=sys.stderr, flush=True)
    best = {name: min(rs, key=lambda r: r["makespan_s"]) for name, rs in results.items()}
    calm = best["calm"]["makespan_s"]
    summary = {
        name: {"makespan_s": b["makespan_s"],
               "vs_calm": round(b["makespan_s"] / calm, 3),
               "runs_s": [r["makespan_s"] for r in results[name]],
               "duplicates": b["duplicates"], "duplicates_won": b["duplicates_won"],
               "identical_to_calm": all(r["identical_to_calm"] for r in results[name])}
        for name, b in best.items()
    }
    out = {"settings": settings(args), "workers": best["calm"]["workers"],
           "load_average_at_end": os.getloadavg()[0], "results": summary}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
