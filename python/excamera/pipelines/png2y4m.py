"""png2y4m: turn a run of PNG frames into one 4:2:0 Y4M file (the operation a png2y4m worker runs).

mu's png2y4m job had each worker fetch its chunk of numbered PNGs and run daala's ``png2y4m``
tool on them, giving one Y4M per chunk for the encoders. This module is that conversion,
written out so that its arithmetic is stated and testable:

Colour conversion (BT.601 matrix, limited "TV" range, as VP8 encoders expect). Each PNG sample
``v`` of bit depth ``d`` becomes ``x = v / (2**d - 1)`` in [0, 1]; 16-bit samples keep their
full precision here, nothing is reduced to 8 bits before the final rounding. Then, in float64::

    E  = 0.299 R + 0.587 G + 0.114 B                 (luma, 0..1)
    Y  = 16  + 219 * E                              (16..235)
    Cb = 128 + 224 * (B - E) / 1.772                (16..240)
    Cr = 128 + 224 * (R - E) / 1.402                (16..240)

Chroma is subsampled 2x2 by averaging the unrounded Cb and Cr of the (up to) four pixels of each
block; a block cut by an odd right or bottom edge averages the pixels it has, which equals
replicating the edge. Every output value is rounded half up, ``floor(x + 0.5)``, then clipped to
its range (the clip only guards against float error; the formulas stay in range).

Greyscale PNGs are R = G = B (so Cb = Cr = 128); alpha is dropped, not composited, as the
pixels' colour is what gets encoded; palette images are expanded to RGB by pypng.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import png

from excamera.atomicfile import atomic_output
from excamera.xc.y4m import Picture, Y4MError, Y4MReader, Y4MWriter

KR, KB = 0.299, 0.114
KG = 1.0 - KR - KB

# A PNG of zeros compresses about a thousandfold, and converting one costs some 80 bytes of
# memory per pixel (16-bit rows, then float64 planes). So the pixel count a PNG declares is
# checked before any of it is decoded. The default admits 4K UHD (3840x2160, about 0.7 GB to
# convert); --max-pixels raises it.
DEFAULT_MAX_PIXELS = 3840 * 2160
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngConvertError(ValueError):
    """A PNG could not be converted; the message names the file."""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which the format requires to come first."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except FileNotFoundError:
        raise PngConvertError(f"{path}: no such PNG file") from None
    except OSError as exc:
        raise PngConvertError(f"{path}: not a readable PNG: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise PngConvertError(f"{path}: not a readable PNG: no PNG signature and IHDR header")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def read_png_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read any PNG as float64 RGB in [0, 1], shape (height, width, 3), alpha dropped.

    A PNG declaring more than ``max_pixels`` pixels is refused before it is decoded.
    """
    width, height = png_size(path)
    if width * height > max_pixels:
        raise PngConvertError(
            f"{path}: PNG is {width}x{height} = {width * height} pixels, more than the limit "
            f"of {max_pixels} (raise it with --max-pixels)"
        )
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except FileNotFoundError:
        raise PngConvertError(f"{path}: no such PNG file") from None
    except (png.Error, zlib.error, OSError, EOFError, ValueError) as exc:
        raise PngConvertError(f"{path}: not a readable PNG: {exc}") from None
    planes, depth = int(info["planes"]), int(info["bitdepth"])
    if data.shape != (height, width * planes):
        raise PngConvertError(f"{path}: PNG pixel data does not match its {width}x{height} size")
    pixels = data.reshape(height, width, planes).astype(np.float64) / float((1 << depth) - 1)
    colour = 1 if info["greyscale"] else 3
    pixels = pixels[:, :, :colour]  # drop alpha
    if colour == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels


def _round(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), lo, hi).astype(np.uint8)


def subsample_2x2(plane: np.ndarray) -> np.ndarray:
    """Average each 2x2 block of a float plane; edge blocks average the samples they hold."""
    h, w = plane.shape
    hh, ww = (h + 1) // 2, (w + 1) // 2
    sums = np.zeros((hh, ww))
    counts = np.zeros((hh, ww))
    for dy in (0, 1):
        for dx in (0, 1):
            part = plane[dy::2, dx::2]
            sums[: part.shape[0], : part.shape[1]] += part
            counts[: part.shape[0], : part.shape[1]] += 1
    return sums / counts


def rgb_to_picture(rgb: np.ndarray) -> Picture:
    """Convert float RGB in [0, 1] (h, w, 3) to a 4:2:0 limited-range BT.601 picture."""
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    e = KR * r + KG * g + KB * b
    y = 16.0 + 219.0 * e
    cb = 128.0 + 224.0 * (b - e) / (2.0 * (1.0 - KB))
    cr = 128.0 + 224.0 * (r - e) / (2.0 * (1.0 - KR))
    return Picture(
        _round(y, 16, 235),
        _round(subsample_2x2(cb), 16, 240),
        _round(subsample_2x2(cr), 16, 240),
    )


def convert_pngs(
    png_paths: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    fps: tuple[int, int] = (24, 1),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> None:
    """Convert ``png_paths`` in order into one C420jpeg Y4M file at ``out_path``.

    The output appears only when every frame converted (:func:`excamera.atomicfile.atomic_output`),
    so a bad PNG never leaves a short Y4M behind. Each PNG may have at most ``max_pixels``.
    """
    out_path = Path(out_path)
    if not png_paths:
        raise PngConvertError(f"{out_path}: no PNG frames to convert")
    writer: Y4MWriter | None = None
    first: Path | None = None
    with atomic_output(out_path) as tmp:
        try:
            for src in map(Path, png_paths):
                pic = rgb_to_picture(read_png_rgb(src, max_pixels))
                if writer is None:
                    first = src
                    writer = Y4MWriter(tmp, pic.width, pic.height, fps)
                elif (pic.width, pic.height) != (writer.header.width, writer.header.height):
                    raise PngConvertError(
                        f"{src}: frame is {pic.width}x{pic.height} but {first} is "
                        f"{writer.header.width}x{writer.header.height}; all frames must be one "
                        "size"
                    )
                writer.write(pic)
        finally:
            if writer is not None:
                writer.close()


# ------------------------------------------------------------------- the reverse, for inputs


def picture_to_rgb(pic: Picture) -> np.ndarray:
    """Invert the conversion above: limited-range BT.601 to float RGB in [0, 1], (h, w, 3).

    Chroma is upsampled by repeating each sample over its 2x2 block, so that converting the
    result back with :func:`convert_pngs` averages four equal values and returns the same chroma
    (up to rounding and to colours outside the RGB cube, which are clipped).
    """
    h, w = pic.height, pic.width
    cb = np.repeat(np.repeat(pic.u.astype(np.float64), 2, 0), 2, 1)[:h, :w]
    cr = np.repeat(np.repeat(pic.v.astype(np.float64), 2, 0), 2, 1)[:h, :w]
    e = (pic.y.astype(np.float64) - 16.0) / 219.0
    pb = (cb - 128.0) / 224.0 * 2.0 * (1.0 - KB)  # = B - E
    pr = (cr - 128.0) / 224.0 * 2.0 * (1.0 - KR)  # = R - E
    r = e + pr
    b = e + pb
    g = (e - KR * r - KB * b) / KG
    return np.clip(np.stack([r, g, b], axis=2), 0.0, 1.0)


def write_png_rgb(rgb: np.ndarray, path: Path, bit_depth: int = 16) -> None:
    """Write float RGB in [0, 1] as an RGB PNG of ``bit_depth`` 8 or 16."""
    if bit_depth not in (8, 16):
        raise ValueError(f"PNG bit depth must be 8 or 16, not {bit_depth}")
    h, w, _ = rgb.shape
    top = (1 << bit_depth) - 1
    ints = np.floor(rgb * top + 0.5).astype(np.uint16 if bit_depth == 16 else np.uint8)
    writer = png.Writer(w, h, greyscale=False, bitdepth=bit_depth)
    with open(path, "wb") as f:
        writer.write(f, ints.reshape(h, w * 3))


def make_png_frames(
    y4m_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    bit_depth: int = 16,
    limit: int | None = None,
) -> list[Path]:
    """Write the frames of a Y4M as RGB PNGs ``out_dir/%08d.png`` numbered from 1 (mu's layout
    of a png16 input), up to ``limit`` frames; returns the paths in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        with Y4MReader(y4m_path) as reader:
            for i, pic in enumerate(reader, start=1):
                if limit is not None and i > limit:
                    break
                path = out / f"{i:08d}.png"
                write_png_rgb(picture_to_rgb(pic), path, bit_depth)
                paths.append(path)
    except Y4MError as exc:
        raise PngConvertError(str(exc)) from None
    return paths
