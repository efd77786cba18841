"""A trio client of lircd's socket: one connection, one reader task, serialized commands,
key events fanned out to subscribers, and reconnection with capped exponential backoff.

lircd has one socket per daemon; the agent keeps one connection to it for both sending IR
(the backend) and receiving decoded keys (the passthrough).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from agent.backends.lirc.protocol import (
    ConnectionClosed,
    KeyEvent,
    LircProtocol,
    RemoteProtocolError,
    Reply,
    Sighup,
    encode_command,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "/var/run/lirc/lircd"
_RECEIVE_BYTES = 4096


class LircUnavailable(Exception):
    """lircd cannot be reached (not running, restarting, or not answering)."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The client (re)connected to lircd."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


#: What subscribers receive.
ClientEvent = KeyEvent | Sighup | Connected | Disconnected

StreamOpener = Callable[[], Awaitable[trio.abc.Stream]]


def parse_address(address: str) -> tuple[str, int] | str:
    """`/path/to/socket` → path; `host:port` or `[v6]:port` → (host, port)."""
    if not address:
        raise ValueError("the lircd address is empty; use a socket path or host:port")
    if address.startswith("/") or ":" not in address:
        return address
    host, _, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"lircd address {address!r} is neither a socket path nor host:port "
            "(e.g. /var/run/lirc/lircd or 127.0.0.1:8765)"
        )
    return host, int(port_text)


def opener_for(address: str) -> StreamOpener:
    target = parse_address(address)

    async def open_stream() -> trio.abc.Stream:
        if isinstance(target, str):
            return await trio.open_unix_socket(target)
        return await trio.open_tcp_stream(*target)

    return open_stream


class _Connection:
    """One live socket plus the command waiting for its reply."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.protocol = LircProtocol()
        self.pending_command: str | None = None
        self.reply: Reply | None = None
        self.reply_arrived = trio.Event()
        self.closed = False
        self.close_reason = ""
        #: Commands whose caller gave up after sending: their replies are still coming.
        self.abandoned: deque[str] = deque()

    def expect_reply(self, command_line: str) -> None:
        self.pending_command = command_line
        self.reply = None
        self.reply_arrived = trio.Event()

    def abandon(self) -> None:
        if self.pending_command is not None:
            self.abandoned.append(self.pending_command)
            self.pending_command = None

    def deliver(self, reply: Reply) -> None:
        if self.abandoned and reply.command.split() == self.abandoned[0].split():
            self.abandoned.popleft()  # replies come in order: this one nobody awaits
            return
        if self.pending_command is None:
            raise RemoteProtocolError(f"lircd sent a reply nobody asked for: {reply.command!r}")
        if reply.command.split() != self.pending_command.split():
            raise RemoteProtocolError(
                f"lircd answered {reply.command!r} while we waited for {self.pending_command!r}"
            )
        self.pending_command = None
        self.reply = reply
        self.reply_arrived.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        self.reply_arrived.set()  # wakes a waiting command, which then sees `closed`


class LircClient:
    """Keeps a connection to lircd while `run()` runs.

    `command()` sends one command and returns lircd's Reply (SUCCESS or ERROR both return;
    the caller decides). It raises LircUnavailable when there is no connection, when lircd
    does not answer within `command_timeout` (the connection is then dropped, since a late
    reply would be matched to the next command), or when the connection drops meanwhile.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        command_timeout: float = 3.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        subscriber_buffer: int = 64,
        open_stream: StreamOpener | None = None,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self.address = address
        self._open_stream = open_stream or opener_for(address)
        self._command_timeout = command_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._subscriber_buffer = subscriber_buffer
        self._connection: _Connection | None = None
        self._command_lock = trio.Lock()
        self._subscribers: list[trio.MemorySendChannel[ClientEvent]] = []
        self._connected_event = trio.Event()
        self.last_error = "not connected yet"

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    async def wait_connected(self) -> None:
        while not self.connected:
            await self._connected_event.wait()

    def subscribe(self) -> trio.MemoryReceiveChannel[ClientEvent]:
        """A channel of key events and connection changes from now on. A subscriber that
        falls `subscriber_buffer` events behind loses the newest ones (and a warning is
        logged) rather than stalling the reader everyone shares."""
        send, receive = trio.open_memory_channel[ClientEvent](self._subscriber_buffer)
        self._subscribers.append(send)
        return receive

    async def command(self, *words: str) -> Reply:
        line = encode_command(*words)
        text = " ".join(words)
        async with self._command_lock:
            connection = self._connection
            if connection is None or connection.closed:
                raise LircUnavailable(
                    f"lircd at {self.address} is not connected: {self.last_error}"
                )
            connection.expect_reply(text)
            sent = False
            try:
                with trio.fail_after(self._command_timeout):
                    await connection.stream.send_all(line)  # one write: see encode_command
                    sent = True
                    await connection.reply_arrived.wait()
            except trio.Cancelled:
                if sent:
                    connection.abandon()  # its reply will be skipped when it comes
                else:
                    # Half a line may be on the wire; lircd would choke on the next one.
                    connection.close(f"a command to lircd at {self.address} was interrupted")
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(connection.stream)
                raise
            except trio.TooSlowError:
                reason = (
                    f"lircd at {self.address} did not answer {text!r} "
                    f"within {self._command_timeout} s"
                )
                connection.close(reason)
                await trio.aclose_forcefully(connection.stream)
                raise LircUnavailable(reason) from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                connection.close(f"lost lircd at {self.address}: {exc}")
                raise LircUnavailable(connection.close_reason) from None
            if connection.reply is None:
                raise LircUnavailable(
                    f"no reply to {text!r}: {connection.close_reason or 'connection closed'}"
                )
            return connection.reply

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, read, and reconnect forever. Reports started after the first attempt,
        whether or not it succeeded (see `connected`)."""
        delay = self._backoff_initial
        started = False
        while True:
            try:
                stream = await self._open_stream()
            except OSError as exc:
                self._lost(f"cannot connect to lircd at {self.address}: {exc}")
            else:
                connected_at = trio.current_time()
                connection = _Connection(stream)
                self._connection = connection
                self._connected_event.set()
                self._connected_event = trio.Event()
                log.info("connected to lircd at %s", self.address)
                self._publish(Connected())
                if not started:
                    task_status.started()
                    started = True
                try:
                    connection.close(await self._read_until_closed(connection))
                finally:  # also on cancellation: wake a waiting command, free the socket
                    connection.close("the lircd client stopped")
                    self._connection = None
                    await trio.aclose_forcefully(stream)
                self.last_error = ""  # so the loss is always reported
                self._lost(connection.close_reason)
                if trio.current_time() - connected_at > self._backoff_max:
                    delay = self._backoff_initial  # it was a healthy connection: retry fast
            if not started:
                task_status.started()
                started = True
            await trio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _read_until_closed(self, connection: _Connection) -> str:
        """Returns why the connection ended."""
        try:
            while not connection.closed:
                data = await connection.stream.receive_some(_RECEIVE_BYTES)
                connection.protocol.receive_data(data)
                while (event := connection.protocol.next_event()) is not None:
                    if isinstance(event, ConnectionClosed):
                        return f"lircd at {self.address} closed the connection"
                    if isinstance(event, Reply):
                        connection.deliver(event)
                    else:
                        self._publish(event)
        except RemoteProtocolError as exc:
            return f"lircd at {self.address} broke the protocol: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            return f"lost lircd at {self.address}: {exc}"
        return connection.close_reason  # closed by a command that gave up

    def _lost(self, reason: str) -> None:
        # Retries that fail the same way are one outage: report it once.
        if reason != self.last_error:
            log.warning("%s", reason)
            self._publish(Disconnected(reason))
        self.last_error = reason

    def _publish(self, event: ClientEvent) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                log.warning("a lircd event subscriber is behind; dropped %r", event)
            except trio.BrokenResourceError:
                self._subscribers.remove(channel)
