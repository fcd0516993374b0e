"""Object storage for job inputs, outputs and states: a local directory or S3.

``open_storage(url)`` picks the backend from the URL so that every job and tool takes a single
``--storage URL`` option:

- ``DIR`` or ``file://DIR`` (``file:///abs/dir``): :class:`LocalStorage`
- ``s3://bucket`` or ``s3://bucket/prefix``: :class:`S3Storage`
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import KeyNotFound, Storage, StorageError, check_key
from .local import LocalStorage
from .s3 import S3Storage

__all__ = [
    "KeyNotFound",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "check_key",
    "open_storage",
]


def open_storage(url: str) -> Storage:
    """Open the store that ``url`` names (see the module docstring for the forms)."""
    if not url:
        raise StorageError("empty storage URL")
    if url.startswith("s3://"):
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        return S3Storage(bucket, prefix)
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            # file://relative/dir is common shorthand; treat host+path as a relative path.
            return LocalStorage(unquote(parts.netloc + parts.path))
        return LocalStorage(unquote(parts.path))
    scheme, sep, _ = url.partition("://")
    if sep and scheme.isalnum():
        raise StorageError(f"unsupported storage URL {url!r}: use a directory, file:// or s3://")
    return LocalStorage(url)
