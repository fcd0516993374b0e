"""S3 (or any S3-compatible store) as the object store for real runs.

boto3 is blocking, so every call runs in a worker thread (``asyncio.to_thread``); one boto3
client is shared by those threads, which boto3 documents as safe. Large files go through boto3's
transfer manager, which splits them into a multipart upload (and ranged parallel downloads).

``AWS_ENDPOINT_URL_S3`` (preferred) or ``AWS_ENDPOINT_URL`` point the client at an
S3-compatible server (MinIO, moto, Ceph); such servers generally want path-style addressing,
so that is used whenever an endpoint is given.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .base import KeyNotFound, Storage, StorageError, check_key

T = TypeVar("T")

# boto3's own default threshold; kept explicit so callers and tests can rely on it.
DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "403",
}


def endpoint_from_env() -> str | None:
    """The S3 endpoint the environment asks for, the service-specific variable first."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix/``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    ) -> None:
        from ... import needs

        boto3 = needs.module("boto3", "s3", "s3:// storage")
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not bucket:
            raise StorageError("s3:// URL has no bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix, f"s3://{bucket}")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or endpoint_from_env()
        config = Config(
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=32,
        )
        session = boto3.session.Session()
        self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 5 * 1024 * 1024),
        )

    def _full(self, key: str) -> str:
        clean = check_key(key, self.url)
        return f"{self.prefix}/{clean}" if self.prefix else clean

    def _error(self, exc: Exception, key: str | None, what: str) -> StorageError:
        """Turn a boto error into one line that names the object and says what to do."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = self.key_url(key) if key is not None else self.url
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(
                f"{where}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            )
        if isinstance(exc, EndpointConnectionError):
            return StorageError(f"{where}: cannot reach the S3 endpoint: {exc}")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            if key is not None and code in _MISSING_CODES:
                return KeyNotFound(key, where)
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in _AUTH_CODES:
                return StorageError(
                    f"{where}: {what} refused ({code}): check the AWS credentials and the "
                    "bucket's permissions"
                )
            return StorageError(f"{where}: {what} failed: {code} {err.get('Message', '')}".rstrip())
        return StorageError(f"{where}: {what} failed: {exc}")

    async def _call(self, key: str | None, what: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, key, what) from None

    async def get(self, key: str, path: Path) -> None:
        full = self._full(key)
        path = Path(path)

        def run() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # download_file writes to a temporary name and renames it when complete.
            self._client.download_file(self.bucket, full, str(path), Config=self._transfer)

        await self._call(key, "download", run)

    async def put(self, path: Path, key: str) -> None:
        full = self._full(key)
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"{self.key_url(key)}: local file {path} does not exist")
        await self._call(
            key,
            "upload",
            lambda: self._client.upload_file(str(path), self.bucket, full, Config=self._transfer),
        )

    async def get_bytes(self, key: str) -> bytes:
        full = self._full(key)

        def run() -> bytes:
            buf = io.BytesIO()
            self._client.download_fileobj(self.bucket, full, buf, Config=self._transfer)
            return buf.getvalue()

        return await self._call(key, "download", run)

    async def put_bytes(self, data: bytes, key: str) -> None:
        full = self._full(key)
        body = bytes(data)
        await self._call(
            key,
            "upload",
            lambda: self._client.upload_fileobj(
                io.BytesIO(body), self.bucket, full, Config=self._transfer
            ),
        )

    async def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            await self._call(
                key, "lookup", lambda: self._client.head_object(Bucket=self.bucket, Key=full)
            )
        except KeyNotFound:
            return False
        return True

    async def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""

        def run() -> list[str]:
            keys = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    keys.append(obj["Key"][len(base) :])
            return sorted(keys)

        return await self._call(None, f"list of prefix {prefix!r}", run)

    async def delete(self, key: str) -> None:
        full = self._full(key)
        await self._call(
            key, "delete", lambda: self._client.delete_object(Bucket=self.bucket, Key=full)
        )

    async def etag(self, key: str) -> str:
        """The object's ETag; a multipart upload's ends in ``-<parts>``."""
        full = self._full(key)
        head = await self._call(
            key, "lookup", lambda: self._client.head_object(Bucket=self.bucket, Key=full)
        )
        return str(head["ETag"]).strip('"')

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint={self.endpoint_url!r})"
