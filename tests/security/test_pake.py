"""The key exchange alone: right and wrong PINs, fingerprint binding, replay."""

from __future__ import annotations

from agent.security.pake import AgentExchange, PhoneExchange

PHONE, AGENT, MITM = "a" * 64, "b" * 64, "c" * 64


def run(
    phone_pin: str, agent_pin: str, *, phone_sees: str = AGENT, agent_sees: str = PHONE
) -> tuple[bool, PhoneExchange, AgentExchange]:
    phone = PhoneExchange(phone_pin, phone_fp=PHONE, agent_fp=phone_sees)
    agent = AgentExchange(agent_pin, phone_fp=agent_sees, agent_fp=AGENT)
    confirmation = phone.finish(agent.respond(phone.start()))
    return agent.phone_confirmed(confirmation), phone, agent


def test_same_pin_and_fingerprints_agree_both_ways() -> None:
    ok, phone, agent = run("123456", "123456")
    assert ok
    assert phone.agent_confirmed(agent.confirmation())


def test_a_wrong_pin_is_not_confirmed() -> None:
    assert not run("123456", "654321")[0]


def test_a_different_certificate_on_either_side_breaks_the_key() -> None:
    # What a man-in-the-middle terminating TLS with its own certificates causes.
    assert not run("123456", "123456", phone_sees=MITM)[0]
    assert not run("123456", "123456", agent_sees=MITM)[0]


def test_a_replayed_phone_transcript_fails_against_a_fresh_agent_exchange() -> None:
    phone = PhoneExchange("123456", phone_fp=PHONE, agent_fp=AGENT)
    recorded_message = phone.start()
    first = AgentExchange("123456", phone_fp=PHONE, agent_fp=AGENT)
    recorded_confirmation = phone.finish(first.respond(recorded_message))
    assert first.phone_confirmed(recorded_confirmation)
    # Same PIN even (worst case): a new attempt has a fresh agent secret.
    again = AgentExchange("123456", phone_fp=PHONE, agent_fp=AGENT)
    again.respond(recorded_message)
    assert not again.phone_confirmed(recorded_confirmation)
