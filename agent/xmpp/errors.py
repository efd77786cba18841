"""Protocol errors of the sans-IO core, and the RFC 6120 error condition tables."""

from __future__ import annotations

STREAMS_NS = "http://etherx.jabber.org/streams"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

#: RFC 6120 §4.9.3 stream error conditions.
STREAM_ERROR_CONDITIONS = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)

#: RFC 6120 §8.3.3 stanza error conditions with their usual error type.
STANZA_ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class ProtocolError(Exception):
    """Base class. `condition` is an RFC 6120 stream error condition."""

    def __init__(self, condition: str, text: str = "") -> None:
        if condition not in STREAM_ERROR_CONDITIONS:
            raise ValueError(f"not a stream error condition: {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; answer with a stream error of `condition` and close."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol (or the connection's state) does not allow."""
