"""A small, independent reader of VP8 frame headers (RFC 6386 sections 7, 9 and 19.2).

The libvpx comparison tests use it to prove that each encoder setting really produced the
bitstream feature it is meant to exercise (hidden alt-ref frames, N token partitions,
segmentation, sharpness, q index, bitstream version...). It is deliberately separate from
the decoder under test: a bug shared by both could otherwise hide itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BoolReader:
    """The spec's boolean entropy decoder, two bytes of value at a time (section 7.3)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 2
        self.value = (self._byte(0) << 8) | self._byte(1)
        self.range = 255
        self.bit_count = 0

    def _byte(self, i: int) -> int:
        return self.data[i] if i < len(self.data) else 0

    def bool(self, prob: int) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        big_split = split << 8
        if self.value >= big_split:
            bit = 1
            self.range -= split
            self.value -= big_split
        else:
            bit = 0
            self.range = split
        while self.range < 128:
            self.value <<= 1
            self.range <<= 1
            self.bit_count += 1
            if self.bit_count == 8:
                self.bit_count = 0
                self.value |= self._byte(self.pos)
                self.pos += 1
        return bit

    def literal(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bool(128)
        return v

    def signed(self, n: int) -> int:
        m = self.literal(n)
        return -m if self.bool(128) else m

    def optional_signed(self, n: int) -> int:
        return self.signed(n) if self.bool(128) else 0


@dataclass
class FrameInfo:
    """The header fields the tests check (everything up to ``refresh_last``)."""

    key_frame: bool
    version: int
    show_frame: bool
    first_part_size: int
    width: int = 0
    height: int = 0
    horizontal_scale: int = 0
    vertical_scale: int = 0
    segmentation_enabled: bool = False
    update_mb_segmentation_map: bool = False
    simple_filter: bool = False
    filter_level: int = 0
    sharpness: int = 0
    lf_adjust: bool = False
    partitions: int = 1
    y_ac_qi: int = 0
    quant_deltas: list[int] = field(default_factory=list)
    refresh_golden: bool = False
    refresh_altref: bool = False
    copy_to_golden: int = 0
    copy_to_altref: int = 0
    refresh_entropy_probs: bool = False
    refresh_last: bool = False


def parse_frame(frame: bytes) -> FrameInfo:
    """Read the uncompressed chunk and the start of the first partition of one frame."""
    raw = frame[0] | frame[1] << 8 | frame[2] << 16
    info = FrameInfo(
        key_frame=raw & 1 == 0,
        version=(raw >> 1) & 7,
        show_frame=bool((raw >> 4) & 1),
        first_part_size=(raw >> 5) & 0x7FFFF,
    )
    start = 3
    if info.key_frame:
        assert frame[3:6] == b"\x9d\x01\x2a", "key frame start code"
        w = frame[6] | frame[7] << 8
        h = frame[8] | frame[9] << 8
        info.width, info.horizontal_scale = w & 0x3FFF, w >> 14
        info.height, info.vertical_scale = h & 0x3FFF, h >> 14
        start = 10
    d = BoolReader(frame[start : start + info.first_part_size])
    if info.key_frame:
        d.literal(2)  # color space, clamping type
    info.segmentation_enabled = bool(d.bool(128))
    if info.segmentation_enabled:
        info.update_mb_segmentation_map = bool(d.bool(128))
        update_data = d.bool(128)
        if update_data:
            d.bool(128)  # abs/delta
            for _ in range(4):
                d.optional_signed(7)
            for _ in range(4):
                d.optional_signed(6)
        if info.update_mb_segmentation_map:
            for _ in range(3):
                if d.bool(128):
                    d.literal(8)
    info.simple_filter = bool(d.bool(128))
    info.filter_level = d.literal(6)
    info.sharpness = d.literal(3)
    info.lf_adjust = bool(d.bool(128))
    if info.lf_adjust and d.bool(128):
        for _ in range(8):
            if d.bool(128):
                d.signed(6)
    info.partitions = 1 << d.literal(2)
    info.y_ac_qi = d.literal(7)
    info.quant_deltas = [d.optional_signed(4) for _ in range(5)]
    if info.key_frame:
        info.refresh_golden = info.refresh_altref = info.refresh_last = True
        info.refresh_entropy_probs = bool(d.bool(128))
    else:
        info.refresh_golden = bool(d.bool(128))
        info.refresh_altref = bool(d.bool(128))
        if not info.refresh_golden:
            info.copy_to_golden = d.literal(2)
        if not info.refresh_altref:
            info.copy_to_altref = d.literal(2)
        d.literal(2)  # sign biases
        info.refresh_entropy_probs = bool(d.bool(128))
        info.refresh_last = bool(d.bool(128))
    return info
