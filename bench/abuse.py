"""Measure what abusive clients cost a relay or a coordinator, as real processes on loopback.

Two attacks from issue 11, each against a fresh server process:

* ``stall``: a worker with a valid certificate announces a body of ``--announce-mb`` MiB for a
  peer that is not connected, sends 1 KiB of it and stops. Reported: the relay's RSS before and
  after, whether another job's held hand-off still goes through meanwhile, and whether (and
  after how long) the relay cuts the stalled sender off.
* ``raw``: ``--count`` plain TCP connections that never start TLS, from 127.0.0.2, against the
  relay (``--target relay``) or a coordinator (``--target coordinator``). Reported: RSS before,
  while they are open, and after they are closed, and whether a real worker handshake from
  127.0.0.1 still succeeds during the attack.

``--src DIR`` runs the server from another checkout's ``python/`` directory (for a before/after
comparison); the attacking side always uses this checkout's client code. Figures are RSS in MB
from ``/proc/PID/status``.

Usage: ``python bench/abuse.py stall|raw [--target relay|coordinator] [--src DIR] [--json F]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))  # the server processes the abuse tests use

from _mu_servers import (  # noqa: E402
    ServerProcess,
    closed_by_server,
    coordinator_process,
    flood,
    relay_process,
)
from excamera.mu.protocol import PREFIX  # noqa: E402
from excamera.mu.relay import RelayClient, RelayError  # noqa: E402
from excamera.mu.tls import CertificateAuthority, genkeys  # noqa: E402


async def settle(server: ServerProcess, seconds: float = 1.5) -> float:
    await asyncio.sleep(seconds)
    return server.rss_mb()


async def handoff(port: int, ca: CertificateAuthority, job: str, size: int) -> str:
    """Worker 0 sends ``size`` bytes before worker 1 connects (so the relay holds them)."""
    try:
        a = await RelayClient.connect("127.0.0.1", port, ca.issue_worker(job, 0), job, 0, 1)
        await a.send(b"h" * size)
        await asyncio.sleep(0.3)
        b = await RelayClient.connect("127.0.0.1", port, ca.issue_worker(job, 1), job, 1, 0)
        got = await asyncio.wait_for(b.recv(), 30)
        await a.close()
        await b.close()
        return "delivered" if len(got.body) == size else f"wrong size {len(got.body)}"
    except (RelayError, TimeoutError, EOFError) as exc:
        return f"failed: {exc!r}"


async def stall(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        genkeys(keys)
        ca = CertificateAuthority.load(keys / "ca_cert.pem", keys / "ca_key.pem")
        extra = ["--stall-timeout", str(args.stall_timeout)] if args.stall_timeout else []
        server = relay_process(keys, *extra, src=args.src)
        try:
            warm = await handoff(server.port, ca, "warm", 1 << 20)
            before = await settle(server)
            evil = await RelayClient.connect("127.0.0.1", server.port,
                                             ca.issue_worker("evil", 0), "evil", 0, 1)
            header = b'{"type":"data"}'
            evil._writer.write(PREFIX.pack(len(header), args.announce_mb << 20) + header
                               + b"x" * 1024)
            await evil._writer.drain()
            t0 = time.monotonic()
            during = await settle(server)
            other = await handoff(server.port, ca, "other", 4 << 20)
            cut_after = None
            told: list[str] = []  # relay_error codes the attacker received
            try:
                async with asyncio.timeout(args.wait):
                    while True:
                        try:
                            await evil.recv()
                        except RelayError as exc:
                            told.append(exc.code)
                            if exc.code == "connection":
                                raise EOFError from None
            except EOFError:
                cut_after = round(time.monotonic() - t0, 1)
            except TimeoutError:
                pass
            after = await settle(server, 0.5)
            await evil.close()
            return {"attack": "stall", "src": str(args.src), "announce_mb": args.announce_mb,
                    "warmup": warm, "rss_before_mb": round(before, 1),
                    "rss_during_mb": round(during, 1), "rss_after_cutoff_mb": round(after, 1),
                    "other_job_handoff": other, "attacker_told": told,
                    "stalled_sender_cut_off_after_s": cut_after,
                    "log": [ln for ln in server.output().splitlines()
                            if "cut off" in ln or "quota" in ln][:3]}
        finally:
            server.stop()


async def raw(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        genkeys(keys)
        ca = CertificateAuthority.load(keys / "ca_cert.pem", keys / "ca_key.pem")
        if args.target == "relay":
            server = relay_process(keys, src=args.src)
        else:
            server = coordinator_process(args.src)
        socks = []
        try:
            before = await settle(server)
            socks = flood(server.port, args.count)
            during = await settle(server, 3.0)
            if args.target == "relay":
                legit = await handoff(server.port, ca, "legit", 1024)
            else:  # a handshake from another address (the coordinator's CA is its own)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                try:
                    _, w = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", server.port, ssl=ctx, server_hostname="127.0.0.1"), 30)
                    legit = "handshake ok"
                    w.close()
                except (OSError, TimeoutError) as exc:
                    legit = f"failed: {exc!r}"
            closed = closed_by_server(socks)
            for s in socks:
                s.close()
            socks = []
            after = await settle(server, 3.0)
            return {"attack": "raw", "target": args.target, "src": str(args.src),
                    "count": args.count, "rss_before_mb": round(before, 1),
                    "rss_during_mb": round(during, 1), "rss_after_close_mb": round(after, 1),
                    "closed_by_server": closed, "legit_client": legit,
                    "log_lines_refused": sum("refused" in ln
                                             for ln in server.output().splitlines())}
        finally:
            for s in socks:
                s.close()
            server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("attack", choices=["stall", "raw"])
    p.add_argument("--target", choices=["relay", "coordinator"], default="relay")
    p.add_argument("--src", type=Path, default=ROOT / "python",
                   help="python/ directory the server runs from (default: this checkout)")
    p.add_argument("--announce-mb", type=int, default=1024)
    p.add_argument("--stall-timeout", type=float, default=0,
                   help="pass --stall-timeout to the relay (0: its default; omit for old code)")
    p.add_argument("--wait", type=float, default=20, help="how long to wait for a cut-off (s)")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result = asyncio.run(stall(args) if args.attack == "stall" else raw(args))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
