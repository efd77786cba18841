"""A raw XMPP peer for tests: bytes in, bytes out, parsed with ElementTree's pull parser.

Nothing of the agent's own XML code is used, so tests built on it check the wire format.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
OPEN = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' from='raw@peer' {attrs}>"
)


class RawPeer:
    """Bytes in, bytes out, parsed with ElementTree's pull parser — nothing of ours."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser: ET.XMLPullParser[Any] = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.header: ET.Element | None = None
        self.elements: list[ET.Element] = []
        self.ended = False
        self.eof = False

    async def send(self, text: str | bytes) -> None:
        await self.stream.send_all(text.encode() if isinstance(text, str) else text)

    async def read_until(self, predicate: Callable[[RawPeer], object], seconds: float = 5) -> None:
        with trio.fail_after(seconds):
            while not predicate(self):
                data = await self.stream.receive_some(65536)
                if not data:
                    self.eof = True
                    return
                self.parser.feed(data)
                events = cast(Iterator[tuple[str, ET.Element]], self.parser.read_events())
                for event, element in events:
                    if event == "start":
                        self.depth += 1
                        if self.depth == 1:
                            self.header = element
                    else:
                        self.depth -= 1
                        if self.depth == 1:
                            self.elements.append(element)
                        elif self.depth == 0:
                            self.ended = True

    def stream_error(self) -> str | None:
        for element in self.elements:
            if element.tag == f"{{{STREAMS}}}error":
                for child in element:
                    if child.tag.startswith(f"{{{STREAM_ERRORS}}}") and not child.tag.endswith(
                        "}text"
                    ):
                        return child.tag.rpartition("}")[2]
        return None


@asynccontextmanager
async def raw_peer(port: int, host: str = "127.0.0.1") -> AsyncIterator[RawPeer]:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        yield RawPeer(stream)


async def open_raw_stream(peer: RawPeer, attrs: str = "to='buttons@test' version='1.0'") -> None:
    """Send a stream header and wait for the answer (and the features, for version 1.0)."""
    await peer.send(OPEN.format(attrs=attrs))
    await peer.read_until(lambda p: p.header is not None and (p.elements or "version" not in attrs))
