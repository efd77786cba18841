"""The phone's server path: Buttons requests through its XMPP account, signed by its key.

When the TV is not on the same network, the phone logs in to its own server account and
sends each request to the agent's server JID wrapped in `<signed/>` (agent/security/linking.py):
the agent runs it only if this account was linked to this device over the LAN and the
signature and counter check out. The methods are ButtonsClient's, so the CLI's code path is
the same for both transports.
"""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agent.buttons import codec
from agent.client import ButtonsClient, ClientError
from agent.net.c2s import C2sStream, open_c2s_stream
from agent.security.linking import sign_command
from agent.security.phone import (
    CounterReservation,
    PhoneAccount,
    PhoneCredentials,
    account_password,
    load_account,
    load_signing_key,
)
from agent.security.truststore import TrustedPeer
from agent.xmpp import stanza as st
from agent.xmpp.c2s import split_jid

__all__ = ["ServerButtonsClient", "connect_via_server", "link_agent", "server_route"]


class ServerButtonsClient(ButtonsClient):
    """ButtonsClient over a server stream: every Buttons request goes out signed."""

    path = "server"

    def __init__(self, stream: C2sStream, agent_jid: str, credentials: PhoneCredentials) -> None:
        super().__init__(stream, agent_jid)
        self.agent_jid = agent_jid
        self.home = credentials.identity.directory
        self._key = load_signing_key(credentials.identity)
        self._counters = CounterReservation(self.home)

    async def _request(self, command: codec.Command) -> ET.Element:
        type_, payload = codec.request_element(command)
        counter = self._counters.take()  # reserved on disk first: never reused after a crash
        signed = sign_command(self._key, self.agent_jid, counter, payload)
        return await self.stream.request(st.iq(type_, signed, to=self.agent_jid))


async def link_agent(remote: ButtonsClient, credentials: PhoneCredentials) -> str:
    """Over a paired link-local stream: link this device with its server account and remember
    where the agent is on the server. Returns that JID ("" when the agent has no account)."""
    account = _account(credentials.identity.directory)
    agent_jid = await remote.link(account.jid)
    if remote.agent_fingerprint:
        credentials.agents.link(remote.agent_fingerprint, agent_jid)
    return agent_jid


def server_route(credentials: PhoneCredentials, wanted: str | None) -> TrustedPeer:
    """The paired agent to reach through the server: `wanted` (its name) or the only one
    whose server JID we learnt when linking."""
    credentials.agents.reload_if_changed()
    routes = [peer for peer in credentials.agents.peers if peer.server_jid]
    if wanted:
        matches = [
            peer
            for peer in routes
            if wanted in (peer.name, peer.name.split("@")[0], peer.server_jid)
        ]
    else:
        matches = routes
    if not matches:
        raise ClientError(
            "no linked agent to reach through the server"
            + (f" called {wanted!r}" if wanted else "")
            + "; near the TV run: buttons account add JID (or buttons pair)"
        )
    if len(matches) > 1:
        names = ", ".join(peer.name for peer in matches)
        raise ClientError(f"several linked agents ({names}); pick one with --to NAME")
    return matches[0]


def _tls(account: PhoneAccount) -> ssl.SSLContext | None:
    if account.tls == "none":
        return None
    context = ssl.create_default_context(cafile=account.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _account(home: Path) -> PhoneAccount:
    account = load_account(home)
    if account is None:
        raise ClientError("no server account on this device; add one: buttons account add JID")
    return account


@asynccontextmanager
async def connect_via_server(
    credentials: PhoneCredentials, agent: TrustedPeer
) -> AsyncIterator[ServerButtonsClient]:
    """Log in with the phone's account and talk to `agent` at its server JID."""
    home = credentials.identity.directory
    account = _account(home)
    host = account.host or split_jid(account.jid)[1]
    async with open_c2s_stream(
        host, account.port, account.jid, account_password(home), tls=_tls(account)
    ) as stream:
        yield ServerButtonsClient(stream, agent.server_jid, credentials)
