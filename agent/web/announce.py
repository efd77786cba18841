"""Announcing the web remote by mDNS/DNS-SD: `_http._tcp` (or `_https._tcp`), path `/`.

Phones' "local network" browsers and tools such as `avahi-browse -r _http._tcp` list it under
the agent's friendly name. This reuses agent.net.mdns's trio wrapper of zeroconf (one worker
thread per blocking call, goodbye shielded on exit); a name taken on the network is renamed
by zeroconf (`TV (2)`-style), so two agents on one network still both show up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from zeroconf import ServiceInfo

from agent.net.mdns import MdnsError, _open_zeroconf, machine_addresses

log = logging.getLogger(__name__)

HTTP_TYPE = "_http._tcp.local."
HTTPS_TYPE = "_https._tcp.local."
#: DNS-SD instance names are one DNS label: at most 63 bytes of UTF-8.
MAX_INSTANCE_BYTES = 63


def _instance_label(name: str) -> str:
    label = name.replace(".", " ").strip() or "TV remote"
    while len(label.encode()) > MAX_INSTANCE_BYTES:
        label = label[:-1]
    return label


@asynccontextmanager
async def open_http_announcement(
    *, name: str, host: str, port: int, interfaces: list[str] | None, secure: bool = False
) -> AsyncIterator[ServiceInfo]:
    """Announce the page at `http(s)://<host>.local:<port>/` until the block exits."""
    if not 0 < port < 65536:
        raise MdnsError(f"port {port} is not a TCP port (1-65535)")
    service_type = HTTPS_TYPE if secure else HTTP_TYPE
    addresses = await trio.to_thread.run_sync(machine_addresses, interfaces or None)
    info = ServiceInfo(
        service_type,
        f"{_instance_label(name)}.{service_type}",
        port,
        properties={"path": "/"},
        server=f"{host}.local.",
        parsed_addresses=addresses,
    )
    async with _open_zeroconf(interfaces or None) as zc:
        register = partial(zc.register_service, info, allow_name_change=True)
        try:
            await trio.to_thread.run_sync(register)
        except Exception as exc:  # zeroconf's errors and OSError alike: report, don't crash
            raise MdnsError(f"mDNS registration of the web remote failed: {exc!r}") from exc
        log.info("mdns.web_registered name=%s port=%d", info.name, port)
        try:
            yield info
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(zc.unregister_service, info)
                except Exception as exc:  # best effort: a missed goodbye just expires (TTL)
                    log.warning("mdns.web_goodbye_failed error=%r", exc)
