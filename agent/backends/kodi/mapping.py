"""Which Kodi JSON-RPC call performs each Buttons button (the table in docs/kodi.md).

Pure data: the backend adds `playerid` to calls that act on the active player.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.buttons.catalogue import ALL_BUTTONS


@dataclass(frozen=True, slots=True)
class KodiCall:
    method: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The call acts on the active player (Player.*): the backend adds its `playerid`.
    needs_player: bool = False

    def with_player(self, player_id: int) -> dict[str, Any]:
        return {**self.params, "playerid": player_id}


def _input(method: str) -> KodiCall:
    return KodiCall(f"Input.{method}")


def _player(method: str, **params: Any) -> KodiCall:
    return KodiCall(f"Player.{method}", MappingProxyType(params), needs_player=True)


def execute_action(action: str) -> KodiCall:
    """A Kodi action by name (the `Input.Action` enum: see JSONRPC.Introspect)."""
    return KodiCall("Input.ExecuteAction", MappingProxyType({"action": action}))


_NAVIGATION = {
    "up": _input("Up"),
    "down": _input("Down"),
    "left": _input("Left"),
    "right": _input("Right"),
    "select": _input("Select"),
    "back": _input("Back"),
    "home": _input("Home"),
    "context_menu": _input("ContextMenu"),
    "info": _input("Info"),
}

_PLAYBACK = {
    "play_pause": _player("PlayPause"),
    "play": _player("PlayPause", play=True),
    "pause": _player("PlayPause", play=False),
    "stop": _player("Stop"),
    "next": _player("GoTo", to="next"),
    "previous": _player("GoTo", to="previous"),
    "rewind": _player("SetSpeed", speed="decrement"),
    "fast_forward": _player("SetSpeed", speed="increment"),
}

_AUDIO = {
    "volume_up": KodiCall("Application.SetVolume", MappingProxyType({"volume": "increment"})),
    "volume_down": KodiCall("Application.SetVolume", MappingProxyType({"volume": "decrement"})),
    "mute": KodiCall("Application.SetMute", MappingProxyType({"mute": "toggle"})),
}

#: Buttons Kodi performs as a named action: colour keys, digits, channels, tracks.
ACTIONS: Mapping[str, str] = MappingProxyType(
    {
        "subtitles": "nextsubtitle",
        "audio_track": "audionextlanguage",
        "red": "red",
        "green": "green",
        "yellow": "yellow",
        "blue": "blue",
        "channel_up": "channelup",
        "channel_down": "channeldown",
        **{f"digit_{n}": f"number{n}" for n in range(10)},
    }
)

#: Every button except `power`, whose action is configured (see `button_calls`).
BUTTON_CALLS: Mapping[str, KodiCall] = MappingProxyType(
    {
        **_NAVIGATION,
        **_PLAYBACK,
        **_AUDIO,
        **{button: execute_action(action) for button, action in ACTIONS.items()},
    }
)

assert set(BUTTON_CALLS) | {"power"} == ALL_BUTTONS, "the mapping must cover the catalogue"


def power_call(power_action: str) -> KodiCall:
    """`power_action` is a method without parameters when it has a dot ("System.Suspend",
    "System.Shutdown"), else an Input.Action name. Kodi 20's Input.Action enum has no
    power or CEC action, so on a TV the method form is the useful one."""
    if "." in power_action:
        return KodiCall(power_action)
    return execute_action(power_action)


def button_calls(power_action: str) -> Mapping[str, KodiCall]:
    """The full table for a configuration: `power` is present only when an action is set."""
    if not power_action:
        return BUTTON_CALLS
    return MappingProxyType({**BUTTON_CALLS, "power": power_call(power_action)})
