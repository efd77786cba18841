"""XEP-0115 ver computation, checked against the examples in the XEP itself."""

from __future__ import annotations

import pytest

from agent.xmpp.caps import CapsError, caps_ver, verification_string

# XEP-0115 §5.2 "Simple Generation Example" (Exodus).
SIMPLE_IDENTITIES = [("client", "pc", "", "Exodus 0.9.1")]
SIMPLE_FEATURES = [
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
    "http://jabber.org/protocol/caps",
]

# XEP-0115 §5.3 "Complex Generation Example" (Psi, two languages, an extended form).
COMPLEX_IDENTITIES = [("client", "pc", "en", "Psi 0.11"), ("client", "pc", "el", "Ψ 0.11")]
COMPLEX_FORM = {
    "FORM_TYPE": ["urn:xmpp:dataforms:softwareinfo"],
    "ip_version": ["ipv6", "ipv4"],
    "os": ["Mac"],
    "os_version": ["10.5.1"],
    "software": ["Psi"],
    "software_version": ["0.11"],
}


def test_simple_example_string_and_ver() -> None:
    assert verification_string(SIMPLE_IDENTITIES, SIMPLE_FEATURES) == (
        "client/pc//Exodus 0.9.1<"
        "http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<"
        "http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<"
    )
    assert caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example_with_languages_and_extended_form() -> None:
    assert verification_string(COMPLEX_IDENTITIES, SIMPLE_FEATURES, [COMPLEX_FORM]) == (
        "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<"
        "http://jabber.org/protocol/caps<"
        "http://jabber.org/protocol/disco#info<"
        "http://jabber.org/protocol/disco#items<"
        "http://jabber.org/protocol/muc<"
        "urn:xmpp:dataforms:softwareinfo<"
        "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
    )
    assert (
        caps_ver(COMPLEX_IDENTITIES, SIMPLE_FEATURES, [COMPLEX_FORM])
        == "q07IKJEyjvHSyhy//CH0CxmKi8w="
    )


def test_input_order_does_not_change_ver() -> None:
    reordered = caps_ver(reversed(SIMPLE_IDENTITIES), reversed(SIMPLE_FEATURES))
    assert reordered == caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES)


def test_a_new_feature_changes_ver() -> None:
    more = [*SIMPLE_FEATURES, "urn:buttons-agent:remote:0"]
    assert caps_ver(SIMPLE_IDENTITIES, more) != caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES)


def test_other_hash_functions_are_base64_of_their_digest() -> None:
    ver = caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES, hash="sha-256")
    assert len(ver) == 44  # 32 bytes in base64
    assert ver != caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES)


@pytest.mark.parametrize(
    ("identities", "features", "forms", "message"),
    [
        ([("client", "pc", "", "A"), ("client", "pc", "", "A")], [], [], "duplicate identity"),
        ([("client", "pc", "", "A")], ["x", "x"], [], "duplicate feature"),
        ([("client", "pc", "", "A")], [], [{"os": ["Mac"]}], "exactly one FORM_TYPE"),
        (
            [("client", "pc", "", "A")],
            [],
            [{"FORM_TYPE": ["urn:a"]}, {"FORM_TYPE": ["urn:a"]}],
            "duplicate FORM_TYPE",
        ),
    ],
)
def test_ill_formed_disco_info_is_a_clear_error(
    identities: list[tuple[str, str, str, str]],
    features: list[str],
    forms: list[dict[str, list[str]]],
    message: str,
) -> None:
    with pytest.raises(CapsError, match=message):
        caps_ver(identities, features, forms)


def test_unknown_hash_function_is_a_clear_error() -> None:
    with pytest.raises(CapsError, match="unknown caps hash function 'md5'"):
        caps_ver(SIMPLE_IDENTITIES, SIMPLE_FEATURES, hash="md5")
