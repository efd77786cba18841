"""FakeKodi: an in-process trio peer speaking Kodi's JSON-RPC on 127.0.0.1, for fast tests.

It serves the raw TCP socket (objects back to back, notifications pushed to every client) and
HTTP `/jsonrpc` (h11, keep-alive, optional basic auth) on ports picked by the OS. It models
just enough of Kodi — volume/mute, one player, the current window, the on-screen keyboard — to
exercise a client, records every call, and can be told to fail, stall or push notifications.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio

from agent.backends.kodi.rpc import JsonStreamSplitter, RemoteProtocolError
from agent.config import KodiConfig

HOME = (10000, "Home")
KEYBOARD = (10103, "Virtual keyboard")
#: A subset of Kodi's Input.Action enum, enough for the button table.
KNOWN_ACTIONS = frozenset(
    {"nextsubtitle", "audionextlanguage", "red", "green", "yellow", "blue"}
    | {"channelup", "channeldown", "stop"}
    | {f"number{n}" for n in range(10)}
)
VOLUME_STEP = 5
FAILED = (-32100, "Failed to execute method.")


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FakePlayer:
    player_id: int = 0
    kind: str = "audio"
    label: str = "tone.wav"
    speed: float = 1.0
    position: float = 0.0
    duration: float = 30.0


def _time(seconds: float) -> dict[str, int]:
    whole = int(seconds)
    return {
        "hours": whole // 3600,
        "minutes": whole // 60 % 60,
        "seconds": whole % 60,
        "milliseconds": round((seconds - whole) * 1000),
    }


class FakeKodi:
    def __init__(
        self,
        *,
        username: str = "",
        password: str = "",
        volume: int = 100,
        tcp_port: int = 0,
        http_port: int = 0,
    ) -> None:
        self.username = username
        self.password = password
        self.volume = volume
        self.muted = False
        self.window = HOME
        self.player: FakePlayer | None = None
        self.keyboard_text: str | None = None  # None: no keyboard open
        #: Every call received, in order: (method, params).
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: method → (code, message) answered instead of the normal result.
        self.errors: dict[str, tuple[int, str]] = {}
        #: Methods that are received but never answered (to test timeouts).
        self.unanswered: set[str] = set()
        #: Split every TCP write into pieces of this many bytes (0: whole writes).
        self.write_chunk = 0
        #: Ports to listen on (0: the OS picks; read the real ones after `serve` started).
        self.tcp_port = tcp_port
        self.http_port = http_port
        self.tcp_connections = 0
        self.http_connections = 0
        #: Each TCP client with its write lock: replies and pushes from other tasks take turns.
        self._clients: dict[trio.SocketStream, trio.Lock] = {}
        self._serving = trio.CancelScope()
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "JSONRPC.Ping": lambda p: "pong",
            "System.Suspend": lambda p: "OK",
            "Application.GetProperties": self._application_properties,
            "Application.SetVolume": self._set_volume,
            "Application.SetMute": self._set_mute,
            "GUI.GetProperties": lambda p: {
                "currentwindow": {"id": self.window[0], "label": self.window[1]}
            },
            "GUI.ActivateWindow": self._activate_window,
            "GUI.ShowNotification": lambda p: "OK",
            "Player.GetActivePlayers": self._active_players,
            "Player.GetItem": self._get_item,
            "Player.GetProperties": self._player_properties,
            "Player.Open": self._open,
            "Player.PlayPause": self._play_pause,
            "Player.Stop": self._stop,
            "Player.SetSpeed": self._set_speed,
            "Player.GoTo": self._go_to,
            "Input.ExecuteAction": self._execute_action,
            "Input.SendText": self._send_text,
            "Input.Home": self._home,
            "Input.Back": self._back,
            **{
                f"Input.{name}": lambda p: "OK"
                for name in ("Up", "Down", "Left", "Right", "Select", "ContextMenu", "Info")
            },
        }
        self._outbox: list[dict[str, Any]] = []  # notifications raised while handling a call

    # -- serving ----------------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[FakeKodi] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled or `stop()`; then close the listeners and every client."""
        tcp = (await trio.open_tcp_listeners(self.tcp_port, host="127.0.0.1"))[0]
        http = (await trio.open_tcp_listeners(self.http_port, host="127.0.0.1"))[0]
        self.tcp_port = tcp.socket.getsockname()[1]
        self.http_port = http.socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._serving = nursery.cancel_scope
                nursery.start_soon(trio.serve_listeners, self._serve_tcp_client, [tcp])
                nursery.start_soon(trio.serve_listeners, self._serve_http_client, [http])
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await tcp.aclose()
                await http.aclose()
                await self.drop_clients()

    def kodi_config(self, **changes: Any) -> KodiConfig:
        """A KodiConfig pointing at this fake (after `serve` started), with short timeouts."""
        fields: dict[str, Any] = {
            "host": "127.0.0.1",
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "call_timeout": 2.0,
            "repeat_interval": 0.01,
            "username": self.username,
            "password": self.password,
        }
        return KodiConfig(**{**fields, **changes})

    def stop(self) -> None:
        """Go away as a stopped Kodi would: refuse connections and drop the current ones."""
        self._serving.cancel()

    async def drop_clients(self) -> None:
        for stream in list(self._clients):
            await trio.aclose_forcefully(stream)

    async def notify(self, method: str, data: Any) -> None:
        """Push a notification to every TCP client, as Kodi does."""
        message = {"jsonrpc": "2.0", "method": method, "params": {"data": data, "sender": "xbmc"}}
        await self.send_raw(json.dumps(message).encode())

    async def send_raw(self, data: bytes) -> None:
        for stream in list(self._clients):
            await self._write(stream, data)

    async def _write(self, stream: trio.SocketStream, data: bytes) -> None:
        lock = self._clients.get(stream)
        if lock is None:
            return  # gone meanwhile
        step = self.write_chunk or len(data)
        try:
            async with lock:
                for start in range(0, len(data), step):
                    await stream.send_all(data[start : start + step])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._clients.pop(stream, None)

    async def _serve_tcp_client(self, stream: trio.SocketStream) -> None:
        self.tcp_connections += 1
        self._clients[stream] = trio.Lock()
        splitter = JsonStreamSplitter()
        try:
            async for data in stream:
                for raw in splitter.feed(data):
                    reply = self.handle(raw)
                    # Like Kodi: notifications a call caused go to every client, before the reply.
                    for note in self._take_notifications():
                        await self.send_raw(note)
                    if reply is not None:
                        await self._write(stream, reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError):
            pass
        finally:
            self._clients.pop(stream, None)
            await trio.aclose_forcefully(stream)

    async def _serve_http_client(self, stream: trio.SocketStream) -> None:
        self.http_connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_http_request(stream, conn)
                if request is None:
                    return
                status, answer = self._http_answer(request, body)
                headers = [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(answer))),
                ]
                await stream.send_all(
                    (conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                    + (conn.send(h11.Data(data=answer)) or b"")
                    + (conn.send(h11.EndOfMessage()) or b"")
                )
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_http_request(
        stream: trio.SocketStream, conn: h11.Connection
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            else:  # ConnectionClosed or PAUSED
                return None, b""

    def _http_answer(self, request: h11.Request, body: bytes) -> tuple[int, bytes]:
        if self.username or self.password:
            expected = base64.b64encode(f"{self.username}:{self.password}".encode())
            if (b"authorization", b"Basic " + expected) not in list(request.headers):
                return 401, b""
        if request.target != b"/jsonrpc":
            return 404, b""
        reply = self.handle(body)
        self._take_notifications()  # HTTP carries none
        return 200, reply or b""

    # -- JSON-RPC ---------------------------------------------------------------------------

    def handle(self, raw: bytes) -> bytes | None:
        """One request in, the reply Kodi would write back (None: never answered)."""
        try:
            request = json.loads(raw)
            method, params, request_id = request["method"], request.get("params", {}), request["id"]
        except (ValueError, KeyError, TypeError):
            error = {"code": -32700, "message": "Parse error."}
            return json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
        self.calls.append((method, params))
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        try:
            if method in self.errors:
                raise RpcFailure(*self.errors[method])
            if method in self.unanswered:
                return None
            handler = self._handlers.get(method)
            if handler is None:
                raise RpcFailure(-32601, "Method not found.")
            reply["result"] = handler(params)
        except RpcFailure as failure:
            reply["error"] = {"code": failure.code, "message": failure.message}
        return json.dumps(reply).encode()

    def _take_notifications(self) -> list[bytes]:
        notes = [json.dumps(message).encode() for message in self._outbox]
        self._outbox.clear()
        return notes

    def _push(self, method: str, data: Any) -> None:
        self._outbox.append(
            {"jsonrpc": "2.0", "method": method, "params": {"data": data, "sender": "xbmc"}}
        )

    def methods_called(self) -> list[str]:
        return [method for method, _ in self.calls]

    # -- the model --------------------------------------------------------------------------

    def _application_properties(self, params: dict[str, Any]) -> dict[str, Any]:
        values = {"volume": self.volume, "muted": self.muted}
        return {key: values[key] for key in params.get("properties", []) if key in values}

    def _volume_changed(self) -> None:
        self._push("Application.OnVolumeChanged", {"volume": self.volume, "muted": self.muted})

    def _set_volume(self, params: dict[str, Any]) -> int:
        value = params.get("volume")
        if value == "increment":
            self.volume = min(100, self.volume + VOLUME_STEP)
        elif value == "decrement":
            self.volume = max(0, self.volume - VOLUME_STEP)
        elif isinstance(value, int):
            self.volume = max(0, min(100, value))
        else:
            raise RpcFailure(-32602, "Invalid params.")
        self._volume_changed()
        return self.volume

    def _set_mute(self, params: dict[str, Any]) -> bool:
        value = params.get("mute")
        self.muted = (not self.muted) if value == "toggle" else bool(value)
        self._volume_changed()
        return self.muted

    def _activate_window(self, params: dict[str, Any]) -> str:
        if params.get("window") == "virtualkeyboard":
            self.window = KEYBOARD
            self.keyboard_text = ""
            self._push("Input.OnInputRequested", {"title": "", "type": "keyboard", "value": ""})
        elif params.get("window") == "home":
            self._home(params)
        return "OK"

    def _close_keyboard(self) -> None:
        if self.keyboard_text is not None:
            self.keyboard_text = None
            self.window = HOME
            self._push("Input.OnInputFinished", None)

    def _home(self, params: dict[str, Any]) -> str:
        self._close_keyboard()
        self.window = HOME
        return "OK"

    def _back(self, params: dict[str, Any]) -> str:
        self._close_keyboard()
        return "OK"

    def _send_text(self, params: dict[str, Any]) -> str:
        if self.keyboard_text is not None:
            self.keyboard_text = str(params.get("text", ""))
            if params.get("done", True):
                self._close_keyboard()
        return "OK"

    def _execute_action(self, params: dict[str, Any]) -> str:
        if params.get("action") not in KNOWN_ACTIONS:
            raise RpcFailure(-32602, "Invalid params.")
        return "OK"

    def _active_players(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.player is None:
            return []
        return [
            {"playerid": self.player.player_id, "playertype": "internal", "type": self.player.kind}
        ]

    def _require_player(self, params: dict[str, Any]) -> FakePlayer:
        if self.player is None or params.get("playerid") != self.player.player_id:
            raise RpcFailure(*FAILED)
        return self.player

    def _player_data(self, player: FakePlayer) -> dict[str, Any]:
        return {
            "item": {"type": "song"},
            "player": {"playerid": player.player_id, "speed": player.speed},
        }

    def _open(self, params: dict[str, Any]) -> str:
        file = str(params.get("item", {}).get("file", ""))
        self.player = FakePlayer(label=file.rsplit("/", 1)[-1])
        self._push("Player.OnPlay", self._player_data(self.player))
        return "OK"

    def _get_item(self, params: dict[str, Any]) -> dict[str, Any]:
        player = self._require_player(params)
        return {"item": {"label": player.label, "title": "", "type": "song"}}

    def _player_properties(self, params: dict[str, Any]) -> dict[str, Any]:
        player = self._require_player(params)
        values = {
            "speed": player.speed,
            "time": _time(player.position),
            "totaltime": _time(player.duration),
            "type": player.kind,
        }
        return {key: values[key] for key in params.get("properties", []) if key in values}

    def _play_pause(self, params: dict[str, Any]) -> dict[str, float]:
        player = self._require_player(params)
        play = params.get("play", "toggle")
        pause = player.speed != 0 if play == "toggle" else not play
        player.speed = 0.0 if pause else 1.0
        self._push("Player.OnPause" if pause else "Player.OnResume", self._player_data(player))
        return {"speed": player.speed}

    def _set_speed(self, params: dict[str, Any]) -> dict[str, float]:
        player = self._require_player(params)
        faster = params.get("speed") == "increment"
        if faster:
            player.speed = player.speed * 2 if player.speed >= 1 else 1.0
        else:
            player.speed = player.speed * 2 if player.speed <= -1 else -2.0
        self._push("Player.OnSpeedChanged", self._player_data(player))
        return {"speed": player.speed}

    def _go_to(self, params: dict[str, Any]) -> str:
        self._require_player(params)
        return "OK"

    def _stop(self, params: dict[str, Any]) -> str:
        self._require_player(params)
        self.player = None
        self._push("Player.OnStop", {"end": False, "item": {"type": "song"}})
        return "OK"
