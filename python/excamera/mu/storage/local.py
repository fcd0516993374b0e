"""A directory used as an object store: the backend for one-machine runs, tests and the demo."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ...atomicfile import atomic_output
from .base import RESERVED_PREFIX, KeyNotFound, Storage, StorageError, check_key

_COPY_CHUNK = 1 << 20


def _atomic_write(dest: Path, fill) -> None:
    """Create ``dest`` through a temporary file beside it, fsynced, then renamed into place.

    A concurrent reader of ``dest`` sees the previous file or the complete new one; the
    temporary name carries the reserved prefix, so listings never show an upload in flight.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest, prefix=RESERVED_PREFIX, fsync=True) as tmp, open(tmp, "wb") as out:
        fill(out)


class LocalStorage(Storage):
    """Keys map to files under ``root``; a key can never name a file outside it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        clean = check_key(key, self.url)
        path = self.root / clean
        # check_key already forbids '..' and absolute keys; this also catches a symlink inside
        # the root that points out of it.
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise StorageError(f"{self.url}: key {key!r} resolves outside the storage root")
        return path

    def _wrap(self, exc: OSError, key: str, what: str) -> StorageError:
        return StorageError(f"{self.key_url(key)}: {what} failed: {exc.strerror or exc}")

    # -- blocking halves, run in a thread so the event loop keeps serving other transfers --

    def _get_sync(self, key: str, dest: Path) -> None:
        src = self._path(key)
        try:
            inp = open(src, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(key, self.key_url(key)) from None
        except OSError as exc:
            raise self._wrap(exc, key, "read") from None
        with inp:
            try:
                _atomic_write(dest, lambda out: shutil.copyfileobj(inp, out, _COPY_CHUNK))
            except OSError as exc:
                raise self._wrap(exc, key, f"download to {dest}") from None

    def _put_sync(self, src: Path, key: str) -> None:
        dest = self._path(key)
        try:
            inp = open(src, "rb")
        except OSError as exc:
            raise StorageError(
                f"{self.key_url(key)}: cannot read local file {src}: {exc.strerror or exc}"
            ) from None
        with inp:
            try:
                _atomic_write(dest, lambda out: shutil.copyfileobj(inp, out, _COPY_CHUNK))
            except OSError as exc:
                raise self._wrap(exc, key, f"upload of {src}") from None

    def _get_bytes_sync(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(key, self.key_url(key)) from None
        except OSError as exc:
            raise self._wrap(exc, key, "read") from None

    def _put_bytes_sync(self, data: bytes, key: str) -> None:
        try:
            _atomic_write(self._path(key), lambda out: out.write(data))
        except OSError as exc:
            raise self._wrap(exc, key, "write") from None

    def _list_sync(self, prefix: str) -> list[str]:
        # Walk only the directory the prefix's complete components name, not the whole root.
        head, _, _ = prefix.rpartition("/")
        start = self._path(head) if head else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            dirnames[:] = [d for d in dirnames if (base + d).startswith(prefix[: len(base + d)])]
            for name in filenames:
                key = base + name
                if not name.startswith(RESERVED_PREFIX) and key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def _delete_sync(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            return  # a directory is not an object: nothing to delete
        except OSError as exc:
            raise self._wrap(exc, key, "delete") from None

    # -- the async interface --

    async def get(self, key: str, path: Path) -> None:
        await asyncio.to_thread(self._get_sync, key, Path(path))

    async def put(self, path: Path, key: str) -> None:
        await asyncio.to_thread(self._put_sync, Path(path), key)

    async def get_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get_bytes_sync, key)

    async def put_bytes(self, data: bytes, key: str) -> None:
        await asyncio.to_thread(self._put_bytes_sync, bytes(data), key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def list(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._list_sync, prefix)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete_sync, key)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"
