"""LocalBackend: each worker is a ``python -m excamera.mu.worker`` subprocess on this machine.

The payload goes to the child's stdin, exactly as a Lambda backend would send it as its event.
Each child gets its own session (process group) and its own TMPDIR under a backend-owned root,
so that even a worker killed with SIGKILL (which cannot clean up after itself) leaves neither
orphaned children nor temporary files: the backend kills the group and removes the directory.
Stderr is read by one asyncio task per child into a bounded buffer (optionally also a file), so
the coordinator can quote a lost worker's last words without holding unbounded output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import excamera

from ..payload import LaunchPayload
from .base import Backend, Cost, WorkerProcess

STDERR_KEEP = 16 * 1024

# The environment a worker gets is built from these names only, never the coordinator's whole
# environment, so an unrelated secret (a token, a password in some variable) does not reach
# code that runs jobs' operations and tools. Each name and why a worker needs it:
WORKER_ENV = (
    "PATH",  # the tools a worker runs by name: vpxenc, vpxdec, ffmpeg
    "HOME",  # tools' and Python's per-user files; botocore finds ~/.aws through it
    "LANG", "LANGUAGE",  # (and every LC_* below) the text encoding of tools' output
    "TZ",  # log timestamps in the coordinator's time zone
    "LD_LIBRARY_PATH",  # shared libraries of tools installed outside the system prefix
    "SSL_CERT_FILE", "SSL_CERT_DIR",  # a site's trust store for HTTPS (to S3); no secret
    "PYTHONHOME",  # the interpreter's own files when it was started with one
    "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "PYTHONIOENCODING",  # as the user runs Python
)
WORKER_ENV_PREFIXES = ("LC_",)
# What botocore reads to reach S3: credentials, their files and providers, region, endpoint,
# trust store, proxy. They go to a local worker only when the job's storage is S3. A local
# worker is a child process of the same user on the same machine, able to read ~/.aws itself,
# so handing it the user's credentials moves no secret anywhere it was not already; the rule
# that no long-lived secret leaves the coordinator is about workers elsewhere (Lambda, Ray),
# whose backends must not forward any of these.
S3_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)


def worker_environment(source: Mapping[str, str], storage_url: str) -> dict[str, str]:
    """The allowed part of ``source`` for a worker whose job stores its data at ``storage_url``."""
    names = set(WORKER_ENV)
    if storage_url.startswith("s3://"):
        names.update(S3_ENV)
    return {k: v for k, v in source.items()
            if k in names or k.startswith(WORKER_ENV_PREFIXES)}


class LocalProcess(WorkerProcess):
    def __init__(
        self,
        worker_id: int,
        proc: asyncio.subprocess.Process,
        tmpdir: Path,
        stderr_file: Path | None,
        keep: int,
    ) -> None:
        self.worker_id = worker_id
        self.proc = proc
        self.tmpdir = tmpdir
        self._keep = keep
        self._buf = bytearray()
        self._stderr_file = stderr_file
        self._pump = asyncio.create_task(self._read_stderr())
        self._done = asyncio.create_task(self._reap())

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        sink = open(self._stderr_file, "ab") if self._stderr_file else None  # noqa: SIM115
        try:
            while chunk := await self.proc.stderr.read(4096):
                self._buf += chunk
                if len(self._buf) > self._keep:
                    del self._buf[: len(self._buf) - self._keep]
                if sink:
                    sink.write(chunk)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    async def _reap(self) -> int:
        code = await self.proc.wait()
        # Orphans of a killed worker (a running encoder, say) share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), 2.0)
        await asyncio.to_thread(shutil.rmtree, self.tmpdir, True)
        return code

    def alive(self) -> bool:
        return not self._done.done()

    async def wait(self) -> int | None:
        return await asyncio.shield(self._done)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.wait()

    def stderr_tail(self) -> str:
        return bytes(self._buf).decode("utf-8", "replace")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class LocalBackend(Backend):
    """Run workers as local subprocesses.

    ``tmp_root``: where per-worker TMPDIRs go (a fresh directory by default, removed on close).
    ``command``: the worker's argv (``python -m excamera.mu.worker`` by default).
    ``stderr_dir``: if given, each worker's full stderr is also written to
    ``worker-<id>.stderr`` there.
    ``env``: the environment to pass through :func:`worker_environment` (``os.environ``).
    """

    name = "local"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        tmp_root: Path | None = None,
        stderr_dir: Path | None = None,
        stderr_keep: int = STDERR_KEEP,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.python = python
        # The worker command line; tests substitute one that never connects.
        self.command = command or [python, "-m", "excamera.mu.worker"]
        self._own_root = tmp_root is None
        self.tmp_root = Path(tmp_root or tempfile.mkdtemp(prefix="mu-local-"))
        self.stderr_dir = stderr_dir
        self.stderr_keep = stderr_keep
        self.env = env
        self.processes: list[LocalProcess] = []
        # Every worker is a child of this process and is reaped by it, and each worker waits
        # for its own children (vpxenc), so the growth of RUSAGE_CHILDREN over the job is the
        # CPU time of all workers, lost ones included.
        self._children_cpu0 = _children_cpu()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--stderr-dir", type=Path, default=None,
                           help="also keep each worker's full stderr in this directory")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LocalBackend:
        stderr_dir = options.get("stderr_dir")
        return cls(stderr_dir=None if stderr_dir is None else Path(stderr_dir))

    def cost(self, worker_cpu_s: float | None) -> Cost:
        return Cost(self.name, worker_cpu_s=round(_children_cpu() - self._children_cpu0, 3))

    def _child_env(self, tmpdir: Path, storage_url: str) -> dict[str, str]:
        env = worker_environment(os.environ if self.env is None else self.env, storage_url)
        env["TMPDIR"] = str(tmpdir)
        # The child must import the same excamera package as this coordinator.
        pkg_root = str(Path(excamera.__file__).resolve().parent.parent)
        paths = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = pkg_root + (os.pathsep + paths if paths else "")
        return env

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(
            tempfile.mkdtemp(prefix=f"worker-{payload.worker_id}-", dir=self.tmp_root)
        )
        stderr_file = None
        if self.stderr_dir is not None:
            self.stderr_dir.mkdir(parents=True, exist_ok=True)
            stderr_file = self.stderr_dir / f"worker-{payload.worker_id}.stderr"
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self._child_env(tmpdir, payload.storage_url),
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(payload.to_json().encode())
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        wp = LocalProcess(payload.worker_id, proc, tmpdir, stderr_file, self.stderr_keep)
        self.processes.append(wp)
        return wp

    async def close(self) -> None:
        await asyncio.gather(*(p.kill() for p in self.processes), return_exceptions=True)
        if self._own_root:
            await asyncio.to_thread(shutil.rmtree, self.tmp_root, True)
