"""``excamera decode --scale``: resize each shown picture to one output size, as vpxdec does.

vpxdec (libvpx 1.12, built with libyuv as Debian builds it) resizes with libyuv's
``I420Scale(..., kFilterBox)``. For the bytes to match, this module reproduces what that call
does to 8-bit planes, in integer arithmetic (16.16 fixed-point positions): written here from
how libyuv behaves (its algorithms and rounding, read, not its code), and checked against
vpxdec's output (tests/test_decode_parity.py). Where libyuv's x86 and C code round
differently, this follows what vpxdec runs on x86-64; libyuv's ARM code blends columns with a
16-bit weight instead, so vpxdec on ARM can differ from both in the last bit.

- libyuv first simplifies the filter: "box" becomes bilinear unless an axis shrinks below one
  half; bilinear becomes linear (horizontal only) when the source is one row high or the height
  is unchanged (or exactly a third); linear becomes point sampling when the width is unchanged
  (or a third), or the source is one column wide.
- Same size: a copy. Same width: rows are blended (``ScalePlaneVertical``).
- Taller output (``ScalePlaneBilinearUp``), or a general reduction (``ScalePlaneBilinearDown``):
  columns are blended with a 7-bit weight (``(a*(128-f) + b*f + 64) >> 7``, the arithmetic of
  libyuv's x86 code), rows with an 8-bit weight (``(a*(256-f) + b*f + 128) >> 8``), the last
  source row repeated at the bottom.
- No filter left (``ScalePlaneSimple``): nearest pixel at the centre of each step.
- Reductions to exactly 1/2 or 1/4 of both sides: the rounded mean of each 2x2 or 4x4 block.
  A height reduced below one half (``ScalePlaneBox``): the mean of each box of source pixels
  a step covers, computed as libyuv does (16-bit row sums, a truncated reciprocal).
- Reductions to exactly 3/4 and 3/8 of both sides: libyuv's fixed kernels. Its x86 code,
  which vpxdec runs on the columns that fill whole groups of SIMD outputs, rounds differently
  from its C code, which does the remaining columns; both are reproduced, each on its columns.

A stream only needs a reduction when a frame is larger than the size it is scaled to; VP8's
own resizing (key frames coded smaller, as vpxenc's ``--resize-allowed`` does) always scales
up.

Each plane is done as whole-array numpy operations: per output row and column one source index
and one weight, computed once per pair of sizes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from excamera.xc.y4m import Picture, chroma_size

BOX, BILINEAR, LINEAR, NONE = "box", "bilinear", "linear", "none"
ONE = 1 << 16


def reduce_filter(sw: int, sh: int, dw: int, dh: int) -> str:
    """The filter libyuv really uses when asked for its box filter at these sizes."""
    f = BOX
    if dw * 2 >= sw and dh * 2 >= sh:
        f = BILINEAR
    if f == BILINEAR:
        if sh == 1 or dh == sh or dh * 3 == sh:
            f = LINEAR
        if sw == 1:
            f = NONE
    if f == LINEAR and (sw == 1 or dw == sw or dw * 3 == sw):
        f = NONE
    return f


def _div(num: int, den: int) -> int:
    """num/den in 16.16 fixed point, truncated like C's integer division (both positive)."""
    return (num << 16) // den


def _div1(num: int, den: int) -> int:
    """The step that lands the last of ``den`` outputs just inside the last of ``num`` inputs."""
    return ((num << 16) - 0x10001) // (den - 1)


def _slope(sw: int, sh: int, dw: int, dh: int, f: str) -> tuple[int, int, int, int]:
    """Start and step (16.16) of the source position across and down: x, y, dx, dy."""
    x = y = dx = dy = 0
    if f == BOX:
        # Reached only when one side still grows or shrinks by less than half: plain steps.
        dx, dy = _div(sw, dw), _div(sh, dh)
    elif f in (BILINEAR, LINEAR):
        if dw <= sw:
            dx = _div(sw, dw)
            x = (dx >> 1) - 32768  # sample at the centre of each step, minus half a pixel
        elif dw > 1:
            dx = _div1(sw, dw)
        if f == LINEAR:
            dy = _div(sh, dh)
            y = dy >> 1
        elif dh <= sh:
            dy = _div(sh, dh)
            y = (dy >> 1) - 32768
        elif dh > 1:
            dy = _div1(sh, dh)
    else:
        dx, dy = _div(sw, dw), _div(sh, dh)
        x, y = dx >> 1, dy >> 1  # the centre of each step
    return x, y, dx, dy


def _blend_rows(top: np.ndarray, bottom: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Rows blended with an 8-bit weight per output row (``frac`` has one entry per row)."""
    f = frac.astype(np.int32)[:, None]
    return ((top.astype(np.int32) * (256 - f) + bottom.astype(np.int32) * f + 128) >> 8)


@lru_cache(maxsize=8)
def _columns(sw: int, dw: int, x: int, dx: int, filtered: bool):
    """Per output column: source index, and the 7-bit weight of the next one (or None)."""
    pos = x + dx * np.arange(dw, dtype=np.int64)
    index = (pos >> 16).astype(np.intp)
    if not filtered:
        return index, None
    return index, ((pos >> 9) & 0x7F).astype(np.int32)


def _filter_columns(rows: np.ndarray, sw: int, dw: int, x: int, dx: int,
                    filtered: bool) -> np.ndarray:
    index, weight = _columns(sw, dw, x, dx, filtered)
    if weight is None:
        return rows[:, index].astype(np.int32)
    # libyuv reads the pixel after the last one with a zero weight; repeat the edge for it.
    padded = np.concatenate([rows, rows[:, -1:]], axis=1).astype(np.int32)
    a, b = padded[:, index], padded[:, index + 1]
    return (a * (128 - weight) + b * weight + 64) >> 7


def scale_plane(src: np.ndarray, dw: int, dh: int) -> np.ndarray:
    """One 8-bit plane resized to ``dw`` x ``dh`` as libyuv's box-filter request does it."""
    sh, sw = src.shape
    if (sw, sh) == (dw, dh):
        return src.copy()
    f = reduce_filter(sw, sh, dw, dh)
    j = np.arange(dh, dtype=np.int64)
    if dw == sw and f != BOX:
        # Rows only: positions from the top edge, the last blend just short of the last row.
        dy = _div(sh, dh)
        max_y = ((sh - 1) << 16) - 1 if sh > 1 else 0
        pos = np.minimum(j * dy, max_y)
        yi = (pos >> 16).astype(np.intp)
        frac = (pos >> 8) & 255 if f != NONE else np.zeros(dh, np.int64)
        bottom = np.minimum(yi + 1, sh - 1)
        return _blend_rows(src[yi], src[bottom], frac).astype(np.uint8)
    if dw <= sw and dh <= sh:
        if 4 * dw == 3 * sw and 4 * dh == 3 * sh:
            return _three_quarters(src, dw)
        if 8 * dw == 3 * sw and 8 * dh == 3 * sh:
            return _three_eighths(src, dw)
        if 2 * dw == sw and 2 * dh == sh:
            return _block_mean(src, 2)
        if 4 * dw == sw and 4 * dh == sh and f == BOX:
            return _block_mean(src, 4)
    if f == BOX and dh * 2 < sh:
        return _box(src, dw, dh)
    x, y, dx, dy = _slope(sw, sh, dw, dh, f)
    max_y = (sh - 1) << 16
    pos = np.minimum(y + j * dy, max_y)
    yi = (pos >> 16).astype(np.intp)
    if f == NONE:
        # Nearest pixel, no clamping needed: the centred steps stay inside the picture.
        return _filter_columns(src[(y + j * dy) >> 16], sw, dw, x, dx, False).astype(np.uint8)
    frac = (pos >> 8) & 255 if f != LINEAR else np.zeros(dh, np.int64)
    bottom = np.minimum(yi + 1, sh - 1)
    if dh > sh:
        # Taller: each source row is filtered across first, then neighbouring rows blended.
        cols = _filter_columns(src, sw, dw, x, dx, True)
        return _blend_rows(cols[yi], cols[bottom], frac).astype(np.uint8)
    # Shorter or as tall: rows are blended first (at the source width), then columns.
    rows = src[yi] if f == LINEAR else _blend_rows(src[yi], src[bottom], frac)
    return _filter_columns(rows, sw, dw, x, dx, True).astype(np.uint8)


def _block_mean(src: np.ndarray, n: int) -> np.ndarray:
    """Exact reduction by ``n`` on both sides: the rounded mean of each n x n block."""
    h, w = src.shape[0] // n, src.shape[1] // n
    blocks = src[: h * n, : w * n].astype(np.int32).reshape(h, n, w, n)
    return ((blocks.sum(axis=(1, 3)) + n * n // 2) // (n * n)).astype(np.uint8)


def _three_quarters(src: np.ndarray, dw: int) -> np.ndarray:
    """Exactly 3/4 of both sides: each 4x4 block gives 3x3 pixels, blending neighbours 3:1,
    1:1 and 1:3 across and down. libyuv's x86 code does the columns that fill whole groups of
    24 outputs, blending rows first with byte averages; its C code does the rest, blending
    columns first with exact rounding. Both are reproduced, each for its columns."""
    s = src.astype(np.int32)
    top, mid, low = s[0::4], s[1::4], s[3::4]  # rows 0, 1 and 3 of each group of 4
    nxt1, nxt2 = s[1::4], s[2::4]
    # Rows first (x86): row 0 leans on its own row, row 1 averages, row 2 leans on row 3.
    def avg(a, b):  # noqa: ANN001, ANN202
        return (a + b + 1) >> 1

    simd_rows = [avg(top, avg(nxt1, top)), avg(mid, nxt2), avg(low, avg(nxt2, low))]

    def across(r):  # noqa: ANN001, ANN202
        q = r.reshape(r.shape[0], -1, 4)
        return ((3 * q[..., 0] + q[..., 1] + 2) >> 2, (q[..., 1] + q[..., 2] + 1) >> 1,
                (q[..., 2] + 3 * q[..., 3] + 2) >> 2)

    def interleave(parts, rows):  # noqa: ANN001, ANN202
        out = np.empty((rows[0].shape[0], 3, parts[0][0].shape[1] * 3), np.int32)
        for k, (a, b, c) in enumerate(parts):
            out[:, k, 0::3], out[:, k, 1::3], out[:, k, 2::3] = a, b, c
        return out.reshape(-1, out.shape[2])

    simd = interleave([across(r) for r in simd_rows], simd_rows)
    # Columns first (C), then rows 3:1, 1:1, 1:3 with exact rounding.
    a, b, c, d = (np.stack(across(r), axis=-1) for r in (top, nxt1, nxt2, low))
    c_rows = [(3 * a + b + 2) >> 2, (b + c + 1) >> 1, (3 * d + c + 2) >> 2]
    exact = np.stack(c_rows, axis=1).reshape(-1, dw)
    n = dw - dw % 24
    return np.concatenate([simd[:, :n], exact[:, n:]], axis=1).astype(np.uint8)


def _three_eighths(src: np.ndarray, dw: int) -> np.ndarray:
    """Exactly 3/8 of both sides: each 8x8 block gives 3x3 pixels, means of boxes 3, 3 and 2
    wide and high, each sum multiplied by a truncated 16-bit reciprocal. In the pair of rows
    that closes each block, libyuv's x86 code (whole groups of 6 outputs) first averages the
    two rows with rounding and divides by 3 or 2; its C code (the rest) divides by 6 or 4."""
    s = src.astype(np.int64)
    h = s.shape[0] // 8

    def across(rows: np.ndarray, recips: tuple[int, int]) -> np.ndarray:
        q = rows.reshape(rows.shape[0], -1, 8)
        sums = (q[..., 0:3].sum(-1), q[..., 3:6].sum(-1), q[..., 6:8].sum(-1))
        out = np.empty((rows.shape[0], q.shape[1] * 3), np.int64)
        for k, total in enumerate(sums):
            out[:, k::3] = (total * recips[k == 2]) >> 16
        return out

    g = s.reshape(h, 8, -1)
    three = [across(g[:, 0:3].sum(1), (65536 // 9, 65536 // 6)),
             across(g[:, 3:6].sum(1), (65536 // 9, 65536 // 6))]
    simd_two = across((g[:, 6] + g[:, 7] + 1) >> 1, (65536 // 3, 65536 // 2))
    c_two = across(g[:, 6] + g[:, 7], (65536 // 6, 65536 // 4))
    n = dw - dw % 6
    two = np.concatenate([simd_two[:, :n], c_two[:, n:]], axis=1)
    return np.stack([*three, two], axis=1).reshape(-1, dw).astype(np.uint8)


def _box(src: np.ndarray, dw: int, dh: int) -> np.ndarray:
    """``ScalePlaneBox``: each output pixel the mean of the source box its step covers (at
    least one pixel), divided by multiplying with a truncated 16-bit reciprocal."""
    sh, sw = src.shape
    dx, dy = _div(sw, dw), _div(sh, dh)
    y0 = np.arange(dh, dtype=np.int64) * dy
    top = y0 >> 16
    heights = np.maximum(1, (np.minimum(y0 + dy, sh << 16) >> 16) - top)
    x0 = np.arange(dw + 1, dtype=np.int64) * dx
    left = x0[:-1] >> 16
    widths = np.maximum(1, (x0[1:] >> 16) - left)
    # Sums of whole rows, then of columns, by differences of running sums. The row sums are
    # 16-bit in libyuv.
    rows = np.concatenate([np.zeros((1, sw), np.int64), np.cumsum(src, 0, dtype=np.int64)])
    rows = (rows[top + heights] - rows[top]) & 0xFFFF
    cols = np.concatenate([np.zeros((dh, 1), np.int64), np.cumsum(rows, 1)], axis=1)
    sums = cols[:, left + widths] - cols[:, left]
    scale = 65536 // (widths[None, :] * heights[:, None])
    return ((sums * scale) >> 16).astype(np.uint8)


def scale_picture(picture: Picture, width: int, height: int) -> Picture:
    """A picture resized to ``width`` x ``height``: luma, then each chroma plane to the chroma
    size (half, rounded up), as ``I420Scale`` does."""
    cw, ch = chroma_size(width, height)
    return Picture(scale_plane(picture.y, width, height), scale_plane(picture.u, cw, ch),
                   scale_plane(picture.v, cw, ch))
