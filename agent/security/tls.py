"""TLS contexts for link-local streams, and reading the peer's certificate fingerprint.

Both sides: TLS 1.2 at least (1.3 preferred, OpenSSL negotiates the highest), our own
self-signed certificate. The stdlib `ssl` module cannot accept an arbitrary client
certificate (it has no verify callback: an unknown self-signed certificate fails the
handshake), so the agent's trust anchors are exactly the certificates of its paired phones.
A paired phone presents its certificate; a phone that is not paired yet connects without one
(it is then an anonymous TLS peer that may only pair, ping and ask disco/version). The phone
does not use the PKI at all: it pins the agent's fingerprint (see `check_pinned`).
"""

from __future__ import annotations

import ssl

import trio

from agent.security.keys import Identity, fingerprint, same_fingerprint
from agent.security.truststore import TrustStore


class PinMismatch(Exception):
    """The agent presented a certificate other than the one we paired with."""


def _base(purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def server_context(identity: Identity, trusted: TrustStore) -> ssl.SSLContext:
    context = _base(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(identity.cert_path, identity.key_path)
    # Request a client certificate; none is fine (pairing), an unknown one fails the handshake.
    context.verify_mode = ssl.CERT_OPTIONAL
    if anchors := trusted.trusted_certs_pem():
        context.load_verify_locations(cadata=anchors)
    return context


def client_context(identity: Identity | None) -> ssl.SSLContext:
    """`identity=None`: connect anonymously (to pair). Verification is by pinning, not PKI."""
    context = _base(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if identity is not None:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


class ServerContexts:
    """The agent's server context, rebuilt whenever the trust store changes (pair, revoke)."""

    def __init__(self, identity: Identity, trusted: TrustStore) -> None:
        self.identity = identity
        self.trusted = trusted
        self._context: ssl.SSLContext | None = None
        self._generation = -1

    def current(self) -> ssl.SSLContext:
        self.trusted.reload_if_changed()
        if self._context is None or self._generation != self.trusted.generation:
            self._context = server_context(self.identity, self.trusted)
            self._generation = self.trusted.generation
        return self._context


def peer_fingerprint(stream: trio.SSLStream[trio.abc.Stream]) -> str | None:
    """SHA-256 of the certificate the other side presented (None if it presented none)."""
    der = stream.getpeercert(binary_form=True)
    return fingerprint(der) if der else None


def peer_certificate(stream: trio.SSLStream[trio.abc.Stream]) -> bytes | None:
    der: bytes | None = stream.getpeercert(binary_form=True)
    return der


def check_pinned(actual: str, pinned: str, agent: str) -> None:
    if not same_fingerprint(actual, pinned):
        raise PinMismatch(
            f"the agent {agent or '(unnamed)'} now has a different key ({actual[:16]}…, paired "
            f"with {pinned[:16]}…). Someone may be impersonating it, or it was reinstalled. "
            "If you trust it, re-pair: buttons pair"
        )
