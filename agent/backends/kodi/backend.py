"""KodiBackend: Buttons → Kodi JSON-RPC, with live state from Kodi's notifications.

`run()` keeps one connection to Kodi alive (raw TCP by default, HTTP /jsonrpc by config) and
reconnects with capped exponential backoff. With `discover`, the address comes from Kodi's
mDNS announcement (agent/backends/kodi/discovery.py) before every attempt, and a Kodi that
announces a new address is followed there at once. While Kodi is away the backend stays usable:
`state()` says `available=False` with a human reason and presses raise BackendUnavailable.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from agent.backends.base import (
    BackendError,
    BackendNotAuthorized,
    BackendRefused,
    BackendUnavailable,
    ButtonNotSupported,
    TvState,
)
from agent.backends.common import StateHub, repeat_while_held
from agent.backends.kodi import state as kodi_state
from agent.backends.kodi.discovery import HTTP_SERVICE, TCP_SERVICE, KodiAddress, KodiFinder
from agent.backends.kodi.http import HttpConnection
from agent.backends.kodi.mapping import button_calls
from agent.backends.kodi.rpc import Notification
from agent.backends.kodi.transport import (
    KodiAuthError,
    KodiConnection,
    KodiConnectionError,
    KodiRpcError,
    TcpConnection,
    connect_tcp,
)
from agent.config import KodiConfig

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.25
MAX_BACKOFF = 8.0
#: HTTP carries no notifications: how often the state is fetched instead.
HTTP_POLL_INTERVAL = 1.0
#: GUI window ids of Kodi's text and number input dialogs.
_INPUT_WINDOWS = {10103: "keyboard", 10109: "numeric"}
_PLAYER_STARTED = {"Player.OnPlay", "Player.OnAVStart", "Player.OnResume"}


#: How long the pairing PIN stays on screen (Kodi's toast; the window itself lasts 120 s).
NOTIFICATION_MILLISECONDS = 15_000


class KodiBackend:
    """Implements the Backend protocol against a real Kodi (JSON-RPC v13, Kodi 19–21)."""

    name = "kodi"

    def __init__(
        self,
        config: KodiConfig,
        *,
        max_backoff: float = MAX_BACKOFF,
        poll_interval: float = HTTP_POLL_INTERVAL,
        mdns_interfaces: list[str] | None = None,
    ) -> None:
        self._config = config
        self._calls = button_calls(config.power_action)
        self._max_backoff = max_backoff
        self._poll_interval = poll_interval
        http = config.transport == "http"
        self._finder: KodiFinder | None = None
        self._configured: KodiAddress | None = None
        if config.discover:
            service = HTTP_SERVICE if http else TCP_SERVICE
            self._finder = KodiFinder(service, config.instance, mdns_interfaces)
            first_status = self._finder.describe()
        else:
            port = config.http_port if http else config.tcp_port
            self._configured = KodiAddress(config.host, port)
            first_status = f"connecting to Kodi at {self._configured}"
        self._target: KodiAddress | None = self._configured
        self._hub = StateHub(TvState(available=False, status_message=first_status))
        self._connection: KodiConnection | None = None
        self._tasks: trio.Nursery | None = None  # lives as long as the current connection
        self._player_id: int | None = None
        self._down_error: type[BackendError] = BackendUnavailable
        self._task_status: trio.TaskStatus[None] | None = None

    # -- Backend protocol -------------------------------------------------------------------

    def buttons(self) -> frozenset[str]:
        return frozenset(self._calls)

    def state(self) -> TvState:
        return self._hub.current

    def state_changes(self) -> AsyncIterator[TvState]:
        return self._hub.changes()

    @property
    def address(self) -> str:
        """Where Kodi is (or was last), for messages."""
        return str(self._target) if self._target is not None else "(not found yet)"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Started once the first attempt is over, connected or not.
        self._task_status = task_status
        async with trio.open_nursery() as nursery:
            if self._finder is not None:
                await nursery.start(self._finder.run)
            await self._keep_connected()

    async def _keep_connected(self) -> None:
        backoff = INITIAL_BACKOFF
        while True:
            reason, was_up = await self._session()
            self._go_down(reason)
            if was_up:
                backoff = INITIAL_BACKOFF
            self._report_started()
            with trio.move_on_after(backoff):
                if self._finder is not None:
                    await self._finder.wait_changed()  # a (new) announcement: try at once
                else:
                    await trio.sleep_forever()
            backoff = min(backoff * 2, self._max_backoff)

    async def press(self, button: str) -> None:
        call = self._calls.get(button)
        if call is None:
            if button == "power":
                raise ButtonNotSupported(
                    "Kodi has no power action configured "
                    "(set kodi.power_action, e.g. 'System.Suspend')"
                )
            raise ButtonNotSupported(f"Kodi has no {button!r} button")
        connection = self._require_connection()
        params: Mapping[str, Any] = call.params
        if call.needs_player:
            params = call.with_player(await self._active_player_id(connection, button))
        await self._call(connection, call.method, params)

    def hold(self, button: str) -> AbstractAsyncContextManager[None]:
        return repeat_while_held(lambda: self.press(button), interval=self._config.repeat_interval)

    async def send_text(self, text: str, *, submit: bool = True) -> None:
        connection = self._require_connection()
        if connection.supports_notifications and self._hub.current.input_request is None:
            raise BackendRefused("Kodi is not asking for text (open a search or keyboard first)")
        await self._call(connection, "Input.SendText", {"text": text, "done": submit})

    # -- connection lifecycle ---------------------------------------------------------------

    async def _session(self) -> tuple[str, bool]:
        """Connect, refresh, serve until the connection ends: (why it ended, was it up)."""
        target = self._configured if self._finder is None else self._finder.current()
        if target is None:
            assert self._finder is not None
            return f"{self._finder.describe()}: none found yet", False
        self._target = target
        try:
            connection = await self._open(target)
        except KodiConnectionError as exc:
            return str(exc), False
        moved: list[KodiAddress] = []
        try:
            with trio.CancelScope() as session_scope:
                async with trio.open_nursery() as nursery:
                    if isinstance(connection, TcpConnection):
                        nursery.start_soon(connection.read_loop)
                    if self._finder is not None:
                        follow = self._follow_moves
                        nursery.start_soon(follow, self._finder, target, session_scope, moved)
                    reason, was_up = await self._serve(connection, nursery)
                    nursery.cancel_scope.cancel()
        finally:
            self._connection = None
            self._tasks = None
            with trio.CancelScope(shield=True):
                await connection.aclose()
        if moved:
            return f"Kodi {target} now announces {moved[0]}", True
        return reason, was_up

    async def _follow_moves(
        self,
        finder: KodiFinder,
        target: KodiAddress,
        session: trio.CancelScope,
        moved: list[KodiAddress],
    ) -> None:
        """End the session when the chosen Kodi announces another address (DHCP, new port)."""
        while True:
            await finder.wait_changed()
            now = finder.current()
            if now is not None and now != target:
                log.info("Kodi %s now announces %s: reconnecting", target, now)
                moved.append(now)
                session.cancel()
                return

    async def _open(self, target: KodiAddress) -> TcpConnection | HttpConnection:
        config = self._config
        if config.transport == "http":
            return HttpConnection(
                target.host,
                target.port,
                username=config.username,
                password=config.password,
                call_timeout=config.call_timeout,
            )
        return await connect_tcp(
            target.host,
            target.port,
            call_timeout=config.call_timeout,
            on_notification=self._on_notification,
        )

    async def _serve(self, connection: KodiConnection, nursery: trio.Nursery) -> tuple[str, bool]:
        try:
            await self._refresh(connection)
        except (KodiConnectionError, KodiAuthError, KodiRpcError) as exc:
            return self._describe_failure(exc), False
        self._connection = connection
        self._tasks = nursery
        self._down_error = BackendUnavailable
        log.info("connected to Kodi at %s", self.address)
        self._report_started()
        if connection.supports_notifications:
            await connection.wait_closed()
            return connection.close_reason, True
        while True:  # HTTP: no notifications, so poll
            await trio.sleep(self._poll_interval)
            try:
                await self._refresh(connection)
            except (KodiConnectionError, KodiAuthError, KodiRpcError) as exc:
                return self._describe_failure(exc), True

    def _report_started(self) -> None:
        if self._task_status is not None:
            self._task_status.started()
            self._task_status = None

    def _describe_failure(self, exc: Exception) -> str:
        if isinstance(exc, KodiAuthError):
            if self._down_error is not BackendNotAuthorized:
                log.error("%s", exc)  # once per outage, not once per retry
            self._down_error = BackendNotAuthorized
        elif isinstance(exc, KodiRpcError):
            return f"Kodi at {self.address} refused to report its state: {exc}"
        return str(exc)

    def _go_down(self, reason: str) -> None:
        was_available = self._hub.current.available
        self._player_id = None
        self._hub.publish(TvState(available=False, status_message=reason))
        if was_available:
            log.warning("Kodi is unavailable: %s", reason)

    def _require_connection(self) -> KodiConnection:
        if self._connection is None:
            raise self._down_error(self._hub.current.status_message or "Kodi is unavailable")
        return self._connection

    async def _call(
        self, connection: KodiConnection, method: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """One call, with transport errors mapped to the Backend protocol's errors."""
        try:
            return await connection.call(method, params)
        except KodiRpcError as exc:
            raise BackendRefused(f"Kodi refused {method}: {exc.error.describe()}") from None
        except KodiAuthError as exc:
            if self._down_error is not BackendNotAuthorized:
                log.error("%s", exc)
            self._down_error = BackendNotAuthorized
            raise BackendNotAuthorized(str(exc)) from None
        except KodiConnectionError as exc:
            raise BackendUnavailable(str(exc)) from None

    async def notify(self, title: str, message: str, *, image: str = "") -> None:
        """Show a notification on the TV (e.g. the pairing PIN): GUI.ShowNotification."""
        params: dict[str, Any] = {
            "title": title,
            "message": message,
            "displaytime": NOTIFICATION_MILLISECONDS,
        }
        if image:
            params["image"] = image  # a path Kodi can read, or info/warning/error
        await self._call(self._require_connection(), "GUI.ShowNotification", params)

    # -- state ------------------------------------------------------------------------------

    async def _active_player_id(self, connection: KodiConnection, button: str) -> int:
        if self._player_id is None:
            # The cache follows notifications; ask once in case one is still on its way (or
            # this transport has none).
            found = kodi_state.active_player(
                await self._call(connection, "Player.GetActivePlayers")
            )
            self._player_id = None if found is None else found[0]
        if self._player_id is None:
            raise BackendRefused(f"nothing is playing in Kodi, so {button!r} has nothing to act on")
        return self._player_id

    async def _refresh(self, connection: KodiConnection) -> None:
        """Fetch the whole state (on connect, and on every HTTP poll)."""
        application = await connection.call(
            "Application.GetProperties", {"properties": list(kodi_state.APPLICATION_PROPERTIES)}
        )
        window = await connection.call("GUI.GetProperties", {"properties": ["currentwindow"]})
        player = await self._fetch_player(connection)
        current = window.get("currentwindow") if isinstance(window, dict) else None
        window_id = current.get("id") if isinstance(current, dict) else None
        dialog = _INPUT_WINDOWS.get(window_id) if isinstance(window_id, int) else None
        previous = self._hub.current.input_request
        if dialog is None:
            request = None
        elif previous is not None:
            request = previous  # keep the title/value Kodi's notification gave
        else:
            request = kodi_state.input_request({"type": dialog})
        self._hub.publish(
            TvState(
                available=True,
                **kodi_state.application_changes(application),
                **player,
                input_request=request,
            )
        )

    async def _fetch_player(self, connection: KodiConnection) -> dict[str, Any]:
        found = kodi_state.active_player(await connection.call("Player.GetActivePlayers"))
        self._player_id = None if found is None else found[0]
        if found is None:
            return dict(kodi_state.NOTHING_PLAYING)
        player_id, kind = found
        item = await connection.call(
            "Player.GetItem",
            {"playerid": player_id, "properties": list(kodi_state.PLAYER_ITEM_PROPERTIES)},
        )
        properties = await connection.call(
            "Player.GetProperties",
            {"playerid": player_id, "properties": list(kodi_state.PLAYER_PROPERTIES)},
        )
        return kodi_state.player_changes(kind, item, properties)

    async def _refresh_player(self, connection: KodiConnection) -> None:
        try:
            changes = await self._fetch_player(connection)
        except (KodiConnectionError, KodiRpcError, KodiAuthError) as exc:
            log.debug("could not fetch the player after a notification: %s", exc)
            return
        if self._connection is connection:
            self._hub.update(**changes)

    def _on_notification(self, note: Notification) -> None:
        self._hub.publish(kodi_state.apply_notification(self._hub.current, note))
        if note.method == "Player.OnStop":
            self._player_id = None
        elif note.method in _PLAYER_STARTED:
            player_id = kodi_state.notification_player_id(note)
            if player_id is not None:
                self._player_id = player_id
            # The notification names no title or duration: fetch them.
            if self._tasks is not None and self._connection is not None:
                self._tasks.start_soon(self._refresh_player, self._connection)
