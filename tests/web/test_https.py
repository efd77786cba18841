"""The web remote over HTTPS with the agent's own certificate (`[web] certfile/keyfile`)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio

from agent.security.keys import CERT_FILE, KEY_FILE, fingerprint
from agent.web.client import http_request
from agent.web.http import COOKIE_NAME
from agent.web.testing import HOST, open_web_agent


async def test_pairing_over_https_gives_a_secure_cookie(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    web_tls = {"certfile": str(state / CERT_FILE), "keyfile": str(state / KEY_FILE)}
    async with open_web_agent({"state_dir": str(state)}, **web_tls) as web:
        assert web.server.secure
        # The agent's certificate is self-signed for its XMPP name: a client checks it by
        # fingerprint (as paired phones do on link-local streams), not by a CA.
        pinned = ssl.create_default_context()
        pinned.check_hostname = False
        pinned.verify_mode = ssl.CERT_NONE
        probe = trio.SSLStream(await trio.open_tcp_stream(HOST, web.port), pinned)
        await probe.do_handshake()
        served = probe.getpeercert(binary_form=True)
        await probe.aclose()
        assert isinstance(served, bytes)
        assert fingerprint(served) == web.agent.identity.fingerprint
        page = await http_request(HOST, web.port, "GET", "/", tls=pinned)
        assert page.status == 200
        token = await web.token()
        reply = await http_request(
            HOST, web.port, "POST", "/pair", body=f"token={token}".encode(),
            headers=[("origin", f"https://{HOST}:{web.port}")], tls=pinned,
        )  # fmt: skip
        assert reply.status == 200
        cookie = reply.headers[b"set-cookie"].decode()
        assert cookie.startswith(f"{COOKIE_NAME}=")
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        # A client that does not trust the agent's certificate gets no page.
        untrusting = ssl.create_default_context()
        with pytest.raises(trio.BrokenResourceError) as refused:
            await http_request(HOST, web.port, "GET", "/", tls=untrusting)
        assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
