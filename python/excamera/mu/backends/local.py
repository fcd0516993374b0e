"""LocalBackend: each worker is a ``python -m excamera.mu.worker`` subprocess on this machine.

The payload goes to the child's stdin, exactly as a Lambda backend would send it as its event.
Each child gets its own session (process group) and its own TMPDIR under a backend-owned root,
so that even a worker killed with SIGKILL (which cannot clean up after itself) leaves neither
orphaned children nor temporary files: the backend kills the group and removes the directory.
Stderr is read by one asyncio task per child into a bounded buffer (optionally also a file), so
the coordinator can quote a lost worker's last words without holding unbounded output.

With ``worker_processes=K`` workers are not processes of their own but asyncio tasks in K
long-lived *worker hosts* (:mod:`excamera.mu.workerhost`): each launch goes, as a JSON line
with the same payload, to the host with the fewest workers, and a kill cancels that worker's
task. The runtime, TLS, protocol and relay are the same; what changes is the cost of a worker
(no Python start-up and imports per worker, no process: thousands fit on one machine) and that
a worker's CPU time is its host's, so the job's cost is the hosts'. The command line and the
API (:meth:`LocalBackend.from_options`) start one host per core unless told otherwise
(``--worker-processes 0``: a process per worker, as a Lambda or Ray worker runs one chunk);
the constructor's default stays a process per worker.

Since every worker runs on this machine, the backend gives them all (on the worker's or the
host's command line, ``--local-dir``, never in the launch payload) a directory of their own to
share, private to this user and removed with the backend: ``OpContext.local_dir``, through
which a pipeline may hand bulk bytes to a peer without the relay (``pipelines/xcenc/handoff``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
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
# Worker hosts are processes: a bound keeps a typo from forking thousands.
MAX_WORKER_PROCESSES = 1024

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


async def _keep_tail(stream: asyncio.StreamReader, buf: bytearray, keep: int,
                     copy_to: Path | None) -> None:
    """Read ``stream`` to its end, keeping its last ``keep`` bytes in ``buf`` (all of it in
    ``copy_to`` too, when given)."""
    sink = open(copy_to, "ab") if copy_to else None  # noqa: SIM115
    try:
        while chunk := await stream.read(4096):
            buf += chunk
            if len(buf) > keep:
                del buf[: len(buf) - keep]
            if sink:
                sink.write(chunk)
                sink.flush()
    finally:
        if sink:
            sink.close()


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
        await _keep_tail(self.proc.stderr, self._buf, self._keep, self._stderr_file)

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


class _Host:
    """One worker host process and the workers it runs, by slot."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process, tmpdir: Path,
                 stderr_file: Path | None, keep: int) -> None:
        self.index = index
        self.proc = proc
        self.tmpdir = tmpdir
        self.workers: dict[int, HostedWorker] = {}
        self._stderr = bytearray()
        self._keep = keep
        self._stderr_file = stderr_file
        self._pumps = [asyncio.create_task(self._read_events()),
                       asyncio.create_task(self._read_stderr())]

    @property
    def live(self) -> int:
        return len(self.workers)

    def send(self, obj: dict[str, Any]) -> bool:
        return self.send_line(json.dumps(obj))

    def send_line(self, line: str) -> bool:
        """One JSON line to the host; False if it is not running."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.proc.returncode is not None:
            return False
        try:
            stdin.write((line + "\n").encode())
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def drain(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()

    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    msg = json.loads(line)
                    worker = self.workers.pop(int(msg["exited"]))
                except (ValueError, KeyError, TypeError):
                    continue  # not an exit of a worker this host still runs
                worker._ended(int(msg.get("code", 1)), str(msg.get("tail", "")))
        finally:
            code = await self.proc.wait()
            # Whatever the host took down with it is lost; say so with the host's own words.
            last = bytes(self._stderr[-2048:]).decode("utf-8", "replace")
            for worker in list(self.workers.values()):
                worker._ended(code if code else 1,
                              f"worker host {self.index} (pid {self.proc.pid}) exited with "
                              f"code {code}\n{last}")
            self.workers.clear()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        await _keep_tail(self.proc.stderr, self._stderr, self._keep, self._stderr_file)

    async def stop(self, grace: float) -> None:
        """End of input: the host ends its workers and exits; killed after ``grace`` s."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # and any child a worker left
        await self.proc.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self.tmpdir, True)


class HostedWorker(WorkerProcess):
    """A worker running as a task in a worker host."""

    def __init__(self, worker_id: int, host: _Host, slot: int,
                 stderr_file: Path | None) -> None:
        self.worker_id = worker_id
        self.host = host
        self.slot = slot
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._tail = ""
        self._stderr_file = stderr_file

    def _ended(self, code: int, tail: str) -> None:
        if self._exit.done():
            return
        self._tail = tail
        if self._stderr_file is not None:
            with contextlib.suppress(OSError):
                self._stderr_file.write_text(tail + "\n")
        self._exit.set_result(code)

    def alive(self) -> bool:
        return not self._exit.done()

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exit)

    async def kill(self) -> None:
        if self.alive() and self.host.send({"kill": self.slot}):
            await self.host.drain()
        await self.wait()

    def stderr_tail(self) -> str:
        return self._tail


def default_worker_processes() -> int:
    """Worker hosts when the command line or the API names none: one per core, since a host
    runs its workers' Python on one core (the codec and vpxenc run beside it)."""
    return min(os.cpu_count() or 1, MAX_WORKER_PROCESSES)


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
    ``worker_processes``: run the workers as tasks in this many worker hosts (0: a process
    per worker); ``host_args``: extra command-line options for each host.
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
        worker_processes: int = 0,
        host_args: list[str] | None = None,
    ) -> None:
        if not 0 <= worker_processes <= MAX_WORKER_PROCESSES:
            raise ValueError(f"worker processes must be 0..{MAX_WORKER_PROCESSES}, "
                             f"not {worker_processes}")
        self.python = python
        self._own_root = tmp_root is None
        self.tmp_root = Path(tmp_root or tempfile.mkdtemp(prefix="mu-local-"))
        # Every worker runs on this machine: they share a directory for bulk hand-offs
        # (OpContext.local_dir), this backend's own (0700), made at the first launch and
        # removed on close.
        self.local_dir: Path | None = None
        # The worker command line; tests substitute one that never connects.
        self.command = command
        self.stderr_dir = stderr_dir
        self.stderr_keep = stderr_keep
        self.env = env
        self.processes: list[LocalProcess] = []
        # Every worker is a child of this process and is reaped by it, and each worker waits
        # for its own children (vpxenc), so the growth of RUSAGE_CHILDREN over the job is the
        # CPU time of all workers, lost ones included (worker hosts count once they exit).
        self._children_cpu0 = _children_cpu()
        self.worker_processes = worker_processes
        self.host_args = list(host_args or [])
        self.hosts: list[_Host] = []
        self._hosts_lock = asyncio.Lock()
        self._slots = itertools.count()
        self._storage_url = ""

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--stderr-dir", type=Path, default=None,
                           help="also keep each worker's full stderr in this directory")
        group.add_argument("--worker-processes", type=int, default=None, metavar="K",
                           help="run the workers as asyncio tasks in K long-lived processes "
                           f"(default: one per core, {default_worker_processes()} here); 0 "
                           "runs each worker as a process of its own")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LocalBackend:
        from ...argcheck import check_int

        stderr_dir = options.get("stderr_dir")
        k = options.get("worker_processes")
        if k is None:
            k = default_worker_processes()
        check_int("worker_processes", k, minimum=0, maximum=MAX_WORKER_PROCESSES)
        return cls(stderr_dir=None if stderr_dir is None else Path(stderr_dir),
                   worker_processes=k)

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

    async def _start_hosts(self) -> None:
        """Start the hosts at the first launch, whose payload says where storage is (the
        hosts' environment carries S3's variables only for S3 storage, as a worker's does)."""
        async with self._hosts_lock:
            while len(self.hosts) < self.worker_processes:
                i = len(self.hosts)
                tmpdir = self.tmp_root / f"host-{i}"
                tmpdir.mkdir(parents=True, exist_ok=True)
                stderr_file = None
                if self.stderr_dir is not None:
                    self.stderr_dir.mkdir(parents=True, exist_ok=True)
                    stderr_file = self.stderr_dir / f"host-{i}.stderr"
                proc = await asyncio.create_subprocess_exec(
                    self.python, "-m", "excamera.mu.workerhost", "--local-dir",
                    str(self.local_dir), *self.host_args,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=self._child_env(tmpdir, self._storage_url),
                    start_new_session=True,
                    limit=1 << 20,
                )
                self.hosts.append(_Host(i, proc, tmpdir, stderr_file, self.stderr_keep))

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        if self.local_dir is None:
            self.local_dir = Path(tempfile.mkdtemp(prefix="local-", dir=self.tmp_root))
        if self.worker_processes:
            return await self._launch_hosted(payload)
        tmpdir = Path(
            tempfile.mkdtemp(prefix=f"worker-{payload.worker_id}-", dir=self.tmp_root)
        )
        stderr_file = None
        if self.stderr_dir is not None:
            self.stderr_dir.mkdir(parents=True, exist_ok=True)
            stderr_file = self.stderr_dir / f"worker-{payload.worker_id}.stderr"
        proc = await asyncio.create_subprocess_exec(
            *(self.command or [self.python, "-m", "excamera.mu.worker", "--local-dir",
                               str(self.local_dir)]),
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

    async def _launch_hosted(self, payload: LaunchPayload) -> WorkerProcess:
        if not self._storage_url:
            self._storage_url = payload.storage_url
        await self._start_hosts()
        host = min(self.hosts, key=lambda h: (h.proc.returncode is not None, h.live))
        slot = next(self._slots)
        stderr_file = None
        if self.stderr_dir is not None:
            stderr_file = self.stderr_dir / f"worker-{payload.worker_id}.stderr"
        worker = HostedWorker(payload.worker_id, host, slot, stderr_file)
        host.workers[slot] = worker
        if not host.send_line(f'{{"launch": {slot}, "payload": {payload.to_json()}}}'):
            host.workers.pop(slot, None)
            worker._ended(1, f"worker host {host.index} is not running")
        else:
            await host.drain()
        return worker

    async def close(self) -> None:
        await asyncio.gather(*(h.stop(5.0) for h in self.hosts), return_exceptions=True)
        await asyncio.gather(*(p.kill() for p in self.processes), return_exceptions=True)
        # hand-offs nobody read (a receiver that failed first) go with the job
        if self.local_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.local_dir, True)
        if self._own_root:
            await asyncio.to_thread(shutil.rmtree, self.tmp_root, True)
