"""The trio shell around `rpc.KodiRpc`: one long-lived TCP connection to Kodi's port 9090.

Calls are matched to responses by id, at most `max_in_flight` at once, each bounded by
`call_timeout`. A reader task owns the receive side and hands notifications to a callback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from agent.backends.kodi.rpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ErrorResponse,
    KodiRpc,
    Notification,
    RemoteProtocolError,
    Response,
)
from agent.net.locks import SendLock
from agent.net.tcp import rearm_quickack

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 32
_RECEIVE_SIZE = 65536


class KodiConnectionError(Exception):
    """Kodi cannot be reached, went away, or did not answer in time."""


class KodiCallTimeout(KodiConnectionError):
    pass


class KodiAuthError(Exception):
    """Kodi's web server rejected our credentials (HTTP 401)."""


class KodiRpcError(Exception):
    """Kodi understood the call and answered with a JSON-RPC error object."""

    def __init__(self, method: str, error: ErrorResponse) -> None:
        super().__init__(f"{method}: {error.describe()} (code {error.code})")
        self.method = method
        self.error = error


class KodiConnection(Protocol):
    """What the backend needs from a transport (TCP or HTTP)."""

    #: True when Kodi pushes notifications over this connection (TCP only).
    supports_notifications: bool
    #: Why the connection ended, once it has.
    close_reason: str

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def wait_closed(self) -> None:
        """Return once the connection is gone (never, for a connection-per-need transport)."""
        ...


def unreachable_message(host: str, port: int, exc: BaseException | None = None) -> str:
    detail = f" ({exc.strerror or exc})" if isinstance(exc, OSError) else ""
    return f"Kodi is not running at {host}:{port}{detail}"


class _Waiter:
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.outcome: Response | ErrorResponse | None = None  # None: connection lost


class TcpConnection:
    supports_notifications = True

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        description: str,
        call_timeout: float,
        on_notification: Callable[[Notification], None],
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        quickack: bool = True,
    ) -> None:
        self._stream = stream
        self._quickack = quickack
        self._description = description
        self._call_timeout = call_timeout
        self._on_notification = on_notification
        self._rpc = KodiRpc(max_message_bytes)
        self._send_lock = SendLock()
        self._in_flight = SendLock(trio.Semaphore(max_in_flight))
        self._waiters: dict[int, _Waiter] = {}
        self._closed = trio.Event()
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        waiter = _Waiter()
        request_id: int | None = None
        try:
            # A bare CancelScope rather than fail_after: one generator context manager less
            # on every press.
            deadline = trio.current_time() + self._call_timeout
            with trio.CancelScope(deadline=deadline) as timeout:
                async with self._in_flight:
                    self._check_open()
                    request_id, data = self._rpc.send_request(method, params)
                    self._waiters[request_id] = waiter
                    await self._send(data)
                    await waiter.done.wait()
            if timeout.cancelled_caught:
                raise KodiCallTimeout(
                    f"Kodi at {self._description} did not answer {method} "
                    f"within {self._call_timeout:g} s"
                )
        finally:
            if request_id is not None:
                self._waiters.pop(request_id, None)
                if not waiter.done.is_set():
                    self._rpc.abandon(request_id)
        outcome = waiter.outcome
        if isinstance(outcome, Response):
            return outcome.result
        if isinstance(outcome, ErrorResponse):
            raise KodiRpcError(method, outcome)
        raise KodiConnectionError(self.close_reason or "the connection to Kodi was lost")

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise KodiConnectionError(self.close_reason)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            self._check_open()
            sent = False
            try:
                await self._stream.send_all(data)
                sent = True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._mark_closed(f"lost the connection to Kodi at {self._description} ({exc})")
                raise KodiConnectionError(self.close_reason) from None
            finally:
                if not sent and not self._closed.is_set():
                    # Cancelled mid-write: a partial request would corrupt the stream.
                    self._mark_closed("a request to Kodi was interrupted while being sent")

    async def read_loop(self) -> None:
        """Receive until EOF or error; then fail every pending call. Never raises."""
        reason = f"Kodi at {self._description} closed the connection"
        try:
            while True:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    self._rpc.receive_eof()
                    break
                if self._quickack:
                    rearm_quickack(self._stream)
                for event in self._rpc.receive_data(data):
                    self._dispatch(event)
        except RemoteProtocolError as exc:
            reason = f"Kodi at {self._description} sent an invalid reply: {exc}"
            log.warning("%s; reconnecting", reason)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            reason = f"lost the connection to Kodi at {self._description} ({exc})"
        self._mark_closed(reason)
        await trio.aclose_forcefully(self._stream)

    def _dispatch(self, event: Response | ErrorResponse | Notification) -> None:
        if isinstance(event, Notification):
            try:
                self._on_notification(event)
            except Exception:
                # A notification we failed to understand must not take the connection down.
                log.exception("could not handle Kodi notification %s", event.method)
            return
        assert event.id is not None  # KodiRpc only passes on matched responses
        waiter = self._waiters.get(event.id)
        if waiter is not None:
            waiter.outcome = event
            waiter.done.set()

    async def aclose(self) -> None:
        self._mark_closed(f"the connection to Kodi at {self._description} was closed")
        await trio.aclose_forcefully(self._stream)

    def _mark_closed(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        for waiter in self._waiters.values():
            waiter.done.set()


async def connect_tcp(
    host: str,
    port: int,
    *,
    call_timeout: float,
    on_notification: Callable[[Notification], None],
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    quickack: bool = True,
) -> TcpConnection:
    """Connect to Kodi's raw JSON-RPC socket. The caller runs `read_loop()` in its nursery
    (no call can complete without it) and `aclose()`s the connection."""
    try:
        with trio.fail_after(call_timeout):
            stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise KodiConnectionError(unreachable_message(host, port, exc)) from None
    except trio.TooSlowError:
        raise KodiConnectionError(
            f"Kodi at {host}:{port} did not accept a connection within {call_timeout:g} s"
        ) from None
    if quickack:
        rearm_quickack(stream)
    return TcpConnection(
        stream,
        description=f"{host}:{port}",
        call_timeout=call_timeout,
        on_notification=on_notification,
        max_in_flight=max_in_flight,
        max_message_bytes=max_message_bytes,
        quickack=quickack,
    )


@asynccontextmanager
async def open_tcp_connection(
    host: str,
    port: int,
    *,
    call_timeout: float,
    on_notification: Callable[[Notification], None] = lambda note: None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    quickack: bool = True,
) -> AsyncIterator[TcpConnection]:
    """`connect_tcp` with its reader task, for scripts and tests. Exceptions raised inside the
    block surface wrapped in an ExceptionGroup (the reader's nursery encloses the block)."""
    connection = await connect_tcp(
        host,
        port,
        call_timeout=call_timeout,
        on_notification=on_notification,
        max_in_flight=max_in_flight,
        quickack=quickack,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.read_loop)
            yield connection
            nursery.cancel_scope.cancel()
    finally:
        await connection.aclose()
