"""excamera: parallel VP8 encoding with many small workers (ExCamera, NSDI '17).

Subpackages:
  mu         the framework: coordinator, workers, relay, TLS, storage, backends
  xc         the VP8 codec (Rust core in ``excamera._xc``) with its Python API and tools
  pipelines  jobs that run on mu: png2y4m, xcenc
"""

__all__ = ["__version__"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("excamera")
except Exception:  # pragma: no cover - not installed
    __version__ = "0.0.0"
