"""The dispatcher against the virtual TV, without sockets: stanzas in, stanzas out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from agent.backends.virtual import VirtualTV
from agent.buttons import codec
from agent.dispatch import AgentInfo, Dispatcher, PeerAuth, Session
from agent.xmpp import stanza as st
from agent.xmpp.disco import DISCO_INFO_NS, PING_NS, VERSION_NS


class Recorder:
    def __init__(self) -> None:
        self.sent: list[ET.Element] = []
        self.arrived = trio.Event()

    async def __call__(self, stanza: ET.Element) -> None:
        self.sent.append(stanza)
        self.arrived.set()
        self.arrived = trio.Event()

    async def wait_for(self, count: int) -> list[ET.Element]:
        with trio.fail_after(5):
            while len(self.sent) < count:
                await self.arrived.wait()
        return self.sent


@asynccontextmanager
async def open_session(
    dispatcher: Dispatcher, peer: str = "me@phone", auth: PeerAuth | None = None
) -> AsyncIterator[tuple[Session, Recorder]]:
    """A session of a paired device called `peer` (unless `auth` says otherwise)."""
    recorder = Recorder()
    async with dispatcher.session(peer, recorder, auth=auth or PeerAuth.paired(peer)) as session:
        yield session, recorder


def make(tv: VirtualTV | None = None, hold_timeout: float = 10.0) -> Dispatcher:
    return Dispatcher(
        tv or VirtualTV(), AgentInfo("tv@pi", version="1.2"), hold_timeout=hold_timeout
    )


def request(command: codec.Command, id_: str = "r1") -> ET.Element:
    type_, payload = codec.request_element(command)
    stanza = st.iq(type_, payload, id_=id_, to="tv@pi")
    stanza.set("from", "me@phone")
    return stanza


def error_of(reply: ET.Element) -> st.StanzaError:
    assert reply.get("type") == "error"
    return st.StanzaError.from_stanza(reply)


async def test_press_runs_on_the_backend_and_answers_empty_result() -> None:
    tv = VirtualTV()
    async with open_session(make(tv)) as (session, out):
        await session.handle(request(codec.Press("play_pause")))
    (reply,) = out.sent
    assert (reply.get("type"), reply.get("id"), reply.get("to")) == ("result", "r1", "me@phone")
    assert len(reply) == 0
    assert tv.state().playback == "playing"


@pytest.mark.parametrize(
    ("button", "condition"), [("self_destruct", "item-not-found"), ("", "bad-request")]
)
async def test_bad_buttons_get_stanza_errors(button: str, condition: str) -> None:
    async with open_session(make()) as (session, out):
        await session.handle(request(codec.Press(button)))
    assert error_of(out.sent[0]).condition == condition


async def test_unsupported_button_is_feature_not_implemented() -> None:
    class NoDigits(VirtualTV):
        def buttons(self) -> frozenset[str]:
            return frozenset({"up", "down"})

    async with open_session(make(NoDigits())) as (session, out):
        await session.handle(request(codec.Press("digit_1")))
    assert error_of(out.sent[0]).condition == "feature-not-implemented"


async def test_backend_down_is_service_unavailable_wait_with_reason() -> None:
    tv = VirtualTV()
    tv.set_reachable(False, "the TV is unplugged")
    async with open_session(make(tv)) as (session, out):
        await session.handle(request(codec.Press("up")))
    error = error_of(out.sent[0])
    assert (error.condition, error.type, error.text) == (
        "service-unavailable",
        "wait",
        "the TV is unplugged",
    )


async def test_retransmitted_press_is_answered_again_not_run_twice() -> None:
    tv = VirtualTV()
    async with open_session(make(tv)) as (session, out):
        await session.handle(request(codec.Press("volume_up"), id_="same"))
        await session.handle(request(codec.Press("volume_up"), id_="same"))
        await session.handle(request(codec.Press("volume_up"), id_="other"))
    assert tv.history == ["volume_up", "volume_up"]
    assert [r.get("id") for r in out.sent] == ["same", "same", "other"]
    assert all(r.get("type") == "result" for r in out.sent)


async def test_list_and_state_queries() -> None:
    async with open_session(make()) as (session, out):
        await session.handle(request(codec.ListButtons()))
        await session.handle(request(codec.GetState(), id_="r2"))
    buttons_reply, state_reply = out.sent
    payload = buttons_reply.find(codec.q("buttons"))
    assert payload is not None
    assert len(codec.parse_buttons(payload)) == 39
    state = state_reply.find(codec.q("state"))
    assert state is not None
    assert codec.parse_state(state).volume == 50


async def test_hold_repeats_until_stop(autojump_clock: trio.testing.MockClock) -> None:
    tv = VirtualTV(repeat_interval=0.1)
    async with open_session(make(tv)) as (session, out):
        await session.handle(request(codec.Hold("volume_up", "start")))
        await trio.sleep(0.45)
        await session.handle(request(codec.Hold("volume_up", "stop"), id_="r2"))
        await trio.sleep(1)
    assert tv.history == ["volume_up"] * 5
    assert [r.get("type") for r in out.sent] == ["result", "result"]


async def test_hold_auto_releases_when_stop_never_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tv = VirtualTV(repeat_interval=0.5)
    async with open_session(make(tv, hold_timeout=2.0)) as (session, _out):
        await session.handle(request(codec.Hold("down", "start")))
        await trio.sleep(10)
    assert tv.history == ["down"] * 4  # 0, 0.5, 1.0, 1.5 — released at 2.0


async def test_repeated_hold_start_extends_the_hold(autojump_clock: trio.testing.MockClock) -> None:
    tv = VirtualTV(repeat_interval=1.0)
    async with open_session(make(tv, hold_timeout=2.5)) as (session, _out):
        await session.handle(request(codec.Hold("down", "start")))
        await trio.sleep(2.0)
        await session.handle(request(codec.Hold("down", "start"), id_="again"))
        await trio.sleep(10)
    # Presses at 0,1,2 then the refresh at 2.0 moves the release to 4.5: 3 and 4 as well.
    assert len(tv.history) == 5


async def test_closing_the_stream_releases_holds(autojump_clock: trio.testing.MockClock) -> None:
    tv = VirtualTV(repeat_interval=0.1)
    async with open_session(make(tv)) as (session, _out):
        await session.handle(request(codec.Hold("up", "start")))
        await trio.sleep(0.25)
    presses = len(tv.history)
    await trio.sleep(5)
    assert presses == 3
    assert len(tv.history) == presses


async def test_hold_on_unavailable_backend_is_an_error() -> None:
    tv = VirtualTV()
    tv.set_reachable(False)
    async with open_session(make(tv)) as (session, out):
        await session.handle(request(codec.Hold("up", "start")))
    assert error_of(out.sent[0]).condition == "service-unavailable"


async def test_subscriber_gets_state_pushes_and_other_peoples_presses() -> None:
    tv = VirtualTV()
    dispatcher = make(tv)
    async with open_session(dispatcher, "watcher@phone") as (watcher, seen):
        await watcher.handle(request(codec.Subscribe()))
        await seen.wait_for(2)  # the result and the current state
        async with open_session(dispatcher, "presser@phone") as (presser, _):
            await presser.handle(request(codec.Press("mute")))
        pushes = await seen.wait_for(4)
        await watcher.handle(request(codec.Press("up"), id_="own"))  # not echoed back
        await watcher.handle(request(codec.Unsubscribe(), id_="bye"))
        await tv.press("volume_up")  # after unsubscribing: nothing more arrives
        await trio.testing.wait_all_tasks_blocked()
    kinds = [(p.tag.rpartition("}")[2], p.get("type")) for p in pushes[:4]]
    assert kinds[0] == ("iq", "result")
    payloads = [m[0] for m in seen.sent if st.kind(m) == "message"]
    assert all(m.get("type") == "headline" for m in seen.sent if st.kind(m) == "message")
    tags = [p.tag for p in payloads]
    assert codec.q("pressed") in tags
    pressed = next(p for p in payloads if p.tag == codec.q("pressed"))
    assert (pressed.get("button"), pressed.get("source")) == ("mute", "presser@phone")
    assert not any(p.get("button") == "up" for p in payloads if p.tag == codec.q("pressed"))
    states = [codec.parse_state(p) for p in payloads if p.tag == codec.q("state")]
    assert states[0].muted is False
    assert states[-1].muted is True
    assert all(s.volume == 50 for s in states)  # the volume change came after unsubscribe


async def test_external_presses_reach_subscribers_with_their_source() -> None:
    dispatcher = make()
    async with open_session(dispatcher) as (session, seen):
        await session.handle(request(codec.Subscribe()))
        await seen.wait_for(2)
        await dispatcher.press("select", source="ir")
        messages = await seen.wait_for(4)
    pressed = [m[0] for m in messages if st.kind(m) == "message" and m[0].tag == codec.q("pressed")]
    assert [(p.get("button"), p.get("source")) for p in pressed] == [("select", "ir")]


async def test_chat_fallback_presses_and_replies_in_words() -> None:
    tv = VirtualTV()
    async with open_session(make(tv)) as (session, out):
        for body in ("play pause", "help", "nonsense", "status"):
            message = st.message(to="tv@pi", type_="chat", body=body)
            message.set("from", "buddy@laptop")
            await session.handle(message)
        await session.handle(st.message(to="tv@pi", type_="chat"))  # no body: ignored
    replies = [m.findtext(st.BODY) for m in out.sent]
    assert len(replies) == 4
    assert replies[0] == "ok: play_pause"
    assert "volume_up" in (replies[1] or "")
    assert "unknown command" in (replies[2] or "")
    assert "playing: Big Buck Bunny" in (replies[3] or "")
    assert all(m.get("to") == "buddy@laptop" and m.get("type") == "chat" for m in out.sent)
    assert tv.history == ["play_pause"]


async def test_disco_ping_version_and_unknown_namespaces() -> None:
    dispatcher = make()
    async with open_session(dispatcher) as (session, out):
        await session.handle(st.iq("get", ET.Element(f"{{{DISCO_INFO_NS}}}query"), id_="d"))
        await session.handle(st.iq("get", ET.Element(f"{{{PING_NS}}}ping"), id_="p"))
        await session.handle(st.iq("get", ET.Element(f"{{{VERSION_NS}}}query"), id_="v"))
        await session.handle(st.iq("get", ET.Element("{jabber:iq:roster}query"), id_="x"))
        await session.handle(ET.Element(st.IQ, {"type": "get"}))  # no id, no payload
    disco, ping, version, roster, broken = out.sent
    features = {f.get("var") for f in disco.iter(f"{{{DISCO_INFO_NS}}}feature")}
    assert {DISCO_INFO_NS, PING_NS, VERSION_NS, codec.NS} <= features
    identity = disco.find(f".//{{{DISCO_INFO_NS}}}identity")
    assert identity is not None
    assert identity.get("category") == "client"
    assert (ping.get("type"), len(ping)) == ("result", 0)
    assert version.findtext(f".//{{{VERSION_NS}}}version") == "1.2"
    assert error_of(roster).condition == "service-unavailable"
    assert error_of(broken).condition == "bad-request"


async def test_a_crashing_backend_gives_internal_server_error_and_session_survives() -> None:
    class Broken(VirtualTV):
        async def press(self, button: str) -> None:
            raise RuntimeError("bug")

    async with open_session(make(Broken())) as (session, out):
        await session.handle(request(codec.Press("up")))
        await session.handle(request(codec.GetState(), id_="r2"))
    assert error_of(out.sent[0]).condition == "internal-server-error"
    assert out.sent[1].get("type") == "result"
