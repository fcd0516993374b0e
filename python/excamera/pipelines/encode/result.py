"""What an encode produced: :class:`EncodeResult`, with one :class:`WorkerRecord` per worker."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WorkerRecord:
    """One worker of the job: the chunk it encoded, how many passes it ran, how often it was
    launched (``attempts``), the CPU-seconds its process reported at quit (None if it did not
    quit cleanly, or shared its process with other workers: a worker host, the local backend's
    default, whose CPU time is the job's cost) and, for its last attempt, the seconds after
    the job's start at which it first reached each state (``launching``, ``pass0``,
    ``reencode_p1``, ``upload``, ``done``, ... as ``excamera.pipelines.xcenc`` names them)."""

    worker: int
    chunk: int
    passes: int
    attempts: int
    cpu_seconds: float | None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialRecord:
    """One whole encode of a rate-controlled run (``target_bitrate``): each chunk's quality
    level and the bytes of VP8 frames it produced."""

    levels: tuple[int, ...]
    payload_bytes: int


@dataclass(frozen=True)
class EncodeResult:
    """The published ``output`` and what was measured on it.

    ``frames`` shown frames of ``width`` x ``height`` at ``fps`` (num, den), in ``chunks``
    chunks; ``payload_bytes`` of VP8 frames in a ``file_bytes`` file; ``bitrate_kbps`` from the
    VP8 frames and the duration. ``psnr_y``/``psnr_all`` (dB; infinite when identical) and
    ``ssim`` (luma, 11x11 Gaussian window; None when the picture is smaller than the window)
    compare the decoded output with the source (:mod:`excamera.metrics`), summed from what
    each worker measured on its chunk; ``verified``: the stitched stream was also decoded in
    full and agreed (``verify``). ``wall_seconds`` is
    the whole call, split into ``split_seconds`` (reading the input, writing chunks),
    ``job_seconds`` (the workers) and ``finish_seconds`` (stitching, checking, measuring).
    ``cost`` is what the backend reports (a :class:`~excamera.mu.backends.Cost`, summed over
    the trials); ``workers`` the per-worker record (of the kept trial), in worker order. With a
    ``target_kbps``, ``trials`` are the whole encodes rate control ran, in order; the output is
    the one closest to the target. ``audio`` says what became of the input's audio (None: it
    had none), ``audio_dropped`` whether the output is without it.
    """

    output: Path
    job_id: str
    frames: int
    width: int
    height: int
    fps: tuple[int, int]
    chunks: int
    payload_bytes: int
    file_bytes: int
    psnr_y: float
    psnr_all: float
    ssim: float | None
    wall_seconds: float
    split_seconds: float
    job_seconds: float
    finish_seconds: float
    cost: Any
    workers: tuple[WorkerRecord, ...]
    audio: str | None = None
    audio_dropped: bool = False
    target_kbps: float | None = None
    trials: tuple[TrialRecord, ...] = ()
    verified: bool = False

    @property
    def duration(self) -> float:
        """Seconds of video."""
        return self.frames * self.fps[1] / self.fps[0]

    @property
    def bitrate_kbps(self) -> float:
        return self.payload_bytes * 8 / self.duration / 1000

    def summary(self) -> list[str]:
        """The report ``excamera encode`` prints."""
        fps = self.fps[0] / self.fps[1]
        passes = [w.passes for w in self.workers]

        def db(v: float) -> str:
            return "inf" if math.isinf(v) else f"{v:.2f}"

        lines = [
            f"encode: {self.output} ({self.file_bytes} bytes)",
            f"  frames    {self.frames} ({self.width}x{self.height} at {fps:.3f} fps), "
            f"{self.chunks} chunk(s), passes per worker {min(passes)}..{max(passes)}",
            f"  wall time {self.wall_seconds:.2f} s (split {self.split_seconds:.2f}, "
            f"encode {self.job_seconds:.2f}, stitch+check {self.finish_seconds:.2f})",
            f"  bitrate   {self.bitrate_kbps:.1f} kbit/s ({self.payload_bytes} bytes of VP8 "
            "frames)",
            f"  PSNR      Y {db(self.psnr_y)} dB, YUV {db(self.psnr_all)} dB",
            f"  SSIM      {self.ssim:.4f} (luma, 11x11 Gaussian window)" if self.ssim is not None
            else f"  SSIM      not measured: {self.width}x{self.height} is smaller than its "
            "11x11 window",
        ]
        if self.verified:
            lines.append("  verified  the stitched stream, decoded in full, joins exactly and "
                         "gives these figures")
        if self.audio is not None:
            lines.append(f"  audio     {self.audio}")
        if self.target_kbps is not None:
            rates = ", ".join(f"{t.payload_bytes * 8 / self.duration / 1000:.1f}"
                              for t in self.trials)
            lines.append(f"  target    {self.target_kbps:g} kbit/s: "
                         f"{self.bitrate_kbps / self.target_kbps - 1:+.1%}; trial encodes at "
                         f"{rates} kbit/s")
        if self.cost is not None:
            lines.append(self.cost.line())
        return lines
