"""How many concurrent invocations the Lambda emulator sustains here (all figures EMULATED).

The emulator (tests/lambda_emulator/, not AWS) runs as its own process. For each N, one function
whose handler connects back to this script over TCP, says which invocation it is and waits; the
script sends N invocations at once (one connection each, SigV4-signed with botocore, as mu's
launcher did), waits until all N handlers are connected at the same time, then releases them.

Reported per N: invoke-to-hello latency (p50/p99/max), invocations accepted per second, cold
starts and their INIT time (from the emulator's REPORT facts), the emulator's CPU and peak RSS,
and the environments' memory at the peak (RSS, and PSS, which splits shared pages fairly).
What real AWS adds: burst scaling of 1,000 environments per 10 s per function, and its own cold
starts; what it removes: every environment here shares the same 2 cores.

Usage: ``python bench/lambda_emulator.py [--n 100,500,1000] [--mode Event|RequestResponse]
[--max-starting K] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
HANDLER = """
import socket

def handler(event, context):
    with socket.create_connection(("127.0.0.1", event["port"])) as sock:
        sock.sendall(b"%d\\n" % event["i"])
        sock.recv(1)
    return {"i": event["i"]}
"""


def handler_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("hello.py", date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        zf.writestr(info, HANDLER)
    return buf.getvalue()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB, from smaps_rollup."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class Emulator:
    def __init__(self, state: Path, account: int, extra: list[str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lambda_emulator", "--state-dir", str(state),
             "--account-concurrency", str(account), *extra,
             "--role-env", "AWS_ACCESS_KEY_ID=testing", "--role-env",
             "AWS_SECRET_ACCESS_KEY=testing"],
            cwd=ROOT, stdout=subprocess.PIPE,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("lambda emulator did not start (see its stderr above)")
        self.endpoint = json.loads(line)["endpoint"]
        self.host, self.port = self.endpoint.split("//")[1].split(":")

    def control(self, path: str):
        with urllib.request.urlopen(self.endpoint + path, timeout=60) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)


def signed(endpoint: str, method: str, path: str, body: bytes, headers: dict) -> bytes:
    """One raw HTTP/1.1 request, SigV4-signed as botocore signs it."""
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
    SigV4Auth(Credentials("testing", "testing"), "lambda", REGION).add_auth(request)
    host = endpoint.split("//")[1]
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def http(emu: Emulator, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(emu.host, int(emu.port))
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def run(n: int, mode: str, state: Path, extra: list[str]) -> dict:
    emu = Emulator(state, max(n, 1000), extra)
    try:
        create = json.dumps({
            "FunctionName": "hello", "Runtime": "python3.12", "Handler": "hello.handler",
            "Role": "arn:aws:iam::123456789012:role/bench", "Timeout": 300, "MemorySize": 128,
            "Code": {"ZipFile": __import__("base64").b64encode(handler_zip()).decode()},
        }).encode()
        status, body = await http(emu, signed(emu.endpoint, "POST", "/2015-03-31/functions",
                                              create, {"Content-Type": "application/json"}))
        assert status == 201, body
        hellos: dict[int, float] = {}
        conns: list[asyncio.StreamWriter] = []
        all_in = asyncio.Event()

        async def hello(reader, writer):
            line = await reader.readline()
            hellos[int(line)] = time.monotonic()
            conns.append(writer)
            if len(hellos) == n:
                all_in.set()
            await reader.read(1)  # until released or closed

        server = await asyncio.start_server(hello, "127.0.0.1", 0, backlog=n + 16)
        port = server.sockets[0].getsockname()[1]
        sent: dict[int, float] = {}
        accepted: dict[int, float] = {}

        async def invoke(i: int):
            payload = json.dumps({"i": i, "port": port}).encode()
            raw = signed(emu.endpoint, "POST", "/2015-03-31/functions/hello/invocations",
                         payload, {"X-Amz-Invocation-Type": mode})
            sent[i] = time.monotonic()
            status, body = await http(emu, raw)
            accepted[i] = time.monotonic()
            assert status in (200, 202), (status, body)

        t0 = time.monotonic()
        invokes = [asyncio.create_task(invoke(i)) for i in range(n)]
        if mode == "Event":
            await asyncio.gather(*invokes)
        await asyncio.wait_for(all_in.wait(), timeout=600)
        t_all = time.monotonic() - t0
        stats = emu.control("/_emulator/stats")
        envs = emu.control("/_emulator/environments")
        mem = [memory_kb(e["pid"]) for e in envs]
        for writer in conns:
            writer.write(b"x")
            writer.close()
        await asyncio.gather(*invokes)
        server.close()
        deadline = time.monotonic() + 300
        while True:
            records = emu.control("/_emulator/records")["records"]
            done = [r for r in records if r["status"] == "ok"]
            if len(done) == n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        latencies = [hellos[i] - sent[i] for i in range(n)]
        init_ms = [r["init_ms"] for r in done if r["cold"]]
        queued_ms = [r["queued_ms"] for r in done if r["cold"]]
        last_accept = max(accepted.values()) - t0 if mode == "Event" else None
        return {
            "emulated": True, "n": n, "mode": mode,
            "all_connected_s": round(t_all, 2),
            "invoke_to_hello_s": {"p50": round(pct(latencies, 50), 3),
                                  "p99": round(pct(latencies, 99), 3),
                                  "max": round(max(latencies), 3)},
            "accepted_per_s": round(n / last_accept, 1) if last_accept else None,
            "cold_starts": stats["cold_starts"],
            "init_ms": {"p50": round(pct(init_ms, 50), 1), "p99": round(pct(init_ms, 99), 1)},
            "start_queue_ms": {"p50": round(pct(queued_ms, 50), 1),
                               "p99": round(pct(queued_ms, 99), 1)},
            "completed_ok": len(done),
            "emulator_cpu_s": stats["emulator_cpu_s"],
            "emulator_max_rss_mb": stats["emulator_max_rss_mb"],
            "environments_rss_mb": round(sum(r for r, _ in mem) / 1024, 1),
            "environments_pss_mb": round(sum(p for _, p in mem) / 1024, 1),
            "pss_per_environment_mb": round(statistics.mean(p for _, p in mem) / 1024, 2),
        }
    finally:
        emu.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="100,500,1000")
    ap.add_argument("--mode", choices=("Event", "RequestResponse"), default="Event")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--max-starting", type=int, help="the emulator's (default 2 x CPUs)")
    args = ap.parse_args()
    extra = ["--max-starting", str(args.max_starting)] if args.max_starting else []
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for n in (int(x) for x in args.n.split(",")):
        with tempfile.TemporaryDirectory(prefix="lambda-emulator-bench-") as tmp:
            result = asyncio.run(run(n, args.mode, Path(tmp), extra))
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count()},
                                         "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
