"""The agent's side of `urn:buttons-agent:pair:0`: request → exchange → confirm.

    <request/>                                  → <request seconds='118'/>   (PIN on the TV)
    <exchange name='anna-phone'>
      <certificate>PEM</certificate><message>base64 SPAKE2 A</message>
    </exchange>                                 → <exchange><message>base64 SPAKE2 B</message>
    <confirm>base64 HMAC</confirm>              → <confirm>base64 HMAC</confirm>

Only on TLS streams. Success stores the phone's certificate in the trust store under its
name; the phone then opens a new stream presenting that certificate.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from agent.buttons.codec import CodecError
from agent.logs import kv
from agent.pairing import PairingRefused, PairingWindow
from agent.security.keys import Identity, cert_der_from_pem, fingerprint, short_fingerprint
from agent.security.pake import AgentExchange, PakeError
from agent.security.truststore import TrustStore

log = logging.getLogger(__name__)
PAIR_NS = "urn:buttons-agent:pair:0"
MAX_CERT_CHARS = 8192
_NAME = re.compile(r"[\w.@+ -]{1,64}")


def pq(local: str) -> str:
    return f"{{{PAIR_NS}}}{local}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CodecError("bad-request", f"{what} is not base64") from None


@dataclass(slots=True)
class _Attempt:
    exchange: AgentExchange
    name: str
    cert_der: bytes


class PairingSession:
    """One stream's pairing state (at most one attempt in flight)."""

    def __init__(self) -> None:
        self.attempt: _Attempt | None = None


class PairingService:
    def __init__(self, window: PairingWindow, identity: Identity, trusted: TrustStore) -> None:
        self.window = window
        self.identity = identity
        self.trusted = trusted

    async def handle(
        self, state: PairingSession, type_: str, payload: ET.Element, *, secured: bool
    ) -> ET.Element:
        if type_ != "set":
            raise CodecError("bad-request", "pairing requests are iq type 'set'")
        if not secured:
            raise CodecError("not-acceptable", "pairing needs a TLS stream (STARTTLS)")
        try:
            match payload.tag:
                case t if t == pq("request"):
                    seconds = await self.window.request()
                    return ET.Element(pq("request"), {"seconds": str(int(seconds))})
                case t if t == pq("exchange"):
                    return self._exchange(state, payload)
                case t if t == pq("confirm"):
                    return self._confirm(state, payload)
        except PairingRefused as exc:
            raise CodecError(exc.condition, exc.text) from None
        raise CodecError("feature-not-implemented", f"unknown pairing request {payload.tag}")

    def _exchange(self, state: PairingSession, payload: ET.Element) -> ET.Element:
        name = (payload.get("name") or "").strip()
        if not _NAME.fullmatch(name):
            raise CodecError("bad-request", "name: 1-64 letters, digits, spaces or .@+-_")
        pem = payload.findtext(pq("certificate")) or ""
        if len(pem) > MAX_CERT_CHARS:
            raise CodecError("policy-violation", "certificate too large")
        try:
            cert_der = cert_der_from_pem(pem)
        except ValueError:
            raise CodecError("bad-request", "certificate is not a PEM certificate") from None
        phone_message = unb64(payload.findtext(pq("message")), "message")
        pin = self.window.begin_attempt()
        exchange = AgentExchange(
            pin, phone_fp=fingerprint(cert_der), agent_fp=self.identity.fingerprint
        )
        try:
            agent_message = exchange.respond(phone_message)
        except PakeError as exc:
            self.window.attempt_failed()
            raise CodecError("bad-request", str(exc)) from None
        state.attempt = _Attempt(exchange, name, cert_der)
        reply = ET.Element(pq("exchange"))
        ET.SubElement(reply, pq("message")).text = b64(agent_message)
        return reply

    def _confirm(self, state: PairingSession, payload: ET.Element) -> ET.Element:
        attempt, state.attempt = state.attempt, None
        if attempt is None:
            raise CodecError("unexpected-request", "send <exchange/> first")
        confirmation = unb64(payload.text, "confirm")
        if not self.window.is_open:
            raise CodecError("not-allowed", "the pairing window closed; request a new PIN")
        if not attempt.exchange.phone_confirmed(confirmation):
            closed = self.window.attempt_failed()
            more = " (the window is closed now)" if closed else ""
            raise CodecError("not-authorized", f"wrong PIN{more}")
        self.window.attempt_succeeded()
        peer = self.trusted.add(attempt.name, attempt.cert_der)
        log.warning(
            kv("peer-paired", name=peer.name, fingerprint=short_fingerprint(peer.fingerprint))
        )
        reply = ET.Element(pq("confirm"))
        reply.text = b64(attempt.exchange.confirmation())
        return reply
