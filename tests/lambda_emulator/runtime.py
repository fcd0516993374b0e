"""Execution environments: one real ``python3.12 -m awslambdaric HANDLER`` process each.

An environment is what Lambda calls a sandbox: the function's code unpacked (the task root,
``/var/task`` on AWS), a private ``/tmp``, an environment block built from scratch, and the
runtime process, which pulls invocations from this environment's own Runtime API (served here,
on its own 127.0.0.1 port, at ``AWS_LAMBDA_RUNTIME_API``) and posts results back. Lambda's
images are stood in for by directories the emulator prepares once (:func:`ensure_runtime`):

- ``/var/lang``: a venv of pyenv's Python 3.12 (empty site-packages, so nothing installed into
  that interpreter can leak into a function);
- ``/var/runtime``: awslambdaric and its two dependencies at pinned versions, from PyPI;
- ``/opt``: an empty directory (layers are not emulated).

Not emulated (documented in the package docstring too): memory and CPU limits (MemorySize is
reported and passed on, never enforced), a read-only task root (the runtime runs with ``-B`` so
Python writes no bytecode there, as it cannot on AWS), the sandbox user (processes run as the
emulator's user) and a private root filesystem (the host's /usr/bin and libraries stay visible;
``/tmp`` is private only through TMPDIR).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import io
import json
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .httpio import HttpServer, Request, Response

REPO = Path(__file__).resolve().parents[2]

# awslambdaric and the exact versions of what it needs, so every run uses the same client.
RIC_REQUIREMENTS = ("awslambdaric==4.2.2", "simplejson==4.3.0", "snapshot-restore-py==1.0.0")
PYTHON_VERSION = "3.12"

SYNC_RESPONSE_LIMIT = 6 * 1024 * 1024  # Lambda's synchronous response quota (6 MB)
UNZIPPED_LIMIT = 262_144_000  # 250 MB, Lambda's unzipped deployment package quota
LOG_TAIL_BYTES = 4096  # X-Amz-Log-Result carries the last 4 KB
LOG_KEEP_BYTES = 64 * 1024  # per invocation, in memory; the full log goes to the stream file
FUNCTION_NOFILE = 1024  # Lambda's per-environment file descriptor quota

# Environment variables Lambda sets itself; CreateFunction refuses them in Environment.Variables.
RESERVED_VARIABLES = frozenset(
    """_HANDLER _X_AMZN_TRACE_ID AWS_DEFAULT_REGION AWS_REGION AWS_EXECUTION_ENV
    AWS_LAMBDA_FUNCTION_NAME AWS_LAMBDA_FUNCTION_MEMORY_SIZE AWS_LAMBDA_FUNCTION_VERSION
    AWS_LAMBDA_INITIALIZATION_TYPE AWS_LAMBDA_LOG_GROUP_NAME AWS_LAMBDA_LOG_STREAM_NAME
    AWS_ACCESS_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN TZ
    LAMBDA_TASK_ROOT LAMBDA_RUNTIME_DIR AWS_LAMBDA_RUNTIME_API""".split()
)


class PrerequisiteError(Exception):
    """Python 3.12 or awslambdaric cannot be had; the message says which and how to fix it."""


class CodeError(Exception):
    """A deployment package Lambda would refuse; the message is the one to return."""


# --------------------------------------------------------------------------- the runtime image


@dataclass(frozen=True)
class Layout:
    python: Path  # /var/lang/bin/python3.12
    lang: Path  # /var/lang
    runtime: Path  # /var/runtime (LAMBDA_RUNTIME_DIR)
    opt: Path  # /opt
    setpriv: Path  # util-linux's, to start runtimes with a parent-death signal


def find_python312() -> Path:
    """``EXCAMERA_LAMBDA_PYTHON`` if set, else pyenv's newest 3.12."""
    explicit = os.environ.get("EXCAMERA_LAMBDA_PYTHON")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return Path(explicit)
        raise PrerequisiteError(f"EXCAMERA_LAMBDA_PYTHON={explicit} is not an executable")
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(
        root.glob(f"versions/{PYTHON_VERSION}.*/bin/python{PYTHON_VERSION}"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])],
    )
    for path in found[::-1]:
        if os.access(path, os.X_OK):
            return path
    raise PrerequisiteError(
        f"Python {PYTHON_VERSION} not found in {root}/versions (install it with "
        f"`pyenv install {PYTHON_VERSION}`, or set EXCAMERA_LAMBDA_PYTHON to a python"
        f"{PYTHON_VERSION})"
    )


def ensure_runtime(cache: Path | None = None) -> Layout:
    """Prepare (once, under a lock) and return the stand-ins for /var/lang, /var/runtime, /opt."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PrerequisiteError("setpriv not found (it is in util-linux: apt-get install "
                                "util-linux)")
    python = find_python312()
    version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    if not version.startswith(PYTHON_VERSION + "."):
        raise PrerequisiteError(f"{python} is Python {version or '?'}, not {PYTHON_VERSION}")
    cache = cache or Path(os.environ.get("EXCAMERA_LAMBDA_CACHE") or REPO / ".cache" / "lambda")
    ric = RIC_REQUIREMENTS[0].replace("==", "-")
    home = cache / f"python{version}-{ric}"
    layout = Layout(home / "lang" / "bin" / "python3", home / "lang", home / "runtime",
                    home / "opt", Path(setpriv))
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "ready").exists():
            return layout
        work = cache / f".build-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        steps = [
            [str(python), "-m", "venv", "--without-pip", str(work / "lang")],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-input", "--only-binary=:all:", "--no-deps", "--target",
             str(work / "runtime"), *RIC_REQUIREMENTS],
        ]
        # The caller's Python settings (a venv's PYTHONPATH, say) must not steer pip.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                shutil.rmtree(work, ignore_errors=True)
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise PrerequisiteError(
                    f"preparing the emulated Lambda runtime failed: {' '.join(cmd[:4])}...: {last}"
                )
        (work / "opt").mkdir()
        (work / "ready").write_text(" ".join(RIC_REQUIREMENTS) + "\n")
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
    return layout


# --------------------------------------------------------------------------- deployment packages


def unpack_zip(data: bytes, dest: Path) -> int:
    """Unpack a deployment package with its Unix modes and symlinks; returns the unzipped size.

    ``ZipFile.extractall`` drops the modes Lambda keeps (so ``bin/`` tools would lose their
    execute bit) and follows no symlinks, hence this loop.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise CodeError(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        ) from exc
    total = sum(info.file_size for info in infos)
    if total > UNZIPPED_LIMIT:
        raise CodeError(f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes")
    dir_modes = []
    try:
        for info in infos:
            parts = PurePosixPath(info.filename).parts
            if not parts or info.filename.startswith("/") or ".." in parts:
                raise CodeError(f"Invalid path in deployment package: {info.filename!r}")
            target = dest.joinpath(*parts)
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                if mode & 0o777:
                    dir_modes.append((target, mode & 0o7777))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                os.symlink(archive.read(info).decode(), target)
                continue
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            if mode & 0o777:
                os.chmod(target, mode & 0o7777)
        for target, mode in dir_modes:
            os.chmod(target, mode)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, UnicodeDecodeError, EOFError) as exc:
        raise CodeError(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        ) from exc
    return total


# --------------------------------------------------------------------------- invocations


@dataclass(frozen=True)
class FunctionSpec:
    """What an environment was created for; a later update makes new environments."""

    name: str
    region: str
    arn: str
    handler: str
    memory_mb: int
    timeout_s: int
    variables: dict
    task_root: Path
    generation: int


@dataclass
class Outcome:
    status: str  # ok | error | timeout | crash | init_error
    body: bytes
    error_type: str | None = None

    @property
    def function_error(self) -> bool:
        return self.status != "ok"


def failure(status: str, error_type: str, message: str) -> Outcome:
    """An outcome whose body is Lambda's error JSON for errors the runtime did not post."""
    body = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return Outcome(status, body, error_type)


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    invoked_arn: str
    client_context: str | None = None
    fault: dict | None = None  # an injected "crash" or "timeout", with its after_s
    cold: bool = False
    init_ms: float = 0.0
    queued_ms: float = 0.0  # a cold start's wait for a start slot (emulator scheduling)
    duration_ms: float = 0.0
    max_memory_mb: int = 0
    started_at: float = 0.0  # epoch seconds, when the runtime received the event
    log: bytearray = field(default_factory=bytearray)
    done: asyncio.Future | None = None
    _t0: float = 0.0

    def billed_ms(self) -> int:
        # INIT is billed with the first invocation (since 2025-08-01), rounded up to 1 ms.
        return math.ceil(self.duration_ms + (self.init_ms if self.cold else 0.0))

    def log_tail(self) -> str:
        return base64.b64encode(bytes(self.log[-LOG_TAIL_BYTES:])).decode()


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return "signal: " + (signal.strsignal(-returncode) or str(-returncode)).lower()
    return f"exit status {returncode}"


@dataclass
class Host:
    """What every environment shares: the image, the emulator's settings and its directories."""

    layout: Layout
    role_env: dict
    init_timeout_s: float
    env_root: Path
    log_root: Path


class Environment:
    """One execution environment; ``done`` futures of its invocations carry the outcomes."""

    def __init__(self, env_id: str, spec: FunctionSpec, host: Host, on_dead):
        self.id = env_id
        self.spec = spec
        self._host = host
        self._on_dead = on_dead
        self._loop = asyncio.get_running_loop()
        self.state = "init"  # init | idle | busy | dead
        self.current: Invocation | None = None
        self.doomed = False  # retired: killed once its invocation ends
        self.init_ms = 0.0
        self.initialised = self._loop.create_future()  # done at the first /next or at exit
        self.proc: subprocess.Popen | None = None
        self._api = HttpServer(self._runtime_api, max_body=4 * SYNC_RESPONSE_LIMIT)
        self._waiter: asyncio.Future | None = None
        self._init_error: bytes | None = None
        self._init_timer = None
        self._deadline = None
        self._spawned = 0.0
        self._hwm_mb = 0
        self._log_fd = -1
        self._pidfd = -1
        self._dir = host.env_root / env_id
        stamp = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream = f"{stamp}/[$LATEST]{uuid.uuid4().hex}"
        log_dir = host.log_root / spec.region / spec.name
        log_dir.mkdir(parents=True, exist_ok=True)
        self._logfile = open(log_dir / f"{env_id}.log", "ab", buffering=0)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, first: Invocation) -> None:
        """Cold start: spawn the runtime; ``first`` is handed over when it asks for work."""
        self.current = first
        first.cold = True
        self._log(
            f"INIT_START Runtime Version: python:{PYTHON_VERSION} (emulated, awslambdaric "
            f"{RIC_REQUIREMENTS[0].split('==')[1]})\n".encode()
        )
        port = await self._api.start()
        tmp = self._dir / "tmp"
        tmp.mkdir(parents=True)
        env = self._environment(port, tmp)
        layout = self._host.layout
        read_fd, write_fd = os.pipe()
        self._spawned = time.monotonic()
        try:
            # setpriv makes the runtime die with the emulator even if the emulator is
            # SIGKILLed (the group kill is the normal path); a preexec_fn would do the same
            # but costs a full fork of the emulator (16 ms, against 2 ms for this vfork).
            # -B: AWS's task root is read-only, so no bytecode gets written into it there.
            self.proc = subprocess.Popen(
                [str(layout.setpriv), "--pdeathsig", "KILL", "--", str(layout.python), "-B",
                 "-m", "awslambdaric", self.spec.handler],
                cwd=self.spec.task_root, env=env, stdin=subprocess.DEVNULL,
                stdout=write_fd, stderr=write_fd, start_new_session=True,
            )
            # Lambda's descriptor quota, not the emulator's raised limit (set just after the
            # exec; the runtime has a handful of descriptors open by then).
            with contextlib.suppress(ProcessLookupError):  # already gone: _on_exit says so
                resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE,
                                 (FUNCTION_NOFILE, FUNCTION_NOFILE))
        except OSError:
            os.close(read_fd)
            self.state = "dead"
            self.initialised.set_result(False)
            self._api.close()
            self._logfile.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._log_fd = read_fd
        self._loop.add_reader(read_fd, self._drain_logs)
        self._pidfd = os.pidfd_open(self.proc.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._init_timer = self._loop.call_later(self._host.init_timeout_s, self._init_timed_out)

    def _environment(self, port: int, tmp: Path) -> dict[str, str]:
        """The runtime's whole environment: nothing is inherited from the emulator's."""
        spec, layout = self.spec, self._host.layout
        task, rt, opt, lang = spec.task_root, layout.runtime, layout.opt, layout.lang
        env = {
            # Unreserved: a function's own variables may replace these, as on AWS.
            "PATH": f"{lang}/bin:/usr/local/bin:/usr/bin/:/bin:{opt}/bin",
            "LD_LIBRARY_PATH": f"{lang}/lib:/lib64:/usr/lib64:{rt}:{rt}/lib:{task}:{task}/lib:"
            f"{opt}/lib",
            "LANG": "en_US.UTF-8",
            "PYTHONPATH": str(rt),
            "TMPDIR": str(tmp),  # the emulator's stand-in for a private /tmp
        }
        env.update(spec.variables)
        env.update(
            {
                "_HANDLER": spec.handler,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",
                "AWS_REGION": spec.region,
                "AWS_DEFAULT_REGION": spec.region,
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
                "LAMBDA_TASK_ROOT": str(task),
                "LAMBDA_RUNTIME_DIR": str(rt),
                "TZ": ":UTC",
            }
        )
        env.update(self._host.role_env)  # the execution role's credentials (and endpoints)
        return env

    def assign(self, invocation: Invocation) -> None:
        """Warm start: hand ``invocation`` to this idle environment."""
        assert self.state == "idle" and self.current is None
        self.current = invocation
        self.state = "busy"
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def kill(self) -> None:
        """Kill the whole process group; the exit handler finishes the bookkeeping."""
        self.doomed = True
        if self.proc is not None and self.state != "dead":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def sample_rss_mb(self) -> float:
        return _proc_status_kb(self.pid, "VmRSS") / 1024 if self.state != "dead" else 0.0

    # ------------------------------------------------------------------ Runtime API

    async def _runtime_api(self, req: Request) -> Response:
        path = req.path
        if req.method == "GET" and path == "/2018-06-01/runtime/invocation/next":
            return await self._next()
        match = re.fullmatch(r"/2018-06-01/runtime/invocation/([^/]+)/(response|error)", path)
        if req.method == "POST" and match:
            return self._result(match[1], match[2], req)
        if req.method == "POST" and path == "/2018-06-01/runtime/init/error":
            self._init_error = req.body
            return Response.json(202, {"status": "OK"})
        return Response.json(404, {"errorMessage": f"no route {req.method} {path}",
                                   "errorType": "InvalidRequest"})

    async def _next(self) -> Response:
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
            self.init_ms = (time.monotonic() - self._spawned) * 1000
            if self.current is not None:
                self.current.init_ms = self.init_ms
            self.initialised.set_result(True)
        while self.current is None or self.current.started_at:
            if self.state == "dead":
                return Response.json(500, {"errorMessage": "environment is shutting down",
                                           "errorType": "Runtime.ExitError"})
            if self.current is None:
                self.state = "idle"
            self._waiter = self._loop.create_future()
            await self._waiter
        inv = self.current
        self.state = "busy"
        inv.started_at = time.time()
        inv._t0 = time.monotonic()
        self._hwm_mb = max(self._hwm_mb, _proc_status_kb(self.pid, "VmHWM") // 1024)
        self._log(f"START RequestId: {inv.request_id} Version: $LATEST\n".encode())
        timeout = self.spec.timeout_s
        self._deadline = self._loop.call_later(timeout, self._timed_out, inv)
        self._inject(inv)
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int((inv.started_at + timeout) * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": inv.invoked_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(inv.started_at):08x}-"
            f"{uuid.uuid4().hex[:24]};Sampled=0",
        }
        if inv.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        return Response(200, inv.payload, headers)

    def _inject(self, inv: Invocation) -> None:
        """An injected crash kills the runtime; a timeout freezes it (SIGSTOP) so that the
        real deadline timer ends it. With after_s 0 this happens before the event is sent."""
        if inv.fault is None:
            return
        sig = signal.SIGKILL if inv.fault["kind"] == "crash" else signal.SIGSTOP
        delay = inv.fault.get("after_s") or 0.0
        if inv.fault.get("after_log"):
            return  # _log fires it
        if delay <= 0:
            self._signal_if_current(inv, sig)
        else:
            self._loop.call_later(delay, self._signal_if_current, inv, sig)

    def _signal_if_current(self, inv: Invocation, sig: int) -> None:
        if self.current is inv and self.state == "busy":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def _result(self, request_id: str, kind: str, req: Request) -> Response:
        inv = self.current
        if inv is None or inv.request_id != request_id or not inv.started_at:
            return Response.json(400, {"errorMessage": "Invalid request ID",
                                       "errorType": "InvalidRequestID"})
        if kind == "response":
            if len(req.body) > SYNC_RESPONSE_LIMIT:
                # awslambdaric dies of the 413, so this environment takes no more work.
                self.doomed = True
                self._finish(inv, failure(
                    "error", "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(req.body)} bytes) exceeded maximum allowed "
                    f"payload size ({SYNC_RESPONSE_LIMIT} bytes).",
                ))
                return Response.json(413, {"errorMessage": "Payload Too Large",
                                           "errorType": "RequestEntityTooLarge"})
            self._finish(inv, Outcome("ok", req.body))
        else:
            error_type = req.headers.get("lambda-runtime-function-error-type")
            try:
                error_type = json.loads(req.body).get("errorType") or error_type
            except (ValueError, AttributeError):
                pass
            self._finish(inv, Outcome("error", req.body, error_type or "Unhandled"))
        return Response.json(202, {"status": "OK"})

    # ------------------------------------------------------------------ endings

    def _finish(self, inv: Invocation, outcome: Outcome) -> None:
        if inv.done.done():
            return
        self._drain_logs()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if inv._t0:
            inv.duration_ms = (time.monotonic() - inv._t0) * 1000
        if self.state != "dead":
            self._hwm_mb = max(self._hwm_mb, _proc_status_kb(self.pid, "VmHWM") // 1024)
        inv.max_memory_mb = self._hwm_mb
        report = (
            f"END RequestId: {inv.request_id}\n"
            f"REPORT RequestId: {inv.request_id}\tDuration: {inv.duration_ms:.2f} ms\t"
            f"Billed Duration: {inv.billed_ms()} ms\tMemory Size: {self.spec.memory_mb} MB\t"
            f"Max Memory Used: {inv.max_memory_mb} MB"
        )
        if inv.cold:
            report += f"\tInit Duration: {inv.init_ms:.2f} ms"
        if outcome.status == "timeout":
            report += "\tStatus: timeout"
        self._log((report + "\t(emulated)\n").encode())
        self.current = None
        if self.state != "dead" and not self.doomed:
            self.state = "idle"
        inv.done.set_result(outcome)

    def _timed_out(self, inv: Invocation) -> None:
        if self.current is not inv or inv.done.done():
            return
        seconds = f"{self.spec.timeout_s:.2f}"
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        stamp += f".{int(now % 1 * 1000):03d}Z"
        self._drain_logs()
        self._log(f"{stamp} {inv.request_id} Task timed out after {seconds} seconds\n".encode())
        self.kill()
        self._finish(inv, failure(
            "timeout", "Sandbox.Timedout",
            f"RequestId: {inv.request_id} Error: Task timed out after {seconds} seconds",
        ))

    def _init_timed_out(self) -> None:
        self._init_timer = None
        inv = self.current
        self._log(f"INIT phase timed out after {self._host.init_timeout_s:.2f} seconds "
                  "(emulated)\n".encode())
        self.kill()
        if inv is not None:
            self._finish(inv, failure(
                "timeout", "Sandbox.Timedout",
                f"RequestId: {inv.request_id} Error: INIT phase timed out after "
                f"{self._host.init_timeout_s:.2f} seconds",
            ))

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        returncode = self.proc.wait()
        self._drain_logs()
        initialising = self._init_timer is not None
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        self.state = "dead"
        if not self.initialised.done():
            self.initialised.set_result(False)
        inv = self.current
        if inv is not None and not inv.done.done():
            if initialising and self._init_error is not None:
                try:
                    error_type = json.loads(self._init_error).get("errorType")
                except (ValueError, AttributeError):
                    error_type = None
                outcome = Outcome("init_error", self._init_error, error_type or "Runtime.Unknown")
            else:
                reason = ("Runtime exited without providing a reason" if returncode == 0
                          else f"Runtime exited with error: {_describe_exit(returncode)}")
                message = f"RequestId: {inv.request_id} Error: {reason}"
                self._log(message.encode() + b"\n")
                outcome = failure("crash", "Runtime.ExitError", message)
            self._finish(inv, outcome)
        with contextlib.suppress(ProcessLookupError):  # the handler's own children go too
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._api.close()
        self._close_log_pipe()
        self._logfile.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._on_dead(self)

    # ------------------------------------------------------------------ logs

    def _drain_logs(self) -> None:
        """Read what the runtime wrote so far (it flushes before posting a result)."""
        while self._log_fd >= 0:
            try:
                chunk = os.read(self._log_fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self._close_log_pipe()
                return
            self._log(chunk)

    def _close_log_pipe(self) -> None:
        if self._log_fd >= 0:
            self._loop.remove_reader(self._log_fd)
            os.close(self._log_fd)
            self._log_fd = -1

    def _log(self, data: bytes) -> None:
        if not data:
            return
        if not self._logfile.closed:
            self._logfile.write(data)
        inv = self.current
        if inv is not None:
            log = inv.log
            seen = len(log)
            log += data
            trigger = (inv.fault or {}).get("after_log")
            if trigger and inv.started_at:
                needle = trigger.encode()
                if log.find(needle, max(0, seen - len(needle))) >= 0:
                    inv.fault = dict(inv.fault, after_log=None)
                    sig = signal.SIGKILL if inv.fault["kind"] == "crash" else signal.SIGSTOP
                    self._signal_if_current(inv, sig)
            if len(log) > 2 * LOG_KEEP_BYTES:
                del log[:-LOG_KEEP_BYTES]


def _proc_status_kb(pid: int | None, field_name: str) -> int:
    if pid is None:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
