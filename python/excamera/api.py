"""excamera's Python API: :func:`encode` a video with parallel workers, :func:`decode` VP8.

Both are importable from ``excamera`` itself, which loads this module on first use; this
module imports nothing heavy until a function is called, so ``from excamera import encode``
stays cheap (no numpy, PyAV, boto3 or cryptography). Every failure raises
:class:`~excamera.errors.ExcameraError`, whose ``str`` is one line saying what failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExcameraError

if TYPE_CHECKING:
    from .mu.backends import Backend, BackendSpec
    from .mu.jobs import JobSettings, ProgressArg
    from .pipelines.encode.result import EncodeResult
    from .xc.y4m import Picture

__all__ = ["decode", "encode"]


def encode(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    quality: int | None = None,
    target_bitrate: float | None = None,
    workers: int | None = None,
    backend: str | Backend | BackendSpec | None = None,
    backend_options: Mapping[str, Any] | None = None,
    progress: ProgressArg = None,
    chunk: int = 6,
    batch: int = 16,
    passes: int = 3,
    pass0: str = "vpxenc",
    chain: str = "excamera",
    tools: str = "worker",
    kf_weight: float | None = 0.75,
    redecide_levels: int | None = None,
    audio: bool = True,
    bucket: str | None = None,
    job: JobSettings | None = None,
    verify: bool = False,
) -> EncodeResult:
    """Encode ``source`` (Y4M, or any video PyAV reads) to ``output`` (``.ivf`` or ``.webm``)
    with ExCamera's parallel workers; returns an :class:`~excamera.EncodeResult`.

    - ``quality``: constant quality, vpxenc's ``--cq-level``, 0 (best) .. 63 (default 30),
      whichever encoder runs pass 0. Or ``target_bitrate``: the whole file's bitrate in
      kbit/s, reached within 5% by whole trial encodes at per-chunk levels (an average: no
      maximum bitrate or buffer model; ``backend`` must then be a name or spec, since each
      trial runs on a new backend). The two are exclusive.
    - ``workers``: encodes running at once (default: this machine's CPU count).
    - ``backend``: where workers run: ``"local"`` (the default), ``"lambda"``, ``"ray"``, a
      :class:`~excamera.mu.backends.BackendSpec`, or a built Backend (which serves this one
      call and is closed when it ends, whether the call succeeded or not).
      ``backend_options`` go with a name, keyed as the backend's ``from_options`` reads them
      (its flags' dests), e.g. ``{"lambda_function": "excamera-0123", "lambda_regions":
      ["us-east-1"]}`` or ``{"ray_address": "head:6379"}``.
    - ``progress``: True for the live terminal view on stderr, or a callable handed each
      worker state change (an ``excamera.mu.machines.Transition``: worker, attempt, state,
      seconds since the job started).
    - ``chunk`` frames per chunk and a key frame every ``batch`` chunks (ExCamera[chunk,
      batch]); ``passes`` 3 for ExCamera's rebases, 1 for pass 0 alone (independent chunks);
      ``pass0`` ``"vpxenc"`` or ``"xc"`` (xc's own encoder, at the same quality scale); ``chain``,
      ``tools`` and ``kf_weight`` as ``excamera xcenc --help`` describes them;
      ``redecide_levels`` the excamera chain's parallel re-decide passes per chunk, 1..3 (the
      command line's ``--redecide-levels``; more give smaller files for more CPU; None: the
      command line's default).
    - ``audio``: keep the input's audio in a ``.webm`` output (the command line's
      ``--no-audio`` is ``audio=False``): Opus and Vorbis are copied as they are, anything else
      is transcoded to Opus; the audio keeps its place against the video and is cut to the
      video's length. An ``.ivf`` output holds video only: the audio is dropped and the
      result says so (``result.audio``, ``result.audio_dropped``).
    - ``bucket``: where chunks and outputs go, a directory or ``s3://bucket/prefix`` (default:
      a temporary directory, removed afterwards); remote backends need S3.
    - ``job``: mu's knobs (:class:`~excamera.mu.jobs.JobSettings`: listening address, retries,
      spares, timeouts, certificates, the transitions file).
    - ``verify``: each worker measures its own chunk and the joins are checked from the
      states the workers report; True also decodes the stitched stream in full afterwards and
      checks it against them (the command line's ``--verify``).

    The output appears only once the encode is complete and checked; on failure
    :class:`~excamera.ExcameraError` is raised and no output is left behind.
    """
    from .mu.backends import BackendSpec
    from .mu.jobs import JobSettings
    from .pipelines.encode.run import encode as run_encode
    from .pipelines.encode.settings import EncodeSettings, default_workers
    from .pipelines.xcenc.plan import REDECIDE_LEVELS

    if backend_options and not isinstance(backend, str | None):
        _close_if_built(backend)
        raise ExcameraError("backend_options go with a backend's name, not with "
                            f"{type(backend).__name__}")
    if isinstance(backend, str | None):
        backend = BackendSpec(backend, dict(backend_options or {}))
    try:
        settings = EncodeSettings(
            source=Path(source), output=Path(output), quality=quality,
            target_bitrate=target_bitrate,
            workers=default_workers() if workers is None else workers, chunk=chunk,
            batch=batch, passes=passes, pass0=pass0, chain=chain, tools=tools,
            kf_weight=kf_weight,
            redecide_levels=REDECIDE_LEVELS if redecide_levels is None else redecide_levels,
            audio=audio, bucket=bucket, backend=backend,
            job=job or JobSettings(), progress=progress, verify=verify,
        )
    except BaseException:
        _close_if_built(backend)
        raise
    return run_encode(settings)


def _close_if_built(backend: object) -> None:
    """A built Backend handed to :func:`encode` serves that one call, refused or not."""
    from .mu.backends import Backend

    if isinstance(backend, Backend):
        import asyncio

        asyncio.run(backend.close())


def decode(source: str | os.PathLike[str]) -> Iterator[Picture]:
    """The shown pictures of a VP8 stream in an IVF or WebM file (``-``: standard input), in
    order, decoded with xc (bit-exact with libvpx). Each is a
    :class:`~excamera.xc.y4m.Picture`: numpy planes ``y``, ``u``, ``v`` (8-bit 4:2:0),
    ``width``, ``height``, ``to_bytes()`` (I420).

    The container is checked at once (WebM is read with PyAV); a frame that does not decode
    raises :class:`~excamera.ExcameraError` naming the file and frame when the iteration
    reaches it.
    """
    from .xc.decode_input import open_stream

    return _pictures(open_stream(source))


def _pictures(stream: Any) -> Iterator[Picture]:
    from .xc.codec import DecodeError, Decoder

    decoder = Decoder()
    with stream:
        try:
            for data in stream.packets():
                picture = decoder.decode(data)
                if picture is not None:
                    yield picture
        except DecodeError as exc:
            raise ExcameraError(f"{stream.name}: {exc}") from None
        except OSError as exc:
            raise ExcameraError(f"{stream.name}: {exc.strerror or exc}") from None
    if decoder.frames_decoded == 0:
        raise ExcameraError(f"{stream.name}: no frames")
