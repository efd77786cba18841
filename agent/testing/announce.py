"""Announce any DNS-SD service with python-zeroconf, for tests (e.g. a Kodi's JSON-RPC port).

Real multicast: tests bind it to the private namespace's loopback, never a real interface.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio
from zeroconf import ServiceInfo, Zeroconf


class Announcement:
    """One registered service instance; `move()` re-announces it at another address/port."""

    def __init__(self, zc: Zeroconf, info: ServiceInfo) -> None:
        self._zc = zc
        self.info = info

    async def move(self, *, port: int | None = None, address: str | None = None) -> None:
        moved = _service_info(
            self.info.type,
            self.info.name,
            port if port is not None else self.info.port or 0,
            address if address is not None else self.info.parsed_addresses()[0],
            self.info.decoded_properties,
        )
        await trio.to_thread.run_sync(self._zc.update_service, moved)
        self.info = moved


@asynccontextmanager
async def announced(
    service_type: str,
    instance: str,
    port: int,
    *,
    address: str = "127.0.0.1",
    txt: Mapping[str, str | None] | None = None,
) -> AsyncIterator[Announcement]:
    """Register `instance` of `service_type` on `address`'s interface; goodbye on exit."""
    zc = await trio.to_thread.run_sync(partial(Zeroconf, interfaces=[address]))
    try:
        info = _service_info(
            service_type, f"{instance}.{service_type}", port, address, dict(txt or {})
        )
        await trio.to_thread.run_sync(zc.register_service, info)
        announcement = Announcement(zc, info)
        try:
            yield announcement
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(zc.unregister_service, announcement.info)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(zc.close)


def _service_info(
    service_type: str,
    name: str,
    port: int,
    address: str,
    txt: Mapping[str, str | None],
) -> ServiceInfo:
    host = re.sub(r"[^a-z0-9-]+", "-", name.removesuffix("." + service_type).lower()).strip("-")
    return ServiceInfo(
        service_type,
        name,
        addresses=[socket.inet_pton(socket.AF_INET, address)],
        port=port,
        properties=dict(txt),
        server=f"{host}.local.",
    )
