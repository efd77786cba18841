"""XEP-0198 stream management against a real private Prosody (mod_smacks), through a relay.

The agent's server link runs through a `TcpRelay`, so a test can cut it abruptly (no closing
tag, as when Wi-Fi drops) while Prosody keeps the session hibernating, and restore it. A phone
logs in directly. What reaches the agent's application is counted at `Session.handle`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio

from agent import dispatch
from agent.backends.virtual import VirtualTV
from agent.buttons import codec
from agent.config import XmppAccountConfig
from agent.dispatch import AgentInfo, Dispatcher
from agent.hybrid import run_hybrid
from agent.net.c2s import Backoff, C2sStream, open_c2s_stream
from agent.net.stream import StanzaErrorReply
from agent.testing.hybrid import PATIENCE, ask_until_online, disco_info, watching
from agent.testing.prosody import PrivateProsody
from agent.testing.relay import TcpRelay
from agent.xmpp import stanza as st
from agent.xmpp.disco import PING_NS

AGENT_JID = "tv@localhost/tv"  # agent_jid() of a PrivateProsody (domain localhost)
QUICK = Backoff(initial=0.05, maximum=0.5)


class Handled:
    """Counts the stanzas the agent's application layer handled, by stanza id."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = trio.Event()

    def record(self, stanza: ET.Element) -> None:
        self.counts[stanza.get("id", "")] += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, request: ET.Element) -> None:
        """Until `request` was handled; its id is read as it changes (`request()` sets it)."""
        while not request.get("id") or self.counts[request.get("id", "")] == 0:
            await self._changed.wait()


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> Handled:
    counter = Handled()
    original = dispatch.Session.handle

    async def counting(self: dispatch.Session, stanza: ET.Element) -> None:
        try:
            await original(self, stanza)  # the reply is written before this returns
        finally:
            counter.record(stanza)

    monkeypatch.setattr(dispatch.Session, "handle", counting)
    return counter


@asynccontextmanager
async def agent_behind_relay(server: PrivateProsody) -> AsyncIterator[TcpRelay]:
    relay = TcpRelay("127.0.0.1", server.port)
    tv = VirtualTV()
    dispatcher = Dispatcher(tv, AgentInfo("tv@localhost", version="9.9"))
    async with trio.open_nursery() as nursery:
        await nursery.start(tv.run)
        account = XmppAccountConfig(
            jid=AGENT_JID,
            password="tv-pw",
            host="127.0.0.1",
            port=await nursery.start(relay.run),
            tls="none",
            ping_interval=0.5,
            ping_timeout=2,
        )
        await nursery.start(partial(run_hybrid, dispatcher, account, backoff=QUICK))
        yield relay
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def phone(server: PrivateProsody) -> AsyncIterator[C2sStream]:
    async with open_c2s_stream(
        "127.0.0.1", server.port, "phone@localhost/app", "phone-pw", tls=None
    ) as stream:
        yield stream


def press(button: str) -> ET.Element:
    type_, payload = codec.request_element(codec.Press(button))
    return st.iq(type_, payload, to=AGENT_JID)


async def until_agent_online(server: PrivateProsody) -> None:
    await ask_until_online(server, lambda: disco_info(server), asker="phone")


async def server_has_processed(stream: C2sStream) -> None:
    """A ping to the server: once answered, everything the phone sent before was routed."""
    await stream.request(st.iq("get", ET.Element(f"{{{PING_NS}}}ping"), to="localhost"))


async def no_duplicate_replies(stream: C2sStream, server: PrivateProsody) -> None:
    """One more request round trip, then no iq may be left over (a second reply would be).

    Presence (the server reflecting the phone's own) may be waiting there too; it is no reply.
    """
    reply = await stream.request(disco_info(server))
    assert reply.get("type") == "result"
    left_over: list[ET.Element] = []
    while True:
        try:
            left_over.append(stream.incoming.receive_nowait())
        except trio.WouldBlock:
            break
    assert [ET.tostring(s) for s in left_over if s.tag == st.IQ] == []


async def test_the_agent_enables_resumable_stream_management(prosody: PrivateProsody) -> None:
    with watching("sm-enabled") as (enabled,):
        async with agent_behind_relay(prosody):
            await until_agent_online(prosody)
            with trio.fail_after(PATIENCE):
                await enabled.seen.wait()
    assert "resumable=True" in enabled.messages[0]
    assert "max=600" in enabled.messages[0]


async def test_xep_0198_resume_delivers_a_press_sent_during_a_short_disconnect_exactly_once(
    prosody: PrivateProsody, handled: Handled
) -> None:
    async with agent_behind_relay(prosody) as relay:
        await until_agent_online(prosody)
        with watching("xmpp-account-offline", "sm-resumed", "xmpp-account-online") as (
            offline,
            resumed,
            online,
        ):
            await relay.cut()
            with trio.fail_after(PATIENCE):
                await offline.seen.wait()
            assert "resumable=True" in offline.messages[0]
            async with phone(prosody) as stream:
                request = press("pause")
                answers: list[str] = []

                async def ask() -> None:
                    try:
                        reply = await stream.request(request)
                        answers.append(reply.get("type", ""))
                    except StanzaErrorReply as exc:
                        answers.append(exc.error.condition)

                with trio.fail_after(PATIENCE):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(ask)
                        # Once the server answers this, the press waits in the hibernated session.
                        await server_has_processed(stream)
                        assert handled.counts[request.get("id", "")] == 0
                        relay.restore()
                        await handled.wait_for(request)
                        await resumed.seen.wait()
                    # The agent's answer reached the phone. A bounce made by the server (the
                    # resource gone) would say service-unavailable or recipient-unavailable;
                    # the agent itself answers presses through the server (not-authorized
                    # until the identity is linked).
                    assert answers in (["result"], ["not-authorized"])
                    await no_duplicate_replies(stream, prosody)
            assert handled.counts[request.get("id", "")] == 1
            assert online.messages == []  # the same session went on: no new login


async def test_a_reply_lost_in_the_cut_is_resent_after_resumption_and_arrives_once(
    prosody: PrivateProsody, handled: Handled
) -> None:
    async with agent_behind_relay(prosody) as relay:
        await until_agent_online(prosody)
        with watching("sm-resumed") as (resumed,):
            async with phone(prosody) as stream:
                request = disco_info(prosody)
                replies: list[ET.Element] = []

                async def ask() -> None:
                    replies.append(await stream.request(request))

                with trio.fail_after(PATIENCE):
                    async with trio.open_nursery() as nursery:
                        relay.swallow_upstream()  # what the agent sends now is lost in the cut
                        nursery.start_soon(ask)
                        await handled.wait_for(request)  # its reply is written
                        assert relay.swallowed > 0
                        await relay.cut()
                        relay.restore()
                        await resumed.seen.wait()
                    assert [r.get("type") for r in replies] == ["result"]
                    await no_duplicate_replies(stream, prosody)
            assert "retransmitted=0" not in resumed.messages[0]
            # The agent's <resume h=…/> covered the request: the server did not resend it.
            assert handled.counts[request.get("id", "")] == 1


@pytest.mark.parametrize(
    "stop", [PrivateProsody.stop, PrivateProsody.kill], ids=["sigterm", "sigkill"]
)
async def test_a_session_the_restarted_server_forgot_gives_way_to_a_new_one(
    prosody: PrivateProsody, stop: Callable[[PrivateProsody], None]
) -> None:
    async with agent_behind_relay(prosody):
        await until_agent_online(prosody)
        with watching("sm-resume-failed", "xmpp-account-online") as (failed, online):
            await trio.to_thread.run_sync(stop, prosody)
            await trio.to_thread.run_sync(prosody.start)
            with trio.fail_after(PATIENCE):
                await failed.seen.wait()
                await online.seen.wait()
            assert "item-not-found" in failed.messages[0]
            await until_agent_online(prosody)  # hybrid serves the new session
