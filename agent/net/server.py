"""The trio shell around the sans-IO stream: accept, one task per stream, limits, shutdown.

Each inbound stream gets a reader task (this module) that feeds a `Connection` and hands
stanzas to a dispatcher `Session` in order; everything written goes through one send lock.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import trio

from agent.dispatch import Dispatcher, Session
from agent.logs import kv
from agent.xmpp.connection import (
    Connection,
    Role,
    StanzaReceived,
    State,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError
from agent.xmpp.parser import Limits

log = logging.getLogger(__name__)
RECEIVE_SIZE = 16384


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


class XmppServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        settings: ServerSettings,
        *,
        local_names: Callable[[], Collection[str]],
    ) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        #: Our current instance name first, then aliases (it may change on an mDNS conflict).
        self.local_names = local_names
        self._streams_per_peer: Counter[str] = Counter()
        self._shutdown = trio.Event()
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
            task_status.started(self.ports)
            await self._shutdown.wait()
            listen_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            # Streams see the shutdown event, close themselves, and the nursery waits for them.

    def shutdown(self) -> None:
        """Stop accepting; every stream says goodbye (`</stream:stream>`) and ends."""
        self._shutdown.set()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        listeners: list[trio.SocketListener] = []
        port = self.settings.port
        for host in self.settings.listen:
            try:
                opened = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                if not listeners and host == self.settings.listen[-1]:
                    raise
                log.warning(kv("listen-skipped", host=host, port=port, error=exc))
                continue
            listeners.extend(opened)
            port = port or opened[0].socket.getsockname()[1]  # same port on every address
        return listeners

    async def _serve_stream(self, transport: trio.SocketStream) -> None:
        peer_ip = str(transport.socket.getpeername()[0])
        stream = _InboundStream(self, transport, peer_ip)
        if self._streams_per_peer[peer_ip] >= self.settings.max_streams_per_peer:
            await stream.refuse("policy-violation", "too many streams from your address")
            return
        self._streams_per_peer[peer_ip] += 1
        try:
            await stream.run()
        finally:
            self._streams_per_peer[peer_ip] -= 1
            if not self._streams_per_peer[peer_ip]:
                del self._streams_per_peer[peer_ip]


class _InboundStream:
    def __init__(self, server: XmppServer, transport: trio.SocketStream, peer_ip: str) -> None:
        self.server = server
        self.transport = transport
        self.peer_ip = peer_ip
        settings = server.settings
        names = list(server.local_names())
        self.conn = Connection(
            Role.RECEIVER, names[0], limits=settings.limits, accepted_names=names
        )
        self._send_lock = trio.Lock()
        self._scope = trio.CancelScope()

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            with trio.move_on_after(self.server.settings.send_timeout) as timeout:
                try:
                    await self.transport.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._scope.cancel()
            if timeout.cancelled_caught:
                log.warning(kv("stream-send-timeout", peer=self.peer_ip))
                self._scope.cancel()

    async def send_stanza(self, stanza: ET.Element) -> None:
        try:
            data = self.conn.send_stanza(stanza)
        except LocalProtocolError:
            return  # the stream is closing; late replies and pushes are dropped
        await self._write(data)

    async def refuse(self, condition: str, text: str) -> None:
        log.warning(kv("stream-refused", peer=self.peer_ip, condition=condition, reason=text))
        with trio.move_on_after(self.server.settings.close_timeout):
            await self._write(self.conn.send_stream_error(condition, text))
        await self.transport.aclose()

    async def run(self) -> None:
        settings = self.server.settings
        log.info(kv("stream-accepted", peer=self.peer_ip))
        with self._scope:
            try:
                with trio.fail_after(settings.handshake_timeout):
                    opened = await self._await_header()
            except trio.TooSlowError:
                await self.refuse("connection-timeout", "no stream header in time")
                return
            except RemoteProtocolError as exc:
                await self.refuse(exc.condition, exc.text)
                return
            if opened is None:
                await self.transport.aclose()
                return
            await self._write(self.conn.send_accept())
            log.info(kv("stream-opened", peer=self.peer_ip, name=opened.peer or "-"))
            async with self.server.dispatcher.session(opened.peer, self.send_stanza) as session:
                reason = await self._serve_stanzas(session)
            log.info(kv("stream-closed", peer=self.peer_ip, name=opened.peer or "-", reason=reason))
        with trio.move_on_after(settings.close_timeout) as cleanup:
            cleanup.shield = True
            await self.transport.aclose()

    async def _receive(self) -> bytes:
        try:
            data = await self.transport.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.conn.receive_data(data)
        return data

    async def _await_header(self) -> StreamOpened | None:
        while True:
            if not await self._receive():
                return None
            event = self.conn.next_event()
            if isinstance(event, StreamOpened):
                return event
            if event is not None:
                return None

    async def _serve_stanzas(self, session: Session) -> str:
        settings = self.server.settings
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._close_on_shutdown, nursery.cancel_scope)
            try:
                reason = await self._read_loop(session, settings.idle_timeout)
            except trio.TooSlowError:
                reason = "idle-timeout"
                await self._write(
                    self.conn.send_stream_error("connection-timeout", "idle too long")
                )
            except RemoteProtocolError as exc:
                reason = exc.condition
                log.warning(
                    kv(
                        "stream-error-sent",
                        peer=self.peer_ip,
                        condition=exc.condition,
                        reason=exc.text,
                    )
                )
                await self._write(self.conn.send_stream_error(exc.condition, exc.text))
            nursery.cancel_scope.cancel()
        return reason

    async def _close_on_shutdown(self, stream_scope: trio.CancelScope) -> None:
        await self.server._shutdown.wait()
        await self._write(self.conn.send_close())
        # Give the peer a moment to answer with its own </stream:stream>, then end.
        await trio.sleep(self.server.settings.close_timeout)
        stream_scope.cancel()

    async def _read_loop(self, session: Session, idle_timeout: float) -> str:
        while True:
            while (event := self.conn.next_event()) is not None:
                if isinstance(event, StanzaReceived):
                    await session.handle(event.stanza)
                elif isinstance(event, StreamErrorReceived):
                    log.warning(
                        kv(
                            "stream-error-received",
                            peer=self.peer_ip,
                            condition=event.condition,
                            text=event.text,
                        )
                    )
                elif isinstance(event, StreamClosed):
                    await self._write(self.conn.send_close())
                    return "peer-closed" if event.clean else "eof"
            if self.conn.state is State.CLOSED:
                return "closed"
            with trio.fail_after(idle_timeout):
                await self._receive()
