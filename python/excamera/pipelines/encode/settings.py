"""What one encode is asked to do: :class:`EncodeSettings`, checked when it is made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...argcheck import check_int, check_number
from ...errors import ExcameraError, SettingsError
from ...mu.backends import Backend, BackendSpec
from ...mu.jobs import JobSettings, ProgressArg
from ..xcenc.plan import CHAINS, MAX_CQ_LEVEL, PASS0_ENCODERS, TOOL_MODES

OUTPUT_SUFFIXES = (".ivf", ".webm")
#: 1: pass 0 alone (independent chunks, a key frame each); 3: ExCamera's batch mode.
PASSES = (1, 3)


def default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EncodeSettings:
    """One encode of ``source`` into ``output``, every value checked on construction.

    The encoder: ``quality`` is vpxenc's ``--cq-level`` (0..63), whichever encoder runs pass 0
    (``pass0="xc"`` runs xc-enc at the quantizer index vpxenc maps that level to); ``chunk``
    frames per chunk and a key frame every ``batch`` chunks (ExCamera[chunk, batch]);
    ``passes`` 1 for pass 0 alone, 3 for ExCamera's rebases;
    ``chain``, ``tools`` and ``kf_weight`` as ``excamera.pipelines.xcenc`` describes them
    (``kf_weight=None``: xc-enc matches the prediction's key-frame quality).

    ``audio``: keep the input's audio in a WebM output (Opus and Vorbis copied, anything else
    transcoded to Opus; see :mod:`excamera.pipelines.audio`); False drops it. An IVF output
    holds video only, whatever this says.

    Where it runs: at most ``workers`` encodes at once; chunks and outputs in ``bucket`` (a
    local directory or ``s3://bucket/prefix``; None: a temporary directory, removed after);
    workers started by ``backend`` with mu's ``job`` settings; ``progress`` as
    :func:`excamera.mu.jobs.run_job` takes it.
    """

    source: Path
    output: Path
    quality: int = 30
    workers: int = field(default_factory=default_workers)
    chunk: int = 6
    batch: int = 16
    passes: int = 3
    pass0: str = "vpxenc"
    chain: str = "excamera"
    tools: str = "worker"
    kf_weight: float | None = 0.75
    audio: bool = True
    bucket: str | None = None
    backend: Backend | BackendSpec = field(default_factory=BackendSpec)
    job: JobSettings = field(default_factory=JobSettings)
    progress: ProgressArg = None

    def __post_init__(self) -> None:
        _choice("pass0", self.pass0, PASS0_ENCODERS)
        _choice("chain", self.chain, CHAINS)
        _choice("tools", self.tools, TOOL_MODES)
        check_int("quality", self.quality, minimum=0, maximum=MAX_CQ_LEVEL)
        check_int("workers", self.workers, minimum=1)
        check_int("chunk", self.chunk, minimum=1)
        check_int("batch", self.batch, minimum=1)
        if self.passes not in PASSES:
            raise SettingsError.value("passes", self.passes, "must be 1 (pass 0 alone) or 3 "
                                      "(ExCamera's rebases)")
        if not isinstance(self.audio, bool):
            raise SettingsError.value("audio", self.audio, "must be True or False")
        if self.kf_weight is not None:
            check_number("kf_weight", self.kf_weight, maximum=1.0)
        if self.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ExcameraError(f"{self.output}: the output must end in .ivf or .webm")
        if not self.output.resolve().parent.is_dir():
            raise ExcameraError(f"{self.output}: directory {self.output.resolve().parent} "
                                "does not exist")

    @property
    def webm(self) -> bool:
        return self.output.suffix.lower() == ".webm"


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError.value(name, value, f"expected one of {', '.join(allowed)}")
