"""IVF, the minimal container that vpxenc writes and vpxdec reads: a 32-byte file header, then
per frame a 12-byte header (payload size, timestamp) and the compressed frame.

File header, little-endian::

    0  'DKIF'      4  u16 version (0)   6  u16 header size (32)   8  fourcc ('VP80')
    12 u16 width   14 u16 height        16 u32 rate (timebase denominator)
    20 u32 scale (timebase numerator)   24 u32 frame count        28 u32 unused

``xc-enc`` puts the low 32 bits of its entry state's ``content_hash`` in the unused field
(``IvfHeader.unused``), so a stream says which decoder state it must be decoded from; other
writers leave 0 there.

Frame header: u32 payload size, u64 presentation timestamp.

The reader trusts only what it can check: it ignores the fourcc (the conformance vectors come
with both VP80 and I420 there) and the header's frame count (often wrong: 0 or 3999 in libvpx's
own test files), and counts frames by walking the file. A file that ends inside a header or a
payload is an error naming the frame, never a silently shorter stream.
"""

from __future__ import annotations

import io
import os
import stat

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    from collections.abc import Iterator

MAGIC = b"DKIF"
HEADER_SIZE = 32
FRAME_HEADER_SIZE = 12
# A VP8 frame is at most a few MB even at 16383x16383; a larger size field means a corrupt file.
MAX_FRAME = 256 * 1024 * 1024
_FRAME_COUNT_OFFSET = 24


# The fields are read and written with int.from_bytes and int.to_bytes, not struct: importing
# struct loads a shared library, about 0.2 ms of every `excamera decode`'s start-up.
def _uint(raw: bytes, start: int, size: int) -> int:
    """The little-endian unsigned integer in ``raw[start:start + size]``."""
    return int.from_bytes(raw[start : start + size], "little")


def _le(value: int, size: int) -> bytes:
    """``value`` as a little-endian unsigned integer of ``size`` bytes (OverflowError if it
    does not fit)."""
    return value.to_bytes(size, "little")


class IvfError(ValueError):
    """The file is not a well-formed IVF; the message names the file and, if any, the frame."""


class _Record(tuple):
    """A named tuple (fields read by name, by index or unpacked; equal to the plain tuple)
    without ``collections.namedtuple``: importing collections costs every ``excamera decode``
    about a millisecond of start-up. Subclasses list ``_fields`` and define ``__new__``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self, strict=True))
        return f"{type(self).__name__}({inner})"


def _field(index: int, doc: str) -> property:
    return property(lambda self: self[index], doc=doc)


class IvfHeader(_Record):
    """The file header: ``fourcc`` (str), ``width``, ``height``, ``rate`` and ``scale`` (the
    timebase ``scale/rate``), ``frame_count`` as the header states it (see
    :meth:`IvfReader.count_frames` for the real one), ``unused`` (bytes 28..32; xc-enc: low 32
    bits of the entry state's hash).

    A named tuple, not a dataclass: `excamera decode` reads IVF, and a dataclass costs its
    start-up the import of ``inspect``."""

    __slots__ = ()
    _fields = ("fourcc", "width", "height", "rate", "scale", "frame_count", "unused")
    fourcc = _field(0, "the fourcc, a str")
    width = _field(1, "width in pixels")
    height = _field(2, "height in pixels")
    rate = _field(3, "timebase denominator")
    scale = _field(4, "timebase numerator")
    frame_count = _field(5, "the frame count the header states")
    unused = _field(6, "bytes 28..32 as an integer")

    def __new__(cls, fourcc: str, width: int, height: int, rate: int, scale: int,
                frame_count: int, unused: int = 0) -> IvfHeader:
        return tuple.__new__(cls, (fourcc, width, height, rate, scale, frame_count, unused))

    def encode(self) -> bytes:
        return b"".join([
            MAGIC,
            _le(0, 2),
            _le(HEADER_SIZE, 2),
            self.fourcc.encode("ascii"),
            _le(self.width, 2),
            _le(self.height, 2),
            _le(self.rate, 4),
            _le(self.scale, 4),
            _le(self.frame_count, 4),
            _le(self.unused, 4),
        ])


class IvfFrame(_Record):
    """One frame: its payload ``data`` (bytes) and presentation timestamp ``pts``."""

    __slots__ = ()
    _fields = ("data", "pts")
    data = _field(0, "the compressed frame")
    pts = _field(1, "presentation timestamp")

    def __new__(cls, data: bytes, pts: int) -> IvfFrame:
        return tuple.__new__(cls, (data, pts))


class IvfReader:
    """Iterate an IVF file's frames as :class:`IvfFrame` objects. With ``stream`` (an open
    binary file, such as standard input), frames are read from it and ``path`` only names it."""

    def __init__(self, path: str | os.PathLike[str], stream: io.BufferedIOBase | None = None
                 ) -> None:
        # The name as given, a str: pathlib is not imported for it (its imports cost a
        # short command's start-up several milliseconds).
        self.path = os.fspath(path)
        try:
            self._f: io.BufferedIOBase = open(self.path, "rb") if stream is None else stream
        except OSError as exc:
            raise IvfError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise
        self._index = 0

    def _read_header(self) -> IvfHeader:
        raw = self._f.read(HEADER_SIZE)
        if not raw:
            raise IvfError(f"{self.path}: empty file, not an IVF")
        if raw[:4] != MAGIC[: len(raw[:4])]:
            raise IvfError(f"{self.path}: not an IVF file (no DKIF signature)")
        if len(raw) < HEADER_SIZE:
            raise IvfError(f"{self.path}: IVF header truncated ({len(raw)} of {HEADER_SIZE} bytes)")
        version, hsize, fourcc = _uint(raw, 4, 2), _uint(raw, 6, 2), raw[8:12]
        w, h = _uint(raw, 12, 2), _uint(raw, 14, 2)
        rate, scale, count, unused = (_uint(raw, at, 4) for at in (16, 20, 24, 28))
        if version != 0:
            raise IvfError(f"{self.path}: IVF version {version} is not supported (only 0)")
        if hsize != HEADER_SIZE:
            raise IvfError(f"{self.path}: IVF header size {hsize}, expected {HEADER_SIZE}")
        return IvfHeader(fourcc.decode("latin-1"), w, h, rate, scale, count, unused)

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    def _frame_header(self, index: int) -> tuple[int, int] | None:
        raw = self._f.read(FRAME_HEADER_SIZE)
        if not raw:
            return None
        if len(raw) < FRAME_HEADER_SIZE:
            raise IvfError(
                f"{self.path}: frame {index}: frame header truncated "
                f"({len(raw)} of {FRAME_HEADER_SIZE} bytes)"
            )
        size, pts = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")
        if size > MAX_FRAME:
            raise IvfError(f"{self.path}: frame {index}: size {size} bytes is implausible")
        return size, pts

    def read_frame(self) -> IvfFrame | None:
        """The next frame, or None after the last one."""
        index = self._index
        head = self._frame_header(index)
        if head is None:
            return None
        size, pts = head
        data = self._f.read(size)
        if len(data) != size:
            raise IvfError(f"{self.path}: frame {index} is truncated ({len(data)} of {size} bytes)")
        self._index += 1
        return IvfFrame(data, pts)

    def unread(self) -> tuple[int, int, int] | None:
        """(file descriptor, byte offset, index) of the first frame not read yet, for a caller
        that reads the rest of a regular file itself (with pread); None when the frames come
        from a pipe or standard input."""
        try:
            fd = self._f.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation: no descriptor behind it
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fd, self._f.tell(), self._index

    def __iter__(self) -> Iterator[IvfFrame]:
        while (frame := self.read_frame()) is not None:
            yield frame

    def count_frames(self) -> int:
        """Frames actually in the file (walking headers, not reading payloads)."""
        saved = self._f.tell()
        try:
            end = os.fstat(self._f.fileno()).st_size
            self._f.seek(HEADER_SIZE)
            count = 0
            while (head := self._frame_header(count)) is not None:
                start = self._f.tell()
                if start + head[0] > end:
                    raise IvfError(
                        f"{self.path}: frame {count} is truncated ({end - start} of "
                        f"{head[0]} bytes)"
                    )
                self._f.seek(start + head[0])
                count += 1
            return count
        finally:
            self._f.seek(saved)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> IvfReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IvfWriter:
    """Write an IVF file. The header's frame count is written as 0 and fixed on ``close()``, so
    a writer killed half-way leaves a file whose readable frames are still all valid."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        rate: int = 30,
        scale: int = 1,
        fourcc: str = "VP80",
        unused: int = 0,
    ) -> None:
        if len(fourcc.encode("ascii")) != 4:
            raise IvfError(f"{path}: fourcc {fourcc!r} is not 4 ASCII characters")
        if not (0 < width < 1 << 16 and 0 < height < 1 << 16):
            raise IvfError(f"{path}: size {width}x{height} does not fit IVF's 16-bit fields")
        if rate <= 0 or scale <= 0:
            raise IvfError(f"{path}: timebase {scale}/{rate} is not positive")
        self.path = os.fspath(path)
        if not 0 <= unused < 1 << 32:
            raise IvfError(f"{path}: header field 'unused' {unused} does not fit 32 bits")
        self.header = IvfHeader(fourcc, width, height, rate, scale, 0, unused)
        self.frames_written = 0
        self._f: io.BufferedWriter = open(self.path, "wb")
        self._f.write(self.header.encode())

    def write(self, data: bytes, pts: int | None = None) -> None:
        """Append one frame; ``pts`` defaults to the frame's index."""
        if len(data) > MAX_FRAME:
            raise IvfError(f"{self.path}: frame {self.frames_written} is too large")
        if pts is None:
            pts = self.frames_written
        if not 0 <= pts < 1 << 64:
            raise IvfError(f"{self.path}: frame {self.frames_written}: pts {pts} out of range")
        self._f.write(_le(len(data), 4) + _le(pts, 8))
        self._f.write(data)
        self.frames_written += 1

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(_FRAME_COUNT_OFFSET)
        self._f.write(_le(self.frames_written, 4))
        self._f.close()

    def __enter__(self) -> IvfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ivf(path: str | os.PathLike[str]) -> tuple[IvfHeader, list[IvfFrame]]:
    """The header and all frames of a file."""
    with IvfReader(path) as reader:
        return reader.header, list(reader)


def count_frames(path: str | os.PathLike[str]) -> int:
    with IvfReader(path) as reader:
        return reader.count_frames()
