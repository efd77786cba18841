"""Who may do what: unpaired TLS peers, revoked devices, a changed agent key, chat PINs."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from agent.buttons import codec
from agent.client import ClientError, StreamFailed, connect
from agent.net.stream import ClientTls, StanzaErrorReply, open_xmpp_stream
from agent.security.phone import load_credentials
from agent.security.tls import client_context
from agent.security.truststore import TrustStore
from agent.testing.agents import open_agent
from agent.testing.pairing import pair_directly
from agent.xmpp import stanza as st
from agent.xmpp.disco import DISCO_INFO_NS, PING_NS, VERSION_NS

BUTTONS_REQUESTS: list[codec.Command] = [
    codec.Press("mute"),
    codec.Hold("volume_up", "start"),
    codec.Hold("volume_up", "stop"),
    codec.Text("hello", True),
    codec.ListButtons(),
    codec.GetState(),
    codec.Subscribe(),
    codec.Unsubscribe(),
]


async def test_an_unpaired_tls_peer_may_only_discover_ping_and_pair() -> None:
    async with open_agent() as agent:
        tls = ClientTls(client_context(None), lambda der: None, presents_certificate=False)
        async with open_xmpp_stream(
            "127.0.0.1", agent.port, local_jid="eve@x", remote_jid=None, tls=tls
        ) as stream:
            assert stream.conn.secured
            for command in BUTTONS_REQUESTS:
                type_, payload = codec.request_element(command)
                with pytest.raises(StanzaErrorReply) as refused:
                    await stream.request(st.iq(type_, payload))
                assert refused.value.error.condition == "not-authorized", command
            for query in (
                f"{{{DISCO_INFO_NS}}}query",
                f"{{{PING_NS}}}ping",
                f"{{{VERSION_NS}}}query",
            ):
                await stream.request(st.iq("get", ET.Element(query)))
        assert agent.backend.state().muted is False


async def test_a_revoked_phone_is_closed_now_and_refused_next_time() -> None:
    async with open_agent() as agent:
        async with connect("127.0.0.1", agent.port, agent=agent.instance) as remote:
            await remote.press("up")
            (peer,) = agent.trusted.peers
            # `buttons-agent peers revoke` is another process writing the store; the agent
            # notices within its poll interval (2 s).
            assert TrustStore(agent.trusted.path).revoke(peer.name)
            with trio.fail_after(5):
                await remote.stream.closed.wait()
            assert "not-authorized" in remote.stream.close_reason
        with pytest.raises(StreamFailed, match=r"not paired|revoked"):
            async with connect("127.0.0.1", agent.port, agent=agent.instance) as remote:
                await remote.press("up")


async def test_a_changed_agent_key_is_refused_with_a_re_pair_hint(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    phone = load_credentials(tmp_path / "phone")
    async with open_agent(state_dir=str(state), paired_phone=False) as agent:
        pair_directly(agent, phone)
        async with connect("127.0.0.1", agent.port, agent=agent.instance, credentials=phone) as r:
            await r.press("up")
    shutil.rmtree(state)  # reinstalled (or impersonated): a new key
    async with open_agent(state_dir=str(state), paired_phone=False) as agent:
        agent.trusted.add("test-phone", phone.identity.cert_der)  # even if it trusts us
        with pytest.raises(ClientError, match=r"different key.*re-pair"):
            async with connect(
                "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
            ) as remote:
                await remote.press("up")


async def chat(stream, body: str) -> str:  # type: ignore[no-untyped-def]
    await stream.send(st.message(type_="chat", body=body))
    with trio.fail_after(5):
        reply = await stream.incoming.receive()
    return reply.findtext(st.BODY) or ""


@pytest.mark.parametrize("fallback", ["off", "pin"])
async def test_chat_fallback(fallback: str) -> None:
    async with open_agent(chat_fallback=fallback) as agent:
        async with open_xmpp_stream(
            "127.0.0.1", agent.port, local_jid="buddy@laptop", remote_jid=None
        ) as stream:  # a plain chat client: no TLS
            assert "not paired" in await chat(stream, "mute") or fallback == "pin"
            if fallback == "off":
                assert agent.pairing.current_pin is None  # chat cannot even open a window
                assert agent.backend.state().muted is False
                return
            assert "6-digit code" in await chat(stream, "mute")
            pin = agent.pairing.current_pin
            assert pin is not None
            assert "PIN accepted" in await chat(stream, pin)
            assert await chat(stream, "mute") == "ok: mute"
        assert agent.backend.state().muted is True
        # Trusted for that stream only: a new chat stream starts locked again.
        async with open_xmpp_stream(
            "127.0.0.1", agent.port, local_jid="buddy@laptop", remote_jid=None
        ) as stream:
            assert "6-digit code" in await chat(stream, "unmute")
