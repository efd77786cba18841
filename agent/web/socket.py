"""One accepted WebSocket as one XMPP stream: the trio shell around `WebSocketFraming`.

The same shape as the link-local `InboundStream` (agent/net/inbound.py): wait for `<open/>`
(bounded), accept, then hand stanzas to a dispatcher Session in order until `<close/>`, a
stream error, an idle timeout or the server's shutdown. Everything we send goes through
trio-websocket, which serialises writers itself.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agent.dispatch import Dispatcher, PeerAuth, Session
from agent.logs import kv
from agent.xmpp.connection import StanzaReceived, StreamClosed, StreamErrorReceived, StreamOpened
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError
from agent.xmpp.framing import CLOSE_NORMAL, WebSocketFraming, close_code_for
from agent.xmpp.parser import Limits

log = logging.getLogger(__name__)

#: RFC 6455 "going away": the agent is shutting down.
CLOSE_GOING_AWAY = 1001


@dataclass(frozen=True, slots=True)
class Timeouts:
    handshake: float = 10.0  # from the upgrade to the browser's <open/>
    idle: float = 120.0  # nothing received (the page pings every 30 s)
    send: float = 10.0  # a browser that stops reading is dropped
    close: float = 2.0  # waiting for the close handshake


class XmppWebSocket:
    def __init__(
        self,
        ws: WebSocketConnection,
        *,
        dispatcher: Dispatcher,
        peer: str,
        address: str,
        limits: Limits,
        timeouts: Timeouts,
        shutdown: trio.Event,
    ) -> None:
        self.ws = ws
        self.dispatcher = dispatcher
        self.peer = peer
        self.address = address
        self.framing = WebSocketFraming(dispatcher.info.jid, limits=limits)
        self.timeouts = timeouts
        self._shutdown = shutdown
        self._close_code = CLOSE_NORMAL
        #: Cancelled when the browser stops reading: the stream is abandoned, not waited on.
        self._scope = trio.CancelScope()

    async def run(self) -> str:
        """Serve the stream to its end; returns why it ended (for the log)."""
        reason = "send-timeout"
        try:
            with self._scope:
                reason = await self._serve()
        finally:
            with trio.move_on_after(self.timeouts.close) as cleanup:
                cleanup.shield = True
                await self.ws.aclose(self._close_code)
        return reason

    async def _serve(self) -> str:
        try:
            with trio.fail_after(self.timeouts.handshake):
                opened = await self._await_open()
        except trio.TooSlowError:
            await self._stream_error(RemoteProtocolError("connection-timeout", "no <open/>"))
            return "handshake-timeout"
        except RemoteProtocolError as exc:
            await self._stream_error(exc)
            return exc.condition
        if opened is None:
            return "closed-before-open"
        await self._send_all(self.framing.send_accept())
        reason = "shutdown"  # unless the stream ends by itself first
        async with (
            self.dispatcher.session(
                self.peer, self.send_stanza, auth=PeerAuth.paired(self.peer)
            ) as session,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._close_on_shutdown, nursery.cancel_scope)
            reason = await self._serve_stanzas(session)
            nursery.cancel_scope.cancel()
        return reason

    async def _receive(self) -> None:
        try:
            message = await self.ws.get_message()
        except ConnectionClosed:
            self.framing.receive_eof()
            return
        self.framing.receive_message(message)

    async def _await_open(self) -> StreamOpened | None:
        while True:
            await self._receive()
            event = self.framing.next_event()
            if isinstance(event, StreamOpened):
                return event
            if event is not None:
                return None

    async def _serve_stanzas(self, session: Session) -> str:
        try:
            while True:
                while (event := self.framing.next_event()) is not None:
                    if isinstance(event, StanzaReceived):
                        await session.handle(event.stanza)
                    elif isinstance(event, StreamErrorReceived):
                        condition = event.condition
                        log.warning(kv("ws-stream-error-received", peer=self.peer, why=condition))
                    elif isinstance(event, StreamClosed):
                        await self._send_all(self.framing.send_close())
                        return "peer-closed" if event.clean else "eof"
                with trio.fail_after(self.timeouts.idle):
                    await self._receive()
        except trio.TooSlowError:
            await self._stream_error(RemoteProtocolError("connection-timeout", "idle too long"))
            return "idle-timeout"
        except RemoteProtocolError as exc:
            await self._stream_error(exc)
            return exc.condition

    async def _stream_error(self, error: RemoteProtocolError) -> None:
        log.warning(
            kv("ws-stream-error-sent", peer=self.peer, condition=error.condition, reason=error.text)
        )
        self._close_code = close_code_for(error)
        await self._send_all(self.framing.send_stream_error(error.condition, error.text))

    async def _close_on_shutdown(self, scope: trio.CancelScope) -> None:
        await self._shutdown.wait()
        self._close_code = CLOSE_GOING_AWAY
        await self._send_all(self.framing.send_close())
        scope.cancel()

    async def send_stanza(self, stanza: ET.Element) -> None:
        try:
            message = self.framing.send_stanza(stanza)
        except LocalProtocolError:
            return  # the stream is closing; late replies and pushes are dropped
        await self._send_all([message])

    async def _send_all(self, messages: list[str]) -> None:
        for message in messages:
            with trio.move_on_after(self.timeouts.send) as timeout:
                try:
                    await self.ws.send_message(message)
                except ConnectionClosed:
                    return
            if timeout.cancelled_caught:
                log.warning(kv("ws-send-timeout", peer=self.peer, address=self.address))
                self._scope.cancel()
                return
