"""The RFC 7395 framing adapter: messages in → events, events out → messages. No sockets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent.xmpp import stanza as st
from agent.xmpp.connection import (
    Event,
    StanzaReceived,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError
from agent.xmpp.framing import (
    CLOSE_NORMAL,
    CLOSE_TAG,
    CLOSE_UNSUPPORTED_DATA,
    FEATURES_TAG,
    FRAMING_NS,
    OPEN_TAG,
    BinaryMessage,
    State,
    WebSocketFraming,
    close_code_for,
)
from agent.xmpp.parser import Limits

STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
OPEN = f"<open xmlns='{FRAMING_NS}' to='tv.local' version='1.0'/>"
PRESS = (
    "<iq xmlns='jabber:client' type='set' id='p1'>"
    "<press xmlns='urn:buttons-agent:remote:0' button='up'/></iq>"
)


def drain(framing: WebSocketFraming) -> list[Event]:
    events = []
    while (event := framing.next_event()) is not None:
        events.append(event)
    return events


def opened() -> WebSocketFraming:
    framing = WebSocketFraming("buttons@tv")
    framing.receive_message(OPEN)
    drain(framing)
    framing.send_accept()
    return framing


def test_open_is_answered_with_open_and_features_as_two_messages() -> None:
    framing = WebSocketFraming("buttons@tv")
    framing.receive_message(OPEN)
    (event,) = drain(framing)
    assert isinstance(event, StreamOpened)
    assert (event.to, event.version) == ("tv.local", "1.0")
    assert framing.state is State.AWAIT_ACCEPT
    open_reply, features = (ET.fromstring(m) for m in framing.send_accept())
    assert open_reply.tag == OPEN_TAG
    assert open_reply.get("from") == "buttons@tv"
    assert open_reply.get("version") == "1.0"
    assert open_reply.get("id") == framing.stream_id
    assert features.tag == FEATURES_TAG
    assert framing.state is State.OPEN


def test_every_stanza_is_its_own_message_with_its_namespace_declared() -> None:
    framing = opened()
    framing.receive_message(PRESS)
    framing.receive_message(PRESS.replace("p1", "p2"))
    events = drain(framing)
    assert [type(e) for e in events] == [StanzaReceived, StanzaReceived]
    first = events[0]
    assert isinstance(first, StanzaReceived)
    assert first.stanza.tag == st.IQ
    assert first.stanza[0].get("button") == "up"
    sent = framing.send_stanza(st.iq_result(first.stanza))
    assert sent.startswith('<iq xmlns="jabber:client"')
    assert ET.fromstring(sent).tag == st.IQ


def test_close_from_the_peer_is_a_clean_close_and_is_answered_once() -> None:
    framing = opened()
    framing.receive_message(f"<close xmlns='{FRAMING_NS}'/>")
    (event,) = drain(framing)
    assert event == StreamClosed(clean=True)
    (reply,) = framing.send_close()
    assert ET.fromstring(reply).tag == CLOSE_TAG
    assert framing.send_close() == []
    assert framing.state is State.CLOSED


def test_socket_ending_without_close_is_an_unclean_close() -> None:
    framing = opened()
    framing.receive_eof()
    assert drain(framing) == [StreamClosed(clean=False)]


def test_stream_error_from_the_peer_is_reported() -> None:
    framing = opened()
    framing.receive_message(
        f"<stream:error xmlns:stream='{STREAMS}'>"
        f"<system-shutdown xmlns='{STREAM_ERRORS}'/></stream:error>"
    )
    assert drain(framing) == [StreamErrorReceived("system-shutdown", "")]


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        ("<iq xmlns='jabber:client' type='get' id='1'>", "not-well-formed"),  # left open
        ("</iq>", "not-well-formed"),
        (PRESS + PRESS, "bad-format"),  # two stanzas in one message
        ("", "bad-format"),
        ("   ", "bad-format"),
        ("hello", "not-well-formed"),
        ("<?xml version='1.0'?>" + PRESS, "not-well-formed"),
        ("<!DOCTYPE iq [<!ENTITY x 'y'>]><iq/>", "not-well-formed"),  # no DTD mid-document
        ("<iq xmlns='jabber:client'><!-- hi --></iq>", "restricted-xml"),
        ("<iq xmlns='jabber:client'><?pi x?></iq>", "restricted-xml"),
        ("<iq xmlns='jabber:client'>&ext;</iq>", "not-well-formed"),  # undefined entity
        ("<iq type='get' id='1'/>", "invalid-namespace"),  # namespace not declared
        ("<stream:stream xmlns:stream='" + STREAMS + "'/>", "invalid-namespace"),
        ("<iq xmlns='jabber:client'>\udcff</iq>", "not-well-formed"),
    ],
)
def test_bad_messages_are_stream_errors(message: str, condition: str) -> None:
    framing = opened()
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message(message)
    assert caught.value.condition == condition
    assert close_code_for(caught.value) == CLOSE_NORMAL


def test_limits_are_those_of_link_local_streams() -> None:
    framing = WebSocketFraming("buttons@tv", limits=Limits(max_stanza_bytes=512, max_depth=3))
    framing.receive_message(OPEN)
    framing.send_accept()
    big = "x" * 600
    with pytest.raises(RemoteProtocolError) as too_big:
        framing.receive_message(f"<message xmlns='jabber:client'><body>{big}</body></message>")
    assert too_big.value.condition == "policy-violation"
    deep = opened_with(Limits(max_depth=3))
    with pytest.raises(RemoteProtocolError) as too_deep:
        deep.receive_message("<iq xmlns='jabber:client'><a><b><c><d/></c></b></a></iq>")
    assert too_deep.value.condition == "policy-violation"


def opened_with(limits: Limits) -> WebSocketFraming:
    framing = WebSocketFraming("buttons@tv", limits=limits)
    framing.receive_message(OPEN)
    framing.send_accept()
    return framing


def test_binary_messages_close_with_unsupported_data() -> None:
    framing = opened()
    with pytest.raises(BinaryMessage) as caught:
        framing.receive_message(PRESS.encode())
    assert close_code_for(caught.value) == CLOSE_UNSUPPORTED_DATA


def test_the_first_message_must_be_open() -> None:
    framing = WebSocketFraming("buttons@tv")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message(PRESS)
    assert caught.value.condition == "not-authorized"


def test_a_second_open_is_refused() -> None:
    framing = opened()
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message(OPEN)
    assert caught.value.condition == "bad-format"


@pytest.mark.parametrize("version", ["", "version='0.9'", "version='2.0'", "version='1.x'"])
def test_open_needs_version_1(version: str) -> None:
    framing = WebSocketFraming("buttons@tv")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message(f"<open xmlns='{FRAMING_NS}' {version}/>")
    assert caught.value.condition == "unsupported-version"


def test_open_to_another_name_is_refused_when_names_are_given() -> None:
    framing = WebSocketFraming("buttons@tv", accepted_names={"buttons@tv"})
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message(OPEN)
    assert caught.value.condition == "host-unknown"


def test_stream_error_before_accept_sends_open_error_close() -> None:
    framing = WebSocketFraming("buttons@tv")
    with pytest.raises(RemoteProtocolError) as caught:
        framing.receive_message("<iq")
    messages = framing.send_stream_error(caught.value.condition, caught.value.text)
    tags = [ET.fromstring(m).tag for m in messages]
    assert tags == [OPEN_TAG, f"{{{STREAMS}}}error", CLOSE_TAG]
    error = ET.fromstring(messages[1])
    assert error.find(f"{{{STREAM_ERRORS}}}not-well-formed") is not None
    assert framing.send_stream_error("reset") == []
    assert framing.state is State.CLOSED


def test_stream_error_on_an_open_stream_sends_error_then_close() -> None:
    framing = opened()
    messages = framing.send_stream_error("policy-violation", "slow down")
    error, close = (ET.fromstring(m) for m in messages)
    assert error.find(f"{{{STREAM_ERRORS}}}policy-violation") is not None
    assert error.findtext(f"{{{STREAM_ERRORS}}}text") == "slow down"
    assert close.tag == CLOSE_TAG


def test_nothing_is_sent_after_close() -> None:
    framing = opened()
    framing.send_close()
    with pytest.raises(LocalProtocolError):
        framing.send_stanza(st.message(body="late"))


def test_messages_after_the_peers_close_are_refused() -> None:
    framing = opened()
    framing.receive_message(f"<close xmlns='{FRAMING_NS}'/>")
    with pytest.raises(RemoteProtocolError):
        framing.receive_message(PRESS)
