"""Helpers shared by the benchmarks: locating shared data and timing commands."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# bench/excamera.py is named like the package it measures, and a script's own folder comes first
# on the import path: move this folder behind the installed package, so every bench script that
# imports this module first gets the real `excamera` (and can still import its siblings).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]


# vpxenc as our primary encoder runs: one pass, constant quantizer, no alt-ref or lag, one key
# frame (the mode and q are added per run).
VPX_COMMON = ["--codec=vp8", "--ivf", "-q", "--threads=1", "--passes=1", "--end-usage=q",
              "--auto-alt-ref=0", "--lag-in-frames=0", "--kf-max-dist=100000",
              "--disable-warning-prompt"]


def shared_dir() -> Path:
    env = os.environ.get("EXCAMERA_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"bench: {name} not found (install vpx-tools / ffmpeg, or run .ci/run)")
    return path


def settings(args: argparse.Namespace) -> dict[str, object]:
    """What produced a result file: the command line as run from the repository, and every
    option's value (defaults included), so the file says how to make it again."""
    out: dict[str, object] = {
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
    }
    out.update({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    return out


def best_of(n: int, fn: Callable[[], object]) -> float:
    """The fastest of n runs, in seconds: the least disturbed by the other core's load."""
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)
