"""excamera: parallel VP8 encoding with many small workers (ExCamera, NSDI '17).

The Python API (loaded on first use, so ``import excamera`` stays light)::

    import excamera

    result = excamera.encode("clip.y4m", "clip.webm", quality=30, workers=4)
    print(result.bitrate_kbps, result.psnr_y, result.ssim, result.cost.line())
    for picture in excamera.decode("clip.ivf"):
        ...  # picture.y, picture.u, picture.v: numpy planes

- :func:`encode`, :func:`decode` (``excamera.api``); :class:`EncodeResult` and
  :class:`WorkerRecord`, what ``encode`` returns; :class:`JobSettings`, mu's knobs;
  :class:`ExcameraError`, the one exception they raise.

Subpackages:
  mu         the framework: coordinator, workers, relay, TLS, storage, backends
  xc         the VP8 codec (Rust core in ``excamera._xc``) with its Python API and tools
  pipelines  jobs that run on mu: png2y4m, xcenc, encode
  awslambda  the AWS Lambda deployment package and its handler
"""

__all__ = [
    "EncodeResult", "ExcameraError", "JobSettings", "WorkerRecord", "__version__", "decode",
    "encode",
]

# name -> (module, attribute), imported on first use.
_LAZY = {
    "encode": ("excamera.api", "encode"),
    "decode": ("excamera.api", "decode"),
    "ExcameraError": ("excamera.errors", "ExcameraError"),
    "EncodeResult": ("excamera.pipelines.encode.result", "EncodeResult"),
    "WorkerRecord": ("excamera.pipelines.encode.result", "WorkerRecord"),
    "JobSettings": ("excamera.mu.jobs", "JobSettings"),
}


def __getattr__(name: str) -> object:
    # Looked up on first use: importlib.metadata costs tens of milliseconds, which every
    # worker process would otherwise pay at start-up; the API's modules import more still.
    if name == "__version__":
        from .identity import package_version

        return package_version()
    if name in _LAZY:
        module, attr = _LAZY[name]
        # __import__, not importlib.import_module: the former is what -X importtime times.
        return getattr(__import__(module, fromlist=[attr]), attr)
    raise AttributeError(f"module 'excamera' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
