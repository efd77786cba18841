"""The canonical button names of Buttons protocol v0 and their human labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ButtonInfo:
    name: str
    label: str
    #: Buttons that make sense to auto-repeat while held (navigation, volume, seeking).
    repeatable: bool = False


def _digits() -> list[ButtonInfo]:
    return [ButtonInfo(f"digit_{n}", str(n)) for n in range(10)]


CATALOGUE: dict[str, ButtonInfo] = {
    info.name: info
    for info in [
        ButtonInfo("power", "Power"),
        ButtonInfo("up", "Up", repeatable=True),
        ButtonInfo("down", "Down", repeatable=True),
        ButtonInfo("left", "Left", repeatable=True),
        ButtonInfo("right", "Right", repeatable=True),
        ButtonInfo("select", "OK"),
        ButtonInfo("back", "Back"),
        ButtonInfo("home", "Home"),
        ButtonInfo("context_menu", "Menu"),
        ButtonInfo("info", "Info"),
        ButtonInfo("play_pause", "Play/Pause"),
        ButtonInfo("play", "Play"),
        ButtonInfo("pause", "Pause"),
        ButtonInfo("stop", "Stop"),
        ButtonInfo("next", "Next"),
        ButtonInfo("previous", "Previous"),
        ButtonInfo("rewind", "Rewind", repeatable=True),
        ButtonInfo("fast_forward", "Fast forward", repeatable=True),
        ButtonInfo("volume_up", "Volume +", repeatable=True),
        ButtonInfo("volume_down", "Volume -", repeatable=True),
        ButtonInfo("mute", "Mute"),
        ButtonInfo("channel_up", "Channel +", repeatable=True),
        ButtonInfo("channel_down", "Channel -", repeatable=True),
        *_digits(),
        ButtonInfo("red", "Red"),
        ButtonInfo("green", "Green"),
        ButtonInfo("yellow", "Yellow"),
        ButtonInfo("blue", "Blue"),
        ButtonInfo("subtitles", "Subtitles"),
        ButtonInfo("audio_track", "Audio track"),
    ]
}

ALL_BUTTONS: frozenset[str] = frozenset(CATALOGUE)


def is_known(name: str) -> bool:
    return name in CATALOGUE


def in_catalogue_order(names: Iterable[str]) -> list[ButtonInfo]:
    """The given button names as ButtonInfo, in the catalogue's (remote-like) order."""
    wanted = set(names)
    return [info for name, info in CATALOGUE.items() if name in wanted]
