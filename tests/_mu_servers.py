"""Relay and coordinator processes for abuse tests and ``bench/abuse.py``, and a raw flood.

A server runs as a real subprocess with its output in a file, so its RSS (``/proc/PID/status``)
is its own and its log lines can be read back.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON_SRC = Path(__file__).resolve().parents[1] / "python"
CLI = "import sys; from excamera.cli import main; sys.exit(main())"

# A coordinator whose one worker never connects: only its listener is exercised.
IDLE_COORDINATOR = """
import asyncio, logging, sys
from excamera.mu.backends.base import Backend, WorkerProcess
from excamera.mu.coordinator import Coordinator

class Idle(WorkerProcess):
    worker_id = 0
    def alive(self): return True
    async def wait(self): await asyncio.Event().wait()
    async def kill(self): pass
    def stderr_tail(self): return ""

class IdleBackend(Backend):
    async def launch(self, payload): return Idle()

async def machine(w, ctx): return None

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
asyncio.run(Coordinator("abuse", 1, IdleBackend(), "", machine, connect_timeout=3600).run())
"""


class ServerProcess:
    """A relay or coordinator subprocess; ``port`` once it printed ``listening``'s match.

    ``src`` is the ``python/`` directory it runs from (another checkout's, for a comparison).
    """

    def __init__(self, argv: list[str], listening: str, src: Path = PYTHON_SRC) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
        self.out = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=self.out, text=True)
        self.port = 0
        deadline = time.monotonic() + 60
        while not self.port and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
            if m := re.search(listening, self.output()):
                self.port = int(m.group(1))
        if not self.port:
            self.stop()
            raise RuntimeError(f"server did not start listening: {self.output()[-2000:]}")

    def output(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def relay_process(keys: Path, *extra: str, src: Path = PYTHON_SRC) -> ServerProcess:
    """``excamera relay`` on 127.0.0.1 with ``genkeys`` output from ``keys``."""
    return ServerProcess([sys.executable, "-c", CLI, "relay", "-t", "0", "--host", "127.0.0.1",
                          "-c", str(keys / "ca_cert.pem"), "-s", str(keys / "server_cert.pem"),
                          "-k", str(keys / "server_key.pem"), *extra],
                         r"listening on 127\.0\.0\.1:(\d+)", src)


def coordinator_process(src: Path = PYTHON_SRC) -> ServerProcess:
    return ServerProcess([sys.executable, "-c", IDLE_COORDINATOR],
                         r"coordinator on 127\.0\.0\.1:(\d+)", src)


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def flood(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections from 127.0.0.2 that never start TLS."""
    raise_nofile(count + 512)
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has closed (EOF or reset)."""
    closed = 0
    for s in socks:
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed
