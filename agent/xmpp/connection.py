"""A sans-IO XMPP stream for link-local (XEP-0174) peers, in either role.

Like h11: feed received bytes to `receive_data()`, pull events with `next_event()`, and turn
what you want to say into bytes with the `send_*` methods. No sockets, no clock, no trio.

XEP-0174 streams have no SASL and no resource binding: after the headers are exchanged (and,
for `version='1.0'` streams, the receiver's `<stream:features/>`), stanzas flow both ways.
"""

from __future__ import annotations

import enum
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from agent.xmpp.errors import (
    STREAM_ERRORS_NS,
    STREAMS_NS,
    LocalProtocolError,
    RemoteProtocolError,
)
from agent.xmpp.parser import (
    ElementParsed,
    HeaderParsed,
    Limits,
    StreamEnded,
    StreamHeader,
    StreamParser,
)
from agent.xmpp.serialize import CLIENT_NS, STREAM_CLOSE, serialize, stream_header
from agent.xmpp.tls import FAILURE, PROCEED, STARTTLS, starttls_feature

FEATURES_TAG = f"{{{STREAMS_NS}}}features"
ERROR_TAG = f"{{{STREAMS_NS}}}error"


class Role(enum.Enum):
    INITIATOR = "initiator"  # the side that connected (a phone)
    RECEIVER = "receiver"  # the side that accepted (the agent)


class State(enum.Enum):
    IDLE = "idle"  # nothing exchanged yet
    AWAIT_PEER_HEADER = "await-peer-header"  # initiator sent its header
    AWAIT_ACCEPT = "await-accept"  # receiver got a header; must accept or reject
    OPEN = "open"  # both headers exchanged; stanzas may flow
    TLS_NEGOTIATION = "tls-negotiation"  # STARTTLS asked for; the TLS handshake comes next
    CLOSING = "closing"  # we sent </stream:stream>; waiting for the peer's
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header. `peer` is its `from` (None when omitted, as some peers do)."""

    header: StreamHeader

    @property
    def peer(self) -> str | None:
        return self.header.get("from")

    @property
    def to(self) -> str | None:
        return self.header.get("to")

    @property
    def version(self) -> str | None:
        return self.header.get("version")


@dataclass(frozen=True, slots=True)
class FeaturesReceived:
    features: ET.Element


@dataclass(frozen=True, slots=True)
class StartTlsRequested:
    """Receiver: the peer sent <starttls/>; answer with `send_proceed()`, then do TLS."""


@dataclass(frozen=True, slots=True)
class TlsProceed:
    """Initiator: the receiver said <proceed/>; do TLS now, then `restart_after_tls()`."""


@dataclass(frozen=True, slots=True)
class TlsRefused:
    """Initiator: the receiver said <failure/> (it closes the stream next)."""


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    stanza: ET.Element


@dataclass(frozen=True, slots=True)
class StreamErrorReceived:
    condition: str
    text: str


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer ended its stream (`</stream:stream>`) or the transport hit EOF."""

    clean: bool


Event = (
    StreamOpened
    | FeaturesReceived
    | StartTlsRequested
    | TlsProceed
    | TlsRefused
    | StanzaReceived
    | StreamErrorReceived
    | StreamClosed
)


def _is_1_0_or_later(version: str | None) -> bool:
    if not version:
        return False
    major, _, _minor = version.partition(".")
    return major.isdigit() and int(major) >= 1


class Connection:
    def __init__(
        self,
        role: Role,
        local_jid: str,
        *,
        limits: Limits | None = None,
        accepted_names: Collection[str] = (),
    ) -> None:
        self.role = role
        self.local_jid = local_jid
        self.limits = limits or Limits()
        #: Names a receiver answers to in the peer's `to` (its own instance name and aliases).
        self.accepted_names = frozenset(accepted_names) | {local_jid}
        self.state = State.IDLE
        self.peer_header: StreamHeader | None = None
        self.stream_id: str | None = None
        self._parser = StreamParser(self.limits)
        self._events: deque[Event] = deque()
        self._header_sent = False
        self._peer_closed = False
        #: True once TLS is up and the stream restarted over it (RFC 6120 §5.4.3.3).
        self.secured = False
        self._tls_offered = False
        self._starttls_received = False
        self._stanzas_received = False

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the transport; `b""` means EOF."""
        if not data:
            if not self._peer_closed:
                self._peer_closed = True
                self._events.append(StreamClosed(clean=False))
                self.state = State.CLOSED
            return
        if self._peer_closed:
            raise RemoteProtocolError("not-well-formed", "data after the end of the stream")
        for parsed in self._parser.feed(data):
            self._handle(parsed)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _handle(self, parsed: HeaderParsed | ElementParsed | StreamEnded) -> None:
        if isinstance(parsed, HeaderParsed):
            self._on_header(parsed.header)
        elif isinstance(parsed, StreamEnded):
            # The peer is done sending; we may still answer what it sent before we close.
            self._peer_closed = True
            if self.state is State.CLOSING:
                self.state = State.CLOSED
            self._events.append(StreamClosed(clean=True))
        else:
            self._on_element(parsed.element)

    def _on_header(self, header: StreamHeader) -> None:
        if header.default_namespace != CLIENT_NS:
            raise RemoteProtocolError("invalid-namespace", f"default namespace must be {CLIENT_NS}")
        if self.role is Role.RECEIVER:
            to = header.get("to")
            self.peer_header = header
            self.state = State.AWAIT_ACCEPT
            if to is not None and to not in self.accepted_names:
                raise RemoteProtocolError("host-unknown", f"this is {self.local_jid}, not {to}")
        else:
            if self.state is not State.AWAIT_PEER_HEADER:
                raise RemoteProtocolError("not-well-formed", "unexpected stream header")
            self.peer_header = header
            self.stream_id = header.get("id")
            self.state = State.OPEN
        self._events.append(StreamOpened(header))

    def _on_element(self, element: ET.Element) -> None:
        if self._starttls_received or (
            self.state is State.TLS_NEGOTIATION and element.tag not in (PROCEED, FAILURE)
        ):
            # Nothing may follow <starttls/> or precede <proceed/> but the TLS handshake.
            raise RemoteProtocolError("policy-violation", "XML where the TLS handshake belongs")
        if element.tag == STARTTLS:
            if self.role is not Role.RECEIVER or not self._tls_offered or self._stanzas_received:
                raise RemoteProtocolError("policy-violation", "STARTTLS was not offered here")
            self._starttls_received = True
            self._events.append(StartTlsRequested())
        elif element.tag in (PROCEED, FAILURE):
            if self.role is not Role.INITIATOR or self.state is not State.TLS_NEGOTIATION:
                raise RemoteProtocolError("policy-violation", "a TLS answer nobody asked for")
            self._events.append(TlsProceed() if element.tag == PROCEED else TlsRefused())
        elif element.tag == ERROR_TAG:
            condition, text = "undefined-condition", ""
            for child in element:
                if child.tag == f"{{{STREAM_ERRORS_NS}}}text":
                    text = child.text or ""
                elif child.tag.startswith(f"{{{STREAM_ERRORS_NS}}}"):
                    condition = child.tag.partition("}")[2]
            self._events.append(StreamErrorReceived(condition, text))
        elif element.tag == FEATURES_TAG:
            self._events.append(FeaturesReceived(element))
        else:
            # A peer may pipeline stanzas right behind its header (before our answer): they
            # wait in the queue behind StreamOpened until the stream is accepted.
            self._stanzas_received = True
            self._events.append(StanzaReceived(element))

    # -- sending --------------------------------------------------------------------------

    @property
    def peer_uses_version_1(self) -> bool:
        return self.peer_header is not None and _is_1_0_or_later(self.peer_header.get("version"))

    def send_open(self, to: str | None) -> bytes:
        """Initiator: our stream header, addressed to the peer's instance name."""
        if self.role is not Role.INITIATOR or self.state is not State.IDLE:
            raise LocalProtocolError(
                "undefined-condition", "send_open is the initiator's first step"
            )
        self.state = State.AWAIT_PEER_HEADER
        return self._header({"to": to} if to else {}, version=True)

    def send_accept(
        self, features: list[ET.Element] | None = None, *, offer_tls: bool = False
    ) -> bytes:
        """Receiver: answer the peer's header with ours (+ features for version 1.0 peers).

        `offer_tls` adds STARTTLS to the features (never on a stream already secured)."""
        if self.state is not State.AWAIT_ACCEPT:
            raise LocalProtocolError("undefined-condition", "no stream header to accept")
        assert self.peer_header is not None
        self.stream_id = secrets.token_hex(8)
        attrs = {"id": self.stream_id}
        if (peer := self.peer_header.get("from")) is not None:
            attrs["to"] = peer
        data = self._header(attrs, version=self.peer_uses_version_1)
        if self.peer_uses_version_1:
            container = ET.Element(FEATURES_TAG)
            if offer_tls and not self.secured:
                self._tls_offered = True
                container.append(starttls_feature())
            container.extend(features or [])
            data += serialize(container)
        self.state = State.OPEN
        return data

    # -- STARTTLS ---------------------------------------------------------------------

    def send_starttls(self) -> bytes:
        """Initiator: ask for TLS (after features offering it); wait for TlsProceed."""
        if self.role is not Role.INITIATOR or self.state is not State.OPEN or self.secured:
            raise LocalProtocolError("undefined-condition", "STARTTLS only on an open plain stream")
        self.state = State.TLS_NEGOTIATION
        return serialize(ET.Element(STARTTLS))

    def send_proceed(self) -> bytes:
        """Receiver: accept the peer's <starttls/>; the TLS handshake follows at once."""
        if not self._starttls_received or self.state is not State.OPEN:
            raise LocalProtocolError("undefined-condition", "no STARTTLS request to accept")
        self.state = State.TLS_NEGOTIATION
        return serialize(ET.Element(PROCEED))

    def restart_after_tls(self) -> None:
        """TLS is up: both sides start a new stream over it, with a fresh parser (§5.4.3.3)."""
        if self.state is not State.TLS_NEGOTIATION:
            raise LocalProtocolError("undefined-condition", "no TLS negotiation to finish")
        self._parser = StreamParser(self.limits)
        self._events.clear()
        self.peer_header = None
        self.stream_id = None
        self._header_sent = False
        self._starttls_received = False
        self._tls_offered = False
        self.secured = True
        self.state = State.IDLE

    def _header(self, attributes: dict[str, str], *, version: bool) -> bytes:
        attrs = {"from": self.local_jid, **attributes}
        if version:
            attrs["version"] = "1.0"
        self._header_sent = True
        return stream_header(attrs)

    def send_stanza(self, stanza: ET.Element) -> bytes:
        if self.state is not State.OPEN:
            raise LocalProtocolError("undefined-condition", f"cannot send a stanza in {self.state}")
        return serialize(stanza)

    def send_keepalive(self) -> bytes:
        if self.state is not State.OPEN:
            raise LocalProtocolError(
                "undefined-condition", "keepalive on a stream that is not open"
            )
        return b" "

    def send_close(self) -> bytes:
        """End our side of the stream. Idempotent; returns b"" when nothing is left to say."""
        if self.state is State.CLOSING or (self.state is State.CLOSED and not self._header_sent):
            return b""
        if not self._header_sent:
            self.state = State.CLOSED
            return b""
        self.state = State.CLOSED if self._peer_closed else State.CLOSING
        self._header_sent = False  # nothing more may be sent
        return STREAM_CLOSE

    def send_stream_error(self, condition: str, text: str = "") -> bytes:
        """A stream error, then the end of our stream (RFC 6120 §4.9).

        If our header was not sent yet (the error happened during set-up), it goes first.
        """
        if self.state in (State.CLOSING, State.CLOSED) and not self._header_sent:
            return b""
        prefix = b""
        if not self._header_sent:
            attrs = {}
            if self.peer_header is not None and (peer := self.peer_header.get("from")):
                attrs["to"] = peer
            prefix = self._header(attrs, version=self.peer_uses_version_1)
        error = ET.Element(ERROR_TAG)
        ET.SubElement(error, f"{{{STREAM_ERRORS_NS}}}{condition}")
        if text:
            ET.SubElement(error, f"{{{STREAM_ERRORS_NS}}}text").text = text
        return prefix + serialize(error) + self.send_close()
