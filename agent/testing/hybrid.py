"""A whole agent online through a private Prosody, and its paired phone linked to it.

Shared by the hybrid tests and the server-path benchmark: the agent's `[xmpp_account]` for
the private server, waiting until the server routes to the agent, and a phone whose account
is stored and linked over the LAN (what `buttons account add` does near the TV).
"""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from agent import client
from agent.app import Agent
from agent.backends.base import Backend
from agent.client_server import link_agent
from agent.config import XmppAccountConfig
from agent.net.c2s import C2sStream, open_c2s_stream
from agent.net.stream import StanzaErrorReply, StreamFailed
from agent.security.phone import PhoneAccount, PhoneCredentials, load_credentials, save_account
from agent.testing.agents import open_agent
from agent.testing.prosody import PrivateProsody
from agent.xmpp import stanza as st
from agent.xmpp.disco import DISCO_INFO_NS

#: Accounts made on the private server; each password is "<user>-pw".
AGENT_USER, PHONE_USER, STRANGER_USER = "tv", "phone", "mallory"
PATIENCE = 30


def register_users(server: PrivateProsody, *users: str) -> None:
    for user in users or (AGENT_USER, PHONE_USER, STRANGER_USER):
        server.register(user, f"{user}-pw")


def agent_jid(server: PrivateProsody) -> str:
    return f"{AGENT_USER}@{server.domain}/tv"


def agent_account(server: PrivateProsody) -> dict[str, Any]:
    """The agent's `[xmpp_account]` table: plaintext on loopback, a quick keepalive."""
    account = XmppAccountConfig(
        jid=agent_jid(server),
        password=f"{AGENT_USER}-pw",
        host="127.0.0.1",
        port=server.port,
        tls="none",
        ping_interval=0.5,
        ping_timeout=2,
    )
    return dataclasses.asdict(account)


def phone_account(server: PrivateProsody, user: str = PHONE_USER) -> PhoneAccount:
    return PhoneAccount(f"{user}@{server.domain}", host="127.0.0.1", port=server.port, tls="none")


@asynccontextmanager
async def logged_in(server: PrivateProsody, user: str) -> AsyncIterator[C2sStream]:
    async with open_c2s_stream(
        "127.0.0.1", server.port, f"{user}@{server.domain}/app", f"{user}-pw", tls=None
    ) as stream:
        yield stream


def disco_info(server: PrivateProsody) -> ET.Element:
    return st.iq("get", ET.Element(f"{{{DISCO_INFO_NS}}}query"), to=agent_jid(server))


async def ask_until_online(
    server: PrivateProsody, make_request: Callable[[], ET.Element], asker: str = STRANGER_USER
) -> ET.Element:
    """Ask the agent; retry while its resource is offline (the server answers for it then)."""
    with trio.fail_after(PATIENCE):
        while True:
            try:
                async with logged_in(server, asker) as stream:
                    return await stream.request(make_request())
            except StanzaErrorReply as exc:
                if exc.error.condition != "service-unavailable":
                    raise
            except StreamFailed:
                pass  # the server is still (re)starting
            await trio.sleep(0.1)


async def wait_until_online(server: PrivateProsody, asker: str = STRANGER_USER) -> None:
    await ask_until_online(server, lambda: disco_info(server), asker)


class LogWatcher(logging.Handler):
    """Wakes a test when the c2s shell logs a line with `needle` (logging runs in trio's
    thread, so setting the event is safe)."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.INFO)
        self.needle = needle
        self.seen = trio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.messages.append(record.getMessage())
            self.seen.set()


@contextmanager
def watching(*needles: str) -> Iterator[list[LogWatcher]]:
    """One watcher per needle on `agent.net.c2s` (info lines included) while the block runs."""
    logger = logging.getLogger("agent.net.c2s")
    watchers = [LogWatcher(needle) for needle in needles]
    level = logger.level
    logger.setLevel(logging.INFO)
    for watcher in watchers:
        logger.addHandler(watcher)
    try:
        yield watchers
    finally:
        for watcher in watchers:
            logger.removeHandler(watcher)
        logger.setLevel(level)


@asynccontextmanager
async def open_hybrid_agent(
    server: PrivateProsody, backend: Backend | None = None, *, link: bool = True, **config: Any
) -> AsyncIterator[tuple[Agent, PhoneCredentials]]:
    """The whole agent with its server account online; its pre-paired phone (open_agent's
    default) has its account stored and, with `link`, linked over the LAN."""
    async with open_agent(backend, xmpp_account=agent_account(server), **config) as agent:
        await wait_until_online(server)
        phone = load_credentials()
        save_account(phone.identity.directory, phone_account(server), f"{PHONE_USER}-pw")
        if link:
            async with client.connect("127.0.0.1", agent.port, agent=agent.instance) as remote:
                linked = await link_agent(remote, phone)
            if linked != agent_jid(server):
                raise RuntimeError(f"the agent linked as {linked!r}, not {agent_jid(server)!r}")
        yield agent, phone
