"""Where ``excamera decode`` puts its pictures, with vpxdec's output rules (libvpx 1.12).

- ``-o`` is a name pattern: ``%w`` and ``%h`` are the picture's width and height, ``%1`` to
  ``%9`` its frame number zero-padded to that many digits (the packet's number, counted from 1
  after ``--skip``). A pattern with a frame number writes one file per shown frame; without
  one, everything goes to one file, named with the container's size.
- Y4M (the default) needs one file: its header is written before the first frame, with the
  size the container declares and vpxdec's frame rate. ``--i420``/``--rawvideo`` write the bare
  I420 planes.
- ``--md5`` writes nothing: it prints the MD5 of what would have been written and the name it
  would have had (``HEX  NAME``): once for one file, or once per frame for a pattern.
"""

from __future__ import annotations

import os
import sys

from excamera.atomicfile import write_atomically
from excamera.errors import CommandError

_DIGITS = "123456789"


def check_pattern(pattern: str) -> None:
    """Refuse a pattern with an escape vpxdec does not know (it would die at the first frame)."""
    i = pattern.find("%")
    while i >= 0:
        code = pattern[i + 1 : i + 2]
        if code not in ("w", "h") and (not code or code not in _DIGITS):
            shown = f"%{code}" if code else "a final %"
            raise CommandError(f"output pattern {pattern!r}: {shown} is not one of %w, %h, "
                               "%1 to %9")
        i = pattern.find("%", i + 2)


def is_single_file(pattern: str) -> bool:
    """No frame number in the pattern: every frame goes to one file."""
    return not any(f"%{d}" in pattern for d in _DIGITS)


def expand(pattern: str, width: int, height: int, number: int) -> str:
    out, i = [], 0
    while (j := pattern.find("%", i)) >= 0:
        out.append(pattern[i:j])
        code = pattern[j + 1]
        out.append(str(width) if code == "w" else str(height) if code == "h"
                   else f"{number:0{code}d}")
        i = j + 2
    out.append(pattern[i:])
    return "".join(out)


class Output:
    """Takes each shown picture (I420 bytes, or a Y4M frame record) and writes or hashes it."""

    def __init__(self, pattern: str, *, y4m: bool, md5: bool, size: tuple[int, int],
                 rate: tuple[int, int] | None) -> None:
        self.pattern, self.y4m, self.md5, self.size, self.rate = pattern, y4m, md5, size, rate
        self.single = is_single_file(pattern)
        self.name = expand(pattern, *size, 0) if self.single else pattern
        self.frames = 0
        self._hash = _new_md5() if md5 and self.single else None
        self._file = None
        self._to_stdout = False  # whether _file is standard output's, which is not closed here

    def header(self) -> bytes:
        w, h = self.size
        num, den = self.rate or (30, 1)
        # vpxdec prints the rate with %u: a negative value (an empty WebM's guess) wraps.
        return f"YUV4MPEG2 W{w} H{h} F{num % 2**32}:{den % 2**32} Ip C420jpeg\n".encode()

    def open(self, path: str | os.PathLike[str] | None) -> None:
        """Start the single output file at ``path`` (None: standard output)."""
        self._to_stdout = path is None
        self._file = sys.stdout.buffer if path is None else open(path, "wb")  # noqa: SIM115

    def frame(self, number: int, width: int, height: int, data: bytes | memoryview,
              record: bytes | memoryview | None = None) -> None:
        """One shown picture: ``data`` its I420 planes, ``record`` the same as a Y4M record."""
        self.frames += 1
        if not self.single:
            name = expand(self.pattern, width, height, number)
            if self.md5:
                digest = _new_md5()
                digest.update(data)
                print(f"{digest.hexdigest()}  {name}")
            else:
                try:
                    write_atomically(name, data)
                except OSError as exc:
                    raise CommandError(f"{exc.filename or name}: {exc.strerror or exc}") from None
            return
        parts = [data] if not self.y4m else [record] if record is not None \
            else [b"FRAME\n", data]
        if self.y4m and self.frames == 1:
            parts.insert(0, self.header())
        for part in parts:
            if self._hash is not None:
                self._hash.update(part)
            else:
                self._file.write(part)

    def frame_from(self, decoder) -> None:  # noqa: ANN001 (the extension's StreamDecoder)
        """The picture ``decoder`` last reported shown, which it writes itself from its own
        rows into the single output file (no bytes object, no copy here). Not for ``--md5``."""
        self.frames += 1
        if self.y4m and self.frames == 1:
            self._file.write(self.header())
        self._file.flush()  # what Python buffered goes first: the decoder writes to the fd
        decoder.write_shown(self._file.fileno(), self.y4m)

    def decoder_target(self) -> tuple[int, bytes]:
        """For a decoder that writes the pictures itself into the single output file: its
        descriptor (what Python buffered for it flushed first), and what must come before the
        first picture (the Y4M header, unless a picture was written already). Not for --md5."""
        self._file.flush()
        return self._file.fileno(), self.header() if self.y4m and self.frames == 0 else b""

    def finish(self) -> None:
        """After the last frame: the single file's MD5 line, or its last bytes flushed."""
        if self._hash is not None:
            print(f"{self._hash.hexdigest()}  {self.name}")
        elif self._file is not None:
            if self._to_stdout:
                self._file.flush()
            else:
                self._file.close()

    def close(self) -> None:
        if self._file is not None and not self._to_stdout:
            self._file.close()


def _new_md5():  # noqa: ANN202 (hashlib's type is private)
    import hashlib  # only with --md5: its OpenSSL binding costs start-up

    return hashlib.md5(usedforsecurity=False)

