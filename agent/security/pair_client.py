"""The phone's side of pairing: ask for a PIN, run the key exchange, pin the agent's key."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent.buttons.codec import CodecError
from agent.net.stream import ClientTls, StanzaErrorReply, StreamFailed, open_xmpp_stream
from agent.security.keys import fingerprint
from agent.security.pairing_service import b64, pq, unb64
from agent.security.pake import PakeError, PhoneExchange
from agent.security.phone import PhoneCredentials, default_device_name
from agent.security.tls import client_context
from agent.xmpp import stanza as st

#: Asked once the TV shows the PIN: (seconds it stays valid) → the PIN the user typed.
AskPin = Callable[[float], Awaitable[str]]


class PairingFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Paired:
    agent: str
    fingerprint: str


async def pair(
    host: str,
    port: int,
    *,
    agent: str | None,
    credentials: PhoneCredentials,
    ask_pin: AskPin,
    device_name: str | None = None,
) -> Paired:
    """Pair this device with the agent at host:port; on success the agent's key is pinned."""
    seen: list[bytes] = []
    # Anonymous TLS: the agent does not know our certificate yet (it learns it below).
    tls = ClientTls(client_context(None), seen.append, presents_certificate=False)
    name = device_name or default_device_name()
    async with open_xmpp_stream(host, port, local_jid=name, remote_jid=agent, tls=tls) as stream:
        agent_der = seen[0]
        instance = agent or (stream.conn.peer_header.get("from") if stream.conn.peer_header else "")
        instance = instance or f"{host}:{port}"

        async def ask(payload: ET.Element) -> ET.Element:
            try:
                reply = await stream.request(st.iq("set", payload, to=agent))
            except StanzaErrorReply as exc:
                raise PairingFailed(f"the agent refused: {exc.error}") from None
            if len(reply) != 1:
                raise PairingFailed("the agent's pairing reply is empty")
            return reply[0]

        offer = await ask(ET.Element(pq("request")))
        pin = (await ask_pin(float(offer.get("seconds", "120")))).strip()
        if not (len(pin) == 6 and pin.isdigit()):
            raise PairingFailed("the PIN is the 6 digits shown on the TV")
        exchange = PhoneExchange(
            pin, phone_fp=credentials.identity.fingerprint, agent_fp=fingerprint(agent_der)
        )
        request = ET.Element(pq("exchange"), {"name": name})
        ET.SubElement(request, pq("certificate")).text = credentials.identity.cert_pem
        ET.SubElement(request, pq("message")).text = b64(exchange.start())
        answer = await ask(request)
        try:
            confirmation = exchange.finish(unb64(answer.findtext(pq("message")), "message"))
        except (PakeError, CodecError) as exc:
            raise PairingFailed(str(exc)) from None
        confirm = ET.Element(pq("confirm"))
        confirm.text = b64(confirmation)
        try:
            agent_confirmation = unb64((await ask(confirm)).text, "confirm")
        except CodecError as exc:
            raise PairingFailed(str(exc)) from None
        if not exchange.agent_confirmed(agent_confirmation):
            raise PairingFailed("the agent could not prove it knows the PIN; not paired")
    credentials.agents.forget_name(instance)
    credentials.agents.add(instance, agent_der, keep_cert=False)
    return Paired(instance, fingerprint(agent_der))


__all__ = ["AskPin", "Paired", "PairingFailed", "StreamFailed", "pair"]
