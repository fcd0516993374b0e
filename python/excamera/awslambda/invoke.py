"""Lambda's Invoke API from asyncio: one connection per invocation, thousands in flight.

A synchronous invocation holds its HTTP request open for as long as the worker runs, so a job
of a thousand workers is a thousand open requests. boto3 would need a thread for each; this
client needs a coroutine. It speaks HTTP/1.1 over asyncio streams and signs each request with
botocore's SigV4 signer and the session's credentials (which never leave this process), as mu's
launcher did with its own signed requests.

The endpoint is the one botocore would use for the region, so ``AWS_ENDPOINT_URL_LAMBDA`` (or
``AWS_ENDPOINT_URL``) reaches a stand-in such as the tests' emulator, and
``https://lambda.<region>.amazonaws.com`` is used otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

MAX_HEADER_BYTES = 64 * 1024
#: A synchronous response is at most 6 MB; anything longer is not Lambda talking.
MAX_BODY_BYTES = 6 * 1024 * 1024 + 64 * 1024


class InvokeError(Exception):
    """The request could not be made or its answer was not HTTP (network, protocol)."""


@dataclass
class InvokeResult:
    """One Invoke answer: HTTP status, Lambda's headers, the body."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float = 0.0

    @property
    def function_error(self) -> str | None:
        """``Unhandled``/``Handled`` when the function failed (the status is still 200)."""
        return self.headers.get("x-amz-function-error")

    @property
    def log_tail(self) -> str:
        raw = self.headers.get("x-amz-log-result", "")
        try:
            return base64.b64decode(raw).decode("utf-8", "replace") if raw else ""
        except ValueError:
            return ""

    @property
    def error_type(self) -> str:
        """The service's error name for a non-2xx answer (``TooManyRequestsException``)."""
        kind = self.headers.get("x-amzn-errortype", "").split(":")[0]
        if not kind:
            kind = str(self.json().get("Type") or self.json().get("__type") or "")
        return kind or f"HTTP {self.status}"

    @property
    def message(self) -> str:
        obj = self.json()
        return str(obj.get("message") or obj.get("Message") or obj.get("errorMessage") or "")

    def json(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return obj if isinstance(obj, dict) else {}


@dataclass
class LambdaEndpoint:
    """Where and how to reach one region's Lambda service."""

    region: str
    url: str
    session: Any = field(repr=False)  # a boto3 Session (for credentials)

    @classmethod
    def for_region(cls, region: str) -> LambdaEndpoint:
        import boto3

        session = boto3.session.Session(region_name=region)
        url = session.client("lambda", region_name=region).meta.endpoint_url
        return cls(region, url, session)

    @property
    def is_aws(self) -> bool:
        host = urlsplit(self.url).hostname or ""
        return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")

    def client(self) -> Any:
        """A boto3 client for the control plane (run it in a thread)."""
        return self.session.client("lambda", region_name=self.region, endpoint_url=self.url)

    def signed_headers(self, method: str, path: str, body: bytes,
                       headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = self.session.get_credentials()
        if creds is None:
            raise InvokeError("no AWS credentials found (environment, profile or role)")
        req = AWSRequest(method=method, url=self.url.rstrip("/") + path, data=body,
                         headers=headers)
        SigV4Auth(creds.get_frozen_credentials(), "lambda", self.region).add_auth(req)
        return dict(req.headers.items())


async def invoke(endpoint: LambdaEndpoint, function: str, payload: bytes, *,
                 invocation_type: str = "RequestResponse", log_tail: bool = True,
                 connect_timeout: float = 10.0, read_timeout: float = 960.0) -> InvokeResult:
    """One Invoke request; the answer whatever its status (InvokeError if none came)."""
    path = f"/2015-03-31/functions/{quote(function, safe='')}/invocations"
    headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": invocation_type}
    if log_tail and invocation_type == "RequestResponse":
        headers["X-Amz-Log-Type"] = "Tail"
    signed = endpoint.signed_headers("POST", path, payload, headers)
    return await _request(endpoint.url, "POST", path, signed, payload,
                          connect_timeout=connect_timeout, read_timeout=read_timeout)


async def _request(base_url: str, method: str, path: str, headers: dict[str, str], body: bytes,
                   *, connect_timeout: float, read_timeout: float) -> InvokeResult:
    parts = urlsplit(base_url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ctx = ssl.create_default_context() if secure else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if secure else None,
                                    limit=MAX_HEADER_BYTES),
            connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise InvokeError(f"cannot reach {base_url}: {exc or type(exc).__name__}") from None
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}",
                f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()
                 if k.lower() not in ("host", "content-length", "connection")]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status, resp_headers, data = await asyncio.wait_for(_read_response(reader),
                                                            read_timeout)
    except TimeoutError:
        raise InvokeError(f"no answer from {base_url} within {read_timeout:g} s") from None
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        raise InvokeError(f"{base_url}: {exc or type(exc).__name__}") from None
    finally:
        writer.close()
    return InvokeResult(status, resp_headers, data, loop.time() - started)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    line = (await reader.readline()).decode("latin-1")
    fields = line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP answer: {line[:60]!r}")
    status = int(fields[1])
    headers: dict[str, str] = {}
    total = 0
    while True:
        raw = await reader.readline()
        total += len(raw)
        if total > MAX_HEADER_BYTES:
            raise ValueError("HTTP headers too long")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        name, _, value = text.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise ValueError("HTTP body too long")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, headers, bytes(body)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY_BYTES:
            raise ValueError(f"HTTP body of {length} bytes is too long")
        return status, headers, await reader.readexactly(length)
    return status, headers, await reader.read(MAX_BODY_BYTES)
