"""Finding Kodi on the LAN by its own mDNS announcement, so a new IP address is no problem.

Kodi announces its raw JSON-RPC socket as `_xbmc-jsonrpc._tcp` and its web server's JSON-RPC
as `_xbmc-jsonrpc-h._tcp`, instance name = Kodi's device name, TXT `uuid` = a stable id. The
finder browses for as long as the backend runs and keeps the latest picture; the backend asks
it for an address before every connection attempt and hears when the chosen Kodi moves.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import trio

from agent.net import mdns

log = logging.getLogger(__name__)

TCP_SERVICE = "_xbmc-jsonrpc._tcp.local."
HTTP_SERVICE = "_xbmc-jsonrpc-h._tcp.local."


@dataclass(frozen=True, slots=True)
class KodiAddress:
    host: str
    port: int
    #: The announced instance name ("" when the address came from the configuration).
    name: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{host}:{self.port}"
        return f"{self.name!r} at {where}" if self.name else where


class KodiFinder:
    """Browses for Kodi instances; `current()` is the chosen one's latest address, if any.

    `instance` chooses by announced name (case-insensitive) or TXT `uuid`; empty means the
    only Kodi announced (the first by name when there are several, with a warning).
    """

    def __init__(self, service_type: str, instance: str, interfaces: list[str] | None) -> None:
        self.service_type = service_type
        self.instance = instance
        self._interfaces = interfaces
        self._found: dict[str, mdns.PeerFound] = {}
        self._changed = trio.Event()
        self._warned_choice: tuple[str, ...] = ()

    def describe(self) -> str:
        which = f"Kodi {self.instance!r}" if self.instance else "a Kodi"
        return f"looking for {which} on the LAN (mDNS {self.service_type.removesuffix('.local.')})"

    def current(self) -> KodiAddress | None:
        chosen = self._choose()
        if chosen is None:
            return None
        return KodiAddress(_preferred_address(chosen.addresses), chosen.port, chosen.instance)

    async def wait_changed(self) -> None:
        """Return at the next change to what the browser sees (any instance)."""
        await self._changed.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with mdns.open_browser(self._interfaces, self.service_type) as events:
            task_status.started()
            async for event in events:
                if isinstance(event, mdns.PeerFound):
                    self._found[event.instance] = event
                    log.debug("kodi.announced name=%s at=%s", event.instance, event.addresses)
                else:
                    self._found.pop(event.instance, None)
                self._changed.set()
                self._changed = trio.Event()

    def _choose(self) -> mdns.PeerFound | None:
        if self.instance:
            wanted = self.instance.casefold()
            for found in self._found.values():
                if found.instance.casefold() == wanted or found.txt.get("uuid") == self.instance:
                    return found
            return None
        if not self._found:
            return None
        names = tuple(sorted(self._found))
        if len(names) > 1 and names != self._warned_choice:
            self._warned_choice = names
            log.warning(
                "several Kodis announce themselves (%s); using %r — set kodi.instance to choose",
                ", ".join(names),
                names[0],
            )
        return self._found[names[0]]


def _preferred_address(addresses: tuple[str, ...]) -> str:
    """IPv4 first: a scoped IPv6 link-local address is the least portable choice."""
    return min(addresses, key=lambda text: ipaddress.ip_address(text.partition("%")[0]).version)
