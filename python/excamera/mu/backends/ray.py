"""RayBackend: each worker is one Ray task on a running Ray cluster (``--backend ray``).

- **Cluster.** The coordinator is a Ray driver: it connects to ``--ray-address`` (or the
  cluster ``RAY_ADDRESS`` names, or the one ``ray start`` runs on this machine). Ray is an
  optional extra (``pip install 'excamera[ray]'``) and is imported only when this backend is
  built.
- **Code.** The workers run the wheel this checkout builds (``maturin build --release``, cached
  under the code identity), or the one ``--ray-wheel`` names, never whatever excamera a node
  has installed. It reaches the nodes through Ray's job-level ``runtime_env`` as ``py_modules``:
  the wheel's package and its ``.dist-info``, unpacked. A ``.whl`` entry would not do: Ray
  installs it with ``pip install --target``, which reinstalls every dependency from the package
  index (numpy, av, boto3, ...) on each node, and fails on a node without internet. The
  dependencies come from the nodes' own ``pip install 'excamera[ray]'``, and ``vpxenc`` must be
  on every node's PATH. Before anything is launched the unpacked wheel is checked against this
  coordinator's code identity; each worker's hello is checked again as for any remote worker.
- **Reservation.** ``prepare`` reserves the whole job at once: one placement group of one
  ``{"CPU": c}`` bundle per worker (and spare). ExCamera's workers wait for their neighbours'
  states, so a job that starts only some of them could wait forever; if the group is not placed
  within ``--ray-placement-timeout`` the job fails, naming the CPUs asked for and those the
  cluster has.
- **Workers.** One task per worker, named ``excamera-<job>-worker-<id>`` (Ray shows it as the
  process title ``ray::<name>``), running ``run_worker`` in the task's own process. Ray's own
  retries are off (``max_retries=0``): a Ray-level retry would restart a worker with a spent
  token, while the coordinator relaunches with a fresh one. Killing a worker force-cancels its
  task; the task's result (or Ray's error) gives the exit code, the log tail and the CPU time.
- **Addresses.** Workers dial the coordinator's advertised address. With ``--host 0.0.0.0`` and
  no ``--advertise`` this backend advertises the address Ray knows this node by; a coordinator
  on loopback is refused when the cluster has nodes that are not on this machine's loopback.
- **Cost.** Worker CPU-seconds as each task measured them (its process and the children it
  waited for), the CPU-seconds the placement group held, and how long tasks took to start.
- **Before connecting**, a ``--ray-address`` where nothing listens fails at once (ray.init
  would retry it for minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..payload import LaunchPayload
from .base import Backend, BackendError, Cost, WorkerProcess

DEFAULT_PLACEMENT_TIMEOUT = 60.0
#: What a task keeps of its worker's log for the coordinator's failure report.
LOG_TAIL = 4096
#: How long a force-cancelled task may take to be reported ended (Ray reports it in ms).
CANCEL_WAIT_S = 30.0
#: How long the head's address may take to accept a TCP connection before the job fails.
CONNECT_PROBE_S = 10.0
LOOPBACK = ("127.", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def import_ray() -> Any:
    """The ray module, or MissingDependency saying how to install it."""
    from ... import needs

    return needs.module("ray", "ray", "the ray backend")


# --- the code the workers run -----------------------------------------------------------------
# The wheel is built by excamera.wheel, read and identified by excamera.awslambda.build, which
# makes the Lambda package from the same wheel; this backend unpacks it for Ray instead.


def cache_root() -> Path:
    from ...awslambda import build

    return build.cache_root() / "ray"


def _build(staging: Path) -> Path:
    """This checkout's wheel, built into ``staging``."""
    from ...errors import CommandError
    from ...wheel import build_wheel, source_checkout

    repo = source_checkout()
    if repo is None:
        raise BackendError("excamera is not running from a source checkout, so it cannot "
                           "build the workers' wheel: give the wheel it was installed from "
                           "with --ray-wheel")
    try:
        return build_wheel(repo, staging)
    except CommandError as exc:
        raise BackendError(f"{exc} (or give a wheel with --ray-wheel)") from None


def _unpack(wheel: Path, dest: Path) -> dict[str, str]:
    """Write the wheel's package and .dist-info (without it a worker would report the version
    of whatever excamera its node has) under ``dest``; the code identity they report."""
    from ...awslambda import build
    from ...errors import CommandError

    try:
        entries = [e for e in build.wheel_entries(wheel)
                   if e.name.split("/", 1)[0] == "excamera"
                   or e.name.split("/", 1)[0].startswith("excamera-")]
        if not any(e.name.endswith(".dist-info/METADATA") for e in entries):
            raise CommandError(f"{wheel}: not an excamera wheel (no excamera-*.dist-info)")
        got = build.code_identity_of(entries)
    except CommandError as exc:
        raise BackendError(str(exc)) from None
    for e in entries:
        parts = Path(e.name).parts
        if Path(e.name).is_absolute() or ".." in parts:
            raise BackendError(f"{wheel}: entry {e.name!r} points outside the wheel")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(e.data)
        target.chmod(0o755 if e.executable else 0o644)
    return got


def shipped_code(wheel: Path | None = None) -> list[Path]:
    """The ``py_modules`` entries that carry this coordinator's code to the Ray workers: the
    package and its .dist-info, unpacked from ``wheel`` (by default this checkout's own,
    built once per code identity), kept under :func:`cache_root` with the identity they
    report, and checked against this coordinator's."""
    from ... import identity

    want = identity.code_identity()
    if wheel is not None:
        try:
            key = "wheel-" + hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]
        except OSError as exc:
            raise BackendError(f"--ray-wheel {wheel}: {exc.strerror}") from None
    else:
        key = "-".join(want[k] for k in ("version", "xc_build", "python"))
    entry = cache_root() / key
    if not (entry / "identity.json").is_file():
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=entry.parent))
        try:
            got = _unpack(wheel or _build(staging / "wheel"), staging / "unpacked")
            shutil.rmtree(staging / "wheel", ignore_errors=True)
            (staging / "identity.json").write_text(json.dumps(got))
            if entry.exists():  # never a half-written one (they appear by rename): stale
                shutil.rmtree(entry, ignore_errors=True)
            with contextlib.suppress(OSError):  # another coordinator filled it meanwhile
                os.rename(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    got = json.loads((entry / "identity.json").read_text())
    why = identity.mismatch(want, got)
    if why is not None:
        why = why.replace("the worker runs", "the wheel holds")
        if wheel is not None:
            raise BackendError(f"the workers' wheel is not this coordinator's code: {why}")
        # Built from this checkout, yet not what this process runs: the sources changed
        # since the extension was last built here. Drop the entry, which is not this key's.
        shutil.rmtree(entry, ignore_errors=True)
        raise BackendError(f"the workers' wheel is not this coordinator's code: {why}; the "
                           "checkout's sources differ from the extension this coordinator "
                           "loaded: rebuild it (make setup) and run again")
    unpacked = entry / "unpacked"
    info = sorted(unpacked.glob("excamera-*.dist-info"))
    return [unpacked / "excamera", *info[:1]]


# --- the task -------------------------------------------------------------------------------


class _Tail(logging.Handler):
    """Keeps the last ``limit`` characters of what the worker logged."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: collections.deque[str] = collections.deque()
        self.size = 0

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record) + "\n"
        self.parts.append(line)
        self.size += len(line)
        while self.size > self.limit and len(self.parts) > 1:
            self.size -= len(self.parts.popleft())

    def text(self) -> str:
        return "".join(self.parts)[-self.limit:]


def run_task(payload_json: str) -> dict[str, Any]:
    """One worker, as the body of its Ray task, on a cluster node in the shipped code.

    Returns the worker's exit code, its CPU seconds (this process and the children it waited
    for, over the task), its log tail, and where its code came from. A failing worker is an
    answer (exit 1 and why), not an exception; only a dead process is Ray's to report.
    """
    import excamera

    from ...identity import code_identity
    from ..protocol import ProtocolError
    from ..worker import _cpu_seconds, run_worker

    started = time.time()
    cpu0 = _cpu_seconds()
    payload = LaunchPayload.from_json(payload_json)
    tail = _Tail(LOG_TAIL)
    tail.setFormatter(logging.Formatter(
        f"mu-worker {payload.worker_id} %(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("excamera")
    level = logger.level
    logger.setLevel(logging.DEBUG if payload.debug else logging.INFO)
    logger.addHandler(tail)
    exit_code, error = 0, ""
    try:
        asyncio.run(run_worker(payload))
    except (ConnectionError, ProtocolError, OSError) as exc:
        exit_code, error = 1, f"mu worker {payload.worker_id}: {exc}"
    except Exception:
        exit_code, error = 1, traceback.format_exc(limit=8)
    finally:
        logger.removeHandler(tail)
        logger.setLevel(level)
    return {
        "exit": exit_code,
        "cpu_s": round(_cpu_seconds() - cpu0, 3),
        "log": tail.text() + (error + "\n" if error else ""),
        "pid": os.getpid(),
        "started": started,
        "excamera": excamera.__file__,
        "code": code_identity(),
    }


# --- the backend -----------------------------------------------------------------------------


class RayTask(WorkerProcess):
    """One worker's Ray task: its ObjectRef, awaited for the result."""

    def __init__(self, worker_id: int, ref: Any) -> None:
        self.worker_id = worker_id
        self.ref = ref
        self.submitted = time.time()
        self.result: dict[str, Any] | None = None
        self._tail = ""
        self._done = asyncio.ensure_future(self._watch())

    async def _watch(self) -> int:
        try:
            result = await self.ref
        except Exception as exc:  # Ray's report: cancelled, the process died, the node died
            text = str(exc).strip()
            self._tail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            return 1
        self.result = result
        self._tail = str(result.get("log", ""))
        code = result.get("exit", 1)
        return code if isinstance(code, int) else 1

    @property
    def start_latency(self) -> float | None:
        """Seconds from submitting the task to its body running (wall clocks of two machines
        on a real cluster, so only as good as their synchronisation)."""
        if self.result is None or not isinstance(self.result.get("started"), (int, float)):
            return None
        return float(self.result["started"]) - self.submitted

    def alive(self) -> bool:
        return not self._done.done()

    async def wait(self) -> int | None:
        try:
            return await asyncio.shield(self._done)
        except asyncio.CancelledError:
            if self._done.cancelled():  # abandoned by kill(): Ray never answered
                return None
            raise

    async def kill(self) -> None:
        if self._done.done():
            return
        import ray

        # force: end the task's process; a task still waiting for its bundle is dropped.
        with contextlib.suppress(Exception):
            ray.cancel(self.ref, force=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._done), CANCEL_WAIT_S)
        if not self._done.done():
            # A lost head node or driver connection: stop waiting rather than hang the job.
            self._done.cancel()
            self._tail += f"\nRay did not confirm the cancellation within {CANCEL_WAIT_S:g} s"

    def stderr_tail(self) -> str:
        return self._tail


class RayBackend(Backend):
    """Workers are tasks on a Ray cluster, placed together in one placement group."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, *, wheel: Path | None = None,
                 shared_storage: bool = False,
                 placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT,
                 cpus_per_worker: float = 1.0) -> None:
        from ...argcheck import check_number
        from ...errors import CommandError

        import_ray()  # fail at once, in one line, when the extra is not installed
        try:
            check_number("--ray-placement-timeout", placement_timeout, above_minimum=True)
            check_number("--ray-worker-cpus", cpus_per_worker, above_minimum=True)
        except CommandError as exc:
            raise BackendError(str(exc)) from None
        if wheel is not None and not wheel.is_file():
            raise BackendError(f"--ray-wheel {wheel}: no such file")
        if address is not None:
            split_address(address)
        self.address = address
        self.wheel = wheel
        self.shared_storage = shared_storage
        self.placement_timeout = placement_timeout
        self.cpus = cpus_per_worker
        self.tasks: list[RayTask] = []
        self._remote: Any = None
        self._pg: Any = None
        self._bundles = 0
        self._reserved_at: float | None = None
        self._reserved_s = 0.0
        self._connected = False
        self.nodes: list[str] = []

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--ray-address", default=None, metavar="ADDR",
                           help="the Ray cluster's address, HOST:PORT of its head (default: "
                           "RAY_ADDRESS, or the cluster ray start runs here); selects the ray "
                           "backend")
        group.add_argument("--ray-wheel", type=Path, default=None, metavar="PATH",
                           help="the excamera wheel the workers run (default: build this "
                           "checkout's with maturin, cached); selects the ray backend")
        group.add_argument("--ray-placement-timeout", type=float,
                           default=DEFAULT_PLACEMENT_TIMEOUT, metavar="SECONDS",
                           help="how long to wait for the cluster to place every worker at "
                           "once (%(default)g); selects the ray backend")
        group.add_argument("--ray-worker-cpus", type=float, default=1.0, metavar="C",
                           help="CPUs reserved per worker (%(default)g); selects the ray backend")
        group.add_argument("--shared-storage", dest="ray_shared_storage", action="store_true",
                           help="vouch that the local --bucket path is the same shared "
                           "directory on every Ray node; selects the ray backend")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RayBackend:
        def number(key: str, default: float) -> float:
            value = options.get(key)
            return default if value is None else float(value)

        return cls(
            options.get("ray_address"),
            wheel=None if options.get("ray_wheel") is None else Path(options["ray_wheel"]),
            shared_storage=bool(options.get("ray_shared_storage")),
            placement_timeout=number("ray_placement_timeout", DEFAULT_PLACEMENT_TIMEOUT),
            cpus_per_worker=number("ray_worker_cpus", 1.0),
        )

    def default_advertise(self, host: str) -> str | None:
        if host not in WILDCARD:
            return None
        ray = import_ray()
        # The address Ray itself registers this node under (it picks the interface the same
        # way), so the workers reach the coordinator where they reach this node's raylet.
        return str(ray.util.get_node_ip_address())

    # --- before the first launch ------------------------------------------------------------

    async def prepare(self, n_workers: int, advertised_host: str) -> None:
        ray = import_ray()
        if self.address is not None:
            await asyncio.to_thread(check_reachable, self.address)
        entries = await asyncio.to_thread(shipped_code, self.wheel)
        self._connect(ray, [str(p) for p in entries])
        alive = [n for n in ray.nodes() if n.get("Alive")]
        self.nodes = sorted(str(n.get("NodeManagerAddress", "?")) for n in alive)
        far = sorted(set(unreachable_nodes(advertised_host, self.nodes)))
        if far:
            raise BackendError(
                f"the Ray nodes at {', '.join(far)} cannot dial the coordinator on "
                f"{advertised_host}: listen with --host 0.0.0.0 (it then advertises this "
                "node's Ray address) or give the address they should use with --advertise")
        await self._reserve(ray, n_workers)
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        # Any bundle of the group: a relaunched worker takes the one its killed attempt freed.
        strategy = PlacementGroupSchedulingStrategy(placement_group=self._pg,
                                                    placement_group_bundle_index=-1)
        self._remote = ray.remote(num_cpus=self.cpus, max_retries=0, retry_exceptions=False,
                                  scheduling_strategy=strategy)(run_task)

    def _connect(self, ray: Any, py_modules: list[str]) -> None:
        """Join the cluster as a driver whose tasks see the shipped code first on sys.path."""
        if ray.is_initialized():
            ray.shutdown()
        try:
            # In the main thread (Ray installs its signal handlers there); nothing else runs
            # yet. Worker output stays in the cluster's logs: the coordinator gets each task's
            # tail with its result instead of a stream of every worker's lines.
            ray.init(address=self.address or "auto", runtime_env={"py_modules": py_modules},
                     log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:
            where = self.address or os.environ.get("RAY_ADDRESS") or "this machine"
            raise BackendError(f"cannot connect to the Ray cluster at {where}: "
                               f"{_first_line(exc)} (start one with ray start --head, or give "
                               "--ray-address HOST:PORT)") from None
        self._connected = True

    async def _reserve(self, ray: Any, n_workers: int) -> None:
        from ray.util.placement_group import placement_group, remove_placement_group

        bundles = [{"CPU": self.cpus}] * n_workers
        pg = placement_group(bundles, strategy="SPREAD", name="excamera-job")
        try:
            await asyncio.wait_for(pg.ready(), self.placement_timeout)
        except TimeoutError:
            total = ray.cluster_resources().get("CPU", 0.0)
            free = ray.available_resources().get("CPU", 0.0)
            with contextlib.suppress(Exception):
                remove_placement_group(pg)
            raise BackendError(
                f"the cluster could not place the job within {self.placement_timeout:g} s "
                f"(--ray-placement-timeout): it asks for {n_workers} worker(s) x "
                f"{self.cpus:g} CPU = {n_workers * self.cpus:g} CPUs at once, and the Ray "
                f"cluster has {total:g} CPUs ({free:g} available) on {len(self.nodes)} "
                "node(s)") from None
        self._pg = pg
        self._bundles = n_workers
        self._reserved_at = time.monotonic()

    # --- workers ----------------------------------------------------------------------------

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        if self._remote is None:
            raise BackendError("the ray backend was not prepared")
        ref = self._remote.options(
            name=f"excamera-{payload.job_id}-worker-{payload.worker_id}",
        ).remote(payload.to_json())
        task = RayTask(payload.worker_id, ref)
        self.tasks.append(task)
        return task

    def cost(self, worker_cpu_s: float | None) -> Cost:
        reported = [t.result["cpu_s"] for t in self.tasks
                    if t.result and isinstance(t.result.get("cpu_s"), (int, float))]
        starts = sorted(s for t in self.tasks if (s := t.start_latency) is not None)
        return Cost(
            self.name,
            worker_cpu_s=round(sum(reported), 3) if reported else worker_cpu_s,
            details={
                "tasks": len(self.tasks),
                # Tasks whose process died or was killed report nothing.
                "tasks_without_cpu_report": len(self.tasks) - len(reported),
                "reserved_cpu_s": round(self._reserved_s * self._bundles * self.cpus, 3),
                "cpus_per_worker": self.cpus,
                "nodes": self.nodes,
                # Submission to the task body running: scheduling, the job's worker
                # processes starting with the shipped code, Ray's own imports.
                "task_start_s": {"min": round(starts[0], 3),
                                 "median": round(starts[len(starts) // 2], 3),
                                 "max": round(starts[-1], 3)} if starts else None,
            },
        )

    async def close(self) -> None:
        await asyncio.gather(*(t.kill() for t in self.tasks), return_exceptions=True)
        if self._reserved_at is not None:
            self._reserved_s = time.monotonic() - self._reserved_at
            self._reserved_at = None
        if self._connected:
            import ray

            if self._pg is not None:
                from ray.util.placement_group import remove_placement_group

                with contextlib.suppress(Exception):
                    remove_placement_group(self._pg)
                self._pg = None
            ray.shutdown()
            self._connected = False


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a cluster's head (its GCS), or BackendError."""
    if address.startswith("ray://"):
        raise BackendError(f"--ray-address {address}: Ray Client addresses are not supported; "
                           "run excamera where it reaches the head's GCS port and give "
                           "HOST:PORT")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(f"--ray-address {address}: expected HOST:PORT of the head node")
    return host, int(port)


def check_reachable(address: str, timeout: float = CONNECT_PROBE_S) -> None:
    """BackendError unless something accepts connections at ``address``.

    ray.init keeps retrying an address where nothing listens for minutes; a plain TCP
    connect answers at once (refused) or within ``timeout`` (filtered).
    """
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise BackendError(f"no Ray cluster at {address}: cannot connect ({why}); start one "
                           "with ray start --head, or give its head's address") from None


def unreachable_nodes(advertised: str, node_ips: list[str]) -> list[str]:
    """The nodes that cannot dial a coordinator advertised as ``advertised``: every node that
    is not this machine's loopback, when the coordinator is on loopback."""
    if not advertised.startswith(LOOPBACK):
        return []
    return [ip for ip in node_ips if not ip.startswith(LOOPBACK)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
