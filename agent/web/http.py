"""Plain HTTP/1.1 on trio with h11: read a request, answer it, serve the page's files.

Only what the page needs: GET for the page and its assets, POST for pairing, and the
WebSocket upgrade (handed on by the server). Every response carries headers that keep the
page to itself: a strict Content-Security-Policy, no sniffing, no framing, no referrer (the
pairing token is in the URL the QR code opens).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any

import h11
import trio

RECEIVE_SIZE = 16384
#: Requests the page sends carry tiny bodies (a pairing token); anything bigger is refused.
MAX_BODY_BYTES = 4096
#: h11's limit on a request head (line + headers) still being received.
MAX_HEAD_BYTES = 16384
COOKIE_NAME = "buttons_credential"

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


class HttpError(Exception):
    """The request cannot be served; answer with `status` (and close if `close`)."""

    def __init__(self, status: int, message: str, *, close: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


@dataclass(frozen=True, slots=True)
class Asset:
    content_type: str
    body: bytes


def load_assets() -> dict[str, Asset]:
    """The page's files by URL path, read once from the package ("/" is index.html)."""
    assets: dict[str, Asset] = {}
    for entry in resources.files("agent.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            assets[f"/{entry.name}"] = Asset(_CONTENT_TYPES[suffix], entry.read_bytes())
    assets["/"] = assets["/index.html"]
    return assets


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: Any, **kwargs: Any) -> Response:
        body = json.dumps(value).encode()
        return cls(status, body, "application/json", **kwargs)

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        return cls(status, message.encode() + b"\n")


def header(request: h11.Request, name: bytes) -> str | None:
    """A request header's value (the first, if repeated), decoded leniently."""
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return None


def header_tokens(request: h11.Request, name: bytes) -> set[str]:
    """Comma-separated tokens of every `name` header, lower-cased (Connection, Upgrade, …)."""
    tokens: set[str] = set()
    for key, value in request.headers:
        if key == name:
            tokens.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    return tokens - {""}


def cookie(request: h11.Request, name: str) -> str | None:
    for key, value in request.headers:
        if key != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except CookieError:
            continue
        if name in jar:
            return jar[name].value
    return None


def credential_cookie(secret: str, *, max_age: int, secure: bool) -> bytes:
    """The Set-Cookie value that keeps a browser's credential out of reach of scripts."""
    attributes = [
        f"{COOKIE_NAME}={secret}",
        "Path=/",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes).encode()


class HttpConnection:
    """One TCP connection's HTTP/1.1 conversation (keep-alive: one request after another)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(exc.error_status_hint, str(exc)) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.h11.receive_data(bytes(data))

    async def next_request(self) -> h11.Request | None:
        """The next request's head, or None when the client is done with the connection."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        event = await self._next_event()
        if isinstance(event, h11.Request):
            return event
        return None  # ConnectionClosed (or a client that only closed)

    async def read_body(self) -> bytes:
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise HttpError(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return bytes(body)
            else:
                raise HttpError(400, "incomplete request body")

    @property
    def can_continue(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def trailing_data(self) -> bytes:
        """Bytes received after a request h11 paused at (an upgrade): the new protocol's."""
        return self.h11.trailing_data[0]

    async def send(self, response: Response, *, close: bool = False) -> None:
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *SECURITY_HEADERS,
            *response.headers,
        ]
        if close:
            headers.append((b"connection", b"close"))
        try:
            data = self.h11.send(h11.Response(status_code=response.status, headers=headers))
            data = (data or b"") + (self.h11.send(h11.Data(data=response.body)) or b"")
            data += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # the connection cannot carry a response any more (e.g. mid-body error)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)


class ReplayStream(trio.abc.Stream):
    """A stream that first hands out bytes already read from `inner`, then reads `inner`.

    h11 reads an upgrade request before we know it is one; trio-websocket wants to read it
    itself. This gives it the request back, byte for byte as h11 understood it.
    """

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = prefix
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


def request_bytes(request: h11.Request) -> bytes:
    """The request head again, for a parser that wants to read it (see ReplayStream)."""
    lines = [request.method + b" " + request.target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw_items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"
