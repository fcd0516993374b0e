"""Paired A/B of decoder commands: CPU time per run, commands alternated, medians.

Each round runs every command once on a stream, in an order rotated from round to round (so
load and caches hit every command alike), and takes each run's CPU time (user + system) from
``wait4``, the child's own resource usage. Reported per command: the median CPU time, and the
median over rounds of its ratio to the reference command of the same round (the first
``--cmd``). With ``--smaps``, one more run of each command afterwards samples
``/proc/PID/smaps_rollup`` every 20 ms and reports the largest ``AnonHugePages`` and ``Rss``
seen: whether the command's memory is backed by transparent huge pages.

A command is ``LABEL::ARGV`` (split as the shell would); leading ``NAME=VALUE`` words go into its
environment, and ``{ivf}`` stands for the stream. The load average is printed before and after.

    python bench/decode_ab.py --runs 9 --smaps \\
        --cmd 'vpxdec::vpxdec --threads=1 -o /dev/null {ivf}' \\
        --cmd 'xc::target/release/examples/xc-decode-md5 --no-md5 {ivf}' STREAM.ivf...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


def parse_cmd(spec: str) -> tuple[str, dict[str, str], list[str]]:
    label, sep, rest = spec.partition("::")
    if not sep or not label:
        raise SystemExit(f"decode_ab: --cmd {spec!r}: expected LABEL::COMMAND")
    words = shlex.split(rest)
    env = {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words:
        raise SystemExit(f"decode_ab: --cmd {spec!r}: no command")
    return label, env, words


def run(env: dict[str, str], argv: list[str], ivf: str, smaps: bool = False) -> dict:
    """One run: CPU seconds, and with ``smaps`` the largest AnonHugePages and Rss (kB) seen."""
    argv = [a.replace("{ivf}", ivf) for a in argv]
    proc = subprocess.Popen(argv, env=os.environ | env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = {"AnonHugePages": 0, "Rss": 0}
    if smaps:
        path = f"/proc/{proc.pid}/smaps_rollup"
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(path) as f:
                    for line in f:
                        name, _, rest = line.partition(":")
                        if name in peak:
                            peak[name] = max(peak[name], int(rest.split()[0]))
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.02)
    else:
        _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    if status != 0:
        raise SystemExit(f"decode_ab: {shlex.join(argv)} failed ({status}): {err.strip()}")
    return {"cpu": usage.ru_utime + usage.ru_stime, **(peak if smaps else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("streams", nargs="+")
    ap.add_argument("--cmd", action="append", required=True, help="LABEL::COMMAND, first is "
                    "the reference")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--smaps", action="store_true")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.runs < 1:
        raise SystemExit("decode_ab: --runs must be at least 1")
    cmds = [parse_cmd(c) for c in args.cmd]
    ref = cmds[0][0]
    report = {"load_before": os.getloadavg(), "runs": args.runs, "streams": {}}
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for ivf in args.streams:
        cpu: dict[str, list[float]] = {c[0]: [] for c in cmds}
        ratio: dict[str, list[float]] = {c[0]: [] for c in cmds}
        for r in range(args.runs):
            order = cmds[r % len(cmds):] + cmds[:r % len(cmds)]
            got = {label: run(env, argv, ivf)["cpu"] for label, env, argv in order}
            for label, t in got.items():
                cpu[label].append(t)
                ratio[label].append(t / got[ref])
        name = os.path.basename(ivf)
        rows = {}
        for label, _, _ in cmds:
            rows[label] = {"cpu_median": statistics.median(cpu[label]),
                           "cpu_min": min(cpu[label]),
                           "ratio_median": statistics.median(ratio[label]), "cpu": cpu[label]}
            print(f"{name:24} {label:14} CPU median {rows[label]['cpu_median']:.4f} s "
                  f"(min {rows[label]['cpu_min']:.4f})  x{ref} {rows[label]['ratio_median']:.3f}",
                  flush=True)
        if args.smaps:
            for label, env, argv in cmds:
                peak = run(env, argv, ivf, smaps=True)
                rows[label]["smaps_peak_kB"] = {k: peak[k] for k in ("AnonHugePages", "Rss")}
                print(f"{name:24} {label:14} peak AnonHugePages {peak['AnonHugePages']} kB, "
                      f"Rss {peak['Rss']} kB", flush=True)
        report["streams"][name] = rows
    report["load_after"] = os.getloadavg()
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
