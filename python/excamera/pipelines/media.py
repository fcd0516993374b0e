"""Getting video in and out of the encoder: read any input as 4:2:0 pictures, write chunks,
join chunk IVFs into one stream, and mux that stream into WebM without re-encoding.

Y4M input is read with :mod:`excamera.xc.y4m` (the bytes as they are); anything else goes
through PyAV (FFmpeg's demuxers and decoders), converted to 8-bit 4:2:0 when it is not already.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from excamera.xc.ivf import IvfReader, IvfWriter
from excamera.xc.y4m import MAGIC as Y4M_MAGIC
from excamera.xc.y4m import Picture, Y4MReader, Y4MWriter

if TYPE_CHECKING:
    from .audio import AudioPlan


class MediaError(ValueError):
    """The input cannot be read or the output cannot be made; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: tuple[int, int]  # (num, den)
    kind: str  # "y4m" or the container's name


def is_y4m(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(Y4M_MAGIC)) == Y4M_MAGIC


def _av_picture(frame: object) -> Picture:
    if frame.format.name != "yuv420p":  # type: ignore[attr-defined]
        frame = frame.reformat(format="yuv420p")  # type: ignore[attr-defined]
    planes = []
    for plane in frame.planes:  # type: ignore[attr-defined]
        raw = np.frombuffer(plane, np.uint8)
        arr = raw.reshape(plane.height, plane.line_size)[:, : plane.width]
        planes.append(np.ascontiguousarray(arr))
    return Picture(*planes)


def probe(path: Path) -> VideoInfo:
    """Size, frame rate and kind of ``path`` without decoding it all."""
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file, not a video")
    if is_y4m(path):
        with Y4MReader(path) as r:
            return VideoInfo(r.width, r.height, r.fps or (30, 1), "y4m")
    av = require_av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or Fraction(30, 1)
            return VideoInfo(s.codec_context.width, s.codec_context.height,
                             (rate.numerator, rate.denominator), c.format.name)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: cannot read as video: {exc}") from None


def read_pictures(path: Path) -> Iterator[Picture]:
    """Every frame of ``path`` in display order, as 8-bit 4:2:0 pictures."""
    if is_y4m(path):
        with Y4MReader(path) as r:
            yield from r
        return
    av = require_av()
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            for frame in c.decode(stream):
                yield _av_picture(frame)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: decoding failed: {exc}") from None


def write_chunks(path: Path, info: VideoInfo, chunk: int, out_dir: Path) -> list[Path]:
    """Split ``path`` into Y4M files of ``chunk`` frames (the last may be shorter)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    writer: Y4MWriter | None = None
    try:
        for i, pic in enumerate(read_pictures(path)):
            if (pic.width, pic.height) != (info.width, info.height):
                raise MediaError(f"{path}: frame {i} is {pic.width}x{pic.height}, the stream "
                                 f"is {info.width}x{info.height}")
            if i % chunk == 0:
                if writer is not None:
                    writer.close()
                files.append(out_dir / f"{len(files):08d}.y4m")
                writer = Y4MWriter(files[-1], info.width, info.height, info.fps)
            assert writer is not None
            writer.write(pic)
    finally:
        if writer is not None:
            writer.close()
    if not files:
        raise MediaError(f"{path}: no frames")
    return files


def is_shown(frame: bytes) -> bool:
    """VP8's show_frame bit (frame tag bit 4); hidden frames (alt-ref) update state only."""
    return len(frame) >= 3 and bool(frame[0] & 0x10)


def is_key(frame: bytes) -> bool:
    return len(frame) >= 3 and not frame[0] & 1


@dataclass
class Stitched:
    frames: list[bytes]
    pts: list[int]
    width: int
    height: int
    shown: int
    # (index of a chunk's first frame, the entry-state hash its IVF header records): xc-enc writes
    # the low 32 bits of the state it encoded against, so a decoder can prove it reaches that
    # state at the join. vpxenc chunks record 0, and a chunk that starts with a key frame
    # decodes from any state: nothing to check for either.
    entry_hashes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def payload_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def stitch(chunk_files: list[Path], fps: tuple[int, int]) -> Stitched:
    """Chunk IVFs in order as one stream: timestamps count shown frames from 0; a hidden frame
    takes the timestamp of the shown frame that follows it."""
    frames: list[bytes] = []
    entry_hashes: list[tuple[int, int]] = []
    size: tuple[int, int] | None = None
    for path in chunk_files:
        with IvfReader(path) as r:
            entry_hash = r.header.unused
            if size is None:
                size = (r.width, r.height)
            elif size != (r.width, r.height):
                raise MediaError(f"{path}: {r.width}x{r.height}, earlier chunks are "
                                 f"{size[0]}x{size[1]}")
            chunk = [f.data for f in r]
        if not chunk:
            raise MediaError(f"{path}: no frames")
        if chunk_files.index(path) == 0 and not is_key(chunk[0]):
            raise MediaError(f"{path}: the first chunk does not start with a key frame")
        if entry_hash and frames and not is_key(chunk[0]):
            entry_hashes.append((len(frames), entry_hash))
        frames += chunk
    assert size is not None
    pts: list[int] = []
    shown = 0
    for f in frames:
        pts.append(shown)
        shown += is_shown(f)
    return Stitched(frames, pts, size[0], size[1], shown, entry_hashes)


def write_ivf(s: Stitched, fps: tuple[int, int], path: Path) -> None:
    """One IVF header (frame count = frames written), timebase 1/fps."""
    with IvfWriter(path, s.width, s.height, rate=fps[0], scale=fps[1]) as w:
        for data, pts in zip(s.frames, s.pts, strict=True):
            w.write(data, pts)


def write_webm(s: Stitched, fps: tuple[int, int], path: Path,
               audio: AudioPlan | None = None) -> None:
    """Mux the VP8 frames into WebM as they are: no re-encode, key flags from the frame tags;
    with the input's audio, copied or transcoded, when ``audio`` says so."""
    from contextlib import ExitStack

    from .audio import COPY, TRANSCODE, add_audio_stream, audio_packets

    av = require_av()
    tb = Fraction(fps[1], fps[0])
    try:
        with ExitStack() as stack:
            # bitexact: no random segment/track UIDs or muxer version, so the same input gives
            # the same file (a job on another backend must be byte-identical to a local one).
            out = stack.enter_context(av.open(str(path), "w", format="webm",
                                              container_options={"fflags": "+bitexact"}))
            stream = out.add_stream("vp8", rate=Fraction(fps[0], fps[1]))
            stream.width, stream.height = s.width, s.height
            stream.time_base = tb

            def video() -> Iterator[object]:
                for data, pts in zip(s.frames, s.pts, strict=True):
                    pkt = av.Packet(data)
                    pkt.pts = pkt.dts = pts
                    pkt.time_base = tb
                    pkt.is_keyframe = is_key(data)
                    pkt.stream = stream
                    yield pkt

            packets: Iterator[object] = video()
            if audio is not None and audio.action in (COPY, TRANSCODE):
                source = stack.enter_context(av.open(str(audio.source)))
                a_stream = add_audio_stream(out, audio, source)
                a_packets = audio_packets(audio, source, a_stream, s.shown * tb)
                # Interleaved by time ourselves: the muxer's own interleaving would buffer
                # all the video while waiting for audio, then give up after 10 s of it.
                packets = heapq.merge(packets, a_packets, key=_seconds)
            for pkt in packets:
                out.mux(pkt)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: WebM muxing failed: {exc}") from None


def _seconds(pkt: object) -> Fraction:
    return Fraction(pkt.pts) * pkt.time_base  # type: ignore[attr-defined]


def require_av() -> ModuleType:
    """PyAV, or one line saying how to install it: excamera depends on it, but an install made
    without dependencies (``pip install --no-deps``) can still lack it."""
    from ..needs import core_module

    return core_module("av", "reading this input or writing WebM")
