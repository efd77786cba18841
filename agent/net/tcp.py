"""TCP details shared by the agent's client connections (Kodi's JSON-RPC, the XMPP server)."""

from __future__ import annotations

import socket
from contextlib import suppress

import trio


def rearm_quickack(stream: trio.abc.Stream) -> None:
    """Acknowledge what arrives at once rather than after Linux's delayed-ACK timer.

    Kodi and Prosody both leave Nagle on: their second small write in a row waits until our
    ACK of the first, which a delayed ACK holds back ~40 ms (a Kodi call that also triggers a
    notification; Prosody's XEP-0198 <a/> followed by the next stanza). Linux clears
    TCP_QUICKACK by itself, so call this after every receive. Looks through TLS layers.
    """
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None and isinstance(stream, trio.SocketStream):
        with suppress(OSError):
            stream.setsockopt(socket.IPPROTO_TCP, quickack, 1)
