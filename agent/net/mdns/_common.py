"""Shared parts of the mDNS wrapper: TXT records, zeroconf set-up, threads, addresses.

The threading rules of the whole wrapper are in the package docstring (agent/net/mdns).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

import ifaddr
import trio
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    Zeroconf,
)
from zeroconf import Error as ZeroconfError

log = logging.getLogger(__name__)

PRESENCE_TYPE = "_presence._tcp.local."
STATUSES = ("avail", "away", "dnd")
#: DNS-SD §6.1: each key=value string is at most 255 bytes.
MAX_TXT_ENTRY_BYTES = 255
#: How often `open_presence` re-reads the machine's addresses (only when announcing on all).
ADDRESS_POLL_SECONDS = 10.0
_RENAME_LIMIT = 100
_RESOLVE_TIMEOUT_MS = 3000
#: Responders hold back an answer up to ~1.2 s when they multicast the record within the last
#: second (RFC 6762 §6, zeroconf's protected aggregation), e.g. right after announcing.
_CONFLICT_QUERY_MS = 1800
_EVENT_BUFFER = 64
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TXT_KEY = re.compile(r"^[\x20-\x3c\x3e-\x7e]{1,9}$")  # printable ASCII except '=' (DNS-SD §6.4)
#: Python-friendly names for TXT keys that are not identifiers.
_KEY_ALIASES = {"first": "1st"}

_T = TypeVar("_T")
QM = DNSQuestionType.QM


class MdnsError(Exception):
    """mDNS presence or browsing failed; the message says what and why."""


def presence_txt(
    *,
    status: str,
    nick: str,
    first: str,
    msg: str,
    node: str,
    ver: str,
    hash: str = "sha-1",
    jid: str | None = None,
    extra: Mapping[str, str] | None = None,
    port: int | None = None,
) -> dict[str, str]:
    """Build a XEP-0174 TXT record; `open_presence` fills in `port.p2pj` from its port."""
    txt = {"txtvers": "1"}
    if port is not None:
        txt["port.p2pj"] = str(port)
    txt |= {"status": status, "1st": first, "nick": nick, "msg": msg}
    txt |= {"node": node, "ver": ver, "hash": hash}
    if jid is not None:
        txt["jid"] = jid
    for key, value in (extra or {}).items():
        if key in txt:
            raise MdnsError(f"TXT key {key!r} in extra would replace a XEP-0174 key")
        txt[key] = value
    return checked_txt(txt)


def checked_txt(txt: Mapping[str, str]) -> dict[str, str]:
    """Validate a TXT record and return it with `txtvers=1` first; MdnsError if unusable.

    A too long `msg` is shortened (it is free text); anything else too long is an error.
    """
    if txt.get("txtvers", "1") != "1":
        raise MdnsError(f"XEP-0174 defines txtvers 1 only, got {txt['txtvers']!r}")
    if "status" in txt and txt["status"] not in STATUSES:
        raise MdnsError(f"TXT status must be one of {', '.join(STATUSES)}, got {txt['status']!r}")
    result = {"txtvers": "1"}
    for key, value in txt.items():
        if not isinstance(key, str) or not _TXT_KEY.match(key):
            raise MdnsError(f"TXT key {key!r} must be 1-9 printable ASCII characters without '='")
        if not isinstance(value, str):
            raise MdnsError(f"TXT value for {key!r} must be a string, got {type(value).__name__}")
        room = MAX_TXT_ENTRY_BYTES - len(key) - 1
        if key == "msg":
            value = _shorten_utf8(value, room)
        elif len(value.encode()) > room:
            raise MdnsError(f"TXT entry {key!r} is longer than {MAX_TXT_ENTRY_BYTES} bytes")
        result[key] = value
    return result


def _shorten_utf8(text: str, limit: int) -> str:
    if len(text.encode()) <= limit:
        return text
    ellipsis = "…"
    budget = limit - len(ellipsis.encode())
    return text.encode()[:budget].decode("utf-8", "ignore") + ellipsis


def _check_interfaces(interfaces: list[str] | None) -> list[str] | None:
    """None or [] mean all interfaces; otherwise every entry must be an IP address."""
    if not interfaces:
        return None
    for entry in interfaces:
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            raise MdnsError(f"mDNS interface {entry!r} is not an IP address") from None
    return list(interfaces)


async def _in_thread(what: str, call: Callable[..., _T], *args: object) -> _T:
    """Run a blocking zeroconf call in a worker thread, mapping its errors to MdnsError."""
    try:
        return await trio.to_thread.run_sync(call, *args)
    except (ZeroconfError, OSError) as exc:
        raise MdnsError(f"mDNS {what} failed: {exc!r}") from exc


@asynccontextmanager
async def _helper_tasks() -> AsyncIterator[trio.Nursery]:
    """A nursery for background helpers around a caller's `async with` body.

    The helpers are cancelled when the body ends, and an exception from the body comes out
    as itself, not wrapped in an ExceptionGroup (strict nurseries wrap even a single one).
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
        cause, context = error.__cause__, error.__context__
        try:
            raise error
        finally:
            # Re-raising here would chain the group as context; keep what the error had.
            error.__cause__, error.__context__ = cause, context


@asynccontextmanager
async def _open_zeroconf(interfaces: list[str] | None) -> AsyncIterator[Zeroconf]:
    if interfaces is None:
        start = partial(Zeroconf, InterfaceChoice.All, ip_version=IPVersion.All, use_asyncio=False)
        try:
            zc = await _in_thread("start on all interfaces", start)
        except MdnsError as exc:  # e.g. IPv6 disabled in the kernel
            log.warning("mdns.ipv6_unavailable error=%s", exc)
            zc = await _in_thread(
                "start on all IPv4 interfaces", partial(start, ip_version=IPVersion.V4Only)
            )
    else:
        chosen: list[str | int] = list(interfaces)
        start = partial(Zeroconf, chosen, use_asyncio=False)
        zc = await _in_thread(f"start on {', '.join(interfaces)}", start)
    try:
        yield zc
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(zc.close)


def machine_addresses(interfaces: list[str] | None) -> list[str]:
    """The addresses to announce: the chosen ones, or every routable address of the machine.

    With all interfaces, loopback and IPv6 link-local addresses are left out (a peer cannot
    use them without our scope); loopback is the fallback when there is nothing else.
    """
    if interfaces is not None:
        return list(interfaces)
    found: list[str] = []
    loopback: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            address = ipaddress.ip_address(text)
            if address.is_loopback:
                loopback.append(text)
            elif not (address.version == 6 and address.is_link_local):
                found.append(text)
    return sorted(set(found or loopback))


def _split_instance(instance: str) -> tuple[str, str]:
    user, sep, host = instance.rpartition("@")
    if not sep or not user or not _HOST_LABEL.match(host):
        raise MdnsError(
            f"instance name {instance!r} must be 'user@host' with an ASCII host name "
            "(letters, digits, '-') as XEP-0174 requires"
        )
    if len(instance.encode()) > 63:
        raise MdnsError(f"instance name {instance!r} is longer than a DNS label (63 bytes)")
    return user, host
