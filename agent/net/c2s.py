"""Client-to-server XMPP streams over trio: log in, keep alive, resume, and reconnect.

The sans-IO `ClientStream` does the protocol; this shell owns the socket, the TLS handshake
(STARTTLS, verified against the context's CA store and the account's domain), a reader task,
keepalive (an XEP-0198 <r/> when the server acks, else an XEP-0199 ping) to notice a dead
server, and `run_c2s_forever`, which keeps an account online.

A `C2sStream` is one XMPP session. With XEP-0198 resumption it outlives its TCP connection:
after a drop `run_c2s_forever` resumes it on a new connection within the server's `max`, and
the application keeps the same object. Stanzas sent meanwhile wait in the unacked queue and go
out on resumption; what the server queued for us arrives once.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import trio

from agent.groups import single_exception
from agent.logs import kv
from agent.net.locks import SendLock
from agent.net.stream import PendingRequests, StanzaErrorReply, StreamFailed
from agent.net.tcp import rearm_quickack
from agent.xmpp import stanza as st
from agent.xmpp.c2s import AuthFailed, C2sEvent, ClientStream, Online, StartTls, split_jid
from agent.xmpp.connection import StanzaReceived, StreamClosed, StreamErrorReceived
from agent.xmpp.disco import PING_NS
from agent.xmpp.errors import ProtocolError
from agent.xmpp.sm import AckReceived, Resumed, ResumeFailed, SmEnabled, SmUnavailable

log = logging.getLogger(__name__)
RECEIVE_SIZE = 16384


class AuthRejected(StreamFailed):
    """The server refused our credentials: retrying at once will not help."""


@dataclass(frozen=True, slots=True)
class C2sSettings:
    jid: str
    password: str
    #: Where to connect; defaults to the JID's domain (no SRV lookup yet).
    host: str | None = None
    port: int = 5222
    #: STARTTLS with this context (required); None = plaintext, for loopback tests only.
    tls: ssl.SSLContext | None = None
    open_timeout: float = 15.0
    ping_interval: float = 60.0
    ping_timeout: float = 20.0


def describe(stanza: ET.Element) -> str:
    """A short name for a stanza in logs: kind, id and addressee, never its content."""
    return f"{st.kind(stanza)}#{stanza.get('id', '')}>{stanza.get('to', '')}"


class C2sStream:
    """An online client session: `send`, `request`, and `incoming` stanzas from the server."""

    def __init__(self, transport: trio.abc.Stream, client: ClientStream) -> None:
        self.transport = transport
        self.client = client
        self.jid = ""
        #: Why the latest connection (or, once `closed` is set, the session) ended.
        self.close_reason = ""
        #: The session is over: no resumption follows (`incoming` is closed too).
        self.closed = trio.Event()
        #: Set by run_c2s_forever: a dropped connection leaves a resumable session open.
        self.resumes = False
        self._connection_lost = trio.Event()
        self._reading = False
        self._send_lock = SendLock()
        self._requests = PendingRequests()
        self._ack_waiters: list[trio.Event] = []
        self._incoming_send, self.incoming = trio.open_memory_channel[ET.Element](math.inf)

    async def _write_locked(self, data: bytes, *, queued: bool = False) -> None:
        if not data:
            return
        try:
            await self.transport.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if queued and self._may_resume():
                return  # the stanza waits in the XEP-0198 queue; resumption resends it
            raise StreamFailed(f"the server connection is gone ({exc})") from None

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self._write_locked(data)

    async def _flush(self) -> None:
        async with self._send_lock:
            await self._write_locked(self.client.data_to_send())

    def _may_resume(self) -> bool:
        return self.resumes and self.client.sm.resumable

    async def send(self, stanza: ET.Element) -> None:
        if self.closed.is_set():
            raise StreamFailed(self.close_reason or "the stream closed")
        # Serialize and write under one lock: the server counts our stanzas in the order they
        # arrive, and the unacked queue must hold them in that same order.
        async with self._send_lock:
            try:
                data = self.client.send_stanza(stanza)
            except ProtocolError as exc:
                raise StreamFailed(self.close_reason or str(exc)) from None
            await self._write_locked(data, queued=True)

    async def request(self, request: ET.Element) -> ET.Element:
        """Send an iq get/set, wait for its result; an error reply raises StanzaErrorReply."""
        return await self._requests.request(request, self.send, lambda: self.close_reason)

    async def _next_event(self) -> C2sEvent:
        while (event := self.client.next_event()) is None:
            try:
                data = await self.transport.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            rearm_quickack(self.transport)  # the server's Nagle must not wait for our ACK
            self.client.receive_data(data)
            await self._flush()
            if not data and (event := self.client.next_event()) is None:
                # EOF was reported before: never spin on a dead transport.
                raise StreamFailed("the connection is closed")
        return event

    async def _negotiate(self, tls: ssl.SSLContext | None) -> bool:
        """Log in on the current connection; True when it resumed this session."""
        self.client.start()
        await self._flush()
        while True:
            match await self._next_event():
                case StartTls():
                    assert tls is not None
                    await self._start_tls(tls)
                case Resumed(jid, retransmitted):
                    log.info(kv("sm-resumed", jid=jid, retransmitted=retransmitted))
                    return True
                case ResumeFailed(condition, undelivered):
                    self._resume_failed(condition, undelivered)
                case Online(jid):
                    self.jid = jid
                    return False
                case AuthFailed(condition, text):
                    await self._flush()
                    raise AuthRejected(f"login refused: {condition} {text}".strip())
                case StreamErrorReceived(condition, text):
                    raise StreamFailed(f"the server ended the stream: {condition} {text}".strip())
                case StreamClosed():
                    raise StreamFailed("the server closed the stream during login")

    def _resume_failed(self, condition: str, undelivered: tuple[ET.Element, ...]) -> None:
        """The server forgot this session: it ends here; binding starts a new one."""
        log.warning(
            kv("sm-resume-failed", jid=self.jid, reason=condition, undelivered=len(undelivered))
        )
        for stanza in undelivered:
            log.warning(kv("sm-undelivered", jid=self.jid, stanza=describe(stanza)))
        self.close_reason = f"the server could not resume the session ({condition})"
        self._finish()

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        ssl_stream = trio.SSLStream(self.transport, context, server_hostname=self.client.domain)
        try:
            await ssl_stream.do_handshake()
        except trio.BrokenResourceError as exc:
            raise StreamFailed(f"TLS with the server failed: {exc.__cause__ or exc}") from None
        self.transport = ssl_stream
        self.client.tls_established()
        await self._flush()

    async def _serve_connection(self, ping_interval: float, ping_timeout: float) -> str:
        """Read and keep alive the current connection until it ends; returns why it ended."""
        self._connection_lost = trio.Event()
        self.close_reason = ""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keepalive, ping_interval, ping_timeout)
            await self._reader()
            nursery.cancel_scope.cancel()
        return self.close_reason

    async def _reader(self) -> None:
        self._reading = True
        try:
            while not self._connection_lost.is_set():
                await self._on_event(await self._next_event())
        except ProtocolError as exc:
            self.close_reason = f"the server broke the protocol ({exc})"
            with suppress(StreamFailed):  # (a stream error also ends the XEP-0198 session)
                await self._write(self.client.send_stream_error(exc))
        except StreamFailed as exc:
            self.close_reason = self.close_reason or str(exc)
        finally:
            self._reading = False
            self._connection_lost.set()
            if not self._may_resume():
                self._finish()
        await trio.aclose_forcefully(self.transport)

    async def _on_event(self, event: C2sEvent) -> None:
        match event:
            case StanzaReceived(stanza):
                if not self._requests.deliver(stanza):
                    self._incoming_send.send_nowait(stanza)
            case AckReceived():
                for answered in self._ack_waiters:
                    answered.set()
                self._ack_waiters.clear()
            case SmEnabled(resumable, max_seconds):
                log.info(kv("sm-enabled", jid=self.jid, resumable=resumable, max=max_seconds))
            case SmUnavailable(condition):
                log.warning(kv("sm-unavailable", jid=self.jid, reason=condition))
            case StreamErrorReceived(condition, text):
                self.close_reason = f"the server ended the stream: {condition} {text}".strip()
            case StreamClosed(clean):
                self.close_reason = self.close_reason or (
                    "the server closed the stream" if clean else "the connection dropped"
                )
                self._connection_lost.set()

    async def _keepalive(self, interval: float, answer_within: float) -> None:
        """Ask the server for a sign of life; no answer in time means the link is dead."""
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(answer_within) as waited:
                # An error reply or a failed write still ends the wait: the reader sees why.
                with suppress(StanzaErrorReply, StreamFailed):
                    await self._probe()
            if waited.cancelled_caught:
                self.close_reason = f"the server did not answer a ping in {answer_within:g} s"
                await trio.aclose_forcefully(self.transport)  # the reader sees EOF
                return

    async def _probe(self) -> None:
        if request := self.client.request_ack():  # XEP-0198: its <a/> proves the link alive
            answered = trio.Event()
            self._ack_waiters.append(answered)
            await self._write(request)
            await answered.wait()
        else:  # XEP-0199
            await self.request(
                st.iq("get", ET.Element(f"{{{PING_NS}}}ping"), to=self.client.domain)
            )

    def _finish(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._incoming_send.close()
        self._requests.close()

    def _attach(self, transport: trio.abc.Stream, client: ClientStream) -> None:
        """A new connection for this session; it resumes the session while negotiating."""
        self.transport, self.client = transport, client

    def _successor(self) -> C2sStream:
        """The new session bound on this connection after resumption failed."""
        fresh = C2sStream(self.transport, self.client)
        fresh.jid, fresh.resumes = self.jid, self.resumes
        return fresh

    async def aclose(self) -> None:
        """End the session: our closing tag (XEP-0198: no resumption), then the socket."""
        self.resumes = False
        if not self.closed.is_set():
            with trio.move_on_after(2):
                with suppress(StreamFailed):
                    await self._write(self.client.send_close())
                if self._reading:
                    await self._connection_lost.wait()  # the server's end, or EOF
        self._finish()
        await trio.aclose_forcefully(self.transport)


async def _connect(
    host: str,
    port: int,
    client: ClientStream,
    tls: ssl.SSLContext | None,
    open_timeout: float,
    session: C2sStream | None = None,
) -> C2sStream:
    """Open a connection and log in; with `session`, resume it (or bind its successor)."""
    try:
        with trio.fail_after(open_timeout):
            transport: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise StreamFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    if session is None:
        stream = C2sStream(transport, client)
    else:
        stream = session
        stream._attach(transport, client)
    try:
        with trio.fail_after(open_timeout):
            resumed = await stream._negotiate(tls)
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream.transport)
        raise StreamFailed(f"{host}:{port} did not log us in within {open_timeout:g} s") from None
    except ProtocolError as exc:
        await trio.aclose_forcefully(stream.transport)
        raise StreamFailed(f"login to {host}:{port} failed: {exc}") from None
    except BaseException:
        await trio.aclose_forcefully(stream.transport)
        raise
    if session is not None and not resumed:
        return stream._successor()
    return stream


@asynccontextmanager
async def open_c2s_stream(
    host: str,
    port: int,
    jid: str,
    password: str,
    *,
    tls: ssl.SSLContext | None,
    open_timeout: float = 15.0,
    ping_interval: float = 60.0,
    ping_timeout: float = 20.0,
) -> AsyncIterator[C2sStream]:
    """Log in as `jid` and yield the online stream; raises StreamFailed / AuthRejected.

    One connection: when it drops the stream ends (`run_c2s_forever` resumes sessions).
    """
    client = ClientStream(jid, password, use_tls=tls is not None)
    stream = await _connect(host, port, client, tls, open_timeout)
    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._serve_connection, ping_interval, ping_timeout)
            try:
                yield stream
            finally:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                nursery.cancel_scope.cancel()


def stream_reason(exc: StreamFailed) -> str:
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter; auth failures wait the longest."""

    initial: float = 1.0
    maximum: float = 120.0
    factor: float = 2.0

    def delays(self) -> Callable[[bool], float]:
        """A stateful `next_delay(reset)`: reset=True after a stream that got online."""
        current = self.initial

        def next_delay(reset: bool) -> float:
            nonlocal current
            if reset:
                current = self.initial
            delay = current * random.uniform(0.5, 1.0)
            current = min(current * self.factor, self.maximum)
            return delay

        return next_delay


async def _serve_session(
    stream: C2sStream, on_online: Callable[[C2sStream], Awaitable[None]]
) -> None:
    """Run `on_online` for as long as the session lives, across resumed connections."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_online, stream)
            await stream.closed.wait()
            nursery.cancel_scope.cancel()
    except Exception:  # a bug here must not take the link-local path down with it
        log.exception(kv("xmpp-account-crashed", jid=stream.jid))
        stream.resumes = False  # start over with a fresh session
        stream.close_reason = "internal error"
        stream._finish()
        await trio.aclose_forcefully(stream.transport)


class _Account:
    """run_c2s_forever's state: the live session, and since when it has been detached."""

    def __init__(self, settings: C2sSettings) -> None:
        self.settings = settings
        self.host = settings.host or split_jid(settings.jid)[1]
        self.session: C2sStream | None = None
        self.detached_since = 0.0

    def resumable_session(self) -> C2sStream | None:
        """The session to resume, if the server still keeps it (its `max`, XEP-0198 §5)."""
        session = self.session
        if session is None or session.closed.is_set() or not session.client.sm.resumable:
            return None
        window = session.client.sm.resume_max
        if window is not None and trio.current_time() - self.detached_since >= window:
            log.warning(kv("sm-resume-expired", jid=session.jid, max=window))
            session.close_reason = "the server's resumption window has passed"
            session._finish()
            return None
        return session

    async def connect(self) -> C2sStream:
        settings, previous = self.settings, self.resumable_session()
        client = ClientStream(
            settings.jid,
            settings.password,
            use_tls=settings.tls is not None,
            stream_management=previous.client.sm if previous is not None else None,
        )
        try:
            stream = await _connect(
                self.host, settings.port, client, settings.tls, settings.open_timeout, previous
            )
        except AuthRejected:
            if previous is not None:
                previous._finish()
            raise
        self.session = stream
        return stream


async def run_c2s_forever(
    settings: C2sSettings,
    on_online: Callable[[C2sStream], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
) -> None:
    """Keep `settings.jid` logged in; `on_online(stream)` runs while each session is open.

    A session that drops is resumed (XEP-0198) when the server allows: `on_online` then goes
    on with the same stream. Otherwise the next connection binds a new session.
    """
    backoff = backoff or Backoff()
    next_delay = backoff.delays()
    account = _Account(settings)
    async with trio.open_nursery() as sessions:
        try:
            while True:
                was_online = False
                previous = account.session
                try:
                    stream = await account.connect()
                except AuthRejected as exc:
                    delay = backoff.maximum
                    log.error(
                        kv(
                            "xmpp-account-auth-failed",
                            jid=settings.jid,
                            reason=str(exc),
                            retry_in=delay,
                        )
                    )
                    await trio.sleep(delay)
                    continue
                except StreamFailed as exc:
                    reason = stream_reason(exc)
                except Exception:  # a bug here must not take the link-local path down with it
                    log.exception(kv("xmpp-account-crashed", jid=settings.jid))
                    reason = "internal error"
                else:
                    was_online = True
                    if stream is not previous:
                        stream.resumes = True
                        log.info(
                            kv(
                                "xmpp-account-online",
                                jid=stream.jid,
                                server=f"{account.host}:{settings.port}",
                                tls=stream.client.secured,
                                sasl=stream.client.mechanism,
                            )
                        )
                        sessions.start_soon(_serve_session, stream, on_online)
                    reason = await stream._serve_connection(
                        settings.ping_interval, settings.ping_timeout
                    )
                    account.detached_since = trio.current_time()
                delay = next_delay(was_online)
                log.warning(
                    kv(
                        "xmpp-account-offline",
                        jid=settings.jid,
                        reason=reason,
                        retry_in=f"{delay:.1f}",
                        resumable=account.resumable_session() is not None,
                    )
                )
                await trio.sleep(delay)
        finally:
            if account.session is not None:
                with trio.CancelScope(shield=True):
                    await account.session.aclose()
            sessions.cancel_scope.cancel()
