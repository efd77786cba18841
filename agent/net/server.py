"""The trio shell around the sans-IO stream: accept, one task per stream, limits, shutdown.

Each inbound stream gets a reader task (this module) that feeds a `Connection` and hands
stanzas to a dispatcher `Session` in order; everything written goes through one send lock.

Security (issue 5): `version='1.0'` peers are offered STARTTLS; after TLS the stream
restarts and the peer's identity is its client certificate's fingerprint, looked up in the
trust store. Before any of that, each address is rate limited and capped in concurrent
streams, and the whole handshake (header, STARTTLS, TLS, second header) has deadlines.
Revoking a device closes its open streams.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import trio

from agent.dispatch import Dispatcher
from agent.net.inbound import InboundStream
from agent.net.listen import open_listeners
from agent.security.ratelimit import ConnectionRateLimiter
from agent.security.tls import ServerContexts
from agent.xmpp.parser import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    port: int = 5298
    listen: tuple[str, ...] = ("0.0.0.0", "::")
    limits: Limits = field(default_factory=Limits)
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    send_timeout: float = 10.0
    #: How long a closing stream waits for the peer's `</stream:stream>` at shutdown.
    close_timeout: float = 2.0
    max_streams_per_peer: int = 8
    tls_handshake_timeout: float = 10.0
    #: New connections per address: `connection_burst` at once, then this many per second.
    connections_per_second: float = 2.0
    connection_burst: int = 20
    #: How often the trust store file is checked for changes by `peers revoke`.
    trust_poll_interval: float = 2.0


class XmppServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: ServerSettings,
        *,
        local_names: Callable[[], Collection[str]],
        tls: ServerContexts | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        #: None: no STARTTLS offered (every peer is anonymous and unpaired).
        self.tls = tls
        self._rate = ConnectionRateLimiter(
            per_second=settings.connections_per_second, burst=settings.connection_burst
        )
        self._streams: set[InboundStream] = set()
        #: Our current instance name first, then aliases (it may change on an mDNS conflict).
        self.local_names = local_names
        self._streams_per_peer: Counter[str] = Counter()
        self.shutting_down = trio.Event()
        self.ports: list[int] = []

    @property
    def active_streams(self) -> int:
        return sum(self._streams_per_peer.values())

    async def serve(
        self, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await self._open_listeners()
        self.ports = sorted({listener.socket.getsockname()[1] for listener in listeners})
        async with trio.open_nursery() as nursery:
            listen_scope = trio.CancelScope()

            async def accept_until_shutdown() -> None:
                with listen_scope:
                    await trio.serve_listeners(
                        self._serve_stream, listeners, handler_nursery=nursery
                    )

            nursery.start_soon(accept_until_shutdown)
            follow_scope = trio.CancelScope()
            if self.tls is not None:
                nursery.start_soon(self._follow_trust_store, follow_scope)
            task_status.started(self.ports)
            await self.shutting_down.wait()
            listen_scope.cancel()
            follow_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            # Streams see the shutdown event, close themselves, and the nursery waits for them.

    def shutdown(self) -> None:
        """Stop accepting; every stream says goodbye (`</stream:stream>`) and ends."""
        self.shutting_down.set()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        return await open_listeners(self.settings.port, self.settings.listen, what="xmpp")

    async def _follow_trust_store(self, scope: trio.CancelScope) -> None:
        """Close the open streams of devices revoked by another process (`peers revoke`)."""
        assert self.tls is not None
        with scope:
            while True:
                await trio.sleep(self.settings.trust_poll_interval)
                if self.tls.trusted.reload_if_changed():
                    self.close_revoked_streams()

    def close_revoked_streams(self) -> None:
        assert self.tls is not None
        for stream in list(self._streams):
            fp = stream.auth.fingerprint
            if fp is not None and self.tls.trusted.find(fp) is None:
                stream.revoke()

    async def _serve_stream(self, transport: trio.SocketStream) -> None:
        peer_ip = str(transport.socket.getpeername()[0])
        stream = InboundStream(self, transport, peer_ip)
        if not self._rate.allow(peer_ip):
            await stream.refuse("policy-violation", "too many connections from your address")
            return
        if self._streams_per_peer[peer_ip] >= self.settings.max_streams_per_peer:
            await stream.refuse("policy-violation", "too many streams from your address")
            return
        self._streams_per_peer[peer_ip] += 1
        self._streams.add(stream)
        try:
            await stream.run()
        finally:
            self._streams.discard(stream)
            self._streams_per_peer[peer_ip] -= 1
            if not self._streams_per_peer[peer_ip]:
                del self._streams_per_peer[peer_ip]
