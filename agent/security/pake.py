"""The PIN-authenticated key exchange of pairing: SPAKE2 plus key confirmation (sans-IO).

Both certificate fingerprints are SPAKE2's identities, so they are part of the derived key:
the phone uses its own fingerprint and the agent's as it saw it in TLS; the agent uses the
phone's (from the certificate the phone sent) and its own. A man-in-the-middle terminates
TLS with certificates of its own, so the two ends derive different keys whatever it relays.
It learns nothing it could test PIN guesses against offline: SPAKE2 messages reveal nothing
about the PIN, and the agent answers a confirmation only after verifying the phone's, which
the relay cannot produce. The agent's SPAKE2 message is fresh per attempt, so a recorded
transcript replayed later derives a different key and fails.
"""

from __future__ import annotations

import hashlib
import hmac

from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError  # type: ignore[import-untyped]

PROTOCOL_LABEL = b"urn:buttons-agent:pair:0"
MAX_MESSAGE_BYTES = 256


class PakeError(Exception):
    """A malformed exchange message (not a wrong PIN: that is a failed confirmation)."""


def _identities(client_fp: str, agent_fp: str) -> tuple[bytes, bytes]:
    return (
        PROTOCOL_LABEL + b" phone " + client_fp.lower().encode("ascii"),
        PROTOCOL_LABEL + b" agent " + agent_fp.lower().encode("ascii"),
    )


def _confirmation(key: bytes, role: bytes, phone_message: bytes, agent_message: bytes) -> bytes:
    transcript = hashlib.sha256(phone_message).digest() + hashlib.sha256(agent_message).digest()
    return hmac.new(key, PROTOCOL_LABEL + b" confirm " + role + transcript, "sha256").digest()


class _Exchange:
    def __init__(self) -> None:
        self._key: bytes | None = None
        self._phone_message = b""
        self._agent_message = b""

    def _require_key(self) -> bytes:
        if self._key is None:
            raise PakeError("the key exchange has not finished")
        return self._key

    def _confirm(self, role: bytes) -> bytes:
        return _confirmation(self._require_key(), role, self._phone_message, self._agent_message)


def _checked(message: bytes) -> bytes:
    if not message or len(message) > MAX_MESSAGE_BYTES:
        raise PakeError("a key exchange message of the wrong size")
    return message


class PhoneExchange(_Exchange):
    """The phone's side (SPAKE2 role A)."""

    def __init__(self, pin: str, *, phone_fp: str, agent_fp: str) -> None:
        super().__init__()
        id_a, id_b = _identities(phone_fp, agent_fp)
        self._spake = SPAKE2_A(pin.encode("ascii"), idA=id_a, idB=id_b)

    def start(self) -> bytes:
        self._phone_message = bytes(self._spake.start())
        return self._phone_message

    def finish(self, agent_message: bytes) -> bytes:
        """Takes the agent's message; returns the phone's confirmation to send."""
        self._agent_message = _checked(agent_message)
        try:
            self._key = bytes(self._spake.finish(agent_message))
        except (SPAKEError, ValueError) as exc:
            raise PakeError(f"the agent's key exchange message is invalid ({exc})") from None
        return self._confirm(b"phone")

    def agent_confirmed(self, confirmation: bytes) -> bool:
        return hmac.compare_digest(confirmation, self._confirm(b"agent"))


class AgentExchange(_Exchange):
    """The agent's side (SPAKE2 role B); one instance per attempt."""

    def __init__(self, pin: str, *, phone_fp: str, agent_fp: str) -> None:
        super().__init__()
        id_a, id_b = _identities(phone_fp, agent_fp)
        self._spake = SPAKE2_B(pin.encode("ascii"), idA=id_a, idB=id_b)

    def respond(self, phone_message: bytes) -> bytes:
        self._phone_message = _checked(phone_message)
        self._agent_message = bytes(self._spake.start())
        try:
            self._key = bytes(self._spake.finish(phone_message))
        except (SPAKEError, ValueError) as exc:
            raise PakeError(f"the phone's key exchange message is invalid ({exc})") from None
        return self._agent_message

    def phone_confirmed(self, confirmation: bytes) -> bool:
        return hmac.compare_digest(confirmation, self._confirm(b"phone"))

    def confirmation(self) -> bytes:
        """Sent only after `phone_confirmed` held."""
        return self._confirm(b"agent")
