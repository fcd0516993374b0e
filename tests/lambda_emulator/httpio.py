"""A small HTTP/1.1 server on asyncio streams, enough for the emulator's two APIs.

Both the Lambda service API (reached by botocore/urllib3) and each environment's Runtime API
(reached by awslambdaric's libcurl client, which long-polls ``/next``) need keep-alive, bodies
with Content-Length, ``Expect: 100-continue`` and handlers that may wait for minutes; thousands
of them at once. One coroutine per connection does that without a thread per request.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD = 64 * 1024


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj, headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        return cls(status, json.dumps(obj).encode(), hdrs)


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves ``handler`` on 127.0.0.1; ``close()`` also drops the open connections."""

    def __init__(self, handler: Handler, max_body: int):
        self._handler = handler
        self._max_body = max_body
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 1024) -> int:
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=MAX_HEAD, backlog=backlog
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one_request(self, reader, writer) -> bool:
        """Serve one request; False when the connection should end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _send(writer, Response(400, b"bad request line"), keep=False)
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                await _send(writer, Response(400, b"bad header line"), keep=False)
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            await _send(writer, Response(411, b"Content-Length required"), keep=False)
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > self._max_body:
            await _send(writer, Response(413, b"request body too large"), keep=False)
            return False
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        request = Request(
            method, unquote(url.path), dict(parse_qsl(url.query)), headers, body
        )
        try:
            response = await self._handler(request)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = Response.json(
                500,
                {"Type": "Service", "Message": "emulator internal error (see its stderr)"},
                {"x-amzn-ErrorType": "ServiceException"},
            )
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        await _send(writer, response, keep)
        return keep


async def _send(writer: asyncio.StreamWriter, response: Response, keep: bool) -> None:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    head = [f"HTTP/1.1 {response.status} {reason}"]
    for name, value in response.headers.items():
        head.append(f"{name}: {value}")
    head.append(f"Content-Length: {len(response.body)}")
    head.append("Connection: keep-alive" if keep else "Connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()
