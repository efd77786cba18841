"""Client-to-server XMPP streams over trio: log in, keep alive, and reconnect with backoff.

The sans-IO `ClientStream` does the protocol; this shell owns the socket, the TLS handshake
(STARTTLS, verified against the context's CA store and the account's domain), a reader task,
XEP-0199 pings to notice a dead server, and `run_c2s_forever`, which keeps an account online.
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
from agent.net.stream import StanzaErrorReply, StreamFailed
from agent.xmpp import stanza as st
from agent.xmpp.c2s import AuthFailed, C2sEvent, ClientStream, Online, StartTls, split_jid
from agent.xmpp.connection import StanzaReceived, StreamClosed, StreamErrorReceived
from agent.xmpp.disco import PING_NS
from agent.xmpp.errors import ProtocolError

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


class C2sStream:
    """An online client stream: `send`, `request`, and `incoming` stanzas from the server."""

    def __init__(self, transport: trio.abc.Stream, client: ClientStream) -> None:
        self.transport = transport
        self.client = client
        self.jid = ""
        self.close_reason = ""
        self.closed = trio.Event()
        self._send_lock = trio.Lock()
        self._tracker = st.IqTracker()
        self._waiters: dict[str, trio.MemorySendChannel[ET.Element]] = {}
        self._incoming_send, self.incoming = trio.open_memory_channel[ET.Element](math.inf)

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        async with self._send_lock:
            try:
                await self.transport.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise StreamFailed(f"the server connection is gone ({exc})") from None

    async def _flush(self) -> None:
        await self._write(self.client.data_to_send())

    async def send(self, stanza: ET.Element) -> None:
        try:
            data = self.client.send_stanza(stanza)
        except ProtocolError as exc:
            raise StreamFailed(self.close_reason or str(exc)) from None
        await self._write(data)

    async def request(self, request: ET.Element) -> ET.Element:
        """Send an iq get/set, wait for its result; an error reply raises StanzaErrorReply."""
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

    async def _next_event(self) -> C2sEvent:
        while (event := self.client.next_event()) is None:
            try:
                data = await self.transport.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.client.receive_data(data)
            await self._flush()
            if not data and (event := self.client.next_event()) is None:
                # EOF was reported before: never spin on a dead transport.
                raise StreamFailed("the connection is closed")
        return event

    async def _negotiate(self, tls: ssl.SSLContext | None) -> None:
        self.client.start()
        await self._flush()
        while True:
            match await self._next_event():
                case StartTls():
                    assert tls is not None
                    await self._start_tls(tls)
                case Online(jid):
                    self.jid = jid
                    return
                case AuthFailed(condition, text):
                    await self._flush()
                    raise AuthRejected(f"login refused: {condition} {text}".strip())
                case StreamErrorReceived(condition, text):
                    raise StreamFailed(f"the server ended the stream: {condition} {text}".strip())
                case StreamClosed():
                    raise StreamFailed("the server closed the stream during login")

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        ssl_stream = trio.SSLStream(self.transport, context, server_hostname=self.client.domain)
        try:
            await ssl_stream.do_handshake()
        except trio.BrokenResourceError as exc:
            raise StreamFailed(f"TLS with the server failed: {exc.__cause__ or exc}") from None
        self.transport = ssl_stream
        self.client.tls_established()
        await self._flush()

    async def _reader(self) -> None:
        try:
            while not self.closed.is_set():
                await self._on_event(await self._next_event())
        except ProtocolError as exc:
            self.close_reason = f"the server broke the protocol ({exc})"
            with suppress(StreamFailed):
                await self._write(self.client.send_close())
        except StreamFailed as exc:
            self.close_reason = self.close_reason or str(exc)
        finally:
            self._finish()

    async def _on_event(self, event: C2sEvent) -> None:
        match event:
            case StanzaReceived(stanza) if self._tracker.is_reply(stanza):
                waiter = self._waiters.get(self._tracker.complete(stanza))
                if waiter is not None:
                    waiter.send_nowait(stanza)
            case StanzaReceived(stanza):
                self._incoming_send.send_nowait(stanza)
            case StreamErrorReceived(condition, text):
                self.close_reason = f"the server ended the stream: {condition} {text}".strip()
            case StreamClosed(clean):
                self.close_reason = self.close_reason or (
                    "the server closed the stream" if clean else "the connection dropped"
                )
                self._finish()

    async def _keepalive(self, interval: float, answer_within: float) -> None:
        """XEP-0199: ping the server; no answer in time means the link is dead."""
        while True:
            await trio.sleep(interval)
            ping = st.iq("get", ET.Element(f"{{{PING_NS}}}ping"), to=self.client.domain)
            with trio.move_on_after(answer_within) as waited:
                with suppress(StanzaErrorReply):  # an error reply still proves it is alive
                    await self.request(ping)
            if waited.cancelled_caught:
                self.close_reason = f"the server did not answer a ping in {answer_within:g} s"
                await self.transport.aclose()  # the reader sees EOF and ends the stream
                return

    def _finish(self) -> None:
        self.closed.set()
        self._incoming_send.close()
        for waiter in self._waiters.values():
            waiter.close()

    async def aclose(self) -> None:
        if not self.closed.is_set():
            with trio.move_on_after(2):
                with suppress(StreamFailed):
                    await self._write(self.client.send_close())
                await self.closed.wait()
        await self.transport.aclose()


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
    """Log in as `jid` and yield the online stream; raises StreamFailed / AuthRejected."""
    client = ClientStream(jid, password, use_tls=tls is not None)
    try:
        with trio.fail_after(open_timeout):
            transport: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise StreamFailed(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from None
    stream = C2sStream(transport, client)
    try:
        with trio.fail_after(open_timeout):
            await stream._negotiate(tls)
    except trio.TooSlowError:
        await stream.transport.aclose()
        raise StreamFailed(f"{host}:{port} did not log us in within {open_timeout:g} s") from None
    except ProtocolError as exc:
        await stream.transport.aclose()
        raise StreamFailed(f"login to {host}:{port} failed: {exc}") from None
    except BaseException:
        await stream.transport.aclose()
        raise
    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._reader)
            nursery.start_soon(stream._keepalive, ping_interval, ping_timeout)
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


async def run_c2s_forever(
    settings: C2sSettings,
    on_online: Callable[[C2sStream], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
) -> None:
    """Keep `settings.jid` logged in; `on_online(stream)` runs while each stream is open."""
    backoff = backoff or Backoff()
    next_delay = backoff.delays()
    host = settings.host or split_jid(settings.jid)[1]
    while True:
        was_online = False
        try:
            async with open_c2s_stream(
                host,
                settings.port,
                settings.jid,
                settings.password,
                tls=settings.tls,
                open_timeout=settings.open_timeout,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
            ) as stream:
                was_online = True
                log.info(
                    kv(
                        "xmpp-account-online",
                        jid=stream.jid,
                        server=f"{host}:{settings.port}",
                        tls=stream.client.secured,
                        sasl=stream.client.mechanism,
                    )
                )
                with single_exception():
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(on_online, stream)
                        await stream.closed.wait()
                        nursery.cancel_scope.cancel()
                reason = stream.close_reason
        except AuthRejected as exc:
            delay = backoff.maximum
            log.error(
                kv("xmpp-account-auth-failed", jid=settings.jid, reason=str(exc), retry_in=delay)
            )
            await trio.sleep(delay)
            continue
        except StreamFailed as exc:
            reason = stream_reason(exc)
        except Exception:  # a bug here must not take the link-local path down with it
            log.exception(kv("xmpp-account-crashed", jid=settings.jid))
            reason = "internal error"
        delay = next_delay(was_online)
        log.warning(
            kv("xmpp-account-offline", jid=settings.jid, reason=reason, retry_in=f"{delay:.1f}")
        )
        await trio.sleep(delay)
