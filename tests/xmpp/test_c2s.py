"""The sans-IO client-to-server stream, driven by a scripted server fed byte by byte."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
import scramp  # type: ignore[import-untyped]

from agent.testing.scripted_c2s import ScriptedServer, b64, scram_login, unb64
from agent.xmpp.c2s import (
    BIND_NS,
    SASL_NS,
    SESSION_NS,
    AuthFailed,
    ClientStream,
    Online,
    Phase,
    StartTls,
    split_jid,
)
from agent.xmpp.connection import StanzaReceived, StreamClosed, StreamErrorReceived
from agent.xmpp.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='example.org' id='s1' version='1.0'>"
)
STARTTLS_FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    b"</stream:features>"
)
BIND_FEATURES = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
)


def mechanisms(*names: str) -> bytes:
    inner = "".join(f"<mechanism>{n}</mechanism>" for n in names)
    return (
        f"<stream:features><mechanisms xmlns='{SASL_NS}'>{inner}</mechanisms></stream:features>"
    ).encode()


def bind(server: ScriptedServer, features: bytes = BIND_FEATURES) -> list[object]:
    assert server.feed(HEADER + features) == []
    (request,) = server.read()
    assert request.get("type") == "set"
    resource = request.findtext(f"{{{BIND_NS}}}bind/{{{BIND_NS}}}resource") or "gen"
    return server.feed(
        f"<iq type='result' id='{request.get('id')}'><bind xmlns='{BIND_NS}'>"
        f"<jid>agent@example.org/{resource}</jid></bind></iq>".encode()
    )


def test_plaintext_scram_sha256_login_binds_and_sends_presence() -> None:
    client = ClientStream("agent@example.org/tv", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    assert server.read() == []  # just the header
    assert server.feed(HEADER + mechanisms("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256")) == []
    assert scram_login(server, "SCRAM-SHA-256") == []
    assert client.authenticated
    assert client.mechanism == "SCRAM-SHA-256"
    assert bind(server) == [Online("agent@example.org/tv")]
    (presence,) = server.read()
    assert presence.tag == "{jabber:client}presence"
    assert client.phase is Phase.ONLINE


def test_scram_sha1_when_that_is_all_the_server_has() -> None:
    client = ClientStream("agent@example.org", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-1"))
    assert scram_login(server, "SCRAM-SHA-1") == []
    assert bind(server) == [Online("agent@example.org/gen")]


def test_wrong_password_is_an_auth_failure_and_the_stream_ends() -> None:
    client = ClientStream("agent@example.org", "wrong", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-256"))
    events = scram_login(server, "SCRAM-SHA-256")
    assert events == [AuthFailed("not-authorized", "bad password")]
    assert client.phase is Phase.CLOSING
    assert client.data_to_send() == b"</stream:stream>"
    assert server.feed(b"</stream:stream>") == [StreamClosed(clean=True)]
    assert client.phase.name == "CLOSED"  # (mypy narrowed phase to CLOSING above)


def test_a_server_that_fakes_its_proof_is_refused() -> None:
    client = ClientStream("agent@example.org", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-256"))
    (auth,) = server.read()
    scram = scramp.ScramMechanism("SCRAM-SHA-256")
    info = scram.make_auth_info("secret")
    sasl = scram.make_server(lambda _user: info)
    sasl.set_client_first(unb64(auth.text))
    server.feed(f"<challenge xmlns='{SASL_NS}'>{b64(sasl.get_server_first())}</challenge>".encode())
    server.read()
    forged = b64("v=" + base64.b64encode(b"x" * 32).decode())
    events = server.feed(f"<success xmlns='{SASL_NS}'>{forged}</success>".encode())
    assert len(events) == 1
    assert isinstance(events[0], AuthFailed)
    assert events[0].condition == "server-proof-invalid"
    assert not client.authenticated


def test_plain_is_never_used_in_the_clear() -> None:
    client = ClientStream("agent@example.org", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    events = server.feed(HEADER + mechanisms("PLAIN"))
    assert len(events) == 1
    assert isinstance(events[0], AuthFailed)
    assert "only used over TLS" in events[0].text
    assert b"secret" not in client.data_to_send()


def test_starttls_is_required_and_plain_allowed_after_it() -> None:
    client = ClientStream("agent@example.org/tv", "secret")
    server = ScriptedServer(client)
    client.start()
    server.read()
    assert server.feed(HEADER + STARTTLS_FEATURES) == []
    (starttls,) = server.read()
    assert starttls.tag == "{urn:ietf:params:xml:ns:xmpp-tls}starttls"
    assert server.feed(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") == [StartTls()]
    client.tls_established()
    assert client.secured
    header = client.data_to_send()
    assert b'from="agent@example.org"' in header
    server.feed(HEADER + mechanisms("PLAIN"))
    (auth,) = server.read()
    assert auth.get("mechanism") == "PLAIN"
    assert unb64(auth.text) == "\0agent\0secret"
    assert server.feed(f"<success xmlns='{SASL_NS}'/>".encode()) == []
    assert bind(server) == [Online("agent@example.org/tv")]


def test_a_server_without_starttls_is_refused_when_tls_is_wanted() -> None:
    client = ClientStream("agent@example.org", "secret")
    client.start()
    client.data_to_send()
    with pytest.raises(LocalProtocolError, match="STARTTLS"):
        client.receive_data(HEADER + mechanisms("SCRAM-SHA-256", "PLAIN"))


def test_legacy_session_is_established_when_the_server_requires_it() -> None:
    client = ClientStream("agent@example.org/tv", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-256"))
    scram_login(server, "SCRAM-SHA-256")
    features = (
        f"<stream:features><bind xmlns='{BIND_NS}'/><session xmlns='{SESSION_NS}'/>"
        "</stream:features>"
    ).encode()
    assert bind(server, features) == []
    (session,) = server.read()
    assert session.find(f"{{{SESSION_NS}}}session") is not None
    assert server.feed(f"<iq type='result' id='{session.get('id')}'/>".encode()) == [
        Online("agent@example.org/tv")
    ]


def online_client() -> tuple[ClientStream, ScriptedServer]:
    client = ClientStream("agent@example.org/tv", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-256"))
    scram_login(server, "SCRAM-SHA-256")
    bind(server)
    server.read()
    return client, server


def test_stanzas_flow_once_online() -> None:
    client, server = online_client()
    events = server.feed(
        b"<iq type='get' id='d1' from='phone@example.org/app' to='agent@example.org/tv'>"
        b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert len(events) == 1
    assert isinstance(events[0], StanzaReceived)
    assert events[0].stanza.get("from") == "phone@example.org/app"
    out = client.send_stanza(ET.Element("{jabber:client}message", {"to": "x@example.org"}))
    assert out == b'<message to="x@example.org"/>'


def test_stream_error_and_end_of_stream_are_events() -> None:
    _client, server = online_client()
    events = server.feed(
        b"<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error></stream:stream>"
    )
    assert events == [StreamErrorReceived("system-shutdown", ""), StreamClosed(clean=True)]


def test_after_our_close_only_the_servers_end_matters() -> None:
    client, server = online_client()
    assert client.send_close() == b"</stream:stream>"
    assert client.send_close() == b""
    assert server.feed(b"<message from='late@example.org'/>") == []
    assert server.feed(b"") == [StreamClosed(clean=False)]
    assert server.feed(b"") == []


def test_eof_is_an_unclean_close() -> None:
    client, server = online_client()
    assert server.feed(b"") == [StreamClosed(clean=False)]
    with pytest.raises(LocalProtocolError):
        client.send_stanza(ET.Element("{jabber:client}presence"))


@pytest.mark.parametrize(
    "garbage",
    [
        b"<iq type='result' id='nope'/>",  # a stanza before we are online
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>!!!</success>",  # not base64
        b"<!-- comment -->",
    ],
)
def test_protocol_violations_during_negotiation_raise(garbage: bytes) -> None:
    client = ClientStream("agent@example.org", "secret", use_tls=False)
    client.start()
    client.receive_data(HEADER + mechanisms("SCRAM-SHA-256"))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(garbage)


def test_bind_error_is_a_protocol_error() -> None:
    client = ClientStream("agent@example.org/tv", "secret", use_tls=False)
    server = ScriptedServer(client)
    client.start()
    server.read()
    server.feed(HEADER + mechanisms("SCRAM-SHA-256"))
    scram_login(server, "SCRAM-SHA-256")
    server.feed(HEADER + BIND_FEATURES)
    (request,) = server.read()
    with pytest.raises(ProtocolError, match="conflict"):
        server.feed(
            f"<iq type='error' id='{request.get('id')}'><error type='cancel'>"
            "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>".encode()
        )


@pytest.mark.parametrize("jid", ["", "@example.org", "a b@example.org", "example.org"])
def test_bad_account_jids_are_refused(jid: str) -> None:
    with pytest.raises(ValueError, match="JID"):
        ClientStream(jid, "secret")


def test_split_jid() -> None:
    assert split_jid("a@b/c/d") == ("a", "b", "c/d")
