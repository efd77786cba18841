from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent.xmpp import stanza as st
from agent.xmpp.connection import (
    Connection,
    Event,
    FeaturesReceived,
    Role,
    StanzaReceived,
    State,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError

STREAMS = "http://etherx.jabber.org/streams"


def drain(conn: Connection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def peer_header(attrs: str) -> bytes:
    return f"<stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS}' {attrs}>".encode()


def parse_reply(data: bytes) -> ET.Element:
    """Our bytes as a document (closing what we left open) so tests inspect real XML."""
    text = data.decode()
    if not text.endswith("</stream:stream>"):
        text += "</stream:stream>"
    return ET.fromstring(text.removeprefix("<?xml version='1.0'?>"))


def test_receiver_answers_version_1_peer_with_header_and_features() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("from='me@phone' to='tv@pi' version='1.0'"))
    (opened,) = drain(conn)
    assert isinstance(opened, StreamOpened)
    assert (opened.peer, opened.to, opened.version) == ("me@phone", "tv@pi", "1.0")
    reply = parse_reply(conn.send_accept())
    assert reply.get("from") == "tv@pi"
    assert reply.get("to") == "me@phone"
    assert reply.get("version") == "1.0"
    assert reply.get("id")
    assert reply.find(f"{{{STREAMS}}}features") is not None
    assert conn.state is State.OPEN


def test_receiver_sends_no_version_and_no_features_to_a_versionless_peer() -> None:
    # libpurple's Bonjour peers open streams without `version` and choke on features.
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("from='me@phone' to='tv@pi'"))
    drain(conn)
    reply = parse_reply(conn.send_accept())
    assert reply.get("version") is None
    assert len(reply) == 0


def test_receiver_accepts_a_header_without_from_or_to() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("version='1.0'"))
    (opened,) = drain(conn)
    assert isinstance(opened, StreamOpened)
    assert opened.peer is None
    reply = parse_reply(conn.send_accept())
    assert reply.get("to") is None


def test_wrong_to_is_host_unknown_and_error_goes_after_our_header() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi", accepted_names=["tv-2@pi"])
    with pytest.raises(RemoteProtocolError) as caught:
        conn.receive_data(peer_header("from='me@phone' to='radio@pi' version='1.0'"))
    assert caught.value.condition == "host-unknown"
    data = conn.send_stream_error(caught.value.condition, caught.value.text)
    reply = parse_reply(data)
    assert reply.tag == f"{{{STREAMS}}}stream"
    error = reply.find(f"{{{STREAMS}}}error")
    assert error is not None
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}host-unknown") is not None
    assert data.endswith(b"</stream:stream>")


def test_an_alias_name_is_accepted() -> None:
    conn = Connection(Role.RECEIVER, "tv-2@pi", accepted_names=["tv@pi"])
    conn.receive_data(peer_header("to='tv@pi'"))
    assert isinstance(drain(conn)[0], StreamOpened)


def test_stanzas_pipelined_behind_the_header_wait_for_the_accept() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("to='tv@pi'") + b"<message><body>x</body></message>")
    opened, message = drain(conn)
    assert isinstance(opened, StreamOpened)
    assert isinstance(message, StanzaReceived)
    conn.send_accept()
    assert conn.send_stanza(message.stanza).startswith(b"<message")


def test_initiator_and_receiver_talk_to_each_other() -> None:
    phone = Connection(Role.INITIATOR, "me@phone")
    tv = Connection(Role.RECEIVER, "tv@pi")
    tv.receive_data(phone.send_open("tv@pi"))
    assert isinstance(drain(tv)[0], StreamOpened)
    phone.receive_data(tv.send_accept())
    opened, features = drain(phone)
    assert isinstance(opened, StreamOpened)
    assert isinstance(features, FeaturesReceived)
    assert phone.stream_id == tv.stream_id

    request = st.iq("get", ET.Element("{urn:xmpp:ping}ping"), to="tv@pi")
    tv.receive_data(phone.send_stanza(request))
    (received,) = drain(tv)
    assert isinstance(received, StanzaReceived)
    assert received.stanza.get("id") == request.get("id")
    phone.receive_data(tv.send_stanza(st.iq_result(received.stanza)))
    (answer,) = drain(phone)
    assert isinstance(answer, StanzaReceived)
    assert answer.stanza.get("type") == "result"

    tv.receive_data(phone.send_close())
    assert phone.state is State.CLOSING
    assert drain(tv) == [StreamClosed(clean=True)]
    phone.receive_data(tv.send_close())
    assert drain(phone) == [StreamClosed(clean=True)]
    assert phone.state is State.CLOSED
    assert tv.state is State.CLOSED


def test_eof_is_an_unclean_close() -> None:
    tv = Connection(Role.RECEIVER, "tv@pi")
    tv.receive_data(peer_header("version='1.0'"))
    drain(tv)
    tv.receive_data(b"")
    assert drain(tv) == [StreamClosed(clean=False)]
    assert tv.state is State.CLOSED


def test_stream_error_from_peer_is_an_event() -> None:
    phone = Connection(Role.INITIATOR, "me@phone")
    phone.send_open("tv@pi")
    tv = Connection(Role.RECEIVER, "tv@pi")
    tv.receive_data(peer_header("version='1.0'"))
    drain(tv)
    phone.receive_data(tv.send_stream_error("system-shutdown", "bye"))
    events = drain(phone)
    assert StreamErrorReceived("system-shutdown", "bye") in events
    assert events[-1] == StreamClosed(clean=True)


def test_sending_a_stanza_before_the_stream_is_open_is_a_local_error() -> None:
    conn = Connection(Role.INITIATOR, "me@phone")
    with pytest.raises(LocalProtocolError):
        conn.send_stanza(st.message(body="too early"))


def test_close_is_idempotent() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("version='1.0'"))
    conn.send_accept()
    assert conn.send_close() == b"</stream:stream>"
    assert conn.send_close() == b""


def test_data_after_the_peer_closed_is_an_error() -> None:
    conn = Connection(Role.RECEIVER, "tv@pi")
    conn.receive_data(peer_header("version='1.0'"))
    conn.send_accept()
    conn.receive_data(b"</stream:stream>")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"<message/>")
