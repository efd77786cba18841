"""A minimal client of the web remote, for tests and the benchmark (the page is the real one).

`pair()` trades a pairing token for the credential cookie over plain HTTP (h11);
`open_web_stream()` opens the RFC 7395 WebSocket with that cookie and speaks XMPP on it.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import h11
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket

from agent.buttons import codec
from agent.web.http import COOKIE_NAME
from agent.web.server import WEBSOCKET_PATH
from agent.xmpp import stanza as st
from agent.xmpp.framing import FRAMING_NS, OPEN_TAG, SUBPROTOCOL
from agent.xmpp.serialize import serialize


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


async def http_request(
    host: str,
    port: int,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    tls: ssl.SSLContext | None = None,
) -> HttpReply:
    """One HTTP/1.1 request on a fresh connection (over TLS when `tls` is given)."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname=host)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        all_headers = [
            ("host", f"{host}:{port}"),
            ("content-length", str(len(body))),
            ("connection", "close"),
            *(headers or []),
        ]
        data = conn.send(h11.Request(method=method, target=target, headers=all_headers))
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(data + (conn.send(h11.EndOfMessage()) or b""))
        response: h11.Response | None = None
        received = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        assert response is not None
        return HttpReply(response.status_code, dict(response.headers), bytes(received))


def origin(host: str, port: int) -> str:
    return f"http://{host}:{port}"


async def pair(host: str, port: int, token: str) -> str | None:
    """The credential (cookie value) for `token`, or None if the agent refused it."""
    reply = await http_request(
        host,
        port,
        "POST",
        "/pair",
        body=urlencode({"token": token}).encode(),
        headers=[
            ("origin", origin(host, port)),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    )
    if reply.status != 200:
        return None
    set_cookie = reply.headers[b"set-cookie"].decode()
    name, _, rest = set_cookie.partition("=")
    assert name == COOKIE_NAME
    return rest.partition(";")[0]


class WebStream:
    """An open RFC 7395 stream: send iqs, await their replies; pushes queue up separately."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.tracker = st.IqTracker()

    async def send(self, element: ET.Element) -> None:
        await self.ws.send_message(serialize(element, stream_ns="").decode())

    async def receive(self) -> ET.Element:
        message = await self.ws.get_message()
        assert isinstance(message, str)
        return ET.fromstring(message)

    async def request(self, command: codec.Command) -> ET.Element:
        """Send a Buttons request; returns its iq reply (pushes before it are skipped)."""
        type_, payload = codec.request_element(command)
        iq = st.iq(type_, payload)
        id_ = self.tracker.prepare(iq)
        await self.send(iq)
        while True:
            reply = await self.receive()
            if reply.tag == st.IQ and reply.get("id") == id_:
                self.tracker.complete(reply)
                return reply


@asynccontextmanager
async def open_web_stream(
    host: str, port: int, credential: str | None, *, origin_header: str | None = None
) -> AsyncIterator[WebStream]:
    """Open the WebSocket and the stream (`<open/>` both ways, features read)."""
    headers = [(b"origin", (origin_header or origin(host, port)).encode())]
    if credential is not None:
        headers.append((b"cookie", f"{COOKIE_NAME}={credential}".encode()))
    async with open_websocket(
        host, port, WEBSOCKET_PATH, use_ssl=False, subprotocols=[SUBPROTOCOL], extra_headers=headers
    ) as ws:
        stream = WebStream(ws)
        await stream.send(ET.Element(OPEN_TAG, {"to": host, "version": "1.0"}))
        opened = await stream.receive()
        assert opened.tag == OPEN_TAG, opened.tag
        await stream.receive()  # <stream:features/>
        yield stream
        if ws.closed is None:
            with contextlib.suppress(ConnectionClosed):
                await stream.send(ET.Element(f"{{{FRAMING_NS}}}close"))
