"""A sans-IO XMPP client-to-server stream (RFC 6120, client role).

Composes the same parser and serializer as the link-local `Connection`: feed received bytes to
`receive_data()`, take what must be written from `data_to_send()`, pull events with
`next_event()`. The negotiation runs by itself: stream header, STARTTLS (required whenever a
TLS context is used; the shell does the handshake and calls `tls_established()`), SASL
SCRAM-SHA-256 / SCRAM-SHA-1 via `scramp` (PLAIN only over TLS), stream restart, resource
binding, and initial presence. `Online` marks the end; stanzas flow both ways after it.

XEP-0198 (agent/xmpp/sm.py) rides along when the server offers it: <enable resume='true'/>
right after binding, <r/> answered, our stanzas kept until acked. A `ClientStream` given the
`StreamManagement` of a dropped session resumes it after SASL (`Resumed`) instead of binding;
if the server refuses (`ResumeFailed`), it binds a new session as usual.
"""

from __future__ import annotations

import base64
import binascii
import enum
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass

import scramp  # type: ignore[import-untyped]

from agent.xmpp import stanza as st
from agent.xmpp.connection import (
    ERROR_TAG,
    FEATURES_TAG,
    StanzaReceived,
    StreamClosed,
    StreamErrorReceived,
)
from agent.xmpp.errors import (
    STREAM_ERRORS_NS,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from agent.xmpp.parser import HeaderParsed, Limits, StreamEnded, StreamParser
from agent.xmpp.serialize import CLIENT_NS, STREAM_CLOSE, serialize, stream_header
from agent.xmpp.sm import (
    FAILED,
    FEATURE,
    RESUMED,
    SM_NS,
    HandledCountTooHigh,
    SmEvent,
    StreamManagement,
)
from agent.xmpp.tls import FAILURE, PROCEED, STARTTLS, offers_starttls

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
SASL_TEXT = f"{{{SASL_NS}}}text"
#: Strongest first. The -PLUS variants need channel binding, which we do not do yet.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")


class Phase(enum.Enum):
    IDLE = "idle"
    AWAIT_FEATURES = "await-features"  # header sent; waiting for the server's header + features
    STARTTLS_SENT = "starttls-sent"  # waiting for <proceed/>
    TLS_HANDSHAKE = "tls-handshake"  # the shell must do TLS, then call tls_established()
    AUTHENTICATING = "authenticating"
    RESUMING = "resuming"  # XEP-0198 <resume/> sent instead of binding
    BINDING = "binding"
    SESSION = "session"  # legacy RFC 3921 session establishment, for servers that need it
    ONLINE = "online"
    CLOSING = "closing"  # we sent </stream:stream>; the server's end (or EOF) comes next
    CLOSED = "closed"  # the server ended its stream or the transport hit EOF


@dataclass(frozen=True, slots=True)
class StartTls:
    """The server said <proceed/>: wrap the transport in TLS now, then `tls_established()`."""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """SASL failed (wrong password, unknown account, no usable mechanism, bad server proof)."""

    condition: str
    text: str


@dataclass(frozen=True, slots=True)
class Online:
    """Bound and present: `jid` is our full JID as the server assigned it."""

    jid: str


C2sEvent = (
    StartTls | AuthFailed | Online | StanzaReceived | StreamErrorReceived | StreamClosed | SmEvent
)


def split_jid(jid: str) -> tuple[str, str, str]:
    """'user@domain/resource' → (user, domain, resource); raises ValueError when malformed."""
    bare, _, resource = jid.partition("/")
    local, at, domain = bare.rpartition("@")
    if not domain or (at and not local) or any(c.isspace() for c in bare):
        raise ValueError(f"not a JID: {jid!r}")
    return local, domain, resource


def bare_jid(jid: str) -> str:
    return jid.partition("/")[0]


def _b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii") or "="


def _unb64(text: str | None) -> str:
    text = (text or "").strip()
    if text in ("", "="):
        return ""
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RemoteProtocolError("bad-format", "SASL data is not base64 UTF-8") from None


class ClientStream:
    """One client-to-server stream for `jid` (bare, or full to ask for that resource)."""

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        use_tls: bool = True,
        limits: Limits | None = None,
        presence: ET.Element | None = None,
        stream_management: StreamManagement | None = None,
    ) -> None:
        self.username, self.domain, self.resource = split_jid(jid)
        if not self.username:
            raise ValueError(f"a client JID needs a user part: {jid!r}")
        self._password = password
        #: With TLS, STARTTLS is required; without it (loopback tests), PLAIN is never used.
        self.use_tls = use_tls
        self.limits = limits or Limits()
        self.phase = Phase.IDLE
        self.secured = False
        self.authenticated = False
        self.bound_jid: str | None = None
        #: The SASL mechanism used (for logs).
        self.mechanism = ""
        self.stream_id: str | None = None
        self._presence = presence
        self._parser = StreamParser(self.limits)
        self._events: deque[C2sEvent] = deque()
        self._outgoing = bytearray()
        self._scram: scramp.ScramClient | None = None
        self._server_final_checked = False
        self._request_id = ""
        self._needs_session = False
        #: XEP-0198 state; one that can resume (from a dropped connection) makes us try to.
        self.sm = stream_management if stream_management is not None else StreamManagement()
        self._sm_offered = False
        self._bind_features: ET.Element | None = None  # kept for binding if resuming fails

    # -- driving the stream ---------------------------------------------------------------

    def start(self) -> None:
        """Queue our stream header; the first step and the one after every restart."""
        if self.phase not in (Phase.IDLE, Phase.TLS_HANDSHAKE, Phase.AUTHENTICATING):
            raise LocalProtocolError("undefined-condition", f"cannot open a stream in {self.phase}")
        attributes = {"to": self.domain, "version": "1.0"}
        if self.secured:  # RFC 6120 §4.7.1: only say who we are once nobody can listen in
            attributes["from"] = f"{self.username}@{self.domain}"
        self._outgoing += stream_header(attributes)
        self.phase = Phase.AWAIT_FEATURES

    def tls_established(self) -> None:
        """The shell finished the TLS handshake: restart the stream over it (§5.4.3.3)."""
        if self.phase is not Phase.TLS_HANDSHAKE:
            raise LocalProtocolError("undefined-condition", "no TLS handshake was due")
        self.secured = True
        self._restart()

    def data_to_send(self) -> bytes:
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def next_event(self) -> C2sEvent | None:
        return self._events.popleft() if self._events else None

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the transport; `b""` means EOF. Raises RemoteProtocolError."""
        if self.phase is Phase.CLOSED:
            return
        if not data:
            self._closed(clean=False)
            return
        for parsed in self._parser.feed(data):
            if isinstance(parsed, HeaderParsed):
                if parsed.header.default_namespace != CLIENT_NS:
                    raise RemoteProtocolError("invalid-namespace", f"expected {CLIENT_NS}")
                self.stream_id = parsed.header.get("id")
            elif isinstance(parsed, StreamEnded):
                self._closed(clean=True)
                return
            elif self.phase is not Phase.CLOSING:  # after our goodbye only its end matters
                self._on_element(parsed.element)

    def send_stanza(self, stanza: ET.Element) -> bytes:
        """The bytes for `stanza` (+ an <r/> when due); b"" when only queued for resumption."""
        if self.phase is Phase.ONLINE:
            return self._send_counted(stanza)
        if self.phase is not Phase.CLOSING and self.sm.resumable:
            self.sm.track(stanza)
            return b""
        raise LocalProtocolError("undefined-condition", f"cannot send a stanza in {self.phase}")

    def request_ack(self) -> bytes:
        """An XEP-0198 <r/> (b"" when the server does not ack); the <a/> proves it is alive."""
        if self.phase is not Phase.ONLINE or not self.sm.active:
            return b""
        return serialize(self.sm.request_ack())

    def send_close(self) -> bytes:
        """End our stream (and the XEP-0198 session); b"" when it is already over."""
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            return b""
        self.sm.abandon()
        if self.phase is Phase.IDLE:
            self.phase = Phase.CLOSED
            return b""
        self.phase = Phase.CLOSING
        return STREAM_CLOSE

    def send_stream_error(self, error: ProtocolError) -> bytes:
        """Our stream error for a protocol violation, then our end of the stream."""
        if self.phase in (Phase.IDLE, Phase.CLOSING, Phase.CLOSED):
            return self.send_close()
        element = ET.Element(ERROR_TAG)
        ET.SubElement(element, f"{{{STREAM_ERRORS_NS}}}{error.condition}")
        if isinstance(error, HandledCountTooHigh):
            element.append(error.application_condition())
        if error.text:
            ET.SubElement(element, f"{{{STREAM_ERRORS_NS}}}text").text = error.text
        return serialize(element) + self.send_close()

    def _send_counted(self, stanza: ET.Element) -> bytes:
        data = serialize(stanza)
        if self.sm.track(stanza):
            data += serialize(self.sm.request_ack())
        return data

    # -- negotiation ----------------------------------------------------------------------

    def _restart(self) -> None:
        self._parser = StreamParser(self.limits)
        self.stream_id = None
        self.phase = Phase.AUTHENTICATING if self.authenticated else Phase.TLS_HANDSHAKE
        self.start()

    def _closed(self, *, clean: bool) -> None:
        self.phase = Phase.CLOSED
        self._events.append(StreamClosed(clean=clean))

    def _on_element(self, element: ET.Element) -> None:
        if element.tag == ERROR_TAG:
            self._events.append(_stream_error(element))
            return
        if element.tag.startswith(f"{{{SM_NS}}}") and self.phase in (
            Phase.RESUMING,
            Phase.ONLINE,
        ):
            self._on_sm(element)
            return
        match self.phase:
            case Phase.AWAIT_FEATURES if element.tag == FEATURES_TAG:
                self._on_features(element)
            case Phase.STARTTLS_SENT if element.tag == PROCEED:
                self.phase = Phase.TLS_HANDSHAKE
                self._events.append(StartTls())
            case Phase.STARTTLS_SENT if element.tag == FAILURE:
                raise RemoteProtocolError("policy-violation", "the server refused STARTTLS")
            case Phase.AUTHENTICATING if element.tag.startswith(f"{{{SASL_NS}}}"):
                self._on_sasl(element)
            case Phase.BINDING | Phase.SESSION if element.get("id") == self._request_id:
                self._on_setup_reply(element)
            case Phase.ONLINE if element.tag in st.STANZA_KINDS:
                self.sm.stanza_received()  # handed to the application now: counted (XEP-0198)
                self._events.append(StanzaReceived(element))
            case _:
                raise RemoteProtocolError(
                    "policy-violation", f"unexpected {element.tag} in {self.phase.value}"
                )

    def _on_features(self, features: ET.Element) -> None:
        if not self.secured and self.use_tls:
            if not offers_starttls(features):
                raise LocalProtocolError(
                    "policy-violation", "the server does not offer STARTTLS; refusing plaintext"
                )
            self._outgoing += serialize(ET.Element(STARTTLS))
            self.phase = Phase.STARTTLS_SENT
        elif not self.authenticated:
            self._begin_sasl(features)
        else:
            self._sm_offered = features.find(FEATURE) is not None
            if self._sm_offered and self.sm.resumable:
                self._bind_features = features
                self._outgoing += serialize(self.sm.resume())
                self.phase = Phase.RESUMING
                return
            if self.sm.resumable:  # the server stopped offering stream management
                self._events.append(self.sm.on_resume_failed(ET.Element(FAILED)))
            self._bind(features)

    def _on_sm(self, element: ET.Element) -> None:
        replies: list[ET.Element]
        event: SmEvent | None
        if self.phase is Phase.RESUMING and element.tag == RESUMED:
            replies, event = self.sm.on_resumed(element)
            self.phase = Phase.ONLINE
            self.bound_jid = event.jid
        elif self.phase is Phase.RESUMING and element.tag == FAILED:
            replies, event = [], self.sm.on_resume_failed(element)
            assert self._bind_features is not None
            self._bind(self._bind_features)
        elif self.phase is Phase.ONLINE:
            replies, event = self.sm.on_element(element)
        else:
            raise RemoteProtocolError("policy-violation", f"unexpected {element.tag} resuming")
        for reply in replies:
            self._outgoing += serialize(reply)
        if event is not None:
            self._events.append(event)

    def _begin_sasl(self, features: ET.Element) -> None:
        offered = [m.text or "" for m in features.iterfind(f"{{{SASL_NS}}}mechanisms/*")]
        self.phase = Phase.AUTHENTICATING
        auth = ET.Element(f"{{{SASL_NS}}}auth")
        scram = [m for m in SCRAM_MECHANISMS if m in offered]
        if scram:
            self._scram = scramp.ScramClient([scram[0]], self.username, self._password)
            auth.set("mechanism", scram[0])
            auth.text = _b64(self._scram.get_client_first())
        elif "PLAIN" in offered and self.secured:
            auth.set("mechanism", "PLAIN")
            auth.text = _b64(f"\0{self.username}\0{self._password}")
        else:
            why = "PLAIN is only used over TLS" if "PLAIN" in offered else "none we support"
            self._auth_failed("invalid-mechanism", f"server offers {offered or 'nothing'}; {why}")
            return
        self.mechanism = auth.get("mechanism", "")
        self._outgoing += serialize(auth)

    def _on_sasl(self, element: ET.Element) -> None:
        local = element.tag.partition("}")[2]
        try:
            if local == "challenge" and self._scram is not None:
                self._on_challenge(_unb64(element.text))
            elif local == "success":
                if (final := _unb64(element.text)) and not self._server_final_checked:
                    self._check_server_final(final)
                if self._scram is not None and not self._server_final_checked:
                    raise scramp.ScramException("the server never proved it knows the password")
                self.authenticated = True
                self._restart()
            elif local == "failure":
                conditions = [c.tag.partition("}")[2] for c in element if c.tag != SASL_TEXT]
                text = element.findtext(SASL_TEXT) or ""
                self._auth_failed(conditions[0] if conditions else "not-authorized", text)
            else:
                raise RemoteProtocolError("policy-violation", f"unexpected SASL {local}")
        except scramp.ScramException as exc:
            self._outgoing += serialize(ET.Element(f"{{{SASL_NS}}}abort"))
            self._auth_failed("server-proof-invalid", str(exc))

    def _on_challenge(self, challenge: str) -> None:
        assert self._scram is not None
        response = ET.Element(f"{{{SASL_NS}}}response")
        if self._server_final_checked:
            raise scramp.ScramException("a challenge after the server's final message")
        if challenge.startswith("v=") or challenge.startswith("e="):
            # Some servers send server-final as a last challenge, then an empty <success/>.
            self._check_server_final(challenge)
        else:
            self._scram.set_server_first(challenge)
            response.text = _b64(self._scram.get_client_final())
        self._outgoing += serialize(response)

    def _check_server_final(self, message: str) -> None:
        if self._scram is None:
            raise RemoteProtocolError("policy-violation", "SASL data with <success/> for PLAIN")
        self._scram.set_server_final(message)  # raises ScramException on a bad server proof
        self._server_final_checked = True

    def _auth_failed(self, condition: str, text: str) -> None:
        self._events.append(AuthFailed(condition, text))
        self._outgoing += self.send_close()

    def _bind(self, features: ET.Element) -> None:
        if features.find(f"{{{BIND_NS}}}bind") is None:
            raise RemoteProtocolError(
                "unsupported-feature", "the server offers no resource binding"
            )
        payload = ET.Element(f"{{{BIND_NS}}}bind")
        if self.resource:
            ET.SubElement(payload, f"{{{BIND_NS}}}resource").text = self.resource
        self._needs_session = _session_required(features)
        self._send_setup_iq(payload, Phase.BINDING)

    def _send_setup_iq(self, payload: ET.Element, phase: Phase) -> None:
        request = st.iq("set", payload)
        self._request_id = request.get("id", "")
        self._outgoing += serialize(request)
        self.phase = phase

    def _on_setup_reply(self, reply: ET.Element) -> None:
        if reply.tag != st.IQ or reply.get("type") != "result":
            error = st.StanzaError.from_stanza(reply)
            raise LocalProtocolError("undefined-condition", f"{self.phase.value} failed: {error}")
        if self.phase is Phase.BINDING:
            jid = reply.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}jid") or ""
            try:
                split_jid(jid)
            except ValueError:
                raise RemoteProtocolError("bad-format", f"bound to a bad JID {jid!r}") from None
            self.bound_jid = jid
            if self._needs_session:
                self._send_setup_iq(ET.Element(f"{{{SESSION_NS}}}session"), Phase.SESSION)
                return
        self.phase = Phase.ONLINE
        assert self.bound_jid is not None
        if self._sm_offered:  # before our presence, so that presence is counted and acked
            self._outgoing += serialize(self.sm.enable(self.bound_jid))
        self._outgoing += self._send_counted(
            self._presence if self._presence is not None else ET.Element(st.PRESENCE)
        )
        self._events.append(Online(self.bound_jid))


def _session_required(features: ET.Element) -> bool:
    session = features.find(f"{{{SESSION_NS}}}session")
    return session is not None and session.find(f"{{{SESSION_NS}}}optional") is None


def _stream_error(element: ET.Element) -> StreamErrorReceived:
    condition, text = "undefined-condition", ""
    for child in element:
        if child.tag == f"{{{STREAM_ERRORS_NS}}}text":
            text = child.text or ""
        elif child.tag.startswith(f"{{{STREAM_ERRORS_NS}}}"):
            condition = child.tag.partition("}")[2]
    return StreamErrorReceived(condition, text)
