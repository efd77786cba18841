"""Identity linking: a paired phone's XMPP account may press buttons through a server.

The server only vouches for an account (whoever knows its password, and the server's
operator, can send as it). So a command from a server sender counts only when

1. the sender's bare JID was linked, over a paired link-local TLS stream, to a device in the
   trust store (`urn:buttons-agent:link:0`), and
2. it is signed by that device's key — the one whose certificate the trust store holds —
   over the agent's own bare JID, a counter and the exact command bytes
   (`urn:buttons-agent:signed:0`), and
3. its counter is greater than any accepted before from that device (persisted first, so a
   replay after a restart is refused too).

Everything here is sans-IO apart from the small JSON files (trust store, counters).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.buttons.codec import CodecError
from agent.security.atomic import atomic_write, remove_stale_temporaries
from agent.security.truststore import TrustedPeer, TrustStore
from agent.xmpp.c2s import bare_jid, split_jid
from agent.xmpp.errors import ProtocolError
from agent.xmpp.parser import ElementParsed, Limits, StreamEnded, StreamParser
from agent.xmpp.serialize import serialize, stream_header

LINK_NS = "urn:buttons-agent:link:0"
SIGNED_NS = "urn:buttons-agent:signed:0"
SIGNING_CONTEXT = b"buttons-agent signed command v0\0"
#: The agent's counter file, next to its trust store in the state directory.
COUNTERS_FILE = "counters.json"
#: A Buttons request is small (text is at most 1024 characters, 4 bytes each in UTF-8).
MAX_COMMAND_BYTES = 8192
#: An ECDSA P-256 DER signature is at most 72 bytes.
MAX_SIGNATURE_BYTES = 80
#: Counters are decimal, canonical (no leading zeros, no sign) and fit a signed 64-bit int.
_COUNTER = re.compile(r"[1-9][0-9]{0,18}")
MAX_JID_CHARS = 1023
NOT_LINKED = "this JID is not linked to a paired device"
OLD_COUNTER = "replayed or old counter"


class LinkError(CodecError):
    """A link or signed request we refuse; `condition` is the stanza error to answer with."""


def lq(local: str) -> str:
    return f"{{{LINK_NS}}}{local}"


def sq(local: str) -> str:
    return f"{{{SIGNED_NS}}}{local}"


def normalized_bare_jid(jid: str) -> str:
    """The bare JID, lowercased (local part and domain compare case-insensitively)."""
    if len(jid) > MAX_JID_CHARS:
        raise ValueError("JID too long")
    local, domain, _resource = split_jid(jid)
    if not local:
        raise ValueError(f"{jid!r} has no user part")
    return f"{local}@{domain}".lower()


# -- signing ---------------------------------------------------------------------------------


def signing_bytes(agent_jid: str, counter: int, command: bytes) -> bytes:
    """What the phone signs: a context string, the agent's bare JID, the counter, the command.

    The NULs keep the fields apart (a JID cannot contain NUL, the counter is digits).
    """
    return b"".join(
        (
            SIGNING_CONTEXT,
            bare_jid(agent_jid).encode("utf-8"),
            b"\0",
            str(counter).encode("ascii"),
            b"\0",
            command,
        )
    )


def sign_command(
    private_key: ec.EllipticCurvePrivateKey,
    agent_jid: str,
    counter: int,
    command: ET.Element,
) -> ET.Element:
    """The `<signed/>` payload carrying `command` (a Buttons request element)."""
    if not _COUNTER.fullmatch(str(counter)):
        raise ValueError(f"counter must be a positive 63-bit integer, not {counter}")
    command_bytes = serialize(command)
    signature = private_key.sign(
        signing_bytes(agent_jid, counter, command_bytes), ec.ECDSA(hashes.SHA256())
    )
    signed = ET.Element(sq("signed"), {"counter": str(counter)})
    ET.SubElement(signed, sq("command")).text = base64.b64encode(command_bytes).decode("ascii")
    ET.SubElement(signed, sq("signature")).text = base64.b64encode(signature).decode("ascii")
    return signed


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A `<signed/>` payload taken apart, not yet verified."""

    counter: int
    command_bytes: bytes
    signature: bytes


def _unb64(text: str | None, what: str, limit: int) -> bytes:
    text = (text or "").strip()
    if len(text) > (limit + 2) // 3 * 4:
        raise LinkError("policy-violation", f"{what} is too large")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise LinkError("bad-request", f"{what} is not base64") from None
    if not data:
        raise LinkError("bad-request", f"{what} is missing")
    return data


def read_signed(payload: ET.Element) -> SignedCommand:
    """Take a `<signed/>` element apart; LinkError if anything is missing or malformed."""
    if payload.tag != sq("signed"):
        raise LinkError("feature-not-implemented", f"unknown request {payload.tag}")
    counter = payload.get("counter", "")
    if not _COUNTER.fullmatch(counter):
        raise LinkError("bad-request", "counter must be a positive decimal integer")
    return SignedCommand(
        counter=int(counter),
        command_bytes=_unb64(payload.findtext(sq("command")), "command", MAX_COMMAND_BYTES),
        signature=_unb64(payload.findtext(sq("signature")), "signature", MAX_SIGNATURE_BYTES),
    )


def device_public_key(peer: TrustedPeer) -> ec.EllipticCurvePublicKey:
    try:
        key = x509.load_pem_x509_certificate(peer.cert.encode("ascii")).public_key()
    except ValueError:
        raise LinkError("not-authorized", "the paired device has no usable certificate") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise LinkError("not-authorized", "the paired device's key is not ECDSA P-256")
    return key


def verify_signature(
    public_key: ec.EllipticCurvePublicKey, agent_jid: str, signed: SignedCommand
) -> None:
    data = signing_bytes(agent_jid, signed.counter, signed.command_bytes)
    try:
        public_key.verify(signed.signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise LinkError("not-authorized", "the signature does not verify") from None


def parse_command(data: bytes) -> ET.Element:
    """The command bytes as one element, through the stream parser's hardening and limits.

    They are parsed as if they were the only stanza of a stream: DTDs, entities, comments
    and processing instructions are refused, size, depth and attributes are bounded.
    """
    parser = StreamParser(Limits(max_stanza_bytes=MAX_COMMAND_BYTES))
    try:
        parser.feed(stream_header({}))
        events = parser.feed(data)
        events += parser.feed(b"</stream:stream>")
    except ProtocolError as exc:
        raise LinkError("bad-request", f"the command is not acceptable XML ({exc})") from None
    match events:
        case [ElementParsed(element), StreamEnded()]:
            return element
    raise LinkError("bad-request", "the command must be exactly one element")


# -- the agent's counters --------------------------------------------------------------------


class CounterStore:
    """The last accepted counter per device fingerprint, in one JSON file (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, int] = self._read()
        # accept() runs in a worker thread (its fsync must not stall the event loop): the
        # check and the write happen under one lock, so a counter is accepted at most once.
        self._lock = threading.Lock()

    def _read(self) -> dict[str, int]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Starting from zero would re-open every old command to replay: refuse instead.
            raise LinkError("internal-server-error", f"{self.path} is unreadable: {exc}") from None
        counters = document.get("counters") if isinstance(document, dict) else None
        if not isinstance(counters, dict) or not all(isinstance(v, int) for v in counters.values()):
            raise LinkError("internal-server-error", f"{self.path} is malformed")
        return {str(k).lower(): int(v) for k, v in counters.items()}

    def last(self, fingerprint: str) -> int:
        return self._last.get(fingerprint.lower(), 0)

    def accept(self, fingerprint: str, counter: int) -> None:
        """Record `counter` (saved before returning), or LinkError if it is not new."""
        with self._lock:
            if counter <= self.last(fingerprint):
                raise LinkError("not-authorized", OLD_COUNTER)
            updated = {**self._last, fingerprint.lower(): counter}
            data = json.dumps({"version": 1, "counters": updated}, indent=2, sort_keys=True)
            remove_stale_temporaries(self.path)
            atomic_write(self.path, data.encode("utf-8") + b"\n", mode=0o600)
            self._last = updated


# -- the agent's service ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedCommand:
    """A command from a linked device, its signature verified; fresh once `accept`ed."""

    device: str
    fingerprint: str
    counter: int
    command: ET.Element


class Linking:
    """The agent's side of both namespaces, over its trust store and counter store."""

    def __init__(self, trusted: TrustStore, counters: CounterStore, agent_jid: str = "") -> None:
        self.trusted = trusted
        self.counters = counters
        #: The agent's full JID on its server (`[xmpp_account] jid`); "" without an account.
        self.agent_jid = agent_jid

    @classmethod
    def beside(cls, trusted: TrustStore) -> Linking:
        """A service whose counter file sits next to the trust store (the state directory)."""
        return cls(trusted, CounterStore(trusted.path.with_name(COUNTERS_FILE)))

    def _reply(self) -> ET.Element:
        return ET.Element(lq("link"), {"jid": self.agent_jid} if self.agent_jid else {})

    def link(self, type_: str, payload: ET.Element, *, fingerprint: str | None) -> ET.Element:
        """`<link jid=…/>` from a stream authenticated by a paired device's certificate."""
        if payload.tag != lq("link"):
            raise LinkError("feature-not-implemented", f"unknown request {payload.tag}")
        self.trusted.reload_if_changed()
        device = self.trusted.find(fingerprint) if fingerprint else None
        if device is None:
            raise LinkError(
                "not-authorized", "link from a paired device's TLS stream (buttons pair first)"
            )
        if type_ == "get":
            return self._reply()
        wanted = (payload.get("jid") or "").strip()
        if wanted:
            try:
                wanted = normalized_bare_jid(wanted)
            except ValueError as exc:
                raise LinkError("jid-malformed", f"not a JID: {exc}") from None
        self.trusted.link(device.fingerprint, wanted)
        return self._reply()

    def linked_device(self, sender: str) -> TrustedPeer | None:
        """The paired device `sender`'s bare JID is linked to (the store is re-read first)."""
        self.trusted.reload_if_changed()
        try:
            return self.trusted.find_server_jid(normalized_bare_jid(sender))
        except ValueError:
            return None

    def verify_signed(self, sender: str | None, payload: ET.Element) -> OpenedCommand:
        """Check a `<signed/>` from `sender` (the JID the server vouched for): linked, signed
        by that device, readable. Its counter is not spent yet: `accept` does that."""
        signed = read_signed(payload)
        device = self.linked_device(sender) if sender else None
        if device is None or not self.agent_jid:
            raise LinkError("not-authorized", NOT_LINKED)
        verify_signature(device_public_key(device), self.agent_jid, signed)
        # Parse before the counter is spent: a command we cannot read must not burn it.
        command = parse_command(signed.command_bytes)
        return OpenedCommand(device.name, device.fingerprint, signed.counter, command)

    def accept(self, opened: OpenedCommand) -> None:
        """Spend the counter (saved to disk first); LinkError for a replayed or old one."""
        self.counters.accept(opened.fingerprint, opened.counter)

    def open_signed(self, sender: str | None, payload: ET.Element) -> OpenedCommand:
        """`verify_signed` then `accept`: the command is returned only once it may run."""
        opened = self.verify_signed(sender, payload)
        self.accept(opened)
        return opened
