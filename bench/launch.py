"""Launching many Lambda workers from one coordinator (all figures EMULATED).

The Lambda emulator (tests/lambda_emulator/, not AWS) runs as its own process with the real
deployment zip (``excamera lambda build``) deployed to it through boto3; the coordinator runs in
this process with the Lambda backend, exactly as ``excamera encode -l FUNCTION`` runs it. For
each N, one job of N workers whose machine ends right after the worker's hello: every worker is
a real awslambdaric process running the worker runtime, TLS and the code-identity check.

Reported per N:
- invoke to hello: p50, p99 and max, from the coordinator's ``launching`` transition (just
  before the Invoke request goes out) to its ``connected`` one (the hello accepted);
- invocations per second: N over the time until the last hello;
- the coordinator's CPU seconds and peak RSS (this process), and the emulator's cold starts
  and INIT times.

What real AWS adds: burst scaling of 1,000 new execution environments per 10 s per function
(so 1,000 workers of one function need about 10 s even at best; several functions or regions
scale in parallel), and its own cold starts (a few hundred ms for a zip this size, more under
load). What it removes: here every environment shares this machine's 2 cores, so cold starts
queue behind each other (the emulator's start slots), and no more than ``--max-environments``
live at once (this host's memory holds a few hundred real workers, not a thousand): past that
an invocation reuses an idle environment where AWS would start a new one.

Usage: ``python bench/launch.py [--n 100,500,1000] [--zip PATH] [--json FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO as ROOT
from _common import settings
from excamera.awslambda.deploy import DeployOptions, deploy
from excamera.mu.backends.aws_lambda import LambdaBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.machines import JobContext, WorkerHandle

ROLE = "arn:aws:iam::123456789012:role/excamera-bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_emulator(state: Path, max_envs: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "tests.lambda_emulator", "--state-dir", str(state),
           "--port", "0", "--account-concurrency", "100000",
           "--max-environments", str(max_envs),
           "--role-env", "AWS_ACCESS_KEY_ID=bench", "--role-env", "AWS_SECRET_ACCESS_KEY=bench"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=open(state.parent / "emulator.stderr", "wb"))
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"emulator did not start; see {state.parent / 'emulator.stderr'}")
    return proc, json.loads(line)["endpoint"]


def emulator_get(endpoint: str, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(endpoint + path, timeout=60) as resp:
        return json.loads(resp.read())


async def hello_machine(w: WorkerHandle, ctx: JobContext) -> None:
    return None


async def one_run(function: str, n: int) -> dict:
    peak = [rss_mb()]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mb())
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    coord = Coordinator("launch", n, LambdaBackend(function, launch_deadline=900.0),
                        "s3://unused-by-this-machine/x", hello_machine, connect_timeout=900.0)
    result = await coord.run()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.cancel()
    launched: dict[int, float] = {}
    hello: dict[int, float] = {}
    for tr in result.transitions:
        if tr.state == "launching":
            launched.setdefault(tr.worker, tr.t)
        elif tr.state == "connected":
            hello.setdefault(tr.worker, tr.t)
    lat = [hello[k] - launched[k] for k in hello]
    last = max(hello.values())
    return {
        "workers": n,
        "connected": len(hello),
        "invoke_to_hello_p50_s": round(statistics.median(lat), 3),
        "invoke_to_hello_p99_s": round(pct(lat, 99), 3),
        "invoke_to_hello_max_s": round(max(lat), 3),
        "all_hellos_s": round(last, 3),
        "invocations_per_s": round(n / last, 1),
        "coordinator_cpu_s": round(cpu1.ru_utime + cpu1.ru_stime
                                   - cpu0.ru_utime - cpu0.ru_stime, 2),
        "coordinator_peak_rss_mb": round(peak[0], 1),
        "cost": result.cost.to_json() if result.cost else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="100,500,1000")
    ap.add_argument("--zip", type=Path, default=None,
                    help="a zip from excamera lambda build (default: build one, cached)")
    ap.add_argument("--max-environments", type=int, default=200,
                    help="the emulator's cap on live environments (this host's memory); past "
                    "it invocations reuse idle ones, where AWS would start more (200)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sizes = [int(v) for v in args.n.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp:
        tmpd = Path(tmp)
        zip_path = args.zip
        if zip_path is None:
            from excamera.awslambda.build import build

            zip_path = tmpd / "excamera.zip"
            build(zip_path, log=lambda m: print(f"build: {m}", file=sys.stderr))
        proc, endpoint = start_emulator(tmpd / "emu", args.max_environments)
        os.environ.update({"AWS_ENDPOINT_URL_LAMBDA": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        try:
            function = deploy(DeployOptions(zip_path, ROLE, ["us-east-1"], timeout_s=900),
                              say=lambda _m: None)
            rows = []
            for n in sizes:
                before = emulator_get(endpoint, "/_emulator/stats")
                since = len(emulator_get(endpoint, "/_emulator/records")["records"])
                try:
                    row = asyncio.run(one_run(function, n))
                except JobFailed as exc:
                    raise SystemExit(f"bench/launch.py: {exc}") from None
                after = emulator_get(endpoint, "/_emulator/stats")
                recs = emulator_get(endpoint, f"/_emulator/records?since={since}")["records"]
                inits = [r["init_ms"] for r in recs if r.get("cold")]
                row["cold_starts"] = after["cold_starts"] - before["cold_starts"]
                row["waited_at_environment_cap"] = (after["waited_at_environment_cap"]
                                                    - before["waited_at_environment_cap"])
                row["init_p50_ms"] = round(statistics.median(inits), 1) if inits else None
                row["emulated"] = True
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result = {
        "settings": settings(args),
        "emulated": True,
        "note": "Lambda emulator on this machine (2 cores shared by every environment); real "
                "AWS adds burst scaling of 1,000 environments per 10 s per function and its "
                "own cold starts",
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
