"""YUV4MPEG2 (Y4M) reading and writing: the raw-video format between png2y4m and the encoder.

A Y4M file is one text header line, ``YUV4MPEG2`` followed by space-separated tags
(``W`` width, ``H`` height, ``F`` rate ``num:den``, ``I`` interlacing, ``A`` pixel aspect,
``C`` colorspace, ``X`` application data), then per frame a ``FRAME[ params]\\n`` line and the
planes Y, U, V back to back.

Only 8-bit 4:2:0 is accepted, because that is all VP8 codes: ``C420``, ``C420jpeg``,
``C420mpeg2`` and ``C420paldv`` differ only in where the chroma samples sit, which does not
change the bytes, so all four are read the same way; no ``C`` tag means 420jpeg. Any other
colorspace (4:2:2, 4:4:4, mono, more than 8 bits) is refused with an error rather than read
wrongly. Chroma planes are ``(w+1)//2 x (h+1)//2``, so odd sizes work.
"""

from __future__ import annotations

import io
import os
import stat
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

# numpy is imported where pictures are made, not here: `excamera decode` writes Y4M without it
# and should not pay its import (tens of milliseconds) at start-up; nor typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import numpy as np

MAGIC = b"YUV4MPEG2"
FRAME = b"FRAME"
ACCEPTED_COLORSPACES = ("420", "420jpeg", "420mpeg2", "420paldv")
# Text lines are tiny; a limit means a binary file given by mistake fails fast instead of
# being read to its end looking for a newline.
MAX_LINE = 4096
# VP8 codes width and height in 14 bits. Refusing larger sizes while parsing the header keeps a
# tiny file that declares a huge picture from costing a huge allocation before the truncation
# is noticed.
MAX_DIMENSION = 16383
# Without a file size to check against (a pipe), a frame is read in pieces of this size, so
# memory grows only with the bytes that actually arrive.
_READ_PIECE = 1 << 22


class Y4MError(ValueError):
    """The file is not a Y4M this module can read; the message names the file (and frame)."""


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of a 4:2:0 chroma plane: half of each, rounded up."""
    return (width + 1) // 2, (height + 1) // 2


def frame_bytes(width: int, height: int) -> int:
    """Bytes of one 4:2:0 8-bit picture: Y plus two quarter-size chroma planes."""
    cw, ch = chroma_size(width, height)
    return width * height + 2 * cw * ch


class Picture:
    """One 4:2:0 8-bit picture: ``y`` is (height, width), ``u`` and ``v`` are the chroma size."""

    __slots__ = ("y", "u", "v")

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        import numpy as np

        self.y, self.u, self.v = y, u, v
        for name in ("y", "u", "v"):
            plane = getattr(self, name)
            if not isinstance(plane, np.ndarray) or plane.dtype != np.uint8 or plane.ndim != 2:
                raise ValueError(f"Picture plane {name} must be a 2-D uint8 numpy array")
        want = chroma_size(self.width, self.height)[::-1]
        if self.u.shape != want or self.v.shape != want:
            raise ValueError(
                f"Picture chroma planes are {self.u.shape} and {self.v.shape}, expected {want} "
                f"for a {self.width}x{self.height} picture"
            )

    def __repr__(self) -> str:
        return f"Picture({self.width}x{self.height})"

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @classmethod
    def blank(cls, width: int, height: int, luma: int = 0, chroma: int = 128) -> Picture:
        import numpy as np

        cw, ch = chroma_size(width, height)
        return cls(
            np.full((height, width), luma, np.uint8),
            np.full((ch, cw), chroma, np.uint8),
            np.full((ch, cw), chroma, np.uint8),
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, width: int, height: int) -> Picture:
        """Split a packed I420 buffer into planes (views of ``data``, no copy)."""
        import numpy as np

        cw, ch = chroma_size(width, height)
        if len(data) != frame_bytes(width, height):
            raise ValueError(
                f"{len(data)} bytes is not one {width}x{height} 4:2:0 picture "
                f"({frame_bytes(width, height)} bytes)"
            )
        buf = np.frombuffer(data, np.uint8)
        ysz, csz = width * height, cw * ch
        return cls(
            buf[:ysz].reshape(height, width),
            buf[ysz : ysz + csz].reshape(ch, cw),
            buf[ysz + csz :].reshape(ch, cw),
        )

    def to_bytes(self) -> bytes:
        """The packed I420 layout: Y, then U, then V, rows without padding."""
        import numpy as np

        return b"".join(np.ascontiguousarray(p).tobytes() for p in (self.y, self.u, self.v))

    def __eq__(self, other: object) -> bool:
        import numpy as np

        if not isinstance(other, Picture):
            return NotImplemented
        return all(
            a.shape == b.shape and np.array_equal(a, b)
            for a, b in ((self.y, other.y), (self.u, other.u), (self.v, other.v))
        )


class Y4MHeader(namedtuple("Y4MHeader", "width height fps interlace aspect colorspace extras",
                            defaults=((24, 1), "p", (1, 1), "420jpeg", ()))):
    """The stream header's tags: ``width``, ``height``, ``fps`` as (num, den) or None when the
    file gives none, ``interlace``, ``aspect`` (num, den), ``colorspace`` and ``extras`` (the X
    tags, kept but not interpreted). A named tuple, as :class:`excamera.xc.ivf.IvfHeader` is."""

    __slots__ = ()

    @property
    def frame_size(self) -> int:
        return frame_bytes(self.width, self.height)

    def encode(self) -> bytes:
        tags = [f"W{self.width}", f"H{self.height}"]
        if self.fps is not None:
            tags.append(f"F{self.fps[0]}:{self.fps[1]}")
        tags += [f"I{self.interlace}", f"A{self.aspect[0]}:{self.aspect[1]}"]
        tags.append(f"C{self.colorspace}")
        tags += [f"X{x}" for x in self.extras]
        return MAGIC + b" " + " ".join(tags).encode("ascii") + b"\n"


def _ratio(value: str, tag: str, where: str) -> tuple[int, int]:
    num, sep, den = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(num), int(den)
    except ValueError:
        raise Y4MError(f"{where}: Y4M tag {tag}{value} is not a ratio n:d") from None


def parse_header(line: bytes, where: str) -> Y4MHeader:
    """Parse the stream header line (without its newline)."""
    if not line.startswith(MAGIC) or (len(line) > len(MAGIC) and line[len(MAGIC)] != 0x20):
        raise Y4MError(f"{where}: not a Y4M file (no YUV4MPEG2 signature)")
    try:
        tokens = line[len(MAGIC) :].decode("ascii").split()
    except UnicodeDecodeError:
        raise Y4MError(f"{where}: Y4M header is not ASCII text") from None
    width = height = None
    fps: tuple[int, int] | None = None
    interlace, aspect, colorspace = "p", (0, 0), "420jpeg"
    extras: list[str] = []
    for tok in tokens:
        tag, value = tok[0], tok[1:]
        if tag in "WH":
            try:
                n = int(value)
            except ValueError:
                raise Y4MError(f"{where}: Y4M tag {tok} is not a number") from None
            if n <= 0:
                raise Y4MError(f"{where}: Y4M size {tok} out of range")
            if n > MAX_DIMENSION:
                raise Y4MError(f"{where}: Y4M size {tok} is larger than VP8's {MAX_DIMENSION}")
            if tag == "W":
                width = n
            else:
                height = n
        elif tag == "F":
            fps = _ratio(value, tag, where)
            if fps[0] <= 0 or fps[1] <= 0:
                raise Y4MError(f"{where}: Y4M frame rate {tok} is not positive")
        elif tag == "I":
            interlace = value
        elif tag == "A":
            aspect = _ratio(value, tag, where)
        elif tag == "C":
            colorspace = value
        elif tag == "X":
            extras.append(value)
        # Unknown tags are ignored, as the format asks of readers.
    if width is None or height is None:
        raise Y4MError(f"{where}: Y4M header has no {'W' if width is None else 'H'} tag")
    if colorspace not in ACCEPTED_COLORSPACES:
        raise Y4MError(
            f"{where}: Y4M colorspace C{colorspace} is not supported; only 8-bit 4:2:0 "
            "(C420, C420jpeg, C420mpeg2, C420paldv) can be read"
        )
    return Y4MHeader(width, height, fps, interlace, aspect, colorspace, tuple(extras))


def _read_line(f: io.BufferedReader, where: str, what: str, start: bytes = b"") -> bytes:
    """Read one '\\n'-terminated line (returned without it); b'' at a clean end of file.

    ``start``: the line's first bytes, already consumed; they count toward the length limit.
    """
    line = f.readline(MAX_LINE - len(start))
    if not line:
        if start:
            raise Y4MError(f"{where}: file ends inside the {what} line")
        return b""
    if not line.endswith(b"\n"):
        if len(start) + len(line) >= MAX_LINE:
            raise Y4MError(f"{where}: {what} line longer than {MAX_LINE} bytes")
        raise Y4MError(f"{where}: file ends inside the {what} line")
    return line[:-1]


class Y4MReader:
    """Read a Y4M file frame by frame; iterate it for :class:`Picture` objects.

    ``count_frames()`` walks the frame headers by seeking past the pixel data, so it is cheap
    even on large files, and it finds truncation the same way reading does.

    A frame's buffer is allocated only once the file is known to hold it: a regular file's
    remaining size is checked first, and any other input (a pipe) is read piece by piece.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._f: io.BufferedReader = open(self.path, "rb")
        except OSError as exc:
            raise Y4MError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        try:
            self._regular = stat.S_ISREG(os.fstat(self._f.fileno()).st_mode)
            # Check the signature before insisting on a complete line, so that a binary file
            # given by mistake is called what it is. No seeking back: the input may be a pipe.
            start = self._f.read(len(MAGIC) + 1)
            if not start:
                raise Y4MError(f"{self.path}: empty file, not a Y4M")
            if start == MAGIC + b"\n":
                line = MAGIC
            elif start == MAGIC + b" ":
                line = start + _read_line(self._f, str(self.path), "Y4M header", start)
            else:
                raise Y4MError(f"{self.path}: not a Y4M file (no YUV4MPEG2 signature)")
            self.header = parse_header(line, str(self.path))
        except BaseException:
            self._f.close()
            raise
        self._data_start = self._f.tell() if self._regular else 0
        self._index = 0

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def fps(self) -> tuple[int, int] | None:
        return self.header.fps

    def _frame_line(self, index: int) -> bool:
        """Consume frame ``index``'s FRAME line; False at a clean end of file."""
        line = _read_line(self._f, f"{self.path}: frame {index}", "FRAME")
        if not line:
            return False
        if not (line == FRAME or line.startswith(FRAME + b" ")):
            raise Y4MError(
                f"{self.path}: frame {index}: expected a FRAME header, got {line[:20]!r}"
            )
        return True

    def read_frame(self) -> Picture | None:
        """The next picture, or None after the last one."""
        buf = self.read_frame_bytes()
        return None if buf is None else Picture.from_bytes(buf, self.width, self.height)

    def read_frame_bytes(self) -> bytearray | None:
        """The next picture as its packed I420 bytes (no numpy), or None after the last one."""
        index = self._index
        if not self._frame_line(index):
            return None
        size = self.header.frame_size
        if self._regular:
            left = os.fstat(self._f.fileno()).st_size - self._f.tell()
            if left < size:
                raise self._truncated(index, max(left, 0))
            buf = bytearray(size)
            got = self._f.readinto(buf)
        else:
            buf = bytearray()
            while len(buf) < size and (piece := self._f.read(min(size - len(buf), _READ_PIECE))):
                buf += piece
            got = len(buf)
        if got != size:
            raise self._truncated(index, got)
        self._index += 1
        return buf

    def _truncated(self, index: int, got: int) -> Y4MError:
        return Y4MError(
            f"{self.path}: frame {index} is truncated ({got} of {self.header.frame_size} bytes); "
            "the file ends inside it"
        )

    def __iter__(self) -> Iterator[Picture]:
        while (pic := self.read_frame()) is not None:
            yield pic

    def count_frames(self) -> int:
        """Number of frames in the whole file, without decoding them; the read position is kept."""
        if not self._regular:
            raise Y4MError(f"{self.path}: not a regular file; its frames cannot be counted ahead")
        saved, saved_index = self._f.tell(), self._index
        try:
            end = os.fstat(self._f.fileno()).st_size
            self._f.seek(self._data_start)
            count = 0
            while self._frame_line(count):
                start = self._f.tell()
                if start + self.header.frame_size > end:
                    raise self._truncated(count, end - start)
                self._f.seek(start + self.header.frame_size)
                count += 1
            return count
        finally:
            self._f.seek(saved)
            self._index = saved_index

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Y4MReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Y4MWriter:
    """Write pictures to a Y4M file. The default colorspace is C420jpeg, which vpxenc reads as it
    is (it resamples C420mpeg2 and C420paldv chroma instead)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: tuple[int, int] = (24, 1),
        *,
        colorspace: str = "420jpeg",
        aspect: tuple[int, int] = (1, 1),
        interlace: str = "p",
    ) -> None:
        if colorspace not in ACCEPTED_COLORSPACES:
            raise Y4MError(f"{path}: cannot write colorspace C{colorspace}")
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise Y4MError(f"{path}: picture size {width}x{height} out of range")
        if fps[0] <= 0 or fps[1] <= 0:
            raise Y4MError(f"{path}: frame rate {fps[0]}:{fps[1]} is not positive")
        self.path = Path(path)
        self.header = Y4MHeader(
            width, height, (int(fps[0]), int(fps[1])), interlace, aspect, colorspace
        )
        self.frames_written = 0
        self._f: io.BufferedWriter = open(self.path, "wb")
        self._f.write(self.header.encode())

    def write(self, picture: Picture) -> None:
        if (picture.width, picture.height) != (self.header.width, self.header.height):
            raise Y4MError(
                f"{self.path}: frame {self.frames_written} is {picture.width}x{picture.height}, "
                f"the stream is {self.header.width}x{self.header.height}"
            )
        import numpy as np

        self._f.write(FRAME + b"\n")
        for plane in (picture.y, picture.u, picture.v):
            self._f.write(np.ascontiguousarray(plane).data)
        self.frames_written += 1

    def write_record(self, record: bytes) -> None:
        """Write a frame record made elsewhere: ``FRAME\\n`` and the I420 planes of a picture of
        the stream's size, as :meth:`excamera.xc.codec.Decoder.decode_y4m` makes it."""
        head = FRAME + b"\n"
        if len(record) != len(head) + self.header.frame_size or not record.startswith(head):
            raise Y4MError(
                f"{self.path}: frame {self.frames_written}: a {len(record)}-byte record is not "
                f"one {self.header.width}x{self.header.height} frame"
            )
        self._f.write(record)
        self.frames_written += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Y4MWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_y4m(path: str | os.PathLike[str]) -> tuple[Y4MHeader, list[Picture]]:
    """The header and every picture of a file (for small clips and tests)."""
    with Y4MReader(path) as reader:
        return reader.header, list(reader)


def write_y4m(
    path: str | os.PathLike[str], pictures: list[Picture], fps: tuple[int, int] = (24, 1)
) -> None:
    """Write ``pictures`` (all the same size, at least one) to ``path``."""
    if not pictures:
        raise Y4MError(f"{path}: no pictures to write")
    with Y4MWriter(path, pictures[0].width, pictures[0].height, fps) as writer:
        for pic in pictures:
            writer.write(pic)


def count_frames(path: str | os.PathLike[str]) -> int:
    with Y4MReader(path) as reader:
        return reader.count_frames()
