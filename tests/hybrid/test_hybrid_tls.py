"""Hybrid mode over STARTTLS: a private Prosody with a test CA's certificate (trustme).

`PrivateProsody` runs plaintext; this test-only subclass switches its TLS module on with a
certificate for `localhost` and makes encryption required, so a login must do STARTTLS and
verify the server against the test CA (and nothing else).
"""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from agent.backends.virtual import VirtualTV
from agent.dispatch import AgentInfo, Dispatcher
from agent.hybrid import XmppAccountConfig, run_hybrid
from agent.net.c2s import Backoff, open_c2s_stream
from agent.net.stream import StanzaErrorReply, StreamFailed
from agent.testing.prosody import PrivateProsody
from agent.xmpp import stanza as st
from agent.xmpp.disco import DISCO_INFO_NS

PATIENCE = 30
PLAINTEXT_ONLY = 'modules_disabled = { "s2s", "http", "tls" }'
MODULES = 'modules_enabled = { "roster", "saslauth", "disco", "ping", "posix" }'


class TlsProsody(PrivateProsody):
    def __init__(self, directory: Path, ca: trustme.CA) -> None:
        super().__init__(directory, require_encryption=True, log_level="warn")
        self.certificate = directory / "server.pem"
        self.key = directory / "server.key"
        issued = ca.issue_cert("localhost")
        issued.private_key_pem.write_to_path(str(self.key))
        issued.cert_chain_pems[0].write_to_path(str(self.certificate))

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        if PLAINTEXT_ONLY not in text or MODULES not in text:
            raise RuntimeError("PrivateProsody's config changed; update TlsProsody")
        tls = (
            'modules_disabled = { "s2s", "http" }\n'
            f'ssl = {{ certificate = "{self.certificate}"; key = "{self.key}" }}'
        )
        text = text.replace(PLAINTEXT_ONLY, tls).replace(MODULES, MODULES[:-2] + ', "tls" }')
        self.config_path.write_text(text, encoding="utf-8")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def prosody(tmp_path: Path, ca: trustme.CA) -> AsyncIterator[TlsProsody]:
    server = TlsProsody(tmp_path, ca)
    await trio.to_thread.run_sync(server.start)
    for user in ("tv", "phone"):
        await trio.to_thread.run_sync(server.register, user, f"{user}-pw")
    try:
        yield server
    finally:
        await trio.to_thread.run_sync(server.stop)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


async def test_login_over_starttls_verifies_the_server(prosody: TlsProsody, ca: trustme.CA) -> None:
    async with open_c2s_stream(
        "127.0.0.1", prosody.port, "phone@localhost/app", "phone-pw", tls=trusting(ca)
    ) as stream:
        assert stream.client.secured
        assert stream.jid == "phone@localhost/app"
        assert stream.client.mechanism.startswith("SCRAM-SHA-")


async def test_an_untrusted_server_certificate_is_refused(prosody: TlsProsody) -> None:
    other = trustme.CA()
    with pytest.raises(StreamFailed, match="TLS"):
        async with open_c2s_stream(
            "127.0.0.1", prosody.port, "phone@localhost", "phone-pw", tls=trusting(other)
        ):
            pass


async def test_plaintext_client_cannot_log_in_where_tls_is_required(prosody: TlsProsody) -> None:
    with pytest.raises(StreamFailed):
        async with open_c2s_stream(
            "127.0.0.1", prosody.port, "phone@localhost", "phone-pw", tls=None
        ):
            pass


async def test_agent_serves_disco_over_a_tls_server_link(
    prosody: TlsProsody, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    account = XmppAccountConfig(
        jid="tv@localhost/tv",
        password="tv-pw",
        host="127.0.0.1",
        port=prosody.port,
        tls="required",
        ca_file=str(ca_file),
    )
    tv = VirtualTV()
    dispatcher = Dispatcher(tv, AgentInfo("tv@localhost"))
    async with trio.open_nursery() as nursery:
        await nursery.start(tv.run)
        await nursery.start(
            partial(run_hybrid, dispatcher, account, backoff=Backoff(initial=0.05, maximum=0.5))
        )
        with trio.fail_after(PATIENCE):
            while True:
                async with open_c2s_stream(
                    "127.0.0.1", prosody.port, "phone@localhost/app", "phone-pw", tls=trusting(ca)
                ) as phone:
                    query = ET.Element(f"{{{DISCO_INFO_NS}}}query")
                    try:
                        reply = await phone.request(st.iq("get", query, to="tv@localhost/tv"))
                        break
                    except StanzaErrorReply as exc:
                        if exc.error.condition != "service-unavailable":  # = not online yet
                            raise
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert reply.get("type") == "result"
