"""Real pairing (SPAKE2 over STARTTLS over loopback TCP) between `buttons pair`'s library and
an in-process agent, then pressing with the pinned keys."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from agent.app import Agent
from agent.backends.kodi import KodiBackend
from agent.buttons.codec import CodecError
from agent.client import connect
from agent.dispatch import Session
from agent.net.stream import ClientTls, StanzaErrorReply, open_xmpp_stream
from agent.security.pair_client import PairingFailed, pair
from agent.security.pairing_service import PairingService, PairingSession, pq
from agent.security.phone import PhoneCredentials, load_credentials
from agent.security.tls import client_context
from agent.testing.agents import open_agent
from agent.testing.fake_kodi import FakeKodi
from agent.testing.pairing import pair_directly
from agent.xmpp import stanza as st


def pin_of(agent: Agent) -> str:
    pin = agent.pairing.current_pin
    assert pin is not None, "no pairing window is open"
    return pin


def reader(agent: Agent, *, wrong: bool = False):  # type: ignore[no-untyped-def]
    """The user reading the TV: returns the PIN on screen (or a wrong one)."""

    async def ask_pin(seconds: float) -> str:
        pin = pin_of(agent)
        return f"{(int(pin) + 1) % 10**6:06d}" if wrong else pin

    return ask_pin


async def test_pairing_then_pressing(tmp_path: Path) -> None:
    async with open_agent(paired_phone=False) as agent:
        phone = load_credentials(tmp_path / "phone")
        paired = await pair(
            "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
            ask_pin=reader(agent), device_name="anna-phone",
        )  # fmt: skip
        assert paired.fingerprint == agent.identity.fingerprint
        assert not agent.pairing.is_open  # single use
        trusted = agent.trusted.find(phone.identity.fingerprint)
        assert trusted is not None
        assert trusted.name == "anna-phone"
        async with connect(
            "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
        ) as remote:
            await remote.press("play_pause")
        assert agent.backend.state().playback == "playing"


async def test_three_wrong_pins_close_the_window(tmp_path: Path) -> None:
    async with open_agent(paired_phone=False) as agent:
        phone = load_credentials(tmp_path / "phone")
        for attempt in range(3):
            with pytest.raises(PairingFailed, match="not-authorized") as failed:
                await pair(
                    "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
                    ask_pin=reader(agent, wrong=True),
                )  # fmt: skip
            assert ("closed" in str(failed.value)) is (attempt == 2)
        assert not agent.pairing.is_open
        assert agent.trusted.peers == []
        with pytest.raises(PairingFailed, match="wait"):  # and no new window right away
            await pair(
                "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
                ask_pin=reader(agent),
            )  # fmt: skip
        assert phone.agents.peers == []


async def test_an_expired_pin_is_refused(tmp_path: Path) -> None:
    async with open_agent(paired_phone=False) as agent:
        agent.pairing.seconds = 0.2  # the real 120 s is covered on MockClock in the unit test
        phone = load_credentials(tmp_path / "phone")

        async def slow_user(seconds: float) -> str:
            pin = pin_of(agent)
            await trio.sleep(0.4)
            return pin

        with pytest.raises(PairingFailed, match="no pairing window"):
            await pair(
                "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
                ask_pin=slow_user,
            )  # fmt: skip
        assert agent.trusted.peers == []


async def anonymous_stream(port: int):  # type: ignore[no-untyped-def]
    tls = ClientTls(client_context(None), lambda der: None, presents_certificate=False)
    return open_xmpp_stream("127.0.0.1", port, local_jid="eve@x", remote_jid=None, tls=tls)


async def test_a_replayed_pairing_transcript_fails(tmp_path: Path) -> None:
    recorded: list[ET.Element] = []
    async with open_agent(paired_phone=False) as agent:
        original = Session._answer

        async def recording(self: Session, iq: ET.Element, type_: str, payload: ET.Element):  # type: ignore[no-untyped-def]
            if payload.tag in (pq("exchange"), pq("confirm")):
                recorded.append(payload)
            return await original(self, iq, type_, payload)

        phone = load_credentials(tmp_path / "phone")
        with pytest.MonkeyPatch.context() as patch:  # a wiretap inside TLS, for the test only
            patch.setattr(Session, "_answer", recording)
            await pair(
                "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
                ask_pin=reader(agent),
            )  # fmt: skip
        agent.trusted.revoke(phone.identity.fingerprint)
        exchange, confirm = recorded
        async with await anonymous_stream(agent.port) as stream:
            await stream.request(st.iq("set", ET.Element(pq("request"))))
            await stream.request(st.iq("set", exchange))
            with pytest.raises(StanzaErrorReply, match="not-authorized"):
                await stream.request(st.iq("set", confirm))
        assert agent.trusted.peers == []


class RelayingPairing(PairingService):
    """A man-in-the-middle's agent: its own certificates, every pairing payload relayed to
    the real agent over its own TLS stream, everything it sees recorded."""

    def __init__(self, base: PairingService, upstream: object) -> None:
        super().__init__(base.window, base.identity, base.trusted)
        self.upstream = upstream
        self.seen: list[tuple[str, ET.Element]] = []

    async def handle(
        self, state: PairingSession, type_: str, payload: ET.Element, *, secured: bool
    ) -> ET.Element:
        self.seen.append(("phone", payload))
        try:
            reply = await self.upstream.request(st.iq(type_, payload))  # type: ignore[attr-defined]
        except StanzaErrorReply as exc:
            self.seen.append(("agent-error", ET.Element(exc.error.condition)))
            raise CodecError(exc.error.condition, exc.error.text) from None
        self.seen.append(("agent", reply[0]))
        return reply[0]


async def test_a_relaying_man_in_the_middle_cannot_pair_nor_learn_a_pin_check(
    tmp_path: Path,
) -> None:
    phone: PhoneCredentials = load_credentials(tmp_path / "phone")
    async with (
        open_agent(paired_phone=False, name="real") as real,
        open_agent(paired_phone=False, name="real") as mitm,
        await anonymous_stream(real.port) as upstream,
    ):
        assert mitm.dispatcher.pairing is not None
        relay = RelayingPairing(mitm.dispatcher.pairing, upstream)
        mitm.dispatcher.pairing = relay
        # The phone reaches the MITM; the user types the PIN the real TV shows.
        with pytest.raises(PairingFailed, match="not-authorized"):
            await pair(
                "127.0.0.1", mitm.port, agent="real@test", credentials=phone,
                ask_pin=reader(real),
            )  # fmt: skip
        assert real.trusted.peers == []
        assert mitm.trusted.peers == []
        assert phone.agents.peers == []
        # What the relay learnt: the two SPAKE2 messages and the phone's confirmation, but
        # never the agent's confirmation (sent only after the phone's one verifies).
        kinds = [(who, el.tag) for who, el in relay.seen]
        assert ("agent", pq("confirm")) not in kinds
        assert kinds[-1] == ("agent-error", "not-authorized")


async def test_the_pin_is_shown_on_kodi_and_read_from_there(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    fake: FakeKodi = await nursery.start(FakeKodi().serve)
    async with open_agent(KodiBackend(fake.kodi_config()), paired_phone=False) as agent:

        async def read_the_tv(seconds: float) -> str:
            shown = [p for m, p in fake.calls if m == "GUI.ShowNotification"]
            assert shown, "the PIN never reached the TV"
            match = re.search(r"\b(\d{6})\b", shown[-1]["message"])
            assert match is not None
            return match.group(1)

        phone = load_credentials(tmp_path / "phone")
        await pair(
            "127.0.0.1", agent.port, agent=agent.instance, credentials=phone,
            ask_pin=read_the_tv, device_name="kodi-user",
        )  # fmt: skip
        assert agent.trusted.find(phone.identity.fingerprint) is not None


async def test_two_phones_with_the_same_device_name_both_work(tmp_path: Path) -> None:
    # Both identities are made for this machine's user, so their certificates carry the same
    # common name; each must still be the trust anchor for its own key.
    async with open_agent(paired_phone=False) as agent:
        phones = [load_credentials(tmp_path / home) for home in ("one", "two")]
        assert phones[0].identity.fingerprint != phones[1].identity.fingerprint
        for index, phone in enumerate(phones):
            pair_directly(agent, phone, name=f"phone-{index}")
        for phone in phones:
            async with connect(
                "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
            ) as remote:
                await remote.press("mute")
        assert agent.backend.state().muted is False  # pressed twice
