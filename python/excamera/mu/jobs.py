"""Running one mu job from typed settings: what every job shares, whoever starts it.

:class:`JobSettings` holds mu's knobs (where the coordinator listens, the long-lived
certificates, retries, spares, timeouts, straggler duplicates, handshake caps, the ``-O``
transitions file and the ``-P`` profile);
:func:`run_job` runs a built :class:`~excamera.mu.coordinator.Coordinator` with them and with a
progress view, and turns a failed job into one :class:`~excamera.errors.ExcameraError`. Nothing
here knows the command line: ``excamera.mu.jobopts`` turns flags into these settings, and the
Python API builds them directly.
"""

from __future__ import annotations

import asyncio
import cProfile
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..argcheck import check_int, check_number, check_port
from ..errors import ExcameraError, SettingsError
from .errors import JobFailed
from .listener import MAX_HANDSHAKES, MAX_PER_ADDRESS
from .machines import Transition
from .stragglers import StragglerPolicy

if TYPE_CHECKING:
    from .coordinator import JobResult

#: ``progress=``: None or False for no view, True for the live terminal view (on stderr), or a
#: callable that is handed each worker state change as it happens.
ProgressArg = bool | Callable[[Transition], None] | None


@dataclass(frozen=True)
class JobSettings:
    """mu's knobs for one job; every value is checked when the object is made.

    ``host``/``port``: where the coordinator (and the relay it runs) listen, port 0 for any
    free one; ``advertise``: the address workers dial when it differs from ``host``;
    ``relay_port``: the embedded relay's port (0: any free one). ``ca_cert`` (with ``ca_key``,
    or ``ca_key.pem`` beside it) is a long-lived CA to issue this job's intermediate from;
    ``server_cert``/``server_key`` the coordinator's certificate under it. ``retries``: how
    often a lost worker is relaunched; ``spares``: idle workers launched to stand in for slow
    or failed launches. ``command_timeout``: a worker exceeding it on one command is lost;
    ``connect_timeout``: how long a launched worker may take to connect. ``transitions_file``:
    every state change as JSON lines, with the job's cost last; ``profile_file``: cProfile
    data of the coordinator; ``debug``: workers log at debug level too.

    ``straggler_k``: gg's rule, a duplicate of a worker that has spent k times its peers'
    median in a phase (0: off; see :mod:`excamera.mu.stragglers`). ``max_handshakes`` and
    ``max_handshakes_per_address``: TLS handshakes the coordinator and its relay take at once,
    in all and from one address. ``inject_slow``: fault injection for tests and benchmarks,
    {worker id: factor}: that worker's commands take factor times as long (not its
    duplicate's).
    """

    host: str = "127.0.0.1"
    port: int = 0
    advertise: str | None = None
    relay_port: int = 0
    spares: int = 0
    retries: int = 0
    command_timeout: float | None = None
    connect_timeout: float = 60.0
    ca_cert: Path | None = None
    ca_key: Path | None = None
    server_cert: Path | None = None
    server_key: Path | None = None
    transitions_file: Path | None = None
    profile_file: Path | None = None
    debug: bool = False
    straggler_k: float = 3.0
    max_handshakes: int = MAX_HANDSHAKES
    max_handshakes_per_address: int = MAX_PER_ADDRESS
    inject_slow: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_port("port", self.port)
        check_port("relay_port", self.relay_port)
        check_int("retries", self.retries, minimum=0)
        check_int("spares", self.spares, minimum=0)
        if self.command_timeout is not None:
            check_number("command_timeout", self.command_timeout, above_minimum=True)
        check_number("connect_timeout", self.connect_timeout, above_minimum=True)
        if (self.server_cert is None) != (self.server_key is None):
            raise SettingsError("{} and {} go together", "server_cert", "server_key")
        if self.server_cert is not None and self.ca_cert is None:
            raise SettingsError("{}/{} need the CA certificate {}", "server_cert",
                                "server_key", "ca_cert")
        if self.straggler_k != 0:
            check_number("straggler_k", self.straggler_k, minimum=1, above_minimum=True,
                         maximum=1000)
        check_int("max_handshakes", self.max_handshakes, minimum=1, maximum=1 << 16)
        check_int("max_handshakes_per_address", self.max_handshakes_per_address, minimum=1,
                  maximum=self.max_handshakes)
        for worker, factor in self.inject_slow.items():
            if not (worker >= 0 and math.isfinite(factor) and 1 <= factor <= 1000):
                raise SettingsError("{} " + f"{worker}:{factor:g}: a worker id (at least 0) "
                                    "and a slowdown factor 1..1000", "inject_slow")

    @property
    def rereads_inputs(self) -> bool:
        """Whether a worker's machine may run again (a retry, or a straggler's duplicate),
        which then reads what it received from storage: a restartable job stores its
        hand-offs."""
        return self.retries > 0 or self.straggler_k > 0

    def coordinator_kwargs(self) -> dict[str, Any]:
        """The :class:`~excamera.mu.coordinator.Coordinator` keyword arguments these settle."""
        return {
            "host": self.host,
            "port": self.port,
            "advertise": self.advertise,
            "spares": self.spares,
            "relay_port": self.relay_port,
            "ca_cert": self.ca_cert,
            "ca_key": self.ca_key,
            "server_cert": self.server_cert,
            "server_key": self.server_key,
            "retries": self.retries,
            "command_timeout": self.command_timeout,
            "connect_timeout": self.connect_timeout,
            "debug": self.debug,
            "straggler": StragglerPolicy(k=self.straggler_k),
            "max_handshakes": self.max_handshakes,
            "max_handshakes_per_address": self.max_handshakes_per_address,
            "inject_slow": dict(self.inject_slow),
        }


class _Callback:
    """An observer that hands each transition to a plain callable."""

    def __init__(self, fn: Callable[[Transition], None]) -> None:
        self.fn = fn

    def on_transition(self, tr: Transition) -> None:
        self.fn(tr)


def run_job(coord: Any, settings: JobSettings, progress: ProgressArg = None) -> JobResult:
    """Run ``coord`` (a built Coordinator) to completion with the observers ``settings`` and
    ``progress`` ask for.

    A failed job raises :class:`ExcameraError`: its first line says which job failed and how
    many workers, ``details`` holds each failed worker and what the job cost, and ``cost`` the
    :class:`~excamera.mu.backends.Cost` itself. The transitions file always ends with the
    job's cost, failed or not.
    """
    from .observe import JsonLinesRecorder, LiveStatus

    recorder = None
    if settings.transitions_file is not None:
        try:
            recorder = JsonLinesRecorder(settings.transitions_file)
        except OSError as exc:
            raise ExcameraError(f"{settings.transitions_file}: {exc.strerror or exc}") from None
        coord.observers.append(recorder)
    if callable(progress):
        coord.observers.append(_Callback(progress))

    async def main() -> JobResult:
        if progress is not True:
            return await coord.run()
        live = LiveStatus(coord.n_workers, title=coord.job_id)
        coord.observers.append(live)
        async with live:
            return await coord.run()

    profiler = cProfile.Profile() if settings.profile_file else None
    try:
        if profiler:
            profiler.enable()
        return asyncio.run(main())
    except JobFailed as exc:
        # What the failed job cost goes last, after the failures that matter more.
        spent = coord.cost.line() if coord.cost is not None else ""
        err = ExcameraError(str(exc), spent)
        err.cost = coord.cost
        raise err from None
    except OSError as exc:
        raise ExcameraError(f"coordinator: {exc}") from None
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(settings.profile_file))
        if recorder:
            if coord.cost is not None:
                recorder.record({"cost": coord.cost.to_json()})
            recorder.close()
