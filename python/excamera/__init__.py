"""excamera: parallel VP8 encoding with many small workers (ExCamera, NSDI '17).

Subpackages:
  mu         the framework: coordinator, workers, relay, TLS, storage, backends
  xc         the VP8 codec (Rust core in ``excamera._xc``) with its Python API and tools
  pipelines  jobs that run on mu: png2y4m, xcenc, encode
  awslambda  the AWS Lambda deployment package and its handler
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Looked up on first use: importlib.metadata costs tens of milliseconds, which every
    # worker process would otherwise pay at start-up.
    if name == "__version__":
        from .identity import package_version

        return package_version()
    raise AttributeError(f"module 'excamera' has no attribute {name!r}")
