"""A loopback TCP relay for tests that need to break a link at a chosen moment.

Put it between a client and its server. `cut()` drops every relayed connection abruptly — both
sockets closed, no XMPP closing tag, as when a phone's Wi-Fi goes away — and refuses new ones
until `restore()`. `swallow_upstream()` makes the relay drop what clients send from then on
(the server never sees it), so "sent just before the link died" is deterministic.
"""

from __future__ import annotations

import trio

RECEIVE_SIZE = 16384


class TcpRelay:
    """`port = await nursery.start(relay.run)`; then connect clients to `127.0.0.1:port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: Connections relayed so far (refused ones during a cut not included).
        self.connections = 0
        #: Bytes from clients dropped by `swallow_upstream()`.
        self.swallowed = 0
        self._refusing = False
        self._swallowing = False
        self._live: set[trio.CancelScope] = set()
        self._all_gone = trio.Event()
        self._all_gone.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._relay, listeners)
            task_status.started(self.port)

    def swallow_upstream(self) -> None:
        self._swallowing = True

    async def cut(self) -> None:
        """Drop every relayed connection now, refuse new ones; returns once all are closed."""
        self._refusing = True
        for scope in self._live:
            scope.cancel()
        await self._all_gone.wait()

    def restore(self) -> None:
        self._refusing = self._swallowing = False

    async def _relay(self, client: trio.SocketStream) -> None:
        if self._refusing:
            await trio.aclose_forcefully(client)
            return
        try:
            server = await trio.open_tcp_stream(*self.target)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        self.connections += 1
        with trio.CancelScope() as scope:
            self._live.add(scope)
            self._all_gone = trio.Event()
            try:
                async with trio.open_nursery() as pumps:
                    pumps.start_soon(self._pump, client, server, True, pumps.cancel_scope)
                    pumps.start_soon(self._pump, server, client, False, pumps.cancel_scope)
            finally:
                self._live.discard(scope)
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)
        if not self._live:
            self._all_gone.set()

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        upstream: bool,
        pair: trio.CancelScope,
    ) -> None:
        try:
            while data := await source.receive_some(RECEIVE_SIZE):
                if upstream and self._swallowing:
                    self.swallowed += len(data)
                    continue
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pair.cancel()  # one side ended: so does the relayed connection
