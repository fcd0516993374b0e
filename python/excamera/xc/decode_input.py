"""The input of ``excamera decode``: VP8 packets from an IVF file, a WebM file, or standard input.

The container is told by its first bytes, as vpxdec tells it: ``DKIF`` is IVF (read here),
the EBML signature is WebM (demuxed with PyAV, imported only then). Anything else is reported
by the IVF reader, whose errors say what the file is not.

Besides the packets, a :class:`Stream` carries what vpxdec takes from the container: the
picture size it declares (the Y4M header's size, and what ``--scale`` scales to) and the frame
rate vpxdec writes into a Y4M header, by vpxdec's own rules (:meth:`Stream.y4m_rate`).
"""

from __future__ import annotations

import io
import os
import sys

from excamera.errors import CommandError
from excamera.xc.ivf import IvfError, IvfReader

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    # collections.abc imports collections: a short decode's start-up does without it
    from collections.abc import Callable, Iterator

EBML = b"\x1a\x45\xdf\xa3"
# vpxdec guesses a WebM stream's rate from the timestamps of its first second, at most this
# many frames.
_RATE_PROBE_FRAMES = 50


class Stream:
    """Compressed VP8 frames and the container's declarations. ``name`` is how errors name it."""

    name: str
    width: int
    height: int

    def packets(self) -> Iterator[bytes]:
        raise NotImplementedError

    def y4m_rate(self) -> tuple[int, int]:
        raise NotImplementedError

    def unread(self) -> tuple[int, int, int] | None:
        """Where the packets not read yet lie, for a decoder that reads them itself: an IVF
        file's (descriptor, offset, index of the frame there, see ``IvfReader.unread``), or
        None."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# IVF fourccs of other codecs. VP8 streams come with VP80, and with I420 in some of libvpx's
# own test files, so only a known other codec is refused by name.
OTHER_CODECS = {"VP90": "VP9", "AV01": "AV1", "H264": "H.264", "HEVC": "HEVC"}


class IvfStream(Stream):
    def __init__(self, reader: IvfReader, name: str) -> None:
        self._reader, self.name = reader, name
        self.width, self.height = reader.header.width, reader.header.height
        other = OTHER_CODECS.get(reader.header.fourcc.upper())
        if other is not None:
            reader.close()
            raise CommandError(f"{name}: the IVF header says {reader.header.fourcc} ({other}); "
                               "excamera decodes VP8 only")

    def packets(self) -> Iterator[bytes]:
        try:
            for frame in self._reader:
                yield frame.data
        except IvfError as exc:
            raise CommandError(str(exc)) from None

    def unread(self) -> tuple[int, int, int] | None:
        return self._reader.unread()

    def y4m_rate(self) -> tuple[int, int]:
        # vpxdec reads the header's timebase as a frame rate only when its numerator is small
        # (old vpxenc wrote 1/(2*fps)): it halves an even one or doubles the denominator of an
        # odd one; any other timebase gives 30 fps.
        num, den = self._reader.header.rate, self._reader.header.scale
        if 0 < den < 1_000_000_000 and 0 < num < 1000:
            return (num // 2, den) if num % 2 == 0 else (num, den * 2)
        return 30, 1

    def close(self) -> None:
        self._reader.close()


class WebmStream(Stream):
    def __init__(self, source: str | io.RawIOBase, name: str) -> None:
        try:
            import av
        except ModuleNotFoundError:
            raise CommandError(f"{name}: reading WebM needs PyAV (the 'av' package), which is "
                               "not installed: pip install av") from None
        self.name = name
        self._error = (av.FFmpegError, ValueError, OSError)
        try:
            self._container = av.open(source, "r")
        except self._error as exc:
            raise CommandError(f"{name}: not a readable WebM file: {exc}") from None
        video = [s for s in self._container.streams if s.type == "video"]
        vp8 = [s for s in video if s.codec_context.name == "vp8"]
        if not vp8:
            found = ", ".join(s.codec_context.name for s in self._container.streams) or "none"
            self._container.close()
            raise CommandError(f"{name}: no VP8 video track in this WebM file (tracks: {found})")
        self._track = vp8[0]
        self.width, self.height = self._track.codec_context.width, self._track.codec_context.height
        self._probed: list[tuple[bytes, int]] = []
        self._demux = self._read()

    def _read(self) -> Iterator[tuple[bytes, int]]:
        """(packet, timestamp in ns) in file order; the demuxer's closing empty packet is not
        one of the stream's frames."""
        tb = self._track.time_base
        try:
            for packet in self._container.demux(self._track):
                if packet.size == 0:
                    continue
                pts = packet.pts or 0
                yield bytes(packet), pts * tb.numerator * 1_000_000_000 // tb.denominator
        except self._error as exc:
            raise CommandError(f"{self.name}: {exc}") from None

    def packets(self) -> Iterator[bytes]:
        for data, _ in self._probed:
            yield data
        self._probed = []
        for data, _ in self._demux:
            yield data

    def y4m_rate(self) -> tuple[int, int]:
        # vpxdec counts the frames of the first second (at most 50, the one that reaches 1 s
        # included) and divides by the last one's timestamp, in microseconds.
        last = 0
        while last < 1_000_000_000 and len(self._probed) < _RATE_PROBE_FRAMES:
            packet = next(self._demux, None)
            if packet is None:
                break
            self._probed.append(packet)
            last = packet[1]
        return (len(self._probed) - 1) * 1_000_000, last // 1000

    def close(self) -> None:
        self._container.close()


class _Prefixed(io.RawIOBase):
    """A byte stream whose first bytes were already read to tell the container."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_stream(source: str | os.PathLike[str]) -> Stream:
    """The stream at ``source``; ``-`` is standard input."""
    if str(source) == "-":
        stdin = sys.stdin.buffer
        head = stdin.read(4)
        data = io.BufferedReader(_Prefixed(head, stdin))
        if head == EBML:
            return WebmStream(data, "standard input")
        return _ivf(lambda: IvfReader("standard input", stream=data), "standard input")
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CommandError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if head == EBML:
        return WebmStream(path, path)
    return _ivf(lambda: IvfReader(path), path)


def _ivf(reader: Callable[[], IvfReader], name: str) -> IvfStream:
    try:
        return IvfStream(reader(), name)
    except IvfError as exc:
        raise CommandError(str(exc)) from None
