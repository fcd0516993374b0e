"""What the Ray cluster tests share besides fixtures: the cluster's description, a look at
this PID namespace's processes, and the command lines they run."""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _shared_paths import REPO


@dataclass
class Cluster:
    address: str
    cpus: int
    tmp: Path
    env: dict[str, str]
    metrics: dict[str, object] = field(default_factory=dict)


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def processes() -> dict[int, str]:
    """Every process this (PID namespace's) /proc shows, with its command line."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            out[int(entry.name)] = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return out


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def ray_pids() -> list[int]:
    me = os.getpid()
    return [pid for pid, cmd in processes().items()
            if pid != me and re.search(r"\bray\b|ray::|raylet|gcs_server", cmd)
            and "pytest" not in cmd]


def task_pid(worker: int) -> int | None:
    """The process running excamera worker ``worker``'s Ray task (its title names it)."""
    for pid, cmd in processes().items():
        if re.fullmatch(rf"ray::excamera-[A-Za-z0-9_.-]+-worker-{worker}", cmd):
            return pid
    return None


def cli_env(cluster: Cluster) -> dict[str, str]:
    """The coordinator's environment: this checkout on PYTHONPATH, the wheel cache in the
    session's directory (so the first Ray job builds the workers' wheel for real)."""
    env = dict(cluster.env)
    env["PYTHONPATH"] = str(REPO / "python")
    env["XDG_CACHE_HOME"] = str(cluster.tmp / "cache")
    return env


def encode_argv(clip: Path, out: Path, bucket: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "excamera.cli", "encode", str(clip), "-o", str(out),
            "--chunk", "6", "--batch", "4", "--bucket", str(bucket), *extra]


#: Ray's own C++ log lines. In a namespace with no route, Ray warns (on the coordinator's
#: stderr) that it fell back to resolving this host's address; on a real network it does not.
RAY_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [A-Z] \d+ \d+\] \w+\.cc:\d+: ")


def our_lines(stderr: str) -> str:
    """``stderr`` without Ray's own C++ log lines."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not RAY_LOG_LINE.match(line))
