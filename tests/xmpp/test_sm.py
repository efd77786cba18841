"""XEP-0198 stream management in the sans-IO client stream, against a scripted server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent.testing.scripted_c2s import ScriptedServer, scram_login
from agent.xmpp import stanza as st
from agent.xmpp.c2s import BIND_NS, SASL_NS, ClientStream, Online, Phase
from agent.xmpp.connection import StanzaReceived, StreamClosed
from agent.xmpp.errors import RemoteProtocolError
from agent.xmpp.sm import (
    COUNTER_MODULUS,
    SM_NS,
    AckReceived,
    HandledCountTooHigh,
    Resumed,
    ResumeFailed,
    SmEnabled,
    SmUnavailable,
    StreamManagement,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='example.org' id='s1' version='1.0'>"
)
SASL_FEATURES = (
    f"<stream:features><mechanisms xmlns='{SASL_NS}'><mechanism>SCRAM-SHA-256</mechanism>"
    "</mechanisms></stream:features>"
).encode()
SM_BIND_FEATURES = (
    f"<stream:features><bind xmlns='{BIND_NS}'/><sm xmlns='{SM_NS}'><optional/></sm>"
    "</stream:features>"
).encode()
JID = "agent@example.org/tv"


def sm_tag(name: str) -> str:
    return f"{{{SM_NS}}}{name}"


class SmServer(ScriptedServer):
    def authenticate(self) -> None:
        """Header, SASL with a real SCRAM server, and the restarted stream's header."""
        self.client.start()
        self.read()
        self.feed(HEADER + SASL_FEATURES)
        assert scram_login(self, "SCRAM-SHA-256") == []
        assert self.client.authenticated

    def answer_bind(self) -> list[object]:
        (request,) = self.read()
        assert request.find(f"{{{BIND_NS}}}bind") is not None
        return self.feed(
            f"<iq type='result' id='{request.get('id')}'><bind xmlns='{BIND_NS}'>"
            f"<jid>{JID}</jid></bind></iq>"
        )


def bound(
    stream_management: StreamManagement | None = None,
) -> tuple[ClientStream, SmServer]:
    """Logged in and bound; the server has read <enable/> and the presence, not answered."""
    client = ClientStream(JID, "secret", use_tls=False, stream_management=stream_management)
    server = SmServer(client)
    server.authenticate()
    assert server.feed(HEADER + SM_BIND_FEATURES) == []
    assert server.answer_bind() == [Online(JID)]
    enable, presence = server.read()
    assert enable.tag == sm_tag("enable")
    assert enable.get("resume") == "true"
    assert presence.tag == st.PRESENCE
    return client, server


def online(
    stream_management: StreamManagement | None = None,
) -> tuple[ClientStream, SmServer]:
    """Logged in and bound with <enable/> answered; the server has read everything."""
    client, server = bound(stream_management)
    events = server.feed(f"<enabled xmlns='{SM_NS}' id='sess-1' resume='true' max='300'/>")
    assert events == [SmEnabled(resumable=True, max_seconds=300)]
    return client, server


def message(n: int) -> ET.Element:
    return st.message(to="phone@example.org/app", body=f"m{n}")


def inbound(n: int) -> str:
    return f"<message from='phone@example.org/app' id='in{n}'><body>{n}</body></message>"


def test_stanzas_arriving_before_enabled_are_not_counted() -> None:
    """The server sent them before it read <enable/>, so its count does not include them."""
    _client, server = bound()
    early = server.feed(inbound(1))
    assert [type(event) for event in early] == [StanzaReceived]
    server.feed(f"<enabled xmlns='{SM_NS}' id='sess-1' resume='true'/>")
    server.feed(inbound(2))
    server.feed(f"<r xmlns='{SM_NS}'/>")
    (answer,) = server.read()
    assert answer.tag == sm_tag("a")
    assert answer.get("h") == "1"  # only in2, sent after <enabled/>


def test_enable_follows_binding_and_presence_is_the_first_counted_stanza() -> None:
    client, server = online()
    assert client.sm.resumable
    assert client.sm.unacked == 1  # the initial presence, sent after <enable/>
    assert server.feed(f"<a xmlns='{SM_NS}' h='1'/>") == [AckReceived(h=1, newly_acked=1)]
    assert client.sm.unacked == 0


def test_every_r_is_answered_with_the_count_of_stanzas_handed_over() -> None:
    _client, server = online()
    for n in range(3):
        (event,) = server.feed(inbound(n))
        assert isinstance(event, StanzaReceived)
    assert server.feed(f"<r xmlns='{SM_NS}'/>") == []
    (answer,) = server.read()
    assert answer.tag == sm_tag("a")
    assert answer.get("h") == "3"


def test_acks_are_requested_per_batch_not_per_stanza() -> None:
    client, server = online(StreamManagement(ack_request_every=3))
    server.feed(f"<a xmlns='{SM_NS}' h='1'/>")  # presence acked; nothing open

    def sent(n: int) -> list[str]:
        return [e.tag for e in server.parse(client.send_stanza(message(n)))]

    assert sent(1) == sent(2) == [st.MESSAGE]
    assert sent(3) == [st.MESSAGE, sm_tag("r")]  # the third open stanza asks
    assert sent(4) == [st.MESSAGE]  # a request is outstanding
    # The answer covers 1-3; one stanza stays open, too few to ask again at once.
    assert server.feed(f"<a xmlns='{SM_NS}' h='4'/>") == [AckReceived(h=4, newly_acked=3)]
    assert server.read() == []
    assert client.sm.unacked == 1
    # The keepalive asks regardless, and its answer clears the rest.
    assert server.parse(client.request_ack())[0].tag == sm_tag("r")
    assert server.feed(f"<a xmlns='{SM_NS}' h='5'/>") == [AckReceived(h=5, newly_acked=1)]
    assert client.sm.unacked == 0
    assert sent(5) == sent(6) == [st.MESSAGE]
    assert sent(7) == [st.MESSAGE, sm_tag("r")]


def test_counters_wrap_at_two_to_the_32() -> None:
    client, server = online()
    server.feed(f"<a xmlns='{SM_NS}' h='1'/>")
    client.sm.acked_by_server = COUNTER_MODULUS - 1  # as if 2^32 - 1 stanzas had gone out
    client.sm.handled = COUNTER_MODULUS - 1
    for n in range(3):
        client.send_stanza(message(n))
    assert server.feed(f"<a xmlns='{SM_NS}' h='1'/>") == [AckReceived(h=1, newly_acked=2)]
    assert client.sm.unacked == 1
    server.feed(inbound(1))
    server.feed(f"<r xmlns='{SM_NS}'/>")
    assert [a.get("h") for a in server.read() if a.tag == sm_tag("a")] == ["0"]


def test_an_ack_for_more_than_we_sent_is_a_stream_error() -> None:
    client, server = online()
    client.send_stanza(message(1))  # presence + 1 message = 2 sent
    with pytest.raises(HandledCountTooHigh) as raised:
        server.feed(f"<a xmlns='{SM_NS}' h='3'/>")
    assert raised.value.condition == "undefined-condition"
    assert "handled-count-too-high" in str(raised.value)
    (error,) = server.parse(client.send_stream_error(raised.value))
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}undefined-condition") is not None
    too_high = error.find(sm_tag("handled-count-too-high"))
    assert too_high is not None
    assert (too_high.get("h"), too_high.get("send-count")) == ("3", "2")
    assert not client.sm.resumable  # the stream error ended the session


@pytest.mark.parametrize("h", ["-1", "4294967296", "x", ""])
def test_a_malformed_h_is_a_protocol_error(h: str) -> None:
    _client, server = online()
    with pytest.raises(RemoteProtocolError):
        server.feed(f"<a xmlns='{SM_NS}' h='{h}'/>")


def dropped_session() -> StreamManagement:
    """A session whose connection dropped: 2 stanzas handled, message 2 and 3 never acked."""
    client, server = online()
    server.feed(inbound(1))
    server.feed(inbound(2))
    client.send_stanza(message(1))
    server.feed(f"<a xmlns='{SM_NS}' h='2'/>")  # presence and message 1 arrived
    client.send_stanza(message(2))
    assert server.feed(b"") == [StreamClosed(clean=False)]
    # Sent while no connection is up: queued for the resumed stream.
    assert client.send_stanza(message(3)) == b""
    assert client.sm.unacked == 2
    return client.sm


def resume(sm: StreamManagement) -> tuple[ClientStream, ScriptedServer, ET.Element]:
    client = ClientStream(JID, "secret", use_tls=False, stream_management=sm)
    server = SmServer(client)
    server.authenticate()
    assert server.feed(HEADER + SM_BIND_FEATURES) == []
    (request,) = server.read()
    assert client.phase is Phase.RESUMING
    return client, server, request


def test_resumption_resends_what_the_server_missed_and_keeps_the_counters() -> None:
    client, server, request = resume(dropped_session())
    assert request.tag == sm_tag("resume")
    assert (request.get("previd"), request.get("h")) == ("sess-1", "2")
    # Message 2 reached the server before the drop; only message 3 is missing.
    events = server.feed(f"<resumed xmlns='{SM_NS}' previd='sess-1' h='3'/>")
    assert events == [Resumed(JID, retransmitted=1)]
    resent, ask = server.read()
    assert resent.findtext(st.BODY) == "m3"
    assert ask.tag == sm_tag("r")
    assert client.phase is Phase.ONLINE
    assert client.bound_jid == JID
    # What the server queued while we were away arrives after <resumed/>; counting goes on.
    (event,) = server.feed(inbound(3))
    assert isinstance(event, StanzaReceived)
    server.feed(f"<r xmlns='{SM_NS}'/>")
    assert [a.get("h") for a in server.read()] == ["3"]
    assert server.feed(f"<a xmlns='{SM_NS}' h='4'/>") == [AckReceived(h=4, newly_acked=1)]


def test_the_resume_h_keeps_the_server_from_resending_what_we_handled() -> None:
    """The server resends only stanzas after our `h`, so each reaches the application once."""
    sm = dropped_session()
    _client, server, request = resume(sm)
    assert request.get("h") == str(sm.handled) == "2"  # in1 and in2 were handed over
    server.feed(f"<resumed xmlns='{SM_NS}' previd='sess-1' h='2'/>")
    resent = [e.findtext(st.BODY) for e in server.read() if e.tag == st.MESSAGE]
    assert resent == ["m2", "m3"]
    events = server.feed(inbound(3))  # the server resends from h + 1 = the third
    assert [e.stanza.get("id") for e in events if isinstance(e, StanzaReceived)] == ["in3"]


def test_a_failed_resumption_reports_the_lost_stanzas_and_binds_a_new_session() -> None:
    client, server, _request = resume(dropped_session())
    events = server.feed(
        f"<failed xmlns='{SM_NS}' h='3'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    )
    (failed,) = events
    assert isinstance(failed, ResumeFailed)
    assert failed.condition == "item-not-found"
    # h='3': message 2 did arrive before the server forgot the session; message 3 did not.
    assert [s.findtext(st.BODY) for s in failed.undelivered] == ["m3"]
    assert client.phase is Phase.BINDING
    assert server.answer_bind() == [Online(JID)]
    enable, _presence = server.read()
    assert enable.tag == sm_tag("enable")
    assert client.sm.handled == 0
    assert client.sm.unacked == 1  # only the new session's presence


def test_a_failure_without_h_reports_every_unacked_stanza() -> None:
    _client, server, _request = resume(dropped_session())
    (failed,) = server.feed(f"<failed xmlns='{SM_NS}'/>")
    assert isinstance(failed, ResumeFailed)
    assert [s.findtext(st.BODY) for s in failed.undelivered] == ["m2", "m3"]


def test_a_server_that_stopped_offering_sm_gets_a_bind_and_the_loss_is_reported() -> None:
    client = ClientStream(JID, "secret", use_tls=False, stream_management=dropped_session())
    server = SmServer(client)
    server.authenticate()
    events = server.feed(
        HEADER + f"<stream:features><bind xmlns='{BIND_NS}'/></stream:features>".encode()
    )
    (failed,) = events
    assert isinstance(failed, ResumeFailed)
    assert len(failed.undelivered) == 2
    assert server.answer_bind() == [Online(JID)]
    assert [e.tag for e in server.read()] == [st.PRESENCE]  # no <enable/>: not offered


def test_a_refused_enable_means_no_counting_and_no_ack_requests() -> None:
    client, server = bound()
    events = server.feed(
        f"<failed xmlns='{SM_NS}'><unexpected-request "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    )
    assert events == [SmUnavailable("unexpected-request")]
    assert [e.tag for e in server.parse(client.send_stanza(message(1)))] == [st.MESSAGE]
    assert client.sm.unacked == 0
    assert client.request_ack() == b""
    assert not client.sm.resumable


def test_closing_the_stream_ends_the_session_for_good() -> None:
    client, _server = online()
    assert client.send_close() == b"</stream:stream>"
    assert not client.sm.resumable
    assert client.sm.unacked == 0


def test_sm_elements_out_of_place_are_refused() -> None:
    _client, server = online()
    with pytest.raises(RemoteProtocolError):
        server.feed(f"<resumed xmlns='{SM_NS}' previd='sess-1' h='0'/>")
