"""What one encode is asked to do: :class:`EncodeSettings`, checked when it is made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...argcheck import check_int, check_number
from ...errors import ExcameraError, SettingsError
from ...mu.backends import Backend, BackendSpec
from ...mu.jobs import JobSettings, ProgressArg
from ..xcenc.plan import (
    CHAINS,
    MAX_CQ_LEVEL,
    MAX_REDECIDE_LEVELS,
    PASS0_ENCODERS,
    REDECIDE_LEVELS,
    TOOL_MODES,
)

OUTPUT_SUFFIXES = (".ivf", ".webm")
#: 1: pass 0 alone (independent chunks, a key frame each); 3: ExCamera's batch mode.
PASSES = (1, 3)
DEFAULT_QUALITY = 30
# Bounds on --target-bitrate, kbit/s: what VP8 can reach is checked once the trials run.
MIN_TARGET_KBPS, MAX_TARGET_KBPS = 1.0, 1_000_000.0


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
    (``kf_weight=None``: xc-enc matches the prediction's key-frame quality);
    ``redecide_levels`` (1..``MAX_REDECIDE_LEVELS``) the excamera chain's parallel re-decide
    passes per chunk (``XcencParams.redecide_levels``: more give smaller files for more CPU;
    with ``chain="mu"`` or ``passes=1``, which re-decide nothing, it has no effect).

    ``audio``: keep the input's audio in a WebM output (Opus and Vorbis copied, anything else
    transcoded to Opus; see :mod:`excamera.pipelines.audio`); False drops it. An IVF output
    holds video only, whatever this says.

    Rate: constant quality ``quality`` (default ``DEFAULT_QUALITY``), or ``target_bitrate``
    kbit/s for the whole file (the two are exclusive): trial encodes of the whole clip at
    per-chunk levels until the file lands within 5% (``ratecontrol``). There is no maximum
    bitrate or buffer model (vpxenc's --max-bitrate, --buf-*): the target is the whole file's
    average. A trial runs a new backend from the spec, so a built Backend (which serves one
    job) is refused with a target.

    Where it runs: at most ``workers`` encodes at once; chunks and outputs in ``bucket`` (a
    local directory or ``s3://bucket/prefix``; None: a temporary directory, removed after);
    workers started by ``backend`` with mu's ``job`` settings; ``progress`` as
    :func:`excamera.mu.jobs.run_job` takes it.

    Quality: each worker measures its chunk (PSNR, SSIM sums) and the joins are checked from
    the decoder states the workers report; ``verify`` also decodes the stitched stream in full
    afterwards and checks that it agrees.
    """

    source: Path
    output: Path
    quality: int | None = None  # None: DEFAULT_QUALITY, unless target_bitrate is given
    target_bitrate: float | None = None
    workers: int = field(default_factory=default_workers)
    chunk: int = 6
    batch: int = 16
    passes: int = 3
    pass0: str = "vpxenc"
    chain: str = "excamera"
    tools: str = "worker"
    kf_weight: float | None = 0.75
    redecide_levels: int = REDECIDE_LEVELS
    audio: bool = True
    bucket: str | None = None
    backend: Backend | BackendSpec = field(default_factory=BackendSpec)
    job: JobSettings = field(default_factory=JobSettings)
    progress: ProgressArg = None
    verify: bool = False

    def __post_init__(self) -> None:
        _choice("pass0", self.pass0, PASS0_ENCODERS)
        _choice("chain", self.chain, CHAINS)
        _choice("tools", self.tools, TOOL_MODES)
        check_int("redecide_levels", self.redecide_levels, minimum=1,
                  maximum=MAX_REDECIDE_LEVELS)
        if self.target_bitrate is None:
            if self.quality is None:
                object.__setattr__(self, "quality", DEFAULT_QUALITY)
            check_int("quality", self.quality, minimum=0, maximum=MAX_CQ_LEVEL)
        else:
            if self.quality is not None:
                raise SettingsError("{} and {} are exclusive: give one (constant quality, or "
                                    "a bitrate for the whole file)", "quality", "target_bitrate")
            check_number("target_bitrate", self.target_bitrate, minimum=MIN_TARGET_KBPS,
                         maximum=MAX_TARGET_KBPS)
            if isinstance(self.backend, Backend):
                raise SettingsError("{} runs several encodes, each on a new backend: give the "
                                    "backend by name or BackendSpec, not a built Backend",
                                    "target_bitrate")
        check_int("workers", self.workers, minimum=1)
        check_int("chunk", self.chunk, minimum=1)
        check_int("batch", self.batch, minimum=1)
        if self.passes not in PASSES:
            raise SettingsError.value("passes", self.passes, "must be 1 (pass 0 alone) or 3 "
                                      "(ExCamera's rebases)")
        if not isinstance(self.audio, bool):
            raise SettingsError.value("audio", self.audio, "must be True or False")
        if not isinstance(self.verify, bool):
            raise SettingsError.value("verify", self.verify, "must be True or False")
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
