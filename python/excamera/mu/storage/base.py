"""The storage interface that every job's inputs and outputs go through.

mu kept frames, chunks and states in S3 under keys such as ``sintel-1k-png16/00000001.png``.
Workers here talk to one small async interface instead, so the same job runs against a local
directory on one machine (tests, the demo) or an S3 bucket (real runs) without a code change.
The interface is async so that a worker can download the next input while it encodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath


class StorageError(Exception):
    """A storage operation failed; the message names the storage URL and the key."""


class KeyNotFound(StorageError):
    """The object does not exist. ``key`` is the key as asked, ``url`` its full address."""

    def __init__(self, key: str, url: str) -> None:
        super().__init__(f"no such object: {url}")
        self.key = key
        self.url = url


# Files under this name prefix are a LocalStorage's uploads in flight; no key may use it.
RESERVED_PREFIX = ".xc-part-"


def check_key(key: str, where: str) -> str:
    """Return ``key`` if it is a clean relative key, else raise :class:`StorageError`.

    Keys are '/'-separated names. Both backends apply the same rules so that a job that works
    on a local directory also works on S3 and the other way round: no absolute keys, no empty,
    '.' or '..' components (which would escape a local root or alias another key), no NUL and
    no backslash (which a filesystem might treat as a separator).
    """
    if not isinstance(key, str) or not key:
        raise StorageError(f"{where}: empty key")
    if "\0" in key or "\\" in key:
        raise StorageError(f"{where}: key {key!r} contains a NUL or backslash")
    if key.startswith("/"):
        raise StorageError(f"{where}: key {key!r} is absolute")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise StorageError(f"{where}: key {key!r} has an empty, '.' or '..' component")
        if part.startswith(RESERVED_PREFIX):
            raise StorageError(f"{where}: key {key!r} uses the reserved name {RESERVED_PREFIX}*")
    return str(PurePosixPath(*parts))


class Storage(ABC):
    """An object store addressed by string keys.

    ``url`` is where the store lives (``file:///abs/dir`` or ``s3://bucket/prefix``) and is what
    error messages name. Writes are all-or-nothing: a reader sees either the old object, the
    new one, or none, never a partial one.
    """

    url: str

    def key_url(self, key: str) -> str:
        """The full address of ``key`` in this store, for messages."""
        return f"{self.url.rstrip('/')}/{key}"

    @abstractmethod
    async def get(self, key: str, path: Path) -> None:
        """Download ``key`` to the local file ``path`` (parents created); KeyNotFound if absent."""

    @abstractmethod
    async def put(self, path: Path, key: str) -> None:
        """Upload the local file ``path`` as ``key``, replacing any existing object."""

    @abstractmethod
    async def get_bytes(self, key: str) -> bytes:
        """Return the content of ``key``; KeyNotFound if absent."""

    @abstractmethod
    async def put_bytes(self, data: bytes, key: str) -> None:
        """Store ``data`` as ``key``, replacing any existing object."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether ``key`` names an object."""

    @abstractmethod
    async def list(self, prefix: str = "") -> list[str]:
        """All keys that start with the string ``prefix`` (not only a directory), sorted."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; an absent key is not an error (as in S3), so retries are safe."""
