"""The wire protocol shared by coordinator, workers and relay.

mu spoke colon-separated strings (``retrieve:key\\0file``) and answered ``OK:``/``FAIL(``.
Here every message is one frame::

    u32 big-endian  header length H
    u64 big-endian  body length B
    H bytes         header: a UTF-8 JSON object with at least {"type": str}
    B bytes         body: opaque bytes (a blob, a state, a file's content), often empty

The header carries typed fields, the body carries bulk data without any encoding, so a 64 MB
state is forwarded as it is. Limits stop a hostile or broken peer from making us allocate
without bound.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass, field
from typing import Any

PREFIX = struct.Struct(">IQ")
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far beyond any real command
MAX_BODY = 1 << 32  # 4 GiB


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


@dataclass
class Message:
    """One protocol frame: a typed JSON header plus an optional binary body."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def encode(self) -> bytes:
        header = json.dumps({"type": self.type, **self.fields}, separators=(",", ":")).encode()
        return PREFIX.pack(len(header), len(self.body)) + header + self.body


def decode_header(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("frame header has no string 'type'")
    kind = obj.pop("type")
    return kind, obj


async def read_prefix(reader: asyncio.StreamReader) -> tuple[int, int] | None:
    """Read a frame's length prefix; None on a clean EOF before any byte."""
    try:
        raw = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a frame prefix") from None
    hlen, blen = PREFIX.unpack(raw)
    if hlen == 0 or hlen > MAX_HEADER:
        raise ProtocolError(f"frame header length {hlen} out of range")
    if blen > MAX_BODY:
        raise ProtocolError(f"frame body length {blen} out of range")
    return hlen, blen


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """Read one message; None when the peer closed the connection between frames."""
    prefix = await read_prefix(reader)
    if prefix is None:
        return None
    hlen, blen = prefix
    try:
        header = await reader.readexactly(hlen)
        body = await reader.readexactly(blen) if blen else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    kind, fields = decode_header(header)
    return Message(kind, fields, body)


async def write_message(writer: asyncio.StreamWriter, msg: Message) -> None:
    """Write one message and wait until the transport has taken it (flow control)."""
    header = json.dumps({"type": msg.type, **msg.fields}, separators=(",", ":")).encode()
    writer.write(PREFIX.pack(len(header), len(msg.body)) + header)
    if msg.body:
        writer.write(msg.body)
    await writer.drain()
