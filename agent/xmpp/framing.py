"""A sans-IO adapter for XMPP over WebSocket (RFC 7395), receiver side.

RFC 7395 replaces the long-lived `<stream:stream>` document with one XML element per
WebSocket text message: `<open/>` and `<close/>` in the framing namespace bracket the
stream, and every stanza travels alone, with its namespaces declared. This class turns those
messages into the same events as the link-local `Connection` (StreamOpened, StanzaReceived,
StreamClosed, StreamErrorReceived), so the dispatcher cannot tell the two transports apart.

Each message is parsed by the hardened `StreamParser` inside a synthetic stream context, so
the RFC 6120 §11.1 restrictions and the size/depth/attribute limits are exactly the ones of
link-local streams. A fresh parser per message guarantees one complete element per message:
the context is closed right after the message, and anything left open fails to parse.

No sockets, no clock: the shell feeds `receive_message()` and sends what `send_*()` return.
"""

from __future__ import annotations

import enum
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Collection

from agent.xmpp.connection import (
    ERROR_TAG,
    Event,
    StanzaReceived,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import STREAM_ERRORS_NS, STREAMS_NS, LocalProtocolError, RemoteProtocolError
from agent.xmpp.parser import (
    XML_NS,
    ElementParsed,
    HeaderParsed,
    Limits,
    StreamHeader,
    StreamParser,
)
from agent.xmpp.serialize import CLIENT_NS, serialize

FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
SUBPROTOCOL = "xmpp"
OPEN_TAG = f"{{{FRAMING_NS}}}open"
CLOSE_TAG = f"{{{FRAMING_NS}}}close"
FEATURES_TAG = f"{{{STREAMS_NS}}}features"

#: RFC 6455 §7.4.1 close codes the shell uses.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009

# The context every message is parsed in. No default namespace and an unguessable prefix:
# a message must declare its own namespaces (RFC 7395 §3.3.3), nothing leaks in from here.
_CONTEXT_OPEN = f"<ctx-rfc7395:stream xmlns:ctx-rfc7395='{STREAMS_NS}'>".encode()
_CONTEXT_CLOSE = b"</ctx-rfc7395:stream>"


class State(enum.Enum):
    IDLE = "idle"  # no <open/> yet
    AWAIT_ACCEPT = "await-accept"  # got the peer's <open/>; the shell must accept or refuse
    OPEN = "open"
    CLOSED = "closed"  # <close/> sent (by us or after a stream error); nothing more goes out


class BinaryMessage(RemoteProtocolError):
    """The peer sent a binary message; RFC 7395 §3.2 allows only UTF-8 text."""

    def __init__(self) -> None:
        super().__init__("unsupported-encoding", "XMPP over WebSocket uses text messages only")


def close_code_for(error: RemoteProtocolError) -> int:
    """The WebSocket close code to end with after `error`'s stream error was sent."""
    return CLOSE_UNSUPPORTED_DATA if isinstance(error, BinaryMessage) else CLOSE_NORMAL


def _is_1_x(version: str | None) -> bool:
    major, _, minor = (version or "").partition(".")
    return major == "1" and minor.isdigit()


class WebSocketFraming:
    """One WebSocket's XMPP stream, as the receiving (server) side."""

    def __init__(
        self, local_jid: str, *, limits: Limits | None = None, accepted_names: Collection[str] = ()
    ) -> None:
        self.local_jid = local_jid
        self.limits = limits or Limits()
        #: Names we answer to in the peer's `to`; empty accepts any (a browser only knows
        #: the host name it loaded the page from, and the HTTP layer already checked that).
        self.accepted_names = frozenset(accepted_names)
        self.state = State.IDLE
        self.peer_header: StreamHeader | None = None
        self.stream_id: str | None = None
        self._events: deque[Event] = deque()
        self._peer_closed = False

    # -- receiving ------------------------------------------------------------------------

    def receive_message(self, message: str | bytes) -> None:
        """One complete WebSocket message. Raises RemoteProtocolError on a bad one."""
        if isinstance(message, bytes):
            raise BinaryMessage()
        if self._peer_closed:
            raise RemoteProtocolError("not-well-formed", "message after <close/>")
        element = self._parse_one(message)
        if element.tag == OPEN_TAG:
            self._on_open(element)
        elif self.state is State.IDLE:
            raise RemoteProtocolError("not-authorized", "the first message must be <open/>")
        elif element.tag == CLOSE_TAG:
            self._peer_closed = True
            self._events.append(StreamClosed(clean=True))
        elif element.tag == ERROR_TAG:
            self._events.append(StreamErrorReceived(*_stream_error_details(element)))
        elif element.tag.startswith(f"{{{CLIENT_NS}}}"):
            self._events.append(StanzaReceived(element))
        else:
            raise RemoteProtocolError(
                "invalid-namespace", f"a first-level element must be in {CLIENT_NS}"
            )

    def receive_eof(self) -> None:
        """The WebSocket ended (with or without a close frame) before a <close/>."""
        if not self._peer_closed:
            self._peer_closed = True
            self._events.append(StreamClosed(clean=False))
        self.state = State.CLOSED

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _parse_one(self, message: str) -> ET.Element:
        parser = StreamParser(self.limits)
        parser.feed(_CONTEXT_OPEN)  # our own bytes: cannot fail
        data = message.encode("utf-8", errors="surrogatepass")
        if len(data) > self.limits.max_stanza_bytes:
            raise RemoteProtocolError(
                "policy-violation", f"message larger than {self.limits.max_stanza_bytes} bytes"
            )
        events = parser.feed(data)
        # Closing the context fails to parse if the message left an element open.
        events += parser.feed(_CONTEXT_CLOSE)
        elements = [event.element for event in events if isinstance(event, ElementParsed)]
        if len(elements) != 1 or any(isinstance(event, HeaderParsed) for event in events):
            raise RemoteProtocolError(
                "bad-format", f"a message must hold exactly one element, not {len(elements)}"
            )
        return elements[0]

    def _on_open(self, element: ET.Element) -> None:
        if self.state is not State.IDLE:
            raise RemoteProtocolError("bad-format", "the stream is already open")
        attributes = dict(element.attrib)
        header = StreamHeader(attributes, FRAMING_NS)
        self.peer_header = header
        self.state = State.AWAIT_ACCEPT
        if not _is_1_x(header.get("version")):
            raise RemoteProtocolError("unsupported-version", "<open/> needs version='1.0'")
        to = header.get("to")
        if self.accepted_names and to is not None and to not in self.accepted_names:
            raise RemoteProtocolError("host-unknown", f"this is {self.local_jid}, not {to}")
        self._events.append(StreamOpened(header))

    # -- sending --------------------------------------------------------------------------

    def send_accept(self, features: list[ET.Element] | None = None) -> list[str]:
        """Our `<open/>` and `<stream:features/>`: two messages, in this order."""
        if self.state is not State.AWAIT_ACCEPT:
            raise LocalProtocolError("undefined-condition", "no <open/> to accept")
        self.stream_id = secrets.token_hex(8)
        self.state = State.OPEN
        container = ET.Element(FEATURES_TAG)
        container.extend(features or [])
        return [self._open_message(), _message(container)]

    def send_stanza(self, stanza: ET.Element) -> str:
        if self.state is not State.OPEN:
            raise LocalProtocolError("undefined-condition", f"cannot send a stanza in {self.state}")
        return _message(stanza)

    def send_close(self) -> list[str]:
        """Our `<close/>` (nothing if it was already sent). The shell then closes the socket."""
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        return [_message(ET.Element(CLOSE_TAG))]

    def send_stream_error(self, condition: str, text: str = "") -> list[str]:
        """`<stream:error/>` then `<close/>`, preceded by our `<open/>` if not sent yet."""
        if self.state is State.CLOSED:
            return []
        messages = [] if self.state is State.OPEN else [self._open_message()]
        error = ET.Element(ERROR_TAG)
        ET.SubElement(error, f"{{{STREAM_ERRORS_NS}}}{condition}")
        if text:
            ET.SubElement(error, f"{{{STREAM_ERRORS_NS}}}text").text = text
        return [*messages, _message(error), *self.send_close()]

    def _open_message(self) -> str:
        attributes = {
            "from": self.local_jid,
            "id": self.stream_id or secrets.token_hex(8),
            "version": "1.0",
            f"{{{XML_NS}}}lang": "en",
        }
        if self.peer_header is not None and (peer := self.peer_header.get("from")):
            attributes["to"] = peer
        return _message(ET.Element(OPEN_TAG, attributes))


def _message(element: ET.Element) -> str:
    # An empty parent namespace makes the element declare its own, as every message must.
    return serialize(element, stream_ns="").decode("utf-8")


def _stream_error_details(error: ET.Element) -> tuple[str, str]:
    condition, text = "undefined-condition", ""
    for child in error:
        if child.tag == f"{{{STREAM_ERRORS_NS}}}text":
            text = child.text or ""
        elif child.tag.startswith(f"{{{STREAM_ERRORS_NS}}}"):
            condition = child.tag.partition("}")[2]
    return condition, text
