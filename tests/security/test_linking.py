"""Identity linking, sans-IO: signing, verifying, counters, links, and hostile payloads."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from agent.buttons import codec
from agent.security.keys import Identity, load_or_create
from agent.security.linking import (
    NOT_LINKED,
    OLD_COUNTER,
    CounterStore,
    LinkError,
    Linking,
    lq,
    parse_command,
    read_signed,
    sign_command,
    signing_bytes,
    sq,
    verify_signature,
)
from agent.security.phone import load_signing_key
from agent.security.truststore import TrustStore

AGENT_JID = "tv@example.org/tv"
PHONE_JID = "phone@example.org"


class Phone:
    def __init__(self, directory: Path) -> None:
        self.identity: Identity = load_or_create(directory, "phone", server=False)
        self.key = load_signing_key(self.identity)

    def sign(
        self, counter: int, command: codec.Command | None = None, agent_jid: str = AGENT_JID
    ) -> ET.Element:
        _type, element = codec.request_element(command or codec.Press("play_pause"))
        return sign_command(self.key, agent_jid, counter, element)


@pytest.fixture
def phone(tmp_path: Path) -> Phone:
    return Phone(tmp_path / "phone")


@pytest.fixture
def agent(tmp_path: Path, phone: Phone) -> Linking:
    trusted = TrustStore(tmp_path / "agent" / "peers.json")
    trusted.add("anna-phone", phone.identity.cert_der)
    linking = Linking.beside(trusted)
    linking.agent_jid = AGENT_JID
    linking.link("set", ET.Element(lq("link"), {"jid": PHONE_JID}), fingerprint=fp(phone))
    return linking


def fp(phone: Phone) -> str:
    return phone.identity.fingerprint


def refused(linking: Linking, payload: ET.Element, sender: str = f"{PHONE_JID}/app") -> LinkError:
    with pytest.raises(LinkError) as caught:
        linking.open_signed(sender, payload)
    return caught.value


def test_a_signed_command_from_the_linked_jid_opens(agent: Linking, phone: Phone) -> None:
    opened = agent.open_signed("Phone@Example.org/app", phone.sign(1))
    assert opened.device == "anna-phone"
    assert codec.parse_request("set", opened.command) == codec.Press("play_pause")
    state = agent.open_signed(f"{PHONE_JID}/app", phone.sign(2, codec.GetState()))
    assert codec.parse_request("get", state.command) == codec.GetState()


def test_the_link_reply_names_the_agents_server_jid(agent: Linking, phone: Phone) -> None:
    reply = agent.link("get", ET.Element(lq("link")), fingerprint=fp(phone))
    assert (reply.tag, reply.get("jid")) == (lq("link"), AGENT_JID)
    agent.agent_jid = ""
    assert agent.link("get", ET.Element(lq("link")), fingerprint=fp(phone)).get("jid") is None


def test_linking_needs_a_paired_certificate(agent: Linking) -> None:
    for fingerprint in (None, "ab" * 32):
        with pytest.raises(LinkError) as caught:
            agent.link("set", ET.Element(lq("link"), {"jid": "x@y"}), fingerprint=fingerprint)
        assert caught.value.condition == "not-authorized"


def test_unlinking_and_relinking_move_the_jid(tmp_path: Path, agent: Linking, phone: Phone) -> None:
    other = Phone(tmp_path / "other")
    agent.trusted.add("other-phone", other.identity.cert_der)
    agent.link("set", ET.Element(lq("link"), {"jid": PHONE_JID}), fingerprint=fp(other))
    # The JID now speaks for `other`: the first phone's key no longer counts for it.
    assert refused(agent, phone.sign(1)).text == "the signature does not verify"
    assert agent.open_signed(PHONE_JID, other.sign(1)).device == "other-phone"
    agent.link("set", ET.Element(lq("link"), {"jid": ""}), fingerprint=fp(other))
    assert refused(agent, other.sign(2)).text == NOT_LINKED


def test_a_malformed_link_jid_is_refused(agent: Linking, phone: Phone) -> None:
    for jid in ("no-user-part.example", "a@", "@b", "x" * 2000 + "@y"):
        with pytest.raises(LinkError) as caught:
            agent.link("set", ET.Element(lq("link"), {"jid": jid}), fingerprint=fp(phone))
        assert caught.value.condition == "jid-malformed"


def test_revoking_the_device_drops_its_link(agent: Linking, phone: Phone) -> None:
    agent.trusted.revoke("anna-phone")
    assert refused(agent, phone.sign(1)).text == NOT_LINKED


def test_an_unlinked_sender_is_refused(agent: Linking, phone: Phone) -> None:
    error = refused(agent, phone.sign(1), sender="mallory@example.org/x")
    assert (error.condition, error.text) == ("not-authorized", NOT_LINKED)


def test_a_wrong_key_is_refused(tmp_path: Path, agent: Linking) -> None:
    stranger = Phone(tmp_path / "stranger")
    assert refused(agent, stranger.sign(1)).condition == "not-authorized"


def _retext(signed: ET.Element, part: str, data: bytes) -> ET.Element:
    element = signed.find(sq(part))
    assert element is not None
    element.text = base64.b64encode(data).decode("ascii")
    return signed


def test_tampering_with_any_signed_part_is_refused(agent: Linking, phone: Phone) -> None:
    tampered_command = _retext(
        phone.sign(1), "command", b"<press xmlns='urn:buttons-agent:remote:0' button='power'/>"
    )
    assert refused(agent, tampered_command).text == "the signature does not verify"
    tampered_counter = phone.sign(2)
    tampered_counter.set("counter", "3")
    assert refused(agent, tampered_counter).text == "the signature does not verify"
    for_another_agent = phone.sign(4, agent_jid="other-tv@example.org")
    assert refused(agent, for_another_agent).text == "the signature does not verify"
    # None of these spent a counter: the genuine command still runs.
    assert agent.open_signed(PHONE_JID, phone.sign(1)).device == "anna-phone"


def test_replayed_and_old_counters_are_refused(agent: Linking, phone: Phone) -> None:
    agent.open_signed(PHONE_JID, phone.sign(10))
    assert refused(agent, phone.sign(10)).text == OLD_COUNTER
    assert refused(agent, phone.sign(9)).text == OLD_COUNTER
    agent.open_signed(PHONE_JID, phone.sign(11))


def test_counters_survive_a_reload(tmp_path: Path, agent: Linking, phone: Phone) -> None:
    agent.open_signed(PHONE_JID, phone.sign(42))
    reloaded = Linking(agent.trusted, CounterStore(agent.counters.path), AGENT_JID)
    assert reloaded.counters.last(fp(phone)) == 42
    assert refused(reloaded, phone.sign(42)).text == OLD_COUNTER
    assert agent.counters.path.stat().st_mode & 0o777 == 0o600


def test_a_corrupt_counter_file_refuses_rather_than_resets(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    path.write_text("{not json")
    with pytest.raises(LinkError):
        CounterStore(path)


def _signed(
    counter: str = "1", command: str | None = "AA==", signature: str | None = "AA=="
) -> ET.Element:
    signed = ET.Element(sq("signed"), {"counter": counter})
    if command is not None:
        ET.SubElement(signed, sq("command")).text = command
    if signature is not None:
        ET.SubElement(signed, sq("signature")).text = signature
    return signed


@pytest.mark.parametrize(
    "payload",
    [
        _signed(command="not base64!"),
        _signed(signature="@@@"),
        _signed(command=None),
        _signed(signature=None),
        _signed(command=""),
        _signed(counter="0"),
        _signed(counter="-1"),
        _signed(counter="007"),
        _signed(counter="1e3"),
        _signed(counter="9" * 40),
        _signed(command=base64.b64encode(b"x" * 20000).decode()),
        _signed(signature=base64.b64encode(b"x" * 500).decode()),
        ET.Element(sq("unsigned")),
    ],
)
def test_malformed_signed_payloads_get_a_clean_error(agent: Linking, payload: ET.Element) -> None:
    error = refused(agent, payload)
    assert error.condition in ("bad-request", "policy-violation", "feature-not-implemented")


@pytest.mark.parametrize(
    "command",
    [
        b"<!DOCTYPE x [<!ENTITY a 'b'>]><press xmlns='urn:buttons-agent:remote:0' button='&a;'/>",
        b"<press xmlns='urn:buttons-agent:remote:0' button='&xxe;'/>",
        b"<?xml version='1.0'?><press xmlns='urn:buttons-agent:remote:0' button='mute'/>",
        b"<press xmlns='urn:buttons-agent:remote:0' button='mute'/><press button='power'/>",
        b"<press xmlns='urn:buttons-agent:remote:0' button='mute'/></stream:stream>",
        b"<press xmlns='urn:buttons-agent:remote:0' button='mute'>",
        b"<!-- hi --><press xmlns='urn:buttons-agent:remote:0' button='mute'/>",
        b"plain text",
        b"<a>" * 100 + b"</a>" * 100,
        b"\xff\xfe<press/>",
    ],
)
def test_hostile_command_bytes_are_refused_even_when_signed(
    agent: Linking, phone: Phone, command: bytes
) -> None:
    signed = _retext(phone.sign(1), "command", command)
    counter = int(signed.get("counter", "0"))
    signature = phone.key.sign(
        signing_bytes(AGENT_JID, counter, command), ec.ECDSA(hashes.SHA256())
    )
    _retext(signed, "signature", signature)
    assert refused(agent, signed).condition == "bad-request"
    assert agent.counters.last(fp(phone)) == 0  # unreadable commands do not spend counters


def test_parse_command_returns_the_element() -> None:
    element = parse_command(b"<text xmlns='urn:buttons-agent:remote:0'>caf\xc3\xa9 &amp; co</text>")
    assert codec.parse_request("set", element) == codec.Text("café & co", True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=hs.text(
        alphabet=hs.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=200
    ),
    counter=hs.integers(min_value=1, max_value=2**62),
)
def test_any_text_command_round_trips(phone: Phone, text: str, counter: int) -> None:
    """Whatever the phone signs, the agent reads back the same command (and nothing else)."""
    command = codec.Text(text, submit=counter % 2 == 0)
    _type, element = codec.request_element(command)
    signed = sign_command(phone.key, AGENT_JID, counter, element)
    read = read_signed(signed)
    verify_signature(phone.key.public_key(), AGENT_JID, read)
    assert read.counter == counter
    assert codec.parse_request("set", parse_command(read.command_bytes)) == command


def test_a_trust_store_from_before_linking_still_loads(tmp_path: Path, phone: Phone) -> None:
    path = tmp_path / "peers.json"
    old = {
        "version": 1,
        "peers": [{"name": "old", "fingerprint": fp(phone), "paired_at": "2026-01-01", "cert": ""}],
    }
    path.write_text(json.dumps(old))
    store = TrustStore(path)
    assert store.peers[0].server_jid == ""
    store.link(fp(phone), PHONE_JID)
    assert TrustStore(path).find_server_jid(PHONE_JID) == store.find(fp(phone))
