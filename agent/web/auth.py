"""Who may press through the web remote: pairing tokens in, credentials (cookies) out.

`WebAuth` is the seam to the agent's trust store: the web server only ever calls these four
methods. `MemoryWebAuth` keeps everything in memory (tests, and until the trust store is
connected); it ties tokens to the agent's `PairingWindow`, as the QR code on the TV does.

Secrets are kept hashed (SHA-256): the table of valid credentials is a table of digests, so a
memory dump or a log line never holds a usable cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

import trio

from agent.pairing import PairingWindow
from agent.security.truststore import TrustStore

#: Bytes of randomness in a pairing token (it travels in a QR code, so not too long).
TOKEN_BYTES = 16
#: Bytes of randomness in a credential (the cookie value).
CREDENTIAL_BYTES = 32


@dataclass(frozen=True, slots=True)
class Credential:
    #: The cookie value; only the browser keeps it in the clear.
    secret: str
    #: The device name the browser has from now on (as listed and revoked like any peer).
    peer: str


class WebAuth(Protocol):
    async def issue_token(self) -> str | None:
        """A single-use pairing token, or None when no pairing window is open."""
        ...

    async def redeem(self, token: str, label: str) -> Credential | None:
        """Trade a valid, unused token for a credential; None if the token is not (any more)."""
        ...

    async def check(self, secret: str) -> str | None:
        """The peer name a credential belongs to, or None if unknown or revoked."""
        ...

    async def revoke(self, peer: str) -> bool:
        """Forget a paired browser; its next connection is refused. False if unknown."""
        ...


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


class MemoryWebAuth:
    """`WebAuth` in memory. Tokens live while the pairing window that issued them is open."""

    def __init__(self, window: PairingWindow) -> None:
        self.window = window
        self._tokens: dict[str, float] = {}  # token digest → deadline (trio time)
        self._credentials: dict[str, str] = {}  # credential digest → peer name
        self.labels: dict[str, str] = {}  # peer name → what the browser said it is

    async def issue_token(self) -> str | None:
        await trio.lowlevel.checkpoint()
        if not self.window.is_open:
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._tokens[_digest(token)] = trio.current_time() + self.window.seconds
        return token

    async def redeem(self, token: str, label: str) -> Credential | None:
        await trio.lowlevel.checkpoint()
        deadline = self._tokens.pop(_digest(token), None)  # single use, even when refused
        if deadline is None or not self.window.is_open or trio.current_time() >= deadline:
            return None
        peer = f"web-{secrets.token_hex(3)}"
        secret = secrets.token_urlsafe(CREDENTIAL_BYTES)
        self._remember(peer, secret)
        self.labels[peer] = label[:80]
        return Credential(secret, peer)

    def _remember(self, peer: str, secret: str) -> None:
        self._credentials[_digest(secret)] = peer

    async def check(self, secret: str) -> str | None:
        await trio.lowlevel.checkpoint()
        return self._credentials.get(_digest(secret))

    async def revoke(self, peer: str) -> bool:
        await trio.lowlevel.checkpoint()
        digests = [d for d, name in self._credentials.items() if name == peer]
        for digest in digests:
            del self._credentials[digest]
        self.labels.pop(peer, None)
        return bool(digests)

    @property
    def peers(self) -> list[str]:
        return sorted(set(self._credentials.values()))


class TrustStoreWebAuth(MemoryWebAuth):
    """Paired browsers live in the agent's trust store, beside the paired phones: listed by
    `buttons-agent peers list`, revoked by `peers revoke`, kept across restarts.

    A browser's entry is the SHA-256 of its credential, with no certificate (so TLS never
    trusts it); tokens stay in memory, they live only as long as a pairing window.
    """

    def __init__(self, window: PairingWindow, trusted: TrustStore) -> None:
        super().__init__(window)
        self.trusted = trusted

    def _remember(self, peer: str, secret: str) -> None:
        self.trusted.add(peer, secret.encode("utf-8", errors="surrogatepass"), keep_cert=False)

    async def check(self, secret: str) -> str | None:
        await trio.lowlevel.checkpoint()
        self.trusted.reload_if_changed()
        entry = self.trusted.find(_digest(secret))
        return entry.name if entry is not None and not entry.cert else None

    async def revoke(self, peer: str) -> bool:
        await trio.lowlevel.checkpoint()
        self.labels.pop(peer, None)
        return bool(self.trusted.revoke(peer))

    @property
    def peers(self) -> list[str]:
        self.trusted.reload_if_changed()
        return sorted(p.name for p in self.trusted.peers if not p.cert)
