"""The encode's stages, each a function from typed values to typed values (see the package
docstring): input -> plan -> job -> stitch -> result."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...atomicfile import atomic_output
from ...errors import ExcameraError
from ...metrics import QualityMeter
from ...mu.backends import Backend, BackendError, resolve_backend
from ...mu.coordinator import JobResult
from ...mu.jobs import run_job
from ...xc.ivf import IvfReader
from ..audio import DROP, AudioPlan, audio_plan
from ..media import (
    MediaError,
    Stitched,
    VideoInfo,
    probe,
    read_pictures,
    require_av,
    stitch,
    write_chunks,
    write_ivf,
    write_webm,
)
from ..xcenc.machine import clean_handoff, require_pass0_encoder, xcenc_coordinator
from ..xcenc.plan import PassPlan, PlanError, XcencParams
from . import ratecontrol as rc
from .result import EncodeResult, TrialRecord, WorkerRecord
from .settings import EncodeSettings


@dataclass(frozen=True)
class Chunks:
    """The input, split: ``count`` Y4M chunks under ``<vid>/%08d.y4m`` in ``storage_url``."""

    vid: str
    count: int
    storage_url: str
    info: VideoInfo


def encode(settings: EncodeSettings) -> EncodeResult:
    """Run every stage; the output appears only when the whole encode checked out, and a
    failure raises :class:`ExcameraError` and leaves no output and no temporary files."""
    t0 = time.monotonic()
    backend: Backend | None = build_backend(settings)
    try:
        require_pass0_encoder(settings.pass0, backend)
        info = read_input(settings.source)
        audio = read_audio(settings)
        with _workspace(settings.bucket) as (bucket, work):
            chunks = split(settings.source, info, settings.chunk, bucket, work)
            t_split = time.monotonic()
            handed, backend = backend, None  # the job closes it from here on
            assert handed is not None
            trials: tuple[rc.Trial, ...] = ()
            if settings.target_bitrate is None:
                params = plan(settings, chunks)
                job = run_encode_job(params, handed, chunks, settings)
                stitched = fetch_and_stitch(params, chunks, work)
            else:
                job, stitched, trials = encode_to_target(settings, chunks, handed, work)
            t_job = time.monotonic()
            with atomic_output(settings.output) as tmp:
                write_container(stitched, info, tmp, webm=settings.webm, audio=audio)
                meter = workers_quality(job, stitched)
                if settings.verify:
                    verify(settings.source, stitched, meter)
            t_end = time.monotonic()
    except OSError as exc:
        raise ExcameraError(f"{exc.filename or settings.output}: {exc.strerror or exc}") from None
    finally:
        if backend is not None:  # never handed to a job, which would have closed it
            asyncio.run(backend.close())
    return result(settings, info, chunks, job, stitched, meter, audio,
                  (t0, t_split, t_job, t_end), trials)


# --- input ---------------------------------------------------------------------------------

def read_input(source: Path) -> VideoInfo:
    """Size, rate and kind of the input, before anything is written."""
    try:
        return probe(source)
    except (MediaError, ValueError) as exc:
        raise ExcameraError(str(exc)) from None


def read_audio(settings: EncodeSettings) -> AudioPlan | None:
    """What the output gets of the input's audio (None: the input has none), decided before
    the workers start so that audio that cannot be kept, or a WebM output without PyAV to
    write it, fails the encode at once."""
    if settings.webm:
        require_av()
    try:
        return audio_plan(settings.source, keep=settings.audio, webm=settings.webm)
    except MediaError as exc:
        raise ExcameraError(str(exc)) from None


def build_backend(settings: EncodeSettings) -> Backend:
    """The backend to run on; it is closed when the encode ends, whether its job ran or not
    (so a built Backend handed over serves one encode)."""
    try:
        return resolve_backend(settings.backend)
    except BackendError as exc:
        raise ExcameraError(str(exc)) from None


@contextmanager
def _workspace(bucket: str | None) -> Iterator[tuple[str, Path]]:
    """The storage URL the job uses (a temporary directory unless ``bucket`` is given) and a
    local working directory; both temporary ones are removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="excamera-encode-work-"))
    own = bucket is None
    url = tempfile.mkdtemp(prefix="excamera-encode-") if own else str(bucket)
    try:
        yield url, work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own:
            shutil.rmtree(url, ignore_errors=True)


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "video"


def split(source: Path, info: VideoInfo, chunk: int, storage_url: str, work: Path) -> Chunks:
    """Write the input as Y4M chunks of ``chunk`` frames and put them in storage."""
    from ...mu.storage import StorageError, open_storage

    vid = f"{_stem(source)}-y4m_{chunk:02d}"
    try:
        files = write_chunks(source, info, chunk, work / "chunks")
    except (MediaError, ValueError) as exc:
        raise ExcameraError(str(exc)) from None
    storage = open_storage(storage_url)

    async def upload() -> None:
        await asyncio.gather(*(storage.put(f, f"{vid}/{i:08d}.y4m")
                               for i, f in enumerate(files)))

    try:
        asyncio.run(upload())
    except StorageError as exc:
        raise ExcameraError(f"uploading chunks: {exc}") from None
    return Chunks(vid, len(files), storage_url, info)


# --- plan and job ----------------------------------------------------------------------------

def plan(settings: EncodeSettings, chunks: Chunks,
         levels: tuple[int, ...] | None = None) -> XcencParams:
    """The xcenc job's plan: one worker per chunk, batch mode (a key frame every ``batch``
    chunks), at most ``workers`` encodes at once; every chunk at ``settings.quality`` or at
    its own of ``levels``."""
    try:
        passes = PassPlan.parse(settings.passes)
        # Where the excamera chain's re-encodes follow pass 0 (-p 1 publishes pass 0 as it is).
        rebases = settings.chain == "excamera" and passes.total >= 3
        redecide = rebases and settings.batch is not None
        return XcencParams(
            vid_name=chunks.vid,
            n_parts=chunks.count,
            plan=passes,
            y_ac_qi=settings.quality if levels is None else levels[0],
            levels=levels,
            mild_batch_keys=True,
            pass0_key_floor=settings.pass0 == "vpxenc" and rebases,
            redecide=redecide,
            redecide_levels=settings.redecide_levels if redecide else 1,
            kf_weight=settings.kf_weight,
            kf_dist=settings.batch,
            pass0=settings.pass0,
            chain=settings.chain,
            tools=settings.tools,
            handoff_storage=settings.job.rereads_inputs,
            cpu_slots=settings.workers,
            measure=True,
        )
    except PlanError as exc:
        raise ExcameraError(str(exc)) from None


def run_encode_job(params: XcencParams, backend: Backend, chunks: Chunks,
                   settings: EncodeSettings) -> JobResult:
    """The workers: the xcenc job on ``backend``, which it closes when it ends."""
    try:
        coord = xcenc_coordinator(params, backend, chunks.storage_url, settings.job)
    except ValueError as exc:
        asyncio.run(backend.close())
        raise ExcameraError(str(exc)) from None
    job = run_job(coord, settings.job, settings.progress)
    if params.handoff_storage:
        clean_handoff(params, chunks.storage_url)
    return job


def encode_to_target(settings: EncodeSettings, chunks: Chunks, backend: Backend, work: Path
                     ) -> tuple[JobResult, Stitched, tuple[rc.Trial, ...]]:
    """Whole encodes at per-chunk levels until the file's bitrate is within ``rc.TOLERANCE``
    of the target (``ratecontrol``'s loop); the last job, its stream and every trial. The first
    job runs on ``backend``, each later one on a new backend built from the settings' spec."""
    assert settings.target_bitrate is not None
    info = chunks.info
    levels: tuple[int, ...] | None = (
        rc.first_level(settings.target_bitrate, info.width, info.height, info.fps),
    ) * chunks.count
    trials: list[rc.Trial] = []
    kept: tuple[rc.Trial, JobResult, Stitched] | None = None
    target_bytes = seconds = 0.0
    costs = []
    while levels is not None:
        params = plan(settings, chunks, levels)
        job = run_encode_job(params, build_backend(settings) if trials else backend,
                             chunks, settings)
        costs.append(job.cost)
        stitched = fetch_and_stitch(params, chunks, work)
        seconds = stitched.shown * info.fps[1] / info.fps[0]
        target_bytes = settings.target_bitrate * 1000 / 8 * seconds
        trial = rc.Trial(levels, tuple(chunk_bytes(work, chunks.count)))
        trials.append(trial)
        if kept is None or abs(trial.error(target_bytes)) < abs(kept[0].error(target_bytes)):
            kept = (trial, job, stitched)
        levels = rc.next_levels(trials, target_bytes)
    assert kept is not None
    best, job, stitched = kept
    if abs(best.error(target_bytes)) > rc.ACCEPT:
        raise ExcameraError(
            f"target bitrate {settings.target_bitrate:g} kbit/s: the closest of {len(trials)} "
            f"trial encodes gave {best.total * 8 / 1000 / seconds:.1f} kbit/s (levels "
            f"{min(best.levels)}..{max(best.levels)} of 0..63), more than {rc.ACCEPT:.0%} off",
            "trials (levels: kbit/s): " + "; ".join(
                f"{','.join(map(str, t.levels))}: {t.total * 8 / 1000 / seconds:.1f}"
                for t in trials))
    # The result reports what every trial cost, not only the kept one's job.
    return dataclasses.replace(job, cost=sum_costs(costs)), stitched, tuple(trials)


def sum_costs(costs: list[Any]) -> Any:
    """One :class:`~excamera.mu.backends.Cost` for several jobs on the same backend: every
    figure summed (None stays None)."""
    if any(c is None for c in costs):
        return None
    total = costs[0]
    for c in costs[1:]:
        total = dataclasses.replace(total, **{
            k: None if getattr(total, k) is None or getattr(c, k) is None
            else getattr(total, k) + getattr(c, k)
            for k in ("worker_cpu_s", "requests", "gb_seconds", "usd")})
    return total


def chunk_bytes(work: Path, count: int) -> list[int]:
    """Bytes of VP8 frames in each fetched chunk IVF (``fetch_and_stitch``'s files)."""
    out = []
    for k in range(count):
        with IvfReader(work / "out" / f"{k:08d}.ivf") as r:
            out.append(sum(len(f.data) for f in r))
    return out


# --- stitch ----------------------------------------------------------------------------------

def fetch_and_stitch(params: XcencParams, chunks: Chunks, work: Path) -> Stitched:
    """The chunks' IVFs from storage, joined into one stream."""
    from ...mu.storage import StorageError, open_storage

    storage = open_storage(chunks.storage_url)
    local = [work / "out" / f"{k:08d}.ivf" for k in range(chunks.count)]

    async def fetch() -> None:
        await asyncio.gather(*(storage.get(params.output_key(k), local[k])
                               for k in range(chunks.count)))

    try:
        asyncio.run(fetch())
        return stitch(local, chunks.info.fps)
    except (MediaError, StorageError) as exc:
        raise ExcameraError(str(exc)) from None


def write_container(stitched: Stitched, info: VideoInfo, path: Path, *, webm: bool,
                    audio: AudioPlan | None = None) -> None:
    try:
        if webm:
            write_webm(stitched, info.fps, path, audio)
        else:
            write_ivf(stitched, info.fps, path)
    except MediaError as exc:
        raise ExcameraError(str(exc)) from None


def workers_quality(job: JobResult, stitched: Stitched) -> QualityMeter:
    """The clip's quality, summed from what each worker measured on its own chunk, and the
    joins checked without decoding: a chunk that does not start with a key frame must have
    been decoded (so encoded) from exactly the state its predecessor's decode ends on. The
    sums are the whole clip's because every decode started where the stitched stream's is."""
    meter = QualityMeter()
    reports = [job.workers[k].output["quality"] for k in sorted(job.workers)]
    for k, q in enumerate(reports):
        if k > 0 and q["entry_state"] != reports[k - 1]["exit_state"] and \
                not q["starts_fresh"]:
            raise ExcameraError(f"chunks {k - 1} and {k} do not join exactly: chunk {k} was "
                                f"encoded against state {q['entry_state'][:16]}, chunk "
                                f"{k - 1} ends on {reports[k - 1]['exit_state'][:16]}")
        meter.frames += int(q["frames"])
        for i in range(3):
            meter.sse[i] += float(q["sse"][i])
            meter.samples[i] += int(q["samples"][i])
        meter.ssim_sum += float(q["ssim_sum"])
        meter.ssim_frames += int(q["ssim_frames"])
    if stitched.shown != meter.frames:
        raise ExcameraError(f"the stitched stream shows {stitched.shown} frames, the workers "
                            f"measured {meter.frames}")
    return meter


def verify(source: Path, stitched: Stitched, meter: QualityMeter) -> None:
    """``--verify``: decode the stitched stream in full; it must join exactly, show the input's
    frames and give the quality the workers reported (SSIM to float rounding: the sums are
    added in another order)."""
    full = check_and_measure(source, stitched)
    same = (full.frames, full.sse, full.samples, full.ssim_frames) == (
        meter.frames, meter.sse, meter.samples, meter.ssim_frames)
    if not same or not math.isclose(full.ssim_sum, meter.ssim_sum, rel_tol=1e-9, abs_tol=1e-9):
        raise ExcameraError(
            f"--verify: the stitched stream decodes to PSNR-Y {full.psnr_y:.4f} dB, SSIM "
            f"{full.ssim}, over {full.frames} frames, the workers reported {meter.psnr_y:.4f} "
            f"dB, {meter.ssim}, over {meter.frames}")


def check_and_measure(source: Path, stitched: Stitched) -> QualityMeter:
    """Decode the stitched stream with xc: it must join exactly and show the input's frames;
    PSNR and SSIM against the source."""
    try:
        meter = measure(source, stitched.frames, dict(stitched.entry_hashes))
    except (MediaError, ValueError) as exc:
        raise ExcameraError(str(exc)) from None
    if stitched.shown != meter.frames:
        raise ExcameraError(f"the stitched stream shows {stitched.shown} frames, "
                            f"decoded {meter.frames}")
    return meter


def measure(source: Path, frames: list[bytes], entry_hashes: dict[int, int] | None = None
            ) -> QualityMeter:
    """Decode ``frames`` with xc and compare every shown picture with the source's.

    ``entry_hashes`` maps a frame index to the (32-bit) hash of the state its chunk was encoded
    against; reaching any other state there means the chunk would drift, so it is an error.
    """
    from excamera.xc.codec import DecodeError, Decoder

    meter = QualityMeter()
    dec = Decoder()
    src = read_pictures(source)
    for i, data in enumerate(frames):
        want = (entry_hashes or {}).get(i)
        if want is not None and int(dec.state.hash, 16) & 0xFFFFFFFF != want:
            raise MediaError(f"frame {i} starts a chunk encoded against state {want:08x}, but "
                             f"the stream reaches {int(dec.state.hash, 16) & 0xFFFFFFFF:08x} "
                             "there: the chunks do not join exactly")
        try:
            pic = dec.decode(data)
        except DecodeError as exc:
            raise MediaError(f"the stitched stream does not decode: frame {i}: {exc}") from None
        if pic is None:
            continue
        ref = next(src, None)
        if ref is None:
            raise MediaError(f"the encode shows more frames than the input's {meter.frames}")
        meter.add(ref, pic)
    if next(src, None) is not None:
        raise MediaError(f"the encode shows {meter.frames} frames, the input has more")
    return meter


# --- result ----------------------------------------------------------------------------------

def result(settings: EncodeSettings, info: VideoInfo, chunks: Chunks, job: JobResult,
           stitched: Stitched, meter: QualityMeter, audio: AudioPlan | None,
           times: tuple[float, float, float, float],
           trials: tuple[rc.Trial, ...] = ()) -> EncodeResult:
    t0, t_split, t_job, t_end = times
    workers = tuple(
        WorkerRecord(worker=k, chunk=int(w.output["chunk"]), passes=int(w.output["passes"]),
                     attempts=w.attempts, cpu_seconds=w.cpu_s, timings=dict(w.timings))
        for k, w in sorted(job.workers.items()))
    return EncodeResult(
        output=settings.output, job_id=job.job_id, frames=meter.frames, width=info.width,
        height=info.height, fps=info.fps, chunks=chunks.count,
        payload_bytes=stitched.payload_bytes, file_bytes=settings.output.stat().st_size,
        psnr_y=meter.psnr_y, psnr_all=meter.psnr_all, ssim=meter.ssim,
        wall_seconds=t_end - t0, split_seconds=t_split - t0, job_seconds=t_job - t_split,
        finish_seconds=t_end - t_job, cost=job.cost, workers=workers,
        audio=None if audio is None else audio.describe(),
        audio_dropped=audio is not None and audio.action == DROP,
        target_kbps=settings.target_bitrate,
        trials=tuple(TrialRecord(t.levels, t.total) for t in trials),
        verified=settings.verify,
    )
