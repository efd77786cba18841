"""Outbound link-local XMPP streams (the phone side): open, request/response, pushes, close."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio

from agent.groups import single_exception
from agent.xmpp import stanza as st
from agent.xmpp.connection import (
    Connection,
    FeaturesReceived,
    Role,
    StanzaReceived,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError

RECEIVE_SIZE = 16384


class StreamFailed(Exception):
    """The stream could not be opened, or ended while we waited on it."""


class StanzaErrorReply(Exception):
    def __init__(self, error: st.StanzaError) -> None:
        super().__init__(str(error))
        self.error = error


class XmppStream:
    def __init__(self, transport: trio.abc.Stream, conn: Connection) -> None:
        self.transport = transport
        self.conn = conn
        self._send_lock = trio.Lock()
        self._tracker = st.IqTracker()
        self._waiters: dict[str, trio.MemorySendChannel[ET.Element]] = {}
        self._incoming_send, self.incoming = trio.open_memory_channel[ET.Element](math.inf)
        self.opened = trio.Event()
        self.closed = trio.Event()
        self.close_reason = ""

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.transport.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamFailed(f"the stream is gone ({exc})") from None

    async def send(self, stanza: ET.Element) -> None:
        try:
            data = self.conn.send_stanza(stanza)
        except LocalProtocolError as exc:
            raise StreamFailed(self.close_reason or str(exc)) from None
        await self._write(data)

    async def request(self, request: ET.Element) -> ET.Element:
        """Send an iq get/set and wait for its result; an error reply raises StanzaErrorReply."""
        id_ = self._tracker.prepare(request)
        send, receive = trio.open_memory_channel[ET.Element](1)
        self._waiters[id_] = send
        try:
            await self.send(request)
            async with receive:
                try:
                    reply = await receive.receive()
                except trio.EndOfChannel:
                    raise StreamFailed(self.close_reason or "the stream closed") from None
        finally:
            self._waiters.pop(id_, None)
            self._tracker.forget(id_)
        if reply.get("type") == "error":
            raise StanzaErrorReply(st.StanzaError.from_stanza(reply))
        return reply

    async def _reader(self) -> None:
        try:
            while not self.closed.is_set():
                try:
                    data = await self.transport.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self.conn.receive_data(data)
                while (event := self.conn.next_event()) is not None:
                    await self._on_event(event)
        except RemoteProtocolError as exc:
            self.close_reason = f"the agent sent bad XML ({exc})"
            await self._write(self.conn.send_stream_error(exc.condition, exc.text))
        finally:
            self._finish()

    async def _on_event(self, event: object) -> None:
        match event:
            case StreamOpened():
                if not self.conn.peer_uses_version_1:
                    self.opened.set()  # pre-1.0 peers send no features
            case FeaturesReceived():
                self.opened.set()
            case StanzaReceived(stanza) if self._tracker.is_reply(stanza):
                waiter = self._waiters.get(self._tracker.complete(stanza))
                if waiter is not None:
                    waiter.send_nowait(stanza)
            case StanzaReceived(stanza):
                self._incoming_send.send_nowait(stanza)
            case StreamErrorReceived(condition, text):
                self.close_reason = f"the agent ended the stream: {condition} {text}".strip()
            case StreamClosed():
                self.close_reason = self.close_reason or "the agent closed the stream"
                self.closed.set()

    def _finish(self) -> None:
        self.closed.set()
        self.opened.set()
        self._incoming_send.close()
        for waiter in self._waiters.values():
            waiter.close()

    async def aclose(self) -> None:
        if not self.closed.is_set():
            with trio.move_on_after(2):
                with suppress(StreamFailed):
                    await self._write(self.conn.send_close())
                await self.closed.wait()
        await self.transport.aclose()


@asynccontextmanager
async def open_xmpp_stream(
    host: str, port: int, *, local_jid: str, remote_jid: str | None, open_timeout: float = 5.0
) -> AsyncIterator[XmppStream]:
    """Connect to a link-local peer and open a stream to `remote_jid` (its instance name)."""
    try:
        with trio.fail_after(open_timeout):
            transport: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise StreamFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    stream = XmppStream(transport, Connection(Role.INITIATOR, local_jid))
    failure = ""
    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._reader)
            await stream._write(stream.conn.send_open(remote_jid))
            with trio.move_on_after(open_timeout) as opening:
                await stream.opened.wait()
            if opening.cancelled_caught or stream.closed.is_set():
                failure = stream.close_reason or f"{host}:{port} did not open a stream"
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield stream
                finally:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
                    nursery.cancel_scope.cancel()
    if failure:
        await transport.aclose()
        raise StreamFailed(failure)
