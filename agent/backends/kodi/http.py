"""Kodi JSON-RPC over HTTP `/jsonrpc`: ONE keep-alive connection (h11 on a trio stream).

A fresh HTTP client per call costs tens of milliseconds; a kept-alive connection costs about
what the raw socket does. HTTP carries no notifications, so the backend polls instead.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio

from agent.backends.kodi.rpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ErrorResponse,
    RemoteProtocolError,
    Response,
    encode_request,
    parse_message,
)
from agent.backends.kodi.transport import (
    KodiAuthError,
    KodiCallTimeout,
    KodiConnectionError,
    KodiRpcError,
    unreachable_message,
)

_RECEIVE_SIZE = 65536


class _StaleConnection(Exception):
    """A kept-alive connection was closed by Kodi before it answered anything."""


class HttpConnection:
    supports_notifications = False
    close_reason = ""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        call_timeout: float,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._host = host
        self._port = port
        self._call_timeout = call_timeout
        self._max = max_message_bytes
        self._headers = [
            ("Host", f"{host}:{port}"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ]
        if username or password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._headers.append(("Authorization", f"Basic {token}"))
        self._ids = itertools.count(1)
        self._lock = trio.Lock()  # HTTP/1.1 without pipelining: one exchange at a time
        self._stream: trio.SocketStream | None = None
        self._h11: h11.Connection | None = None
        #: How many TCP connections were opened (tests check that keep-alive holds).
        self.connections_opened = 0

    async def wait_closed(self) -> None:
        await trio.sleep_forever()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        request_id = next(self._ids)
        body = encode_request(request_id, method, params)
        try:
            with trio.fail_after(self._call_timeout):
                async with self._lock:
                    answer = await self._exchange_with_retry(body)
        except trio.TooSlowError:
            raise KodiCallTimeout(
                f"Kodi at {self._host}:{self._port} did not answer {method} "
                f"within {self._call_timeout:g} s"
            ) from None
        try:
            events = parse_message(answer)
        except RemoteProtocolError as exc:
            raise KodiConnectionError(f"Kodi sent an invalid reply: {exc}") from None
        for event in events:
            if isinstance(event, ErrorResponse) and event.id in (None, request_id):
                raise KodiRpcError(method, event)
            if isinstance(event, Response) and event.id == request_id:
                return event.result
        raise KodiConnectionError(f"Kodi's reply to {method} did not answer it: {answer!r:.200}")

    async def aclose(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
        self._stream = None
        self._h11 = None

    async def _exchange_with_retry(self, body: bytes) -> bytes:
        for attempt in range(2):
            reused = self._stream is not None
            try:
                return await self._exchange(body)
            except _StaleConnection:
                await self.aclose()
                if not reused or attempt == 1:
                    break
            except BaseException:
                # Cancelled or failed mid-exchange: the HTTP state is unknown, start afresh.
                await self.aclose()
                raise
        raise KodiConnectionError(f"Kodi at {self._host}:{self._port} closed the connection")

    async def _connect(self) -> tuple[trio.SocketStream, h11.Connection]:
        if self._stream is None or self._h11 is None:
            try:
                self._stream = await trio.open_tcp_stream(self._host, self._port)
            except OSError as exc:
                raise KodiConnectionError(
                    unreachable_message(self._host, self._port, exc) + " (HTTP)"
                ) from None
            self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max)
            self.connections_opened += 1
        return self._stream, self._h11

    async def _exchange(self, body: bytes) -> bytes:
        stream, conn = await self._connect()
        headers = [*self._headers, ("Content-Length", str(len(body)))]
        try:
            request = conn.send(h11.Request(method="POST", target="/jsonrpc", headers=headers))
            payload = (request or b"") + (conn.send(h11.Data(data=body)) or b"")
            payload += conn.send(h11.EndOfMessage()) or b""
            await stream.send_all(payload)
            status, answer = await self._read_response(stream, conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise KodiConnectionError(
                f"lost the HTTP connection to Kodi at {self._host}:{self._port} ({exc})"
            ) from None
        except h11.ProtocolError as exc:
            raise KodiConnectionError(f"Kodi sent invalid HTTP ({exc})") from None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.aclose()
        if status == 401:
            raise KodiAuthError(
                f"Kodi at {self._host}:{self._port} rejected the configured username/password "
                "(HTTP 401): set kodi.username and kodi.password to Kodi's web server login"
            )
        if status != 200:
            raise KodiConnectionError(f"Kodi's web server answered HTTP {status} for /jsonrpc")
        return answer

    async def _read_response(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> tuple[int, bytes]:
        status = 0
        body = bytearray()
        received_any = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECEIVE_SIZE)
                if not data and not received_any:
                    raise _StaleConnection
                received_any = True
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max:
                    raise KodiConnectionError(f"a reply from Kodi exceeds {self._max} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise KodiConnectionError("Kodi closed the HTTP connection mid-reply")


@asynccontextmanager
async def open_http_connection(
    host: str,
    port: int,
    *,
    username: str = "",
    password: str = "",
    call_timeout: float,
) -> AsyncIterator[HttpConnection]:
    connection = HttpConnection(
        host, port, username=username, password=password, call_timeout=call_timeout
    )
    try:
        yield connection
    finally:
        await connection.aclose()
