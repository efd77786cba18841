"""Opening listeners on several addresses with one port (IPv4 and IPv6 wildcards by default)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from agent.logs import kv

log = logging.getLogger(__name__)


async def open_listeners(
    port: int, hosts: Sequence[str], *, what: str
) -> list[trio.SocketListener]:
    """Listen on every host in `hosts`; with port 0, on the port the first one got.

    An address this machine cannot bind (no IPv6, say) is skipped with a log line, unless no
    address at all could be bound.
    """
    listeners: list[trio.SocketListener] = []
    for host in hosts:
        try:
            opened = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            if not listeners and host == hosts[-1]:
                raise
            log.warning(kv("listen-skipped", listener=what, host=host, port=port, error=exc))
            continue
        listeners.extend(opened)
        port = port or opened[0].socket.getsockname()[1]  # same port on every address
    return listeners
