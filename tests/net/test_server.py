"""The agent's listener over real loopback TCP, driven by a raw socket peer."""

from __future__ import annotations

import trio

from agent.backends.virtual import VirtualTV
from agent.client import connect
from agent.testing.agents import open_agent
from agent.testing.rawpeer import OPEN, STANZAS, STREAMS, open_raw_stream, raw_peer


async def test_versionless_peer_gets_no_features_and_is_not_authorized() -> None:
    tv = VirtualTV()
    async with open_agent(tv) as agent, raw_peer(agent.port) as peer:
        await open_raw_stream(peer, "to='buttons@test'")
        assert peer.header is not None
        assert peer.header.get("version") is None
        assert peer.header.get("from") == "buttons@test"
        await peer.send(
            "<iq type='set' id='p1'><press xmlns='urn:buttons-agent:remote:0' button='mute'/></iq>"
            "<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        await peer.read_until(lambda p: len(p.elements) >= 2)
        assert not any(e.tag == f"{{{STREAMS}}}features" for e in peer.elements)
        press, ping = peer.elements
        assert press.get("type") == "error"
        assert press.find(f"{{jabber:client}}error/{{{STANZAS}}}not-authorized") is not None
        assert ping.get("type") == "result"  # ping, disco and version stay open to all
        assert tv.state().muted is False
        await peer.send("</stream:stream>")
        await peer.read_until(lambda p: p.ended or p.eof)
        assert peer.ended


async def test_malformed_peer_gets_stream_error_while_others_keep_pressing() -> None:
    tv = VirtualTV()
    async with (
        open_agent(tv) as agent,
        raw_peer(agent.port) as bad,
        connect("127.0.0.1", agent.port, agent="buttons@test") as good,
    ):
        await good.press("up")
        await open_raw_stream(bad)
        await bad.send("<message><body>unclosed</message>")
        await bad.read_until(lambda p: p.ended or p.eof)
        assert bad.stream_error() == "not-well-formed"
        assert bad.ended
        await good.press("down")
        await good.press("down")
    assert tv.history == ["up", "down", "down"]


async def test_wrong_recipient_is_host_unknown() -> None:
    async with open_agent() as agent, raw_peer(agent.port) as peer:
        await peer.send(OPEN.format(attrs="to='someone-else@test' version='1.0'"))
        await peer.read_until(lambda p: p.ended or p.eof)
        assert peer.header is not None  # the error comes inside a proper stream
        assert peer.stream_error() == "host-unknown"


async def test_billion_laughs_is_restricted_xml() -> None:
    async with open_agent() as agent, raw_peer(agent.port) as peer:
        await peer.send(
            "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
        )
        await peer.read_until(lambda p: p.ended or p.eof)
        assert peer.stream_error() == "restricted-xml"


async def test_oversized_stanza_is_policy_violation() -> None:
    async with open_agent(max_stanza_bytes=4096) as agent, raw_peer(agent.port) as peer:
        await open_raw_stream(peer)
        await peer.send("<message><body>" + "x" * 20_000)
        await peer.read_until(lambda p: p.ended or p.eof)
        assert peer.stream_error() == "policy-violation"


async def test_silent_connection_times_out_in_the_handshake() -> None:
    async with open_agent(handshake_timeout=0.3) as agent, raw_peer(agent.port) as peer:
        await peer.read_until(lambda p: p.ended or p.eof)
        assert peer.stream_error() == "connection-timeout"


async def test_whitespace_keepalive_keeps_an_idle_stream_open() -> None:
    async with open_agent(idle_timeout=0.5) as agent, raw_peer(agent.port) as peer:
        await open_raw_stream(peer)
        for _ in range(6):  # 1.2 s in all, well past the idle timeout
            await trio.sleep(0.2)
            await peer.send(" ")
        await peer.send("<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        await peer.read_until(lambda p: any(e.get("id") == "ping" for e in p.elements))
        assert peer.stream_error() is None
        await peer.read_until(lambda p: p.ended or p.eof)  # now silent: it times out
        assert peer.stream_error() == "connection-timeout"


async def test_streams_per_peer_are_limited() -> None:
    async with (
        open_agent(max_streams_per_peer=2) as agent,
        raw_peer(agent.port) as one,
        raw_peer(agent.port) as two,
    ):
        await open_raw_stream(one)
        await open_raw_stream(two)
        async with raw_peer(agent.port) as three:
            await three.read_until(lambda p: p.ended or p.eof)
            assert three.stream_error() == "policy-violation"
        await one.send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>")
        await one.read_until(lambda p: any(e.get("id") == "x" for e in p.elements))


async def test_shutdown_says_goodbye_to_every_stream() -> None:
    async with open_agent() as agent, raw_peer(agent.port) as one, raw_peer(agent.port) as two:
        await open_raw_stream(one)
        await open_raw_stream(two)
        agent.stop()
        for peer in (one, two):
            await peer.read_until(lambda p: p.ended or p.eof)
            assert peer.ended
            await peer.send("</stream:stream>")
