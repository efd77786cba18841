"""The chat fallback: plain words typed into any XMPP chat client, as commands.

`pause`, `volume up`, `vol+`, `ok` … run a button; `type hello` enters text; `state` and
`help` answer in words. Parsing is pure; the dispatcher runs the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.buttons.catalogue import CATALOGUE, ButtonInfo

ALIASES = {
    "ok": "select",
    "enter": "select",
    "play/pause": "play_pause",
    "playpause": "play_pause",
    "toggle": "play_pause",
    "vol+": "volume_up",
    "vol-": "volume_down",
    "louder": "volume_up",
    "quieter": "volume_down",
    "ff": "fast_forward",
    "forward": "fast_forward",
    "rew": "rewind",
    "menu": "context_menu",
    "ch+": "channel_up",
    "ch-": "channel_down",
    "skip": "next",
    "prev": "previous",
    "subs": "subtitles",
    "audio": "audio_track",
    "unmute": "mute",
    "vol up": "volume_up",
    "vol down": "volume_down",
}


@dataclass(frozen=True, slots=True)
class ChatPress:
    button: str


@dataclass(frozen=True, slots=True)
class ChatText:
    text: str


@dataclass(frozen=True, slots=True)
class ChatHelp:
    pass


@dataclass(frozen=True, slots=True)
class ChatState:
    pass


@dataclass(frozen=True, slots=True)
class ChatUnknown:
    said: str


ChatCommand = ChatPress | ChatText | ChatHelp | ChatState | ChatUnknown


def parse_chat(body: str) -> ChatCommand:
    said = " ".join(body.split())
    lowered = said.lower()
    if lowered in ("help", "?", "buttons"):
        return ChatHelp()
    if lowered in ("state", "status", "what's on", "now playing"):
        return ChatState()
    for prefix in ("type ", "text ", "say "):
        if lowered.startswith(prefix):
            return ChatText(said[len(prefix) :])
    if lowered in ALIASES:
        return ChatPress(ALIASES[lowered])
    name = lowered.replace(" ", "_").replace("-", "_")
    if name.isdigit() and len(name) == 1:
        name = f"digit_{name}"
    if name in CATALOGUE:
        return ChatPress(name)
    return ChatUnknown(said)


def help_text(buttons: Iterable[ButtonInfo]) -> str:
    names = ", ".join(info.name for info in buttons)
    return (
        f"Type a button name to press it: {names}. "
        "Also: 'type <words>' enters text, 'state' tells what the TV is doing."
    )
