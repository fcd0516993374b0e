"""``excamera encode INPUT -o OUTPUT``: the whole ExCamera encode in one command.

1. Split INPUT (Y4M, or anything PyAV decodes: mp4, webm, ...) into Y4M chunks of ``--chunk``
   frames (the last may be shorter) in the bucket, under ``<stem>-y4m_<chunk>/%08d.y4m``.
2. Run the xcenc job on them (one worker per chunk, ``-K --batch``), with at most
   ``--workers`` encodes at once on this machine.
3. Stitch the chunk IVFs into one stream (one header, continuous timestamps), write it as IVF
   or, for ``.webm``, mux it with PyAV without re-encoding.
4. Check and measure before publishing: the output is decoded with xc and must show exactly
   the input's frame count; PSNR and SSIM are computed against the source (see
   :mod:`excamera.metrics`). Only then is the temporary file renamed to OUTPUT, so a
   failure never leaves a partial output under the final name.

``--passes`` defaults to the full ExCamera plan (7, capped at 3 per worker in batch mode);
``--passes 1`` is pass 0 alone (independent chunks, a key frame each).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..argcheck import check_int
from ..errors import CommandError
from ..metrics import QualityMeter
from ..mu.coordinator import JobResult
from ..mu.jobopts import add_job_options, check_job_options, run_job
from .media import (
    MediaError,
    VideoInfo,
    probe,
    read_pictures,
    stitch,
    write_chunks,
    write_ivf,
    write_webm,
)
from .xcenc.machine import clean_handoff, require_pass0_encoder
from .xcenc_cmd import add_xcenc_options, make_coordinator, make_params

FULL_PASSES = "7"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="encode a video to VP8 (IVF or WebM) with ExCamera's parallel workers",
        description="Split INPUT into chunks, encode them in parallel with the xcenc job, "
        "stitch the result into OUTPUT (.ivf or .webm) and report size, bitrate, PSNR and SSIM.",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="Y4M, or any video PyAV decodes")
    p.add_argument("-o", dest="output", type=Path, required=True, metavar="OUTPUT",
                   help="output file, .ivf or .webm")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="encodes running at once on this machine (CPU count)")
    p.add_argument("--chunk", type=int, default=6, help="frames per chunk (6)")
    p.add_argument("--batch", type=int, default=16,
                   help="chunks per key frame, ExCamera[n,x]'s x (16)")
    p.add_argument("--quality", dest="y_ac_qi", type=int, default=None, metavar="Q",
                   help="quality: vpxenc --cq-level (0..63), i.e. mu's -Y (30)")
    p.add_argument("--passes", default=FULL_PASSES,
                   help="passes, an integer or w,x,y,z as xcenc -p (7; at most 3 run per "
                   "worker in batch mode)")
    p.add_argument("--bucket", default=None,
                   help="storage for chunks and outputs (a temporary local directory, removed)")
    add_xcenc_options(p)
    add_job_options(p, default_workers=0, default_port=0)
    p.set_defaults(func=main)


@dataclass
class Summary:
    frames: int
    chunks: int
    info: VideoInfo
    output: Path
    payload_bytes: int
    file_bytes: int
    seconds: float
    split_seconds: float
    job_seconds: float
    finish_seconds: float
    passes: str
    meter: QualityMeter

    @property
    def duration(self) -> float:
        return self.frames * self.info.fps[1] / self.info.fps[0]

    @property
    def kbps(self) -> float:
        return self.payload_bytes * 8 / self.duration / 1000

    def lines(self) -> list[str]:
        fps = self.info.fps[0] / self.info.fps[1]
        m = self.meter

        def db(v: float) -> str:
            return "inf" if math.isinf(v) else f"{v:.2f}"

        return [
            f"encode: {self.output} ({self.file_bytes} bytes)",
            f"  frames    {self.frames} ({self.info.width}x{self.info.height} at {fps:.3f} fps), "
            f"{self.chunks} chunk(s), passes {self.passes}",
            f"  wall time {self.seconds:.2f} s (split {self.split_seconds:.2f}, "
            f"encode {self.job_seconds:.2f}, stitch+check {self.finish_seconds:.2f})",
            f"  bitrate   {self.kbps:.1f} kbit/s ({self.payload_bytes} bytes of VP8 frames)",
            f"  PSNR      Y {db(m.psnr_y)} dB, YUV {db(m.psnr_all)} dB",
            f"  SSIM      {m.ssim:.4f} (luma, 11x11 Gaussian window)" if m.ssim is not None
            else f"  SSIM      not measured: {self.info.width}x{self.info.height} is smaller than "
            "its 11x11 window",
        ]


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "video"


def main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    if args.n_parts != 0:
        raise CommandError("-n does not apply: there is one worker per chunk (see --workers)")
    suffix = args.output.suffix.lower()
    if suffix not in (".ivf", ".webm"):
        raise CommandError(f"{args.output}: the output must end in .ivf or .webm")
    if args.chunk < 1 or args.batch < 1 or args.workers < 1:
        raise CommandError("--chunk, --batch and --workers must be at least 1")
    if args.y_ac_qi is None:
        args.y_ac_qi = 30
    # Every number is checked before the input is split, not after.
    check_int("--quality", args.y_ac_qi, minimum=0, maximum=63 if args.pass0 == "vpxenc" else 127)
    check_job_options(args)
    require_pass0_encoder(args.pass0, args.backend, vars(args))
    out_dir = args.output.resolve().parent
    if not out_dir.is_dir():
        raise CommandError(f"{args.output}: directory {out_dir} does not exist")
    try:
        info = probe(args.input)
    except (MediaError, ValueError) as exc:
        raise CommandError(str(exc)) from None

    own_bucket = args.bucket is None
    bucket = args.bucket or tempfile.mkdtemp(prefix="excamera-encode-")
    work = Path(tempfile.mkdtemp(prefix="excamera-encode-work-"))
    tmp_out = out_dir / f".{args.output.name}.partial-{os.getpid()}"
    try:
        return _encode(args, info, bucket, work, tmp_out, t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own_bucket:
            shutil.rmtree(bucket, ignore_errors=True)
        if tmp_out.exists():
            tmp_out.unlink()


def _encode(args: argparse.Namespace, info: VideoInfo, bucket: str, work: Path,
            tmp_out: Path, t0: float) -> int:
    from ..mu.storage import StorageError, open_storage

    vid = f"{_stem(args.input)}-y4m_{args.chunk:02d}"
    try:
        files = write_chunks(args.input, info, args.chunk, work / "chunks")
    except (MediaError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    n_chunks = len(files)
    storage = open_storage(bucket)

    async def upload() -> None:
        await asyncio.gather(*(storage.put(f, f"{vid}/{i:08d}.y4m")
                               for i, f in enumerate(files)))

    try:
        asyncio.run(upload())
    except StorageError as exc:
        raise CommandError(f"uploading chunks: {exc}") from None
    t_split = time.monotonic()

    args.n_parts = n_chunks
    params = make_params(args, vid_name=vid, n_parts=n_chunks, kf_dist=args.batch,
                         cpu_slots=args.workers)
    args.relay_host = None
    holder: dict[str, JobResult] = {}
    run_job(args, lambda: make_coordinator(args, params, bucket),
            lambda r: holder.__setitem__("result", r))
    result = holder["result"]
    if params.handoff_storage:
        clean_handoff(params, bucket)
    t_job = time.monotonic()

    # Stitch, check and measure; publish only after everything passed.
    async def fetch() -> list[Path]:
        local = [work / "out" / f"{k:08d}.ivf" for k in range(n_chunks)]
        await asyncio.gather(*(storage.get(params.output_key(k), local[k])
                               for k in range(n_chunks)))
        return local

    try:
        chunk_ivfs = asyncio.run(fetch())
        stitched = stitch(chunk_ivfs, info.fps)
        if suffix_of(args.output) == ".webm":
            write_webm(stitched, info.fps, tmp_out)
        else:
            write_ivf(stitched, info.fps, tmp_out)
        meter = measure(args.input, stitched.frames, dict(stitched.entry_hashes))
    except (MediaError, StorageError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    if stitched.shown != meter.frames:
        raise CommandError(f"the stitched stream shows {stitched.shown} frames, "
                           f"decoded {meter.frames}")
    os.replace(tmp_out, args.output)
    t_end = time.monotonic()
    passes = sorted({o["passes"] for o in result.outputs.values()})
    summary = Summary(
        frames=meter.frames, chunks=n_chunks, info=info, output=args.output,
        payload_bytes=stitched.payload_bytes, file_bytes=args.output.stat().st_size,
        seconds=t_end - t0, split_seconds=t_split - t0, job_seconds=t_job - t_split,
        finish_seconds=t_end - t_job,
        passes=f"{args.passes} (per worker {passes[0]}..{passes[-1]})", meter=meter,
    )
    print("\n".join(summary.lines()))
    return 0


def suffix_of(path: Path) -> str:
    return path.suffix.lower()


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
