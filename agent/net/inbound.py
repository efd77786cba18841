"""One inbound link-local stream in the trio shell: a reader task feeding the sans-IO
`Connection`, a send lock, the handshake with its deadlines, and the stream's end."""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections import deque
from typing import TYPE_CHECKING

import trio

from agent.dispatch import PeerAuth, Session
from agent.groups import single_exception
from agent.logs import kv
from agent.net.locks import SendLock
from agent.security.keys import short_fingerprint
from agent.security.tls import peer_fingerprint
from agent.xmpp.connection import (
    Connection,
    Event,
    Role,
    StanzaReceived,
    StartTlsRequested,
    State,
    StreamClosed,
    StreamErrorReceived,
    StreamOpened,
)
from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from agent.net.server import XmppServer

log = logging.getLogger(__name__)
RECEIVE_SIZE = 16384


class _TlsFailed(Exception):
    pass


class InboundStream:
    """One accepted connection: handshake (header, STARTTLS, TLS, header), then stanzas to a
    dispatcher session in order, until either side ends the stream."""

    def __init__(self, server: XmppServer, transport: trio.SocketStream, peer_ip: str) -> None:
        self.server = server
        self.transport: trio.abc.Stream = transport
        self.peer_ip = peer_ip
        settings = server.settings
        names = list(server.local_names())
        self.conn = Connection(
            Role.RECEIVER, names[0], limits=settings.limits, accepted_names=names
        )
        self._send_lock = SendLock()
        self._scope = trio.CancelScope()
        self.auth = PeerAuth()
        #: Events read during the handshake that belong to the session (pipelined stanzas).
        self._early: deque[Event] = deque()
        self._revoked = trio.Event()
        self._session: Session | None = None

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            # A bare CancelScope: trio.move_on_after adds a generator context manager per call,
            # and this runs for every stanza.
            deadline = trio.current_time() + self.server.settings.send_timeout
            with trio.CancelScope(deadline=deadline) as timeout:
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

    def revoke(self) -> None:
        """The trust store no longer knows this device: end its stream (not-authorized)."""
        self._revoked.set()

    async def run(self) -> None:
        log.info(kv("stream-accepted", peer=self.peer_ip))
        with self._scope:
            try:
                opened = await self._handshake_unless_shutdown()
            except trio.TooSlowError:
                await self.refuse("connection-timeout", "the stream set-up took too long")
                return
            except RemoteProtocolError as exc:
                await self.refuse(exc.condition, exc.text)
                return
            except _TlsFailed as exc:
                log.warning(kv("tls-failed", peer=self.peer_ip, reason=exc))
                await self._abort()
                return
            if opened is None:
                await self._abort()
                return
            who = self.auth.paired_name or opened.peer or "-"
            log.info(kv("stream-opened", peer=self.peer_ip, name=who, tls=self.conn.secured))
            async with self.server.dispatcher.session(
                opened.peer, self.send_stanza, auth=self.auth
            ) as session:
                reason = await self._serve_stanzas(session)
            log.info(kv("stream-closed", peer=self.peer_ip, name=who, reason=reason))
        await self._abort()

    async def _abort(self) -> None:
        with trio.move_on_after(self.server.settings.close_timeout) as cleanup:
            cleanup.shield = True
            await self.transport.aclose()

    async def _handshake_unless_shutdown(self) -> StreamOpened | None:
        opened: StreamOpened | None = None
        with single_exception():
            async with trio.open_nursery() as nursery:

                async def stop_on_shutdown() -> None:
                    await self.server.shutting_down.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_on_shutdown)
                try:
                    opened = await self._handshake()
                finally:
                    nursery.cancel_scope.cancel()
        if self.server.shutting_down.is_set() and self.conn.state is State.OPEN:
            await self._write(self.conn.send_close())  # goodbye to a peer still setting up
            return None
        return opened

    async def _handshake(self) -> StreamOpened | None:
        """Header → accept (+ STARTTLS offer) → [TLS → header → accept]; sets `self.auth`."""
        settings = self.server.settings
        with trio.fail_after(settings.handshake_timeout):
            opened = await self._await_header()
        if opened is None:
            return None
        tls = self.server.tls
        offer = tls is not None and self.conn.peer_uses_version_1
        await self._write(self.conn.send_accept(offer_tls=offer))
        if not offer:
            return opened
        # The peer either asks for TLS first or goes on in the clear (anonymous, unpaired).
        with trio.move_on_after(settings.handshake_timeout):
            first = await self._next_event()
            if not isinstance(first, StartTlsRequested):
                self._early.append(first)
                return opened
            await self._write(self.conn.send_proceed())
            await self._start_tls()
            self.conn.restart_after_tls()
            opened = await self._await_header()
            if opened is None:
                return None
            await self._write(self.conn.send_accept())
            return opened
        if self.conn.state is State.TLS_NEGOTIATION:
            raise _TlsFailed("the TLS handshake took too long")
        if self.conn.secured:
            raise trio.TooSlowError  # no stream header over TLS in time
        return opened  # a plain peer that has said nothing yet

    async def _start_tls(self) -> None:
        assert self.server.tls is not None
        context = self.server.tls.current()
        ssl_stream = trio.SSLStream(self.transport, context, server_side=True)
        try:
            with trio.fail_after(self.server.settings.tls_handshake_timeout):
                await ssl_stream.do_handshake()
        except trio.TooSlowError:
            raise _TlsFailed("TLS handshake timed out") from None
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__ or exc
            raise _TlsFailed(
                f"TLS handshake failed ({cause}); unknown or revoked device?"
            ) from None
        self.transport = ssl_stream
        fp = peer_fingerprint(ssl_stream)
        peer = self.server.tls.trusted.find(fp) if fp is not None else None
        if fp is not None and peer is None:
            raise _TlsFailed(f"certificate {short_fingerprint(fp)} was revoked")
        self.auth = PeerAuth(
            secured=True, fingerprint=fp, paired_name=peer.name if peer is not None else None
        )

    async def _next_event(self) -> Event:
        while (event := self.conn.next_event()) is None:
            await self._receive()
        return event

    async def _receive(self) -> bytes | bytearray:
        try:
            data = await self.transport.receive_some(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self.conn.receive_data(data)
        return data

    async def _await_header(self) -> StreamOpened | None:
        while True:
            event = self.conn.next_event()
            if isinstance(event, StreamOpened):
                return event
            if event is not None:
                return None
            if not await self._receive():
                return None

    async def _serve_stanzas(self, session: Session) -> str:
        settings = self.server.settings
        reason = "closed-by-agent"  # shutdown or revocation cancelled the read loop
        self._session = session
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._close_on_shutdown, nursery.cancel_scope)
            nursery.start_soon(self._close_on_revoke, nursery.cancel_scope)
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

    async def _close_on_revoke(self, stream_scope: trio.CancelScope) -> None:
        await self._revoked.wait()
        if self._session is not None:
            self._session.authorized = False  # not one more press while we say goodbye
        log.warning(kv("stream-revoked", peer=self.peer_ip, name=self.auth.paired_name))
        await self._write(self.conn.send_stream_error("not-authorized", "this device was revoked"))
        await trio.sleep(self.server.settings.close_timeout)  # time to read it, then end
        stream_scope.cancel()

    async def _close_on_shutdown(self, stream_scope: trio.CancelScope) -> None:
        await self.server.shutting_down.wait()
        await self._write(self.conn.send_close())
        # Give the peer a moment to answer with its own </stream:stream>, then end.
        await trio.sleep(self.server.settings.close_timeout)
        stream_scope.cancel()

    def _pending_event(self) -> Event | None:
        return self._early.popleft() if self._early else self.conn.next_event()

    async def _read_loop(self, session: Session, idle_timeout: float) -> str:
        # One scope for the whole loop, its deadline moved per read (not a new fail_after per
        # read): the idle timer runs only while waiting for the peer, never while handling.
        idle = trio.CancelScope()
        with idle:
            reason = await self._read_stanzas(session, idle, idle_timeout)
        if idle.cancelled_caught:
            raise trio.TooSlowError
        return reason

    async def _read_stanzas(
        self, session: Session, idle: trio.CancelScope, idle_timeout: float
    ) -> str:
        while True:
            while (event := self._pending_event()) is not None:
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
            idle.deadline = trio.current_time() + idle_timeout
            await self._receive()
            idle.deadline = math.inf
