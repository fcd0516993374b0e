"""The hand-off message: how a worker's decoder state travels to its successor.

mu's message is ``STATE(<tag>):`` followed by the state. What follows the colon here is an
envelope that names how the state is packed and the hash that the receiver checks::

    offset size  field
         0    4  magic "XCHO"
         4    1  version = 1
         5    1  codec: 0 = none (the state as it is), 1 = zlib
         6    2  flags (u16, little-endian): bit 0 = the state is in a shared file, not here;
                 the other bits are 0
         8    8  length of the state (u64, little-endian)
        16   32  SHA-256 of the state
        48    .  the state, packed by the codec (nothing with flag bit 0)

Why no compression by default: a 1280x720 state is 2.77 MB of reference pictures, which zlib
shrinks by only 47% for 128 ms of CPU (6 ms to undo), and lz4 or zstd at their fastest by
27-30% for 13-18 ms (``bench/hop.md``). Through the relay on one machine the bytes cost less
than any of that. zlib stays available for a slow link.

The receiver bounds everything before it allocates: the state's declared length may not exceed
``max_state_bytes`` of the receiver's own picture size (three distinct references and a
segment map), a decompressor may not produce more than that length, and the result must hash
to what the sender said. The format before this one (zlib right after the colon, no envelope)
is refused by its magic, in one line.

On one machine the bytes need not cross the relay at all (``FLAG_FILE``): the local backend
gives its workers a private directory (``OpContext.local_dir``, never a path from a message),
the sender writes the state there under ``shared_name`` (its relay id, the tag and the hash:
nothing a peer can steer outside that directory) and sends only the envelope; the receiver
derives that name itself (from the relay's stamp of the sender and the envelope), moves the
file into its own directory, bounds it by the declared length, reads it and checks the hash
like any other. Only the uncompressed state travels this way:
compressing bytes that never leave the machine would only cost CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

MAGIC = b"STATE("
ENVELOPE = b"XCHO"
VERSION = 1
HEAD = struct.Struct("<4sBBHQ32s")
CODECS = {"none": 0, "zlib": 1}
_NAMES = {v: k for k, v in CODECS.items()}
FLAG_FILE = 1  # the state is in the receiver's shared directory (``shared_name``)
# How the receiver gets a state sent with FLAG_FILE: (tag, length, digest) -> the state.
FetchShared = Callable[[int, int, bytes], bytes | bytearray]
# The state format's fixed part (``xc::state``): header, probabilities, segment-map length,
# and the CRC-32 at the end; each reference adds a tag and, when stored, 8 bytes of size.
_STATE_FIXED = 1134 + 4
_REF_HEAD = 1 + 8


class HandoffError(ValueError):
    """A hand-off message that cannot be used; the text is one line naming what failed."""


def max_state_bytes(width: int, height: int) -> int:
    """The largest serialized state of a ``width`` x ``height`` stream: every reference stored
    (planes at macroblock-aligned size) and a segment map."""
    mbw, mbh = (width + 15) // 16, (height + 15) // 16
    picture = 256 * mbw * mbh * 3 // 2
    return _STATE_FIXED + mbw * mbh + 3 * (_REF_HEAD + picture)


def pack_head(raw_len: int, digest: bytes, tag: int, codec: str = "none",
              flags: int = 0) -> bytes:
    """Everything of a hand-off message before the packed state (``flags``: ``FLAG_FILE``
    for a message that is nothing more)."""
    if codec not in CODECS:
        raise HandoffError(f"hand-off codec {codec!r}: expected one of {', '.join(CODECS)}")
    return (MAGIC + str(int(tag)).encode() + b"):"
            + HEAD.pack(ENVELOPE, VERSION, CODECS[codec], flags, raw_len, digest))


def shared_name(sender: int, tag: int, digest: bytes) -> str:
    """The file name of hand-off ``tag`` from relay id ``sender`` in the shared directory:
    digits and hex only, so no message can name a path outside it (a duplicate of a sender
    has an id of its own, so two instances never write one name)."""
    return f"{int(sender)}.{int(tag)}.{digest.hex()}.state"


def write_shared(directory: Path, sender: int, tag: int, raw: bytes, digest: bytes) -> Path:
    """Put state ``raw`` where its receiver will look (``shared_name``); whole or not at all:
    written under a temporary name, then renamed."""
    target = directory / shared_name(sender, tag, digest)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def read_shared(directory: Path, sender: int, tag: int, length: int, digest: bytes,
                take_to: Path | None = None) -> bytearray:
    """The state that relay id ``sender`` left for this receiver (``write_shared``), exactly
    ``length`` bytes (the envelope's, already bounded by the caller). Refuses, in one line,
    a missing file, a link, anything but a regular file, and a size other than ``length``;
    the hash is the caller's to check. The name is gone afterwards: with ``take_to`` (in the
    receiver's own directory, on the same file system) the file is first moved there, where
    the caller keeps it once the hash holds (saving a copy of the state) or removes it;
    without, or across file systems, it is read in place and removed."""
    what = f"hand-off state {tag}"
    path = directory / shared_name(sender, tag, digest)
    if take_to is not None:
        try:
            os.rename(path, take_to)  # a link or a FIFO moves as itself: refused below
            path = take_to
        except FileNotFoundError:
            pass  # said below, in one place
        except OSError:
            take_to = None  # another file system: read it where it is
    try:
        # O_NOFOLLOW: no symlink; O_NONBLOCK: a FIFO planted under the name cannot hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HandoffError(f"{what}: worker {sender}'s shared file {path.name[:40]}... is "
                           "missing") from None
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise HandoffError(f"{what}: worker {sender}'s shared file cannot be opened: "
                           f"{exc.strerror or exc}") from None
    ok = False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HandoffError(f"{what}: worker {sender}'s shared file is not a regular file")
        if info.st_size != length:
            raise HandoffError(f"{what}: worker {sender}'s shared file holds {info.st_size} "
                               f"bytes, the envelope says {length}")
        buf = bytearray(length)
        view, got = memoryview(buf), 0
        while got < length:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                raise HandoffError(f"{what}: worker {sender}'s shared file ended after {got} "
                                   f"of {length} bytes")
            got += n
        ok = True
    finally:
        os.close(fd)
        if not ok or take_to is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # read once: nobody else needs it
    return buf


def pack_hashed(raw: bytes, tag: int, codec: str = "none") -> tuple[bytes, str]:
    """The whole hand-off message for state ``raw``, and the state's SHA-256 (hex)."""
    digest = hashlib.sha256(raw)
    head = pack_head(len(raw), digest.digest(), tag, codec)
    return b"".join((head, zlib.compress(raw, 1) if codec == "zlib" else raw)), \
        digest.hexdigest()


def pack(raw: bytes, tag: int, codec: str = "none") -> bytes:
    """The whole hand-off message for state ``raw``."""
    return pack_hashed(raw, tag, codec)[0]


def parse_tag(data: bytes | memoryview) -> tuple[int, int]:
    """The tag of a message and where its envelope starts."""
    head = bytes(data[:32])
    end = head.find(b"):")
    digits = head[len(MAGIC):end] if end > 0 else b""
    if not head.startswith(MAGIC) or not digits.isdigit():
        raise HandoffError(f"hand-off message does not start with STATE(<tag>): ({head[:16]!r})")
    return int(digits), end + 2


def unpack(data: bytes | memoryview, max_bytes: int, fetch: FetchShared | None = None
           ) -> tuple[int, memoryview | bytes | bytearray, str]:
    """Check a hand-off message; returns its tag, the state and the state's SHA-256 (hex).

    ``max_bytes`` bounds the state (``max_state_bytes`` of the receiver's picture size).
    ``fetch`` reads a state sent with ``FLAG_FILE`` (None: such a message is refused)."""
    view = memoryview(data)
    tag, start = parse_tag(view)
    what = f"hand-off state {tag}"
    if len(view) < start + HEAD.size:
        raise HandoffError(f"{what}: {len(view) - start} bytes after the tag, shorter than the "
                           f"{HEAD.size}-byte envelope")
    magic, version, codec, flags, raw_len, digest = HEAD.unpack_from(view, start)
    if magic != ENVELOPE:
        raise HandoffError(f"{what}: no {ENVELOPE.decode()} envelope (an older excamera's "
                           "zlib hand-off? both ends must run the same version)")
    if version != VERSION or flags & ~FLAG_FILE:
        raise HandoffError(f"{what}: envelope version {version} (flags {flags}); this "
                           f"reader knows version {VERSION}")
    if codec not in _NAMES:
        raise HandoffError(f"{what}: unknown codec {codec}")
    if raw_len > max_bytes:
        raise HandoffError(f"{what}: declares {raw_len} bytes, more than the {max_bytes} a "
                           "state of this picture size can have")
    body = view[start + HEAD.size:]
    if flags & FLAG_FILE:
        if codec != CODECS["none"] or len(body):
            raise HandoffError(f"{what}: a shared-file hand-off carries an uncompressed state "
                               f"and nothing after its envelope (codec {codec}, {len(body)} "
                               "bytes)")
        if fetch is None:
            raise HandoffError(f"{what}: sent through a shared file, but this worker has no "
                               "shared hand-off directory (its backend is not one machine's)")
        raw: memoryview | bytes | bytearray = fetch(tag, raw_len, digest)
    elif codec == CODECS["none"]:
        if len(body) != raw_len:
            raise HandoffError(f"{what}: {len(body)} bytes of state, the envelope says "
                               f"{raw_len}")
        raw = body
    else:
        d = zlib.decompressobj()
        try:
            raw = d.decompress(body, raw_len + 1)  # one byte more shows an overlong stream
        except zlib.error as exc:
            raise HandoffError(f"{what}: not valid zlib data: {exc}") from None
        if len(raw) != raw_len or not d.eof or d.unused_data or d.unconsumed_tail:
            raise HandoffError(f"{what}: zlib data does not hold exactly the {raw_len} bytes "
                               "the envelope says")
    got = hashlib.sha256(raw)
    if got.digest() != digest:
        raise HandoffError(f"{what}: SHA-256 {got.hexdigest()[:16]}... differs from the "
                           f"sender's {digest.hex()[:16]}...")
    return tag, raw, got.hexdigest()
