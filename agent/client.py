"""The phone-side library: find an agent, open a stream, and speak Buttons protocol v0.

Used by the `buttons` CLI and by the tests; any XEP-0174 peer could do the same.
"""

from __future__ import annotations

import getpass
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from agent.backends.base import TvState
from agent.buttons import codec
from agent.buttons.catalogue import ButtonInfo
from agent.net.stream import (
    ClientTls,
    StanzaErrorReply,
    StreamFailed,
    open_xmpp_stream,
)
from agent.security.keys import FINGERPRINT_TXT_KEY, fingerprint
from agent.security.linking import lq
from agent.security.phone import PhoneCredentials, load_credentials
from agent.security.tls import PinMismatch, check_pinned, client_context
from agent.xmpp import stanza as st
from agent.xmpp.disco import CAPS_NODE, DISCO_INFO_NS, PING_NS

__all__ = [
    "AgentAddress",
    "ButtonsClient",
    "ClientError",
    "NotPaired",
    "Pressed",
    "StanzaErrorReply",
    "StreamFailed",
    "connect",
    "find_agents",
]


class ClientError(Exception):
    """A problem to tell the user in one line (nothing found, several found, …)."""


@dataclass(frozen=True, slots=True)
class AgentAddress:
    instance: str  # the agent's XEP-0174 name, user@host
    host: str
    port: int
    nick: str = ""
    status: str = ""
    message: str = ""
    #: The agent's certificate fingerprint from its TXT `fp` (a hint; TLS is what counts).
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Pressed:
    button: str
    source: str


def default_local_jid() -> str:
    return f"{getpass.getuser()}@{socket.gethostname().split('.')[0]}"


def _is_agent(txt: Mapping[str, str]) -> bool:
    # Our agents advertise the Buttons namespace in their caps node/ver via disco; the TXT
    # carries `node` = our caps node, which is what separates them from chat buddies.
    return txt.get("node", "") == CAPS_NODE


async def find_agents(
    *, seconds: float, interfaces: Sequence[str] | None = None, include_all: bool = False
) -> list[AgentAddress]:
    """Browse `_presence._tcp` for `seconds` and return the Buttons agents seen."""
    from agent.net.mdns import discover  # zeroconf is only needed when browsing

    found = await discover(timeout=seconds, interfaces=list(interfaces) if interfaces else None)
    agents = []
    for peer in found:
        if not (include_all or _is_agent(peer.txt)) or not peer.addresses:
            continue
        agents.append(
            AgentAddress(
                instance=peer.instance,
                host=str(peer.addresses[0]),
                port=peer.port,
                nick=peer.txt.get("nick", "") or peer.txt.get("1st", ""),
                status=peer.txt.get("status", ""),
                message=peer.txt.get("msg", ""),
                fingerprint=peer.txt.get(FINGERPRINT_TXT_KEY, ""),
            )
        )
    return sorted(agents, key=lambda a: a.instance)


def choose(agents: Sequence[AgentAddress], wanted: str | None) -> AgentAddress:
    """The agent named `wanted` (instance or nick), or the only one there is."""
    if wanted:
        matches = [a for a in agents if wanted in (a.instance, a.nick, a.instance.split("@")[0])]
        if not matches:
            names = ", ".join(a.instance for a in agents) or "none"
            raise ClientError(f"no agent called {wanted!r} found (seen: {names})")
        return matches[0]
    if not agents:
        raise ClientError(
            "no buttons agent found on the network; is it running and on the same Wi-Fi? "
            "(try `buttons discover --timeout 5`)"
        )
    if len(agents) > 1:
        names = ", ".join(a.instance for a in agents)
        raise ClientError(f"several agents found ({names}); pick one with --to NAME")
    return agents[0]


class StanzaStream(Protocol):
    """What ButtonsClient needs from a stream: link-local (XmppStream) or server (C2sStream)."""

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[ET.Element]: ...

    async def request(self, request: ET.Element) -> ET.Element: ...


class ButtonsClient:
    """Buttons requests over a stream; subclasses change how a request is sent (signed)."""

    #: How requests travel, for the user ("local" or "server").
    path = "local"

    def __init__(self, stream: StanzaStream, agent: str | None) -> None:
        self.stream = stream
        self.agent = agent
        #: The agent's certificate fingerprint as TLS showed it (link-local streams).
        self.agent_fingerprint = ""

    async def _request(self, command: codec.Command) -> ET.Element:
        type_, payload = codec.request_element(command)
        return await self.stream.request(st.iq(type_, payload, to=self.agent))

    async def press(self, button: str) -> float:
        """Press; returns the round-trip time in seconds."""
        started = time.perf_counter()
        await self._request(codec.Press(button))
        return time.perf_counter() - started

    async def hold(self, button: str, seconds: float) -> None:
        await self._request(codec.Hold(button, "start"))
        try:
            await trio.sleep(seconds)
        finally:
            with trio.CancelScope(shield=True):
                await self._request(codec.Hold(button, "stop"))

    async def text(self, text: str, *, submit: bool = True) -> None:
        await self._request(codec.Text(text, submit))

    async def buttons(self) -> list[ButtonInfo]:
        reply = await self._request(codec.ListButtons())
        payload = reply.find(codec.q("buttons"))
        return codec.parse_buttons(payload) if payload is not None else []

    async def state(self) -> TvState:
        reply = await self._request(codec.GetState())
        payload = reply.find(codec.q("state"))
        if payload is None:
            raise ClientError("the agent's state reply carried no <state/>")
        return codec.parse_state(payload)

    async def ping(self) -> float:
        started = time.perf_counter()
        await self.stream.request(st.iq("get", ET.Element(f"{{{PING_NS}}}ping"), to=self.agent))
        return time.perf_counter() - started

    async def disco_features(self) -> set[str]:
        query = ET.Element(f"{{{DISCO_INFO_NS}}}query")
        reply = await self.stream.request(st.iq("get", query, to=self.agent))
        return {f.get("var", "") for f in reply.iter(f"{{{DISCO_INFO_NS}}}feature")}

    async def link(self, jid: str) -> str:
        """Link this device with the account `jid` ("" unlinks); returns the agent's server
        JID ("" when it has no account)."""
        reply = await self.stream.request(
            st.iq("set", ET.Element(lq("link"), {"jid": jid}), to=self.agent)
        )
        payload = reply.find(lq("link"))
        return payload.get("jid", "") if payload is not None else ""

    async def follow(self) -> AsyncIterator[TvState | Pressed]:
        """Subscribe, then yield every state change and every press made elsewhere."""
        await self._request(codec.Subscribe())
        async for stanza in self.stream.incoming:
            if st.kind(stanza) != "message":
                continue
            for payload in stanza:
                if payload.tag == codec.q("state"):
                    yield codec.parse_state(payload)
                elif payload.tag == codec.q("pressed"):
                    yield Pressed(payload.get("button", ""), payload.get("source", ""))


class NotPaired(ClientError):
    """The agent is not one we paired with."""


def pinned_verifier(credentials: PhoneCredentials, agent: str | None) -> Callable[[bytes], None]:
    """Checks the agent's certificate against the pinned one: trust on first pair, then
    never silently accept a change."""

    def verify(cert_der: bytes) -> None:
        actual = fingerprint(cert_der)
        credentials.agents.reload_if_changed()
        pinned = credentials.agents.find_name(agent) if agent else None
        if pinned is not None:
            try:
                check_pinned(actual, pinned.fingerprint, agent or "")
            except PinMismatch as exc:
                raise ClientError(str(exc)) from None
        elif credentials.agents.find(actual) is None:
            raise NotPaired(
                f"this device is not paired with {agent or 'that agent'}; pair first: buttons pair"
            )

    return verify


def check_announced_key(credentials: PhoneCredentials, target: AgentAddress) -> None:
    """Fail early when the mDNS TXT `fp` already shows a key other than the pinned one."""
    pinned = credentials.agents.find_name(target.instance)
    if pinned is None or not target.fingerprint:
        return
    try:
        check_pinned(target.fingerprint, pinned.fingerprint, target.instance)
    except PinMismatch as exc:
        raise ClientError(str(exc)) from None


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    agent: str | None,
    local_jid: str | None = None,
    credentials: PhoneCredentials | None = None,
) -> AsyncIterator[ButtonsClient]:
    """A TLS stream to a paired agent, presenting this device's certificate."""
    credentials = credentials or load_credentials()
    verify = pinned_verifier(credentials, agent)
    seen: list[str] = []

    def verify_and_note(cert_der: bytes) -> None:
        verify(cert_der)
        seen.append(fingerprint(cert_der))

    tls = ClientTls(client_context(credentials.identity), verify_and_note)
    async with open_xmpp_stream(
        host, port, local_jid=local_jid or default_local_jid(), remote_jid=agent, tls=tls
    ) as stream:
        remote = ButtonsClient(stream, agent)
        remote.agent_fingerprint = seen[-1] if seen else ""
        yield remote
