"""xc: the VP8 codec's Python API.

- :mod:`excamera.xc.codec`: :class:`State`, :func:`decode_frame`, :class:`Decoder` over the Rust
  core (``excamera._xc``).
- :mod:`excamera.xc.ivf`, :mod:`excamera.xc.y4m`: container readers and writers (pure Python).

The codec names are re-exported here lazily, so the pure-Python container modules import even
where the extension has not been built.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: `excamera decode` starts faster
if TYPE_CHECKING:
    from typing import Any

_CODEC_NAMES = {"DecodeError", "Decoder", "State", "StateError", "decode_frame"}
__all__ = sorted(_CODEC_NAMES | {"Picture"})


def __getattr__(name: str) -> Any:
    if name in _CODEC_NAMES:
        from excamera.xc import codec

        return getattr(codec, name)
    if name == "Picture":
        from excamera.xc.y4m import Picture

        return Picture
    raise AttributeError(f"module 'excamera.xc' has no attribute {name!r}")
