"""The trust store: which certificate fingerprints we have paired with, under what name.

One JSON file, rewritten atomically on every change (see atomic.py), so a power cut leaves
the old or the new store. The agent keeps its paired phones here (with their certificates:
they are the TLS layer's trust anchors), a phone keeps the agents it paired with.
Another process (`buttons-agent peers revoke`) may change the file while the agent runs;
`reload_if_changed()` picks that up.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from agent.security.atomic import Rename, atomic_write, remove_stale_temporaries
from agent.security.keys import cert_pem_from_der, fingerprint, same_fingerprint

log = logging.getLogger(__name__)
STORE_VERSION = 1
#: The shortest fingerprint prefix `revoke` accepts (shorter ones are too easy to mistype).
MIN_PREFIX = 8


class TrustStoreError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TrustedPeer:
    name: str
    fingerprint: str
    paired_at: str
    #: PEM; present for phones in the agent's store (TLS needs the certificate itself).
    cert: str = ""
    #: The XMPP account linked with this peer (bare JID; linking.py). In the agent's store:
    #: the phone's account, whose signed commands it accepts through the server. In a
    #: phone's store: the agent's server JID (full), where server-path commands go.
    server_jid: str = ""

    def as_json(self) -> dict[str, str]:
        entry = asdict(self)
        if not self.server_jid:
            del entry["server_jid"]  # stores without links stay readable by older versions
        return entry


class TrustStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.peers: list[TrustedPeer] = []
        #: Bumped on every change, so users of the store (the TLS context) know to rebuild.
        self.generation = 0
        self._signature: tuple[int, int, int] | None = None
        self.reload_if_changed()

    def _stat_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def reload_if_changed(self) -> bool:
        signature = self._stat_signature()
        if signature == self._signature and self.generation:
            return False
        try:
            self.peers = self._read() if signature is not None else []
        except TrustStoreError as exc:
            if not self.generation:
                raise  # at start-up: the caller reports it
            # Mid-run (another process writing it, a chown not yet done): keep the peers we
            # had and read it again on the next call, rather than take the server down.
            log.error("%s; keeping the %d peers read before", exc, len(self.peers))
            return False
        self._signature = signature
        self.generation += 1
        return True

    def _read(self) -> list[TrustedPeer]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            if document.get("version") != STORE_VERSION:
                raise ValueError(f"unknown version {document.get('version')!r}")
            return [TrustedPeer(**entry) for entry in document["peers"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TrustStoreError(
                f"the trust store {self.path} is unreadable ({exc}); "
                "restore it from a backup or delete it and pair again"
            ) from None

    def save(self, *, rename: Rename = os.replace) -> None:
        document = {"version": STORE_VERSION, "peers": [p.as_json() for p in self.peers]}
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        remove_stale_temporaries(self.path)
        atomic_write(self.path, data, mode=0o600, rename=rename)
        self._signature = self._stat_signature()
        self.generation += 1

    def find(self, fp: str) -> TrustedPeer | None:
        for peer in self.peers:
            if same_fingerprint(peer.fingerprint, fp):
                return peer
        return None

    def find_name(self, name: str) -> TrustedPeer | None:
        return next((peer for peer in self.peers if peer.name == name), None)

    def find_server_jid(self, jid: str) -> TrustedPeer | None:
        """The peer linked with `jid` (compared as given: callers normalize)."""
        return next((peer for peer in self.peers if jid and peer.server_jid == jid), None)

    def link(self, fp: str, jid: str) -> TrustedPeer | None:
        """Link `jid` ("" unlinks) with the peer `fp`, unlinking it from any other; saves."""
        self.reload_if_changed()
        if self.find(fp) is None:
            return None
        updated = []
        for peer in self.peers:
            if same_fingerprint(peer.fingerprint, fp):
                peer = replace(peer, server_jid=jid)
            elif jid and peer.server_jid == jid:
                peer = replace(peer, server_jid="")  # a JID speaks for one device only
            updated.append(peer)
        self.peers = updated
        self.save()
        return self.find(fp)

    def add(self, name: str, cert_der: bytes, *, keep_cert: bool = True) -> TrustedPeer:
        """Trust `cert_der` as `name` (replacing any entry with that fingerprint) and save."""
        self.reload_if_changed()
        fp = fingerprint(cert_der)
        peer = TrustedPeer(
            name=name,
            fingerprint=fp,
            paired_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            cert=cert_pem_from_der(cert_der) if keep_cert else "",
        )
        self.peers = [p for p in self.peers if not same_fingerprint(p.fingerprint, fp)] + [peer]
        self.save()
        return peer

    def forget_name(self, name: str) -> None:
        """Drop entries called `name` (a phone re-pairing with an agent whose key changed)."""
        self.reload_if_changed()
        kept = [p for p in self.peers if p.name != name]
        if len(kept) != len(self.peers):
            self.peers = kept
            self.save()

    def revoke(self, name_or_fingerprint: str) -> list[TrustedPeer]:
        """Remove the peers with that name, fingerprint or fingerprint prefix; saves."""
        self.reload_if_changed()
        wanted = name_or_fingerprint.strip().lower().replace(":", "")
        by_fp = len(wanted) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in wanted)
        removed = [
            p
            for p in self.peers
            if p.name == name_or_fingerprint or (by_fp and p.fingerprint.startswith(wanted))
        ]
        if removed:
            self.peers = [p for p in self.peers if p not in removed]
            self.save()
        return removed

    def trusted_certs_pem(self) -> str:
        return "".join(p.cert for p in self.peers if p.cert)
