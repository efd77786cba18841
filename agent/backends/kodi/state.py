"""Kodi's replies and notifications → TvState. Pure functions, defensive about odd data.

Kodi is trusted to be Kodi, not to be well-formed: a field of the wrong type is ignored, never
an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.backends.base import InputRequest, Playback, TvState
from agent.backends.kodi.rpc import Notification

#: What Player.GetProperties and Application.GetProperties are asked for on (re)connect.
PLAYER_PROPERTIES = ("speed", "time", "totaltime", "type")
PLAYER_ITEM_PROPERTIES = ("title",)
APPLICATION_PROPERTIES = ("volume", "muted")

NOTHING_PLAYING: Mapping[str, Any] = {
    "playback": "stopped",
    "player": None,
    "title": None,
    "position": None,
    "duration": None,
    "speed": None,
}

_PLAYER_KINDS = {"audio", "video", "picture"}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def seconds(value: Any) -> float | None:
    """Kodi's Global.Time ({hours, minutes, seconds, milliseconds}) in seconds."""
    time = _mapping(value)
    parts = [_number(time.get(key)) for key in ("hours", "minutes", "seconds", "milliseconds")]
    if all(part is None for part in parts):
        return None
    hours, minutes, secs, millis = (part or 0.0 for part in parts)
    return hours * 3600 + minutes * 60 + secs + millis / 1000


def playback_for(speed: float | None) -> Playback:
    return "paused" if speed == 0 else "playing"


def active_player(players: Any) -> tuple[int, str | None] | None:
    """(playerid, kind) of the first active player in Player.GetActivePlayers' answer."""
    if not isinstance(players, list):
        return None
    for player in players:
        player_id = _mapping(player).get("playerid")
        if isinstance(player_id, int) and not isinstance(player_id, bool):
            kind = _mapping(player).get("type")
            return player_id, kind if kind in _PLAYER_KINDS else None
    return None


def title_of(item: Any) -> str | None:
    """The best human name of a Player.GetItem item: its title, else its label (file name)."""
    item = _mapping(_mapping(item).get("item", item))
    for key in ("title", "label"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def player_changes(kind: str | None, item: Any, properties: Any) -> dict[str, Any]:
    props = _mapping(properties)
    speed = _number(props.get("speed"))
    prop_kind = props.get("type")
    return {
        "player": prop_kind if prop_kind in _PLAYER_KINDS else kind,
        "title": title_of(item),
        "speed": speed,
        "playback": playback_for(speed),
        "position": seconds(props.get("time")),
        "duration": seconds(props.get("totaltime")),
    }


def application_changes(properties: Any) -> dict[str, Any]:
    props = _mapping(properties)
    changes: dict[str, Any] = {}
    volume = _number(props.get("volume"))
    if volume is not None:
        changes["volume"] = max(0, min(100, round(volume)))
    if isinstance(props.get("muted"), bool):
        changes["muted"] = props["muted"]
    return changes


def input_request(data: Any) -> InputRequest:
    fields = _mapping(data)
    return InputRequest(
        title=str(fields.get("title") or ""),
        kind=str(fields.get("type") or "keyboard"),
        value=str(fields.get("value") or ""),
    )


def notification_player_id(note: Notification) -> int | None:
    player_id = _mapping(_mapping(note.data).get("player")).get("playerid")
    return player_id if isinstance(player_id, int) and not isinstance(player_id, bool) else None


def apply_notification(state: TvState, note: Notification) -> TvState:
    """The state after `note`. Unknown notifications leave it unchanged."""
    data = _mapping(note.data)
    player = _mapping(data.get("player"))
    speed = _number(player.get("speed"))
    match note.method:
        case "Player.OnPlay" | "Player.OnResume" | "Player.OnAVStart" | "Player.OnSpeedChanged":
            speed = 1.0 if speed is None else speed
            return state.replace(playback=playback_for(speed), speed=speed)
        case "Player.OnPause":
            return state.replace(playback="paused", speed=0.0)
        case "Player.OnStop":
            return state.replace(**NOTHING_PLAYING)
        case "Player.OnSeek":
            position = seconds(player.get("time"))
            return state if position is None else state.replace(position=position)
        case "Application.OnVolumeChanged":
            return state.replace(**application_changes(data))
        case "Input.OnInputRequested":
            return state.replace(input_request=input_request(data))
        case "Input.OnInputFinished":
            return state.replace(input_request=None)
        case _:
            return state
