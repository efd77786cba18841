"""Browsing DNS-SD services (`_presence._tcp` by default): instances appearing, changing and
leaving, and one-shot discovery."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial

import trio
from zeroconf import (
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from agent.net.mdns._common import (
    _EVENT_BUFFER,
    _RESOLVE_TIMEOUT_MS,
    PRESENCE_TYPE,
    QM,
    _check_interfaces,
    _helper_tasks,
    _in_thread,
    _open_zeroconf,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerFound:
    """A peer (a service instance) appeared or changed (new TXT, addresses, port): the latest
    full picture."""

    instance: str
    addresses: tuple[str, ...]
    port: int
    txt: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PeerLost:
    instance: str


PeerEvent = PeerFound | PeerLost


@dataclass(frozen=True, slots=True)
class _Changed:
    """Zeroconf saw a PTR/SRV/TXT/address change for `name` (sent from its thread)."""

    name: str
    change: ServiceStateChange


@dataclass(frozen=True, slots=True)
class _Resolved:
    name: str
    generation: int
    info: ServiceInfo | None


@asynccontextmanager
async def open_browser(
    interfaces: list[str] | None = None,
    service_type: str = PRESENCE_TYPE,
) -> AsyncIterator[trio.MemoryReceiveChannel[PeerEvent]]:
    """Browse `service_type`; iterate the channel for PeerFound / PeerLost events.

    A PeerFound for an instance already seen replaces the earlier one.
    """
    chosen = _check_interfaces(interfaces)
    token = trio.lowlevel.current_trio_token()
    # Unbounded on purpose: zeroconf's thread must never wait on us; its cache bounds it.
    inbox_send, inbox = trio.open_memory_channel[_Changed | _Resolved](math.inf)
    events_send, events = trio.open_memory_channel[PeerEvent](_EVENT_BUFFER)

    def deliver(item: _Changed) -> None:  # runs in trio
        with suppress(trio.ClosedResourceError):  # the browser closed meanwhile
            inbox_send.send_nowait(item)

    def on_service_state_change(
        *, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:  # runs in zeroconf's ServiceBrowser thread
        with suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(deliver, _Changed(name, state_change), trio_token=token)

    async with _open_zeroconf(chosen) as zc, _helper_tasks() as nursery:
        # QM (multicast answers), not QU: see _name_in_use for why QU fails between
        # responders on one host — e.g. the `buttons` CLI next to the agent.
        start = partial(
            ServiceBrowser, zc, service_type, handlers=[on_service_state_change], question_type=QM
        )
        browser = await _in_thread("browse", start)
        try:
            nursery.start_soon(_track_peers, zc, service_type, inbox_send, inbox, events_send)
            yield events
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(browser.cancel)
            inbox_send.close()


async def _track_peers(
    zc: Zeroconf,
    service_type: str,
    inbox_send: trio.MemorySendChannel[_Changed | _Resolved],
    inbox: trio.MemoryReceiveChannel[_Changed | _Resolved],
    events: trio.MemorySendChannel[PeerEvent],
) -> None:
    """Turn zeroconf's changes into ordered PeerFound/PeerLost events.

    Resolving (SRV/TXT/A lookups) runs concurrently, one task per change; a generation
    number per name drops results that a later change (or a removal) has superseded.
    """
    generations: dict[str, int] = {}
    reported: dict[str, PeerFound] = {}

    async def resolve(name: str, generation: int) -> None:
        lookup = partial(zc.get_service_info, service_type, name, _RESOLVE_TIMEOUT_MS, QM)
        # Abandon on cancel: the lookup ends by itself within its timeout; nobody waits for it.
        info = await trio.to_thread.run_sync(lookup, abandon_on_cancel=True)
        with suppress(trio.ClosedResourceError):
            inbox_send.send_nowait(_Resolved(name, generation, info))

    async with events, trio.open_nursery() as resolvers:
        async for item in inbox:
            if isinstance(item, _Changed):
                generation = generations[item.name] = generations.get(item.name, 0) + 1
                if item.change is not ServiceStateChange.Removed:
                    resolvers.start_soon(resolve, item.name, generation)
                elif (lost := reported.pop(item.name, None)) is not None:
                    await events.send(PeerLost(lost.instance))
            elif item.generation == generations.get(item.name):
                peer = _peer_from_info(service_type, item.name, item.info)
                if peer is not None and reported.get(item.name) != peer:
                    reported[item.name] = peer
                    await events.send(peer)
        resolvers.cancel_scope.cancel()


def _peer_from_info(service_type: str, name: str, info: ServiceInfo | None) -> PeerFound | None:
    suffix = "." + service_type
    if info is None or info.port is None or not name.endswith(suffix):
        log.debug("mdns.unresolved name=%s", name)
        return None
    addresses = tuple(info.parsed_scoped_addresses())
    if not addresses:
        return None
    txt = {key: value or "" for key, value in info.decoded_properties.items()}
    return PeerFound(name[: -len(suffix)], addresses, info.port, txt)


# `timeout` is how long to listen (the CLI's --timeout), not a deadline for failing.
async def discover(
    *,
    timeout: float,  # noqa: ASYNC109
    interfaces: list[str] | None = None,
    ignore: Iterable[str] = (),
) -> list[PeerFound]:
    """Browse for `timeout` seconds and return the peers present at the end, by name.

    `ignore` lists instance names to leave out (our own announcement, usually).
    """
    ignored = set(ignore)
    peers: dict[str, PeerFound] = {}
    async with open_browser(interfaces) as events:
        with trio.move_on_after(timeout):
            async for event in events:
                if event.instance in ignored:
                    continue
                if isinstance(event, PeerFound):
                    peers[event.instance] = event
                else:
                    peers.pop(event.instance, None)
    return sorted(peers.values(), key=lambda peer: peer.instance)
