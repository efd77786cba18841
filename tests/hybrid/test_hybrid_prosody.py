"""Hybrid mode against a real private Prosody on loopback (plaintext: SCRAM, no TLS yet).

The agent logs in with its account and serves what the server relays through the dispatcher;
a phone logs in with its own account (our c2s shell, and slixmpp for the interop check).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from slixmpp import JID, ClientXMPP

from agent import client
from agent.backends.virtual import VirtualTV
from agent.buttons import codec
from agent.dispatch import AgentInfo, Dispatcher
from agent.hybrid import XmppAccountConfig, run_hybrid
from agent.net.c2s import Backoff, C2sStream, open_c2s_stream
from agent.net.stream import StanzaErrorReply
from agent.testing.agents import open_agent
from agent.testing.hybrid import (
    PATIENCE,
    agent_jid,
    ask_until_online,
    disco_info,
    watching,
)
from agent.testing.prosody import PrivateProsody
from agent.xmpp import stanza as st
from agent.xmpp.disco import DISCO_INFO_NS

QUICK = Backoff(initial=0.05, maximum=0.5)


def account(server: PrivateProsody, password: str = "tv-pw") -> XmppAccountConfig:
    return XmppAccountConfig(
        jid=agent_jid(server),
        password=password,
        host="127.0.0.1",
        port=server.port,
        tls="none",
        ping_interval=0.5,
        ping_timeout=2,
    )


@asynccontextmanager
async def running_agent(
    server: PrivateProsody, password: str = "tv-pw"
) -> AsyncIterator[tuple[Dispatcher, VirtualTV]]:
    tv = VirtualTV()
    dispatcher = Dispatcher(tv, AgentInfo(f"tv@{server.domain}", version="9.9"))
    async with trio.open_nursery() as nursery:
        await nursery.start(tv.run)
        await nursery.start(
            partial(run_hybrid, dispatcher, account(server, password), backoff=QUICK)
        )
        yield dispatcher, tv
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def phone(server: PrivateProsody) -> AsyncIterator[C2sStream]:
    async with open_c2s_stream(
        "127.0.0.1", server.port, f"phone@{server.domain}/app", "phone-pw", tls=None
    ) as stream:
        yield stream


async def ask_agent_until_online(
    server: PrivateProsody, make_request: Callable[[], ET.Element]
) -> ET.Element:
    return await ask_until_online(server, make_request, asker="phone")


async def test_agent_logs_in_and_answers_disco_info_through_the_server(
    prosody: PrivateProsody,
) -> None:
    async with running_agent(prosody):
        reply = await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        assert reply.get("from") == agent_jid(prosody)
        query = reply.find(f"{{{DISCO_INFO_NS}}}query")
        assert query is not None
        features = {f.get("var") for f in query.iterfind(f"{{{DISCO_INFO_NS}}}feature")}
        assert codec.NS in features
        assert DISCO_INFO_NS in features
        # Several keepalive pings later the agent is still online and answering.
        await trio.sleep(2)
        async with phone(prosody) as stream:
            again = await stream.request(disco_info(prosody))
        assert again.get("type") == "result"


async def test_a_press_through_the_server_is_not_authorized(prosody: PrivateProsody) -> None:
    async with running_agent(prosody) as (_dispatcher, tv):
        await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        before = tv.state()
        _type, payload = codec.request_element(codec.Press("pause"))
        async with phone(prosody) as stream:
            with pytest.raises(StanzaErrorReply) as refused:
                await stream.request(st.iq("set", payload, to=agent_jid(prosody)))
        assert refused.value.error.condition == "not-authorized"
        assert tv.state() == before


@pytest.mark.parametrize(
    "stop", [PrivateProsody.stop, PrivateProsody.kill], ids=["sigterm", "sigkill"]
)
async def test_agent_reconnects_after_the_server_restarts(
    prosody: PrivateProsody, stop: Callable[[PrivateProsody], None]
) -> None:
    async with running_agent(prosody):
        await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        await trio.to_thread.run_sync(stop, prosody)
        await trio.sleep(0.3)  # let the agent notice and retry against a dead port
        await trio.to_thread.run_sync(prosody.start)
        reply = await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        assert reply.get("type") == "result"


async def test_wrong_password_is_logged_clearly_without_the_password(
    prosody: PrivateProsody,
) -> None:
    with watching("xmpp-account-auth-failed") as (watcher,):
        async with running_agent(prosody, password="not-the-password"):
            with trio.fail_after(PATIENCE):
                await watcher.seen.wait()
    message = watcher.messages[0]
    assert "not-authorized" in message
    assert "not-the-password" not in message


async def test_a_frozen_server_is_noticed_by_keepalive_and_left(prosody: PrivateProsody) -> None:
    """SIGSTOP: the TCP connection stays up but nothing answers; only the pings notice."""
    pid = int((prosody.directory / "prosody.pid").read_text().strip())
    async with running_agent(prosody):
        await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        with watching("did not answer a ping") as (watcher,):
            os.kill(pid, signal.SIGSTOP)
            try:
                with trio.fail_after(PATIENCE):
                    await watcher.seen.wait()
            finally:
                os.kill(pid, signal.SIGCONT)
        assert "xmpp-account-offline" in watcher.messages[0]
        reply = await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        assert reply.get("type") == "result"


def _slixmpp_disco(port: int, domain: str, target: str) -> set[str]:
    """A stock client library, logged in to the same server, asks the agent's disco#info."""

    async def run() -> set[str]:
        client = ClientXMPP(f"phone@{domain}/slix", "phone-pw")
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        client.register_plugin("xep_0030")
        client.register_plugin("feature_mechanisms")
        client.plugin["feature_mechanisms"].unencrypted_scram = True
        online: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _e: online.set_result(None))
        client.connect(host="127.0.0.1", port=port)
        try:
            await asyncio.wait_for(online, PATIENCE)
            info = await client.plugin["xep_0030"].get_info(jid=JID(target), timeout=PATIENCE)
            return {str(feature) for feature in info["disco_info"]["features"]}
        finally:
            client.disconnect()

    return asyncio.run(run())


async def test_interop_slixmpp_reads_the_agents_disco_info(prosody: PrivateProsody) -> None:
    async with running_agent(prosody):
        await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        # slixmpp runs its own asyncio loop: it gets a worker thread of its own.
        features = await trio.to_thread.run_sync(
            _slixmpp_disco, prosody.port, prosody.domain, agent_jid(prosody)
        )
    assert codec.NS in features
    assert "urn:xmpp:ping" in features


async def test_the_agent_configured_with_an_account_serves_both_paths(
    prosody: PrivateProsody,
) -> None:
    """`[xmpp_account]` in the config turns hybrid mode on beside the link-local listener."""
    settings = dataclasses.asdict(account(prosody))
    async with open_agent(xmpp_account=settings) as agent:
        reply = await ask_agent_until_online(prosody, lambda: disco_info(prosody))
        assert reply.get("type") == "result"
        async with client.connect("127.0.0.1", agent.port, agent=agent.instance) as remote:
            await remote.press("play_pause")
            assert (await remote.state()).playback == "playing"
