"""Outbound link-local XMPP streams (the phone side): open, request/response, pushes, close."""

from __future__ import annotations

import math
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import trio

from agent.groups import single_exception
from agent.net.locks import SendLock
from agent.xmpp import stanza as st
from agent.xmpp.connection import (
    Connection,
    Event,
    FeaturesReceived,
    Role,
    StanzaReceived,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
    TlsProceed,
    TlsRefused,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError
from agent.xmpp.tls import offers_starttls

RECEIVE_SIZE = 16384


class StreamFailed(Exception):
    """The stream could not be opened, or ended while we waited on it."""


class StanzaErrorReply(Exception):
    def __init__(self, error: st.StanzaError) -> None:
        super().__init__(str(error))
        self.error = error


class PendingRequests:
    """Our iq requests waiting for their replies, matched by id; one per stream."""

    def __init__(self) -> None:
        self._tracker = st.IqTracker()
        self._waiters: dict[str, trio.MemorySendChannel[ET.Element]] = {}

    async def request(
        self,
        request: ET.Element,
        send: Callable[[ET.Element], Awaitable[None]],
        close_reason: Callable[[], str],
    ) -> ET.Element:
        """Send an iq get/set and wait for its result; an error reply raises StanzaErrorReply."""
        id_ = self._tracker.prepare(request)
        reply_send, reply_receive = trio.open_memory_channel[ET.Element](1)
        self._waiters[id_] = reply_send
        try:
            await send(request)
            async with reply_receive:
                try:
                    reply = await reply_receive.receive()
                except trio.EndOfChannel:
                    raise StreamFailed(close_reason() or "the stream closed") from None
        finally:
            self._waiters.pop(id_, None)
            self._tracker.forget(id_)
        if reply.get("type") == "error":
            raise StanzaErrorReply(st.StanzaError.from_stanza(reply))
        return reply

    def deliver(self, stanza: ET.Element) -> bool:
        """True when `stanza` answers one of our requests (it then goes to that request)."""
        if not self._tracker.is_reply(stanza):
            return False
        waiter = self._waiters.get(self._tracker.complete(stanza))
        if waiter is not None:
            waiter.send_nowait(stanza)
        return True

    def close(self) -> None:
        """The stream ended: every waiting request fails with the stream's close reason."""
        for waiter in self._waiters.values():
            waiter.close()


class XmppStream:
    def __init__(self, transport: trio.abc.Stream, conn: Connection) -> None:
        self.transport = transport
        self.conn = conn
        self._send_lock = SendLock()
        self._requests = PendingRequests()
        self._incoming_send, self.incoming = trio.open_memory_channel[ET.Element](math.inf)
        self.opened = trio.Event()
        self.closed = trio.Event()
        self.close_reason = ""
        #: Stanzas the agent sent during the handshake, delivered first.
        self._early: list[ET.Element] = []

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
        return await self._requests.request(request, self.send, lambda: self.close_reason)

    async def _reader(self) -> None:
        for stanza in self._early:
            await self._on_event(StanzaReceived(stanza))
        self._early.clear()
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
            case StanzaReceived(stanza):
                if not self._requests.deliver(stanza):
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
        self._requests.close()

    async def aclose(self) -> None:
        if not self.closed.is_set():
            with trio.move_on_after(2):
                with suppress(StreamFailed):
                    await self._write(self.conn.send_close())
                await self.closed.wait()
        await self.transport.aclose()


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How the initiator secures its stream: STARTTLS is then required, never optional."""

    context: ssl.SSLContext
    #: Called with the agent's certificate (DER) once TLS is up; raises to refuse the agent.
    verify: Callable[[bytes], None]
    #: Whether `context` presents a client certificate (for a clearer error if it is refused).
    presents_certificate: bool = True


async def _next_event(stream: XmppStream) -> Event:
    while (event := stream.conn.next_event()) is None:
        try:
            data = await stream.transport.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        stream.conn.receive_data(data)
    return event


async def _await_features(stream: XmppStream) -> ET.Element | None:
    """The agent's header and, for a 1.0 stream, its features (None for pre-1.0 agents)."""
    while True:
        match await _next_event(stream):
            case StreamOpened() if not stream.conn.peer_uses_version_1:
                return None
            case FeaturesReceived(features):
                return features
            case StreamErrorReceived(condition, text):
                raise StreamFailed(f"the agent ended the stream: {condition} {text}".strip())
            case StreamClosed():
                raise StreamFailed("the agent closed the stream")
            case StanzaReceived(stanza):
                stream._early.append(stanza)


async def _negotiate(stream: XmppStream, remote_jid: str | None, tls: ClientTls | None) -> None:
    await stream._write(stream.conn.send_open(remote_jid))
    features = await _await_features(stream)
    if tls is None:
        return
    if features is None or not offers_starttls(features):
        raise StreamFailed("the agent does not offer TLS; refusing to talk to it in the clear")
    await stream._write(stream.conn.send_starttls())
    answer = await _next_event(stream)
    if not isinstance(answer, TlsProceed):
        refused = "refused" if isinstance(answer, TlsRefused) else "did not agree"
        raise StreamFailed(f"the agent {refused} to start TLS")
    ssl_stream = trio.SSLStream(stream.transport, tls.context, server_hostname=None)
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        raise StreamFailed(f"TLS with the agent failed: {exc.__cause__ or exc}") from None
    tls.verify(ssl_stream.getpeercert(binary_form=True) or b"")
    stream.transport = ssl_stream
    stream.conn.restart_after_tls()
    await stream._write(stream.conn.send_open(remote_jid))
    try:
        await _await_features(stream)
    except StreamFailed:
        if tls.presents_certificate:
            # TLS 1.3: the agent checks our certificate after our handshake has finished.
            raise StreamFailed(
                "the agent refused this device's key: it is not paired with it (or was "
                "revoked); pair it with: buttons pair"
            ) from None
        raise


@asynccontextmanager
async def open_xmpp_stream(
    host: str,
    port: int,
    *,
    local_jid: str,
    remote_jid: str | None,
    open_timeout: float = 5.0,
    tls: ClientTls | None = None,
) -> AsyncIterator[XmppStream]:
    """Connect to a link-local peer and open a stream to `remote_jid` (its instance name).

    With `tls`, STARTTLS is required and the agent's certificate must pass `tls.verify`."""
    try:
        with trio.fail_after(open_timeout):
            transport: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise StreamFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    stream = XmppStream(transport, Connection(Role.INITIATOR, local_jid))
    try:
        with trio.fail_after(open_timeout):
            await _negotiate(stream, remote_jid, tls)
    except trio.TooSlowError:
        await stream.transport.aclose()
        raise StreamFailed(f"{host}:{port} did not open a stream in time") from None
    except RemoteProtocolError as exc:
        await stream.transport.aclose()
        raise StreamFailed(f"the agent sent bad XML ({exc})") from None
    except BaseException:
        await stream.transport.aclose()
        raise
    stream.opened.set()
    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._reader)
            try:
                yield stream
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                nursery.cancel_scope.cancel()
