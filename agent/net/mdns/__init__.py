"""XEP-0174 presence over mDNS/DNS-SD: announce ourselves, browse for peers.

A trio-native wrapper of python-zeroconf. Zeroconf runs its own asyncio loop in its own
thread (and ServiceBrowser adds one more), so the rules here are:
- every blocking zeroconf call runs in a worker thread via `trio.to_thread.run_sync`;
- every zeroconf callback crosses into trio with `trio.from_thread.run_sync(..., trio_token=)`
  and only then touches trio objects;
- cleanup (goodbye packets, closing zeroconf) runs shielded, so cancellation still unregisters.

Service type `_presence._tcp.local.`, instance name `user@host` (XEP-0174 §3), SRV target
`host.local.`, TXT record with `txtvers=1` first (XEP-0174 §3.2, DNS-SD §6.7).
"""

from agent.net.mdns._common import (
    ADDRESS_POLL_SECONDS,
    MAX_TXT_ENTRY_BYTES,
    PRESENCE_TYPE,
    STATUSES,
    MdnsError,
    _open_zeroconf,
    checked_txt,
    machine_addresses,
    presence_txt,
)
from agent.net.mdns.browse import PeerEvent, PeerFound, PeerLost, discover, open_browser
from agent.net.mdns.presence import Presence, open_presence

__all__ = [
    "ADDRESS_POLL_SECONDS",
    "MAX_TXT_ENTRY_BYTES",
    "PRESENCE_TYPE",
    "STATUSES",
    "MdnsError",
    "PeerEvent",
    "PeerFound",
    "PeerLost",
    "Presence",
    "_open_zeroconf",
    "checked_txt",
    "discover",
    "machine_addresses",
    "open_browser",
    "open_presence",
    "presence_txt",
]
