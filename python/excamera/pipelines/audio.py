"""The input's audio, carried into a WebM output beside the encoded video.

Opus and Vorbis packets are copied as they are (WebM holds both); anything else is decoded and
encoded to Opus (libopus, through PyAV). Either way the audio keeps its place against the video:
the input's first video frame becomes time 0 of the output, every audio timestamp moves by the
same amount, and audio outside the video's span is left out (transcoded audio is cut to the
sample, copied packets are kept whole where they overlap an edge), so both streams start and
end together when they did in the input. A copy that starts mid-stream starts as a stream-copy
by ffmpeg does: its first packet only primes the decoder (Vorbis's overlap, Opus's pre-skip),
so the audio is heard from at most one packet (20 ms for Opus, typically 23 ms for Vorbis at
44.1 kHz) after the video's start; a pre-roll kept before the video would instead start the
audio up to 80 ms early, more than a frame. ``excamera encode`` has no option that trims or skips
video frames; if one is added, it must move these bounds too.

:func:`audio_plan` decides what happens, before the encode starts, so that an input whose audio
cannot be carried fails at once; :func:`audio_packets` makes the output stream's packets when
the WebM is written (:func:`excamera.pipelines.media.write_webm`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from .media import MediaError, is_y4m, require_av

#: Audio codecs WebM holds, copied packet for packet.
COPIED = ("opus", "vorbis")
#: What everything else becomes: libopus at 48 kHz (Opus's own rate), mono or stereo.
OPUS_ENCODER = "libopus"
OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms, libopus's default frame
OPUS_BITRATE = {1: 64_000, 2: 128_000}

#: What a plan does with the input's audio.
COPY, TRANSCODE, DROP = "copy", "transcode", "drop"


@dataclass(frozen=True)
class AudioPlan:
    """The input's first audio stream (``index`` among all its streams, ``codec`` as FFmpeg
    names it) and what the output gets of it: ``action`` ``"copy"``, ``"transcode"`` (to Opus)
    or ``"drop"``, with the ``reason`` for a drop. ``video_start`` (seconds) is where the
    input's first video frame sits on the input's clock: time 0 of the output."""

    source: Path
    index: int
    codec: str
    channels: int
    rate: int
    action: str
    video_start: Fraction = Fraction(0)
    reason: str = ""

    @property
    def channels_out(self) -> int:
        return self.channels if self.action == COPY else min(self.channels, 2)

    def describe(self) -> str:
        """What happened to the audio, for the encode's summary."""
        what = f"{self.codec}, {self.channels} ch, {self.rate} Hz"
        if self.action == COPY:
            return f"{what}: copied as it is"
        if self.action == TRANSCODE:
            kbps = OPUS_BITRATE[self.channels_out] // 1000
            return (f"{what}: transcoded to Opus ({self.channels_out} ch, {OPUS_RATE} Hz, "
                    f"{kbps} kbit/s)")
        return f"{what}: dropped, {self.reason}"


def audio_plan(source: Path, *, keep: bool, webm: bool) -> AudioPlan | None:
    """What to do with ``source``'s audio (None: it has none). ``keep`` False drops it as
    asked; an IVF output (``webm`` False) holds video only, so it drops it too.

    Raises :class:`MediaError` when the audio is to be kept but cannot be: PyAV cannot decode
    it, or has no Opus encoder.
    """
    if is_y4m(source):
        return None
    av = require_av()
    try:
        with av.open(str(source)) as c:
            if not c.streams.audio:
                return None
            a = c.streams.audio[0]
            v = c.streams.video[0] if c.streams.video else None
            video_start = (Fraction(v.start_time) * v.time_base
                           if v is not None and v.start_time is not None else Fraction(0))
            ctx = a.codec_context
            codec, channels = ctx.name, ctx.channels
            plan = AudioPlan(source, a.index, codec, channels, ctx.sample_rate, COPY,
                             video_start)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{source}: cannot read its audio: {exc}") from None
    if not keep:
        return _drop(plan, "as asked")
    if not webm:
        return _drop(plan, "IVF holds video only (write .webm to keep it)")
    if codec in COPIED:
        return plan
    if codec not in av.codecs_available or channels < 1:
        raise MediaError(f"{source}: its audio ({codec}) cannot be decoded to transcode it; "
                         "encode with --no-audio to drop it")
    if OPUS_ENCODER not in av.codecs_available:
        raise MediaError(f"{source}: its audio ({codec}) needs transcoding to Opus, but this "
                         f"PyAV has no {OPUS_ENCODER} encoder; encode with --no-audio to drop it")
    return replace(plan, action=TRANSCODE)


def _drop(plan: AudioPlan, reason: str) -> AudioPlan:
    return replace(plan, action=DROP, reason=reason)


def add_audio_stream(out: Any, plan: AudioPlan, source: Any) -> Any:
    """The output's audio stream: a copy of ``source``'s parameters, or a libopus encoder."""
    if plan.action == COPY:
        return out.add_stream_from_template(source.streams[plan.index])
    stream = out.add_stream(OPUS_ENCODER, rate=OPUS_RATE)
    ctx = stream.codec_context
    ctx.layout = "mono" if plan.channels_out == 1 else "stereo"
    ctx.format = "flt"
    ctx.bit_rate = OPUS_BITRATE[plan.channels_out]
    return stream


def audio_packets(plan: AudioPlan, source: Any, stream: Any, video_end: Fraction
                  ) -> Iterator[Any]:
    """The output's audio packets in order, on the output's clock (``stream`` set on each):
    those of the input's audio within ``[0, video_end)`` seconds of the output."""
    import av

    try:
        if plan.action == COPY:
            yield from _copied(plan, source, stream, video_end)
        else:
            yield from _transcoded(plan, source, stream, video_end)
    except av.error.FFmpegError as exc:
        what = "copying" if plan.action == COPY else "transcoding"
        raise MediaError(f"{plan.source}: {what} its audio ({plan.codec}) failed: {exc}") from None


def _copied(plan: AudioPlan, source: Any, stream: Any, video_end: Fraction) -> Iterator[Any]:
    a = source.streams[plan.index]
    tb = a.time_base
    shift = round(plan.video_start / tb)
    end = video_end / tb
    for pkt in source.demux(a):
        if pkt.pts is None or not pkt.size:  # the demuxer's end-of-stream marker
            continue
        pts = pkt.pts - shift
        if pkt.duration and pts + pkt.duration <= 0:  # wholly before the video
            continue
        if pts >= end:
            break
        pkt.pts, pkt.dts = pts, None if pkt.dts is None else pkt.dts - shift
        pkt.stream = stream
        pkt.time_base = tb
        yield pkt


def _transcoded(plan: AudioPlan, source: Any, stream: Any, video_end: Fraction
                ) -> Iterator[Any]:
    """Decode, cut to the video's span at the input's rate, resample to 48 kHz in 20 ms frames
    and encode. The input's samples are taken as contiguous from its first decoded frame on
    (a gap in the input's audio timestamps is not reproduced)."""
    import av

    a = source.streams[plan.index]
    resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout,
                                  rate=OPUS_RATE, frame_size=OPUS_FRAME)
    out_pts: int | None = None
    seen = 0  # input samples decoded so far
    keep_from = keep_to = 0

    def encode(frames: list[Any]) -> Iterator[Any]:
        nonlocal out_pts
        for f in frames:
            assert out_pts is not None
            f.pts, f.time_base = out_pts, Fraction(1, OPUS_RATE)
            out_pts += f.samples
            yield from stream.encode(f)

    for frame in source.decode(a):
        rate = frame.rate
        if out_pts is None:
            # Where the first sample sits on the output's clock, and which input samples
            # (counted from it) fall within [0, video_end).
            first = (Fraction(frame.pts) * frame.time_base if frame.pts is not None
                     else plan.video_start) - plan.video_start
            keep_from = max(0, round(-first * rate))
            keep_to = max(0, round((video_end - first) * rate))
            out_pts = max(0, round(first * OPUS_RATE))
        lo, hi = max(keep_from - seen, 0), min(keep_to - seen, frame.samples)
        seen += frame.samples
        if hi <= lo:
            if seen >= keep_to:
                break
            continue
        if (lo, hi) != (0, frame.samples):
            frame = _cut(frame, lo, hi)
        yield from encode(resampler.resample(frame))
    if out_pts is not None:
        yield from encode(resampler.resample(None))
    yield from stream.encode(None)


def _cut(frame: Any, lo: int, hi: int) -> Any:
    """Samples ``lo:hi`` of an audio frame, as a frame of the same format."""
    import av

    arr = frame.to_ndarray()
    if frame.format.is_planar:
        arr = arr[:, lo:hi]
    else:  # packed: one row, channels interleaved
        ch = len(frame.layout.channels)
        arr = arr[:, lo * ch:hi * ch]
    cut = av.AudioFrame.from_ndarray(arr.copy(), format=frame.format.name,
                                     layout=frame.layout.name)
    cut.rate = frame.rate
    return cut
