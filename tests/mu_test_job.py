"""A tiny job CLI used by the failure tests: a slow machine run through the shared job options.

Run as ``python tests/mu_test_job.py -n 4 --pid-dir DIR --tmp-root DIR [job options]``. Worker 2
writes its worker process id to ``DIR/worker-2.pid`` when it enters the slow state, so the test
can SIGKILL the real worker process from outside while it is inside a slow command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from excamera.errors import CommandError
from excamera.mu.backends import LocalBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.jobopts import add_job_options, coordinator_kwargs, run_job
from excamera.mu.machines import JobContext, WorkerHandle


async def slow_machine(w: WorkerHandle, ctx: JobContext) -> str:
    w.state = "warmup"
    await w.run("echo warming up >&2")
    if w.id == 2:
        w.state = "slow"
        pid_file = Path(ctx.params["pid_dir"]) / f"worker-{w.id}.pid"
        pid_file.write_text(str(w.pid))
        await w.run(["sleep", str(ctx.params["slow_seconds"])])
    w.state = "finishing"
    return (await w.run("echo finished ##TMPDIR##")).stdout


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    add_job_options(p, default_port=0)
    p.add_argument("--pid-dir", type=Path, required=True)
    p.add_argument("--tmp-root", type=Path, required=True)
    p.add_argument("--slow-seconds", type=float, default=3.0)
    args = p.parse_args(argv)

    def make() -> Coordinator:
        return Coordinator(
            "slowjob", args.n_parts, LocalBackend(tmp_root=args.tmp_root), "", slow_machine,
            params={"pid_dir": str(args.pid_dir), "slow_seconds": args.slow_seconds},
            **coordinator_kwargs(args),
        )

    try:
        return run_job(args, make, lambda r: print(f"ok {sorted(r.outputs)}"))
    except CommandError as exc:
        print(f"mu_test_job: error: {exc.report()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
