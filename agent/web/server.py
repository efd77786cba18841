"""The web remote's server: the page over HTTP(S), XMPP over WebSocket, pairing by token.

Routes:
  GET  /, /app.js, …   the page (package data, read once at start)
  GET  /session        200 {"paired": true, "peer": …} or 401: lets the page tell
                       "not paired / revoked" from "Wi-Fi dropped"
  POST /pair           body: the token from the QR code → Set-Cookie with the credential
  GET  /xmpp-websocket the RFC 7395 endpoint (subprotocol `xmpp`), paired browsers only

h11 reads every request; an upgrade is handed, with its bytes, to trio-websocket, which owns
the WebSocket from the handshake on. Each WebSocket is one `dispatcher.session(…)`.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import h11
import trio
from trio_websocket import wrap_server_stream

from agent.dispatch import Dispatcher
from agent.logs import kv
from agent.net.listen import open_listeners
from agent.web.auth import WebAuth
from agent.web.config import WebConfig
from agent.web.http import (
    COOKIE_NAME,
    HttpConnection,
    HttpError,
    ReplayStream,
    Response,
    cookie,
    credential_cookie,
    header,
    header_tokens,
    load_assets,
    request_bytes,
)
from agent.web.ratelimit import RateLimiter
from agent.web.socket import Timeouts, XmppWebSocket
from agent.xmpp.framing import SUBPROTOCOL
from agent.xmpp.parser import Limits

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/xmpp-websocket"
#: Waiting for a request head on an idle keep-alive connection.
REQUEST_TIMEOUT = 30.0
#: The TLS handshake must finish within this time.
TLS_HANDSHAKE_TIMEOUT = 10.0


class WebServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        config: WebConfig,
        auth: WebAuth,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.config = config
        self.auth = auth
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts(idle=config.idle_timeout)
        self.assets = load_assets()
        clock = trio.current_time
        self._requests = RateLimiter(config.requests_burst, config.requests_per_second, clock)
        self._pairings = RateLimiter(config.pairing_burst, config.pairing_per_minute / 60, clock)
        self._sockets_per_address: Counter[str] = Counter()
        self._shutdown = trio.Event()
        self.ports: list[int] = []
        self._tls = self._tls_context()

    @property
    def secure(self) -> bool:
        return self._tls is not None

    @property
    def open_sockets(self) -> int:
        return sum(self._sockets_per_address.values())

    def _tls_context(self) -> ssl.SSLContext | None:
        if not (self.config.certfile or self.config.keyfile):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.certfile, self.config.keyfile or None)
        context.set_alpn_protocols(["http/1.1"])
        return context

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
                        self._serve_connection, listeners, handler_nursery=nursery
                    )

            nursery.start_soon(accept_until_shutdown)
            log.info(kv("web-ready", ports=self.ports, tls=self.secure))
            task_status.started(self.ports)
            await self._shutdown.wait()
            listen_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            # WebSockets see the shutdown event and close; plain HTTP requests finish.
            nursery.cancel_scope.deadline = trio.current_time() + self.timeouts.close * 2

    def shutdown(self) -> None:
        self._shutdown.set()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        return await open_listeners(self.config.port, self.config.listen, what="web")

    # -- one TCP connection ---------------------------------------------------------------

    async def _serve_connection(self, socket_stream: trio.SocketStream) -> None:
        address = str(socket_stream.socket.getpeername()[0])
        stream: trio.abc.Stream = socket_stream
        try:
            if self._tls is not None:
                stream = trio.SSLStream(socket_stream, self._tls, server_side=True)
                with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                    await stream.do_handshake()
            await self._serve_requests(HttpConnection(stream), address)
        except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            log.info(kv("web-connection-dropped", address=address, error=type(exc).__name__))
        finally:
            with trio.move_on_after(self.timeouts.close) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _serve_requests(self, http: HttpConnection, address: str) -> None:
        while True:
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    request = await http.next_request()
                if request is None:
                    return
                if not self._requests.allow(address):
                    raise HttpError(429, "too many requests; slow down")
                path = urlsplit(request.target.decode("latin-1")).path
                if path == WEBSOCKET_PATH and request.method == b"GET":
                    await self._upgrade(http, request, address)
                    return
                body = await http.read_body()
                response = await self._route(request, path, body, address)
            except HttpError as exc:
                await http.send(Response.text(exc.status, exc.message), close=exc.close)
                if exc.close:
                    return
                continue
            await http.send(response)
            if not http.can_continue:
                return

    async def _route(self, request: h11.Request, path: str, body: bytes, address: str) -> Response:
        if request.method == b"POST" and path == "/pair":
            return await self._pair(request, body, address)
        if request.method != b"GET":
            raise HttpError(405, "method not allowed", close=False)
        if path == "/session":
            peer = await self._peer_of(request)
            if peer is None:
                return Response.json(401, {"paired": False})
            return Response.json(200, {"paired": True, "peer": peer})
        asset = self.assets.get(path)
        if asset is None:
            raise HttpError(404, "not found", close=False)
        return Response(200, asset.body, asset.content_type)

    # -- pairing and credentials ----------------------------------------------------------

    def _origin_allowed(self, request: h11.Request) -> bool:
        """A browser's Origin must be this very site (what it sent in Host) or configured."""
        origin = header(request, b"origin")
        if origin is None:
            return False
        host = header(request, b"host") or ""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        expected_scheme = "https" if self.secure else "http"
        if parts.netloc == host and parts.scheme == expected_scheme:
            return True
        return parts.netloc in self.config.allowed_origins

    async def _peer_of(self, request: h11.Request) -> str | None:
        secret = cookie(request, COOKIE_NAME)
        return None if not secret else await self.auth.check(secret)

    async def _pair(self, request: h11.Request, body: bytes, address: str) -> Response:
        if not self._origin_allowed(request):
            raise HttpError(403, "pairing is only possible from the remote's own page")
        if not self._pairings.allow(address):
            raise HttpError(429, "too many pairing attempts; wait a minute")
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=4)
        token = (fields.get("token") or [""])[0]
        label = (header(request, b"user-agent") or "browser")[:80]
        credential = await self.auth.redeem(token, label) if token else None
        if credential is None:
            log.warning(kv("web-pairing-refused", address=address))
            raise HttpError(403, "this pairing code is not valid (any more)", close=False)
        log.info(kv("web-paired", address=address, peer=credential.peer))
        max_age = self.config.credential_days * 86400
        set_cookie = credential_cookie(credential.secret, max_age=max_age, secure=self.secure)
        return Response.json(
            200, {"paired": True, "peer": credential.peer}, headers=[(b"set-cookie", set_cookie)]
        )

    # -- the WebSocket --------------------------------------------------------------------

    async def _check_upgrade(self, request: h11.Request, address: str) -> str:
        """The peer name of a legitimate upgrade; raises HttpError for any other."""
        if "websocket" not in header_tokens(request, b"upgrade"):
            raise HttpError(426, "this endpoint speaks WebSocket only")
        if SUBPROTOCOL not in header_tokens(request, b"sec-websocket-protocol"):
            raise HttpError(400, f"the WebSocket subprotocol must be {SUBPROTOCOL!r} (RFC 7395)")
        if not self._origin_allowed(request):
            raise HttpError(403, "cross-origin WebSocket refused")
        peer = await self._peer_of(request)
        if peer is None:
            raise HttpError(403, "this browser is not paired (scan the code on the TV)")
        if self._sockets_per_address[address] >= self.config.max_sockets_per_address:
            raise HttpError(429, "too many open remotes from your address")
        return peer

    async def _upgrade(self, http: HttpConnection, request: h11.Request, address: str) -> None:
        try:
            peer = await self._check_upgrade(request, address)
        except HttpError as exc:
            log.warning(kv("web-upgrade-refused", address=address, status=exc.status))
            await http.send(Response.text(exc.status, exc.message), close=True)
            return
        replay = ReplayStream(request_bytes(request) + http.trailing_data(), http.stream)
        self._sockets_per_address[address] += 1
        try:
            async with trio.open_nursery() as nursery:
                ws_request = await wrap_server_stream(
                    nursery, replay, max_message_size=self.limits.max_stanza_bytes
                )
                ws = await ws_request.accept(subprotocol=SUBPROTOCOL)
                log.info(kv("ws-opened", address=address, peer=peer))
                socket = XmppWebSocket(
                    ws,
                    dispatcher=self.dispatcher,
                    peer=peer,
                    address=address,
                    limits=self.limits,
                    timeouts=self.timeouts,
                    shutdown=self._shutdown,
                )
                reason = await socket.run()
                log.info(kv("ws-closed", address=address, peer=peer, reason=reason))
                nursery.cancel_scope.cancel()
        finally:
            self._sockets_per_address[address] -= 1
            if not self._sockets_per_address[address]:
                del self._sockets_per_address[address]
