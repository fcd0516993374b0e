"""The decoder over the Rust core: states, the pure decode step, and a stream decoder.

The Rust core (``excamera._xc``) does the work; this module gives it a small surface:

- :class:`State` is an immutable decoder state (references, probabilities, segmentation,
  loop-filter deltas). ``State.from_bytes`` / ``to_bytes`` move it between processes.
- :func:`decode_frame` is the pure step ``(state, frame) -> (state', picture or None)``.
- :class:`Decoder` wraps that step for the common case of decoding a stream in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from excamera._xc import DecodeError, StateError
from excamera._xc import State as State
from excamera._xc import StreamDecoder as _StreamDecoder
from excamera._xc import decode_frame as _decode_frame
from excamera.xc.y4m import Picture

__all__ = ["DecodeError", "Decoder", "Picture", "State", "StateError", "decode_frame"]


def decode_frame(state: State, data: bytes) -> tuple[State, Picture | None]:
    """Decode one compressed frame against ``state``; ``state`` is left unchanged."""
    new_state, planes = _decode_frame(state, data)
    return new_state, (Picture(*planes) if planes is not None else None)


class Decoder:
    """Decodes a stream frame by frame, keeping the current :class:`State`.

    Starting from a state loaded from another worker is what makes ExCamera's hand-off work:
    ``Decoder(State.from_bytes(blob))`` continues exactly where that worker stopped.
    """

    def __init__(self, state: State | None = None) -> None:
        # The Rust stream decoder recycles reference buffers that no state holds any more,
        # which chained `decode_frame` calls cannot do.
        self._dec = _StreamDecoder(state)
        self.frames_decoded = 0

    @property
    def state(self) -> State:
        """The state to decode the next frame with (a snapshot)."""
        return self._dec.state

    @state.setter
    def state(self, state: State) -> None:
        self._dec = _StreamDecoder(state)

    def decode(self, data: bytes) -> Picture | None:
        try:
            planes = self._dec.decode(data)
        except DecodeError as exc:
            raise DecodeError(f"frame {self.frames_decoded}: {exc}") from None
        self.frames_decoded += 1
        return Picture(*planes) if planes is not None else None

    def decode_y4m(self, data: bytes, record: bool = True) -> tuple[int, int, bytes | None] | None:
        """Decode one frame for writing it out: None when it is hidden, else its display
        ``(width, height, record)``, where ``record`` is the frame's Y4M frame record
        (``FRAME\\n`` and the I420 planes, made in Rust without numpy), or None if not asked for."""
        try:
            shown = self._dec.decode_y4m(data, record)
        except DecodeError as exc:
            raise DecodeError(f"frame {self.frames_decoded}: {exc}") from None
        self.frames_decoded += 1
        return shown

    def decode_all(self, frames: Iterable[bytes]) -> Iterator[Picture]:
        """Yield every shown picture; hidden frames (e.g. alt-ref) only update the state."""
        for data in frames:
            picture = self.decode(data)
            if picture is not None:
                yield picture
