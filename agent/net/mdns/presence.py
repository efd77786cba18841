"""Announcing our `_presence._tcp` instance: register with conflict renaming, TXT updates,
following address changes, goodbye on exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio
from zeroconf import (
    NonUniqueNameException,
    ServiceInfo,
    ServiceNameAlreadyRegistered,
    Zeroconf,
)

from agent.net.mdns._common import (
    _CONFLICT_QUERY_MS,
    _KEY_ALIASES,
    _RENAME_LIMIT,
    ADDRESS_POLL_SECONDS,
    PRESENCE_TYPE,
    QM,
    MdnsError,
    _check_interfaces,
    _helper_tasks,
    _in_thread,
    _open_zeroconf,
    _split_instance,
    checked_txt,
    machine_addresses,
)

log = logging.getLogger(__name__)


class Presence:
    """Our registered `_presence._tcp` instance. Created by `open_presence`."""

    def __init__(self, zc: Zeroconf, info: ServiceInfo) -> None:
        self._zc = zc
        self._info = info
        self._lock = trio.Lock()

    @property
    def instance(self) -> str:
        """The final `user@host`, after any renaming for a conflict."""
        return self._info.name[: -len(PRESENCE_TYPE) - 1]

    @property
    def txt(self) -> dict[str, str]:
        return {key: value or "" for key, value in self._info.decoded_properties.items()}

    @property
    def addresses(self) -> list[str]:
        return self._info.parsed_addresses()

    async def update_txt(self, **changes: str) -> None:
        """Change TXT entries, e.g. `update_txt(status="dnd", msg="Kodi is not running")`.

        Keys are TXT keys; `first` stands for `1st`. Peers see the new record at once.
        """
        txt = self.txt | {_KEY_ALIASES.get(key, key): value for key, value in changes.items()}
        await self._republish(txt=checked_txt(txt), addresses=self.addresses)

    async def _republish(self, *, txt: dict[str, str], addresses: list[str]) -> None:
        async with self._lock:
            info = _service_info(
                self._info.name, self._info.server, self._info.port, txt, addresses
            )
            await _in_thread("TXT/address update", self._zc.update_service, info)
            self._info = info
            log.info("mdns.updated instance=%s txt=%s addresses=%s", self.instance, txt, addresses)

    async def _follow_address_changes(self, poll_seconds: float) -> None:
        """Re-announce when the machine's addresses change (DHCP renewals, Wi-Fi roaming)."""
        while True:
            await trio.sleep(poll_seconds)
            current = await trio.to_thread.run_sync(machine_addresses, None)
            if not current or sorted(current) == sorted(self.addresses):
                continue
            log.info("mdns.addresses_changed old=%s new=%s", self.addresses, current)
            try:
                # New interfaces need sockets before the new records can be sent on them.
                await _in_thread("interface rescan", self._zc.update_interfaces)
                await self._republish(txt=self.txt, addresses=current)
            except MdnsError as exc:  # keep announcing the old records; retry next poll
                log.warning("mdns.readdress_failed instance=%s error=%s", self.instance, exc)


def _service_info(
    name: str, server: str | None, port: int | None, txt: dict[str, str], addresses: list[str]
) -> ServiceInfo:
    return ServiceInfo(
        PRESENCE_TYPE, name, port, properties=dict(txt), server=server, parsed_addresses=addresses
    )


@asynccontextmanager
async def open_presence(
    *,
    instance: str,
    port: int,
    txt: Mapping[str, str],
    interfaces: list[str] | None,
    address_poll_seconds: float = ADDRESS_POLL_SECONDS,
) -> AsyncIterator[Presence]:
    """Announce `instance` (`user@host`) until the block exits; goodbye on exit or cancel.

    If the name is taken on the network it becomes `user-2@host`, `user-3@host`, … (see
    `.instance`). `interfaces` are IP addresses to announce and answer on; None or [] means
    all, and then address changes are followed every `address_poll_seconds`.
    """
    user, host = _split_instance(instance)
    if not 0 < port < 65536:
        raise MdnsError(f"port {port} is not a TCP port (1-65535)")
    chosen = _check_interfaces(interfaces)
    record = checked_txt({**txt, "port.p2pj": str(port)})
    addresses = await trio.to_thread.run_sync(machine_addresses, chosen)
    async with _open_zeroconf(chosen) as zc:
        info = await _register(zc, user, host, port, record, addresses)
        presence = Presence(zc, info)
        try:
            async with _helper_tasks() as nursery:
                if chosen is None and address_poll_seconds > 0:
                    nursery.start_soon(presence._follow_address_changes, address_poll_seconds)
                yield presence
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await _in_thread("goodbye", zc.unregister_service, presence._info)
                except MdnsError as exc:
                    log.warning("mdns.goodbye_failed instance=%s error=%s", presence.instance, exc)
                else:
                    log.info("mdns.unregistered instance=%s", presence.instance)


async def _register(
    zc: Zeroconf, user: str, host: str, port: int, txt: dict[str, str], addresses: list[str]
) -> ServiceInfo:
    server = f"{host}.local."
    for number in range(1, _RENAME_LIMIT + 1):
        instance = f"{user}@{host}" if number == 1 else f"{user}-{number}@{host}"
        info = _service_info(f"{instance}.{PRESENCE_TYPE}", server, port, txt, addresses)
        if await _name_in_use(zc, info.name):
            log.info("mdns.name_conflict instance=%s", instance)
            continue
        try:
            # Probes too (RFC 6762 §8.1): NonUniqueNameException if an answer reaches it.
            await _in_thread(f"registration of {instance}", zc.register_service, info)
        except MdnsError as exc:
            if not isinstance(exc.__cause__, NonUniqueNameException | ServiceNameAlreadyRegistered):
                raise
            log.info("mdns.name_conflict instance=%s", instance)
            continue
        log.info("mdns.registered instance=%s port=%d addresses=%s", instance, port, addresses)
        return info
    raise MdnsError(f"no free instance name for {user}@{host} after {_RENAME_LIMIT} tries")


async def _name_in_use(zc: Zeroconf, name: str) -> bool:
    """Ask the network by multicast (QM) whether `name` already answers.

    Zeroconf's own probe is a QU question, answered by unicast to port 5353. When another
    responder runs on this same host (two agents, or tests), that unicast reply lands on
    whichever socket the kernel picks among those sharing the port, often not the prober's,
    and the conflict goes unseen. A multicast answer reaches every socket.
    """
    lookup = partial(zc.get_service_info, PRESENCE_TYPE, name, _CONFLICT_QUERY_MS, QM)
    return await _in_thread(f"name check for {name}", lookup) is not None
