"""The web server over real loopback TCP: HTTP routes, pairing, the WebSocket's rules."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket

from agent.buttons import codec
from agent.testing.agents import eventually
from agent.web.client import WebStream, http_request, open_web_stream, origin, pair
from agent.web.http import COOKIE_NAME
from agent.web.server import WEBSOCKET_PATH
from agent.web.testing import HOST, open_web_agent
from agent.xmpp import stanza as st
from agent.xmpp.framing import CLOSE_TAG, CLOSE_UNSUPPORTED_DATA, FRAMING_NS

STREAMS = "http://etherx.jabber.org/streams"


async def test_the_page_is_served_with_a_strict_policy() -> None:
    async with open_web_agent() as web:
        reply = await http_request(HOST, web.port, "GET", "/")
        assert reply.status == 200
        assert reply.headers[b"content-type"].startswith(b"text/html")
        assert b"default-src 'none'" in reply.headers[b"content-security-policy"]
        assert reply.headers[b"referrer-policy"] == b"no-referrer"
        missing = await http_request(HOST, web.port, "GET", "/../agent/config.py")
        assert missing.status == 404


async def test_pairing_sets_an_httponly_strict_cookie_and_the_token_is_single_use() -> None:
    async with open_web_agent() as web:
        token = await web.token()
        reply = await http_request(
            HOST,
            web.port,
            "POST",
            "/pair",
            body=f"token={token}".encode(),
            headers=[("origin", origin(HOST, web.port))],
        )
        assert reply.status == 200
        cookie = reply.headers[b"set-cookie"].decode()
        assert cookie.startswith(f"{COOKIE_NAME}=")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert await pair(HOST, web.port, token) is None  # used up


async def test_a_token_dies_with_its_pairing_window() -> None:
    async with open_web_agent() as web:
        token = await web.token()
        web.agent.pairing.close()
        assert await pair(HOST, web.port, token) is None


async def test_pairing_from_another_origin_is_refused() -> None:
    async with open_web_agent() as web:
        token = await web.token()
        reply = await http_request(
            HOST,
            web.port,
            "POST",
            "/pair",
            body=f"token={token}".encode(),
            headers=[("origin", "http://evil.example")],
        )
        assert reply.status == 403


async def test_pairing_attempts_are_rate_limited_per_address() -> None:
    async with open_web_agent(pairing_burst=2) as web:
        statuses = []
        for _ in range(3):
            reply = await http_request(
                HOST,
                web.port,
                "POST",
                "/pair",
                body=b"token=guess",
                headers=[("origin", origin(HOST, web.port))],
            )
            statuses.append(reply.status)
        assert statuses == [403, 403, 429]


async def test_a_paired_browser_presses_and_gets_pushes() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        session = await http_request(
            HOST, web.port, "GET", "/session", headers=[("cookie", f"{COOKIE_NAME}={credential}")]
        )
        assert session.status == 200
        async with open_web_stream(HOST, web.port, credential) as stream:
            reply = await stream.request(codec.Press("volume_up"))
            assert reply.get("type") == "result"
            assert web.tv.history == ["volume_up"]
            assert (await stream.request(codec.Subscribe())).get("type") == "result"
            web.tv.start_playing("Sintel")
            with trio.fail_after(5):
                while True:
                    push = await stream.receive()
                    state = push.find(codec.q("state"))
                    if state is not None and codec.parse_state(state).title == "Sintel":
                        break
            assert push.tag == st.MESSAGE


async def test_an_unpaired_browser_is_refused_at_the_upgrade() -> None:
    async with open_web_agent() as web:
        with pytest.raises(ConnectionRejected) as refused:
            async with open_web_stream(HOST, web.port, None):
                pass
        assert refused.value.status_code == 403
        unknown = await http_request(HOST, web.port, "GET", "/session")
        assert unknown.status == 401


async def test_a_revoked_browser_is_refused_on_its_next_connection() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as stream:
            await stream.request(codec.Press("up"))
        (peer,) = web.auth.peers
        assert await web.auth.revoke(peer)
        with pytest.raises(ConnectionRejected) as refused:
            async with open_web_stream(HOST, web.port, credential):
                pass
        assert refused.value.status_code == 403


async def test_cross_origin_upgrades_are_refused() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        with pytest.raises(ConnectionRejected) as refused:
            async with open_web_stream(
                HOST, web.port, credential, origin_header="http://evil.example"
            ):
                pass
        assert refused.value.status_code == 403


async def test_the_xmpp_subprotocol_is_required() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        headers = [
            (b"origin", origin(HOST, web.port).encode()),
            (b"cookie", f"{COOKIE_NAME}={credential}".encode()),
        ]
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket(
                HOST, web.port, WEBSOCKET_PATH, use_ssl=False, extra_headers=headers
            ):
                pass
        assert refused.value.status_code == 400


async def test_a_bad_frame_gets_a_stream_error_then_close() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as stream:
            await stream.ws.send_message("<iq xmlns='jabber:client'><!-- no --></iq>")
            error = await stream.receive()
            assert error.tag == f"{{{STREAMS}}}error"
            assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}restricted-xml") is not None
            assert (await stream.receive()).tag == CLOSE_TAG
            with pytest.raises(ConnectionClosed) as closed:
                await stream.receive()
            assert closed.value.reason.code == 1000


async def test_a_binary_frame_closes_with_unsupported_data() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as stream:
            await stream.ws.send_message(b"<iq/>")
            with pytest.raises(ConnectionClosed) as closed:
                await receive_until_closed(stream)
            assert closed.value.reason.code == CLOSE_UNSUPPORTED_DATA


async def receive_until_closed(stream: WebStream) -> None:
    with trio.fail_after(5):
        while True:
            await stream.receive()


async def test_close_is_answered_with_close() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as stream:
            await stream.send(ET.Element(f"{{{FRAMING_NS}}}close"))
            assert (await stream.receive()).tag == CLOSE_TAG
        await eventually(lambda: web.server.open_sockets == 0)


async def test_shutdown_closes_open_sockets_with_close() -> None:
    async with open_web_agent() as web:
        credential = await pair(HOST, web.port, await web.token())
        async with open_web_stream(HOST, web.port, credential) as stream:
            web.server.shutdown()
            assert (await stream.receive()).tag == CLOSE_TAG
            with pytest.raises(ConnectionClosed) as closed:
                await stream.receive()
            assert closed.value.reason.code == 1001
