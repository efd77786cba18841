"""Sans-IO codec for Buttons protocol v0 (`urn:buttons-agent:remote:0`).

Payload elements ⇄ typed commands and replies. It knows nothing of streams or backends:
`parse_request()` turns an iq payload into a Command (or raises CodecError with the stanza
error condition to answer), and the `*_element()` functions build what goes back.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from agent.backends.base import InputRequest, TvState
from agent.buttons.catalogue import ButtonInfo

NS = "urn:buttons-agent:remote:0"
MAX_TEXT_CHARS = 1024


def q(local: str) -> str:
    return f"{{{NS}}}{local}"


class CodecError(Exception):
    """A request we cannot accept; `condition` is the stanza error condition to reply with."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class Press:
    button: str


@dataclass(frozen=True, slots=True)
class Hold:
    button: str
    action: Literal["start", "stop"]


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    submit: bool = True


@dataclass(frozen=True, slots=True)
class ListButtons:
    pass


@dataclass(frozen=True, slots=True)
class GetState:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    pass


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    pass


Command = Press | Hold | Text | ListButtons | GetState | Subscribe | Unsubscribe

#: Which iq type each payload needs.
_IQ_TYPES: dict[str, str] = {
    "press": "set",
    "hold": "set",
    "text": "set",
    "subscribe": "set",
    "unsubscribe": "set",
    "buttons": "get",
    "state": "get",
}


def _button(payload: ET.Element) -> str:
    button = payload.get("button", "").strip()
    if not button:
        raise CodecError("bad-request", f"<{payload.tag.partition('}')[2]}/> needs a button")
    return button


def _bool(value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise CodecError("bad-request", f"expected true or false, got {value!r}")


def parse_request(iq_type: str, payload: ET.Element) -> Command:
    """The command carried by an iq's payload element (which must be in our namespace)."""
    local = payload.tag.removeprefix(f"{{{NS}}}")
    expected = _IQ_TYPES.get(local)
    if expected is None or local == payload.tag:
        raise CodecError("feature-not-implemented", f"unknown request {payload.tag}")
    if iq_type != expected:
        raise CodecError("bad-request", f"<{local}/> goes in an iq of type '{expected}'")
    match local:
        case "press":
            return Press(_button(payload))
        case "hold":
            action = payload.get("action", "")
            if action not in ("start", "stop"):
                raise CodecError("bad-request", "<hold/> needs action='start' or action='stop'")
            return Hold(_button(payload), action)  # type: ignore[arg-type]
        case "text":
            text = payload.text or ""
            if len(text) > MAX_TEXT_CHARS:
                raise CodecError(
                    "policy-violation", f"text longer than {MAX_TEXT_CHARS} characters"
                )
            return Text(text, _bool(payload.get("submit"), default=True))
        case "buttons":
            return ListButtons()
        case "state":
            return GetState()
        case "subscribe":
            return Subscribe()
        case _:
            return Unsubscribe()


# -- building requests (the phone side) --------------------------------------------------------


def request_element(command: Command) -> tuple[str, ET.Element]:
    """(iq type, payload) for a command; the inverse of parse_request."""
    match command:
        case Press(button):
            return "set", ET.Element(q("press"), {"button": button})
        case Hold(button, action):
            return "set", ET.Element(q("hold"), {"button": button, "action": action})
        case Text(text, submit):
            element = ET.Element(q("text"), {} if submit else {"submit": "false"})
            element.text = text
            return "set", element
        case ListButtons():
            return "get", ET.Element(q("buttons"))
        case GetState():
            return "get", ET.Element(q("state"))
        case Subscribe():
            return "set", ET.Element(q("subscribe"))
        case Unsubscribe():
            return "set", ET.Element(q("unsubscribe"))


# -- replies and pushes --------------------------------------------------------------------


def buttons_element(buttons: Iterable[ButtonInfo]) -> ET.Element:
    element = ET.Element(q("buttons"))
    for info in buttons:
        attrs = {"name": info.name, "label": info.label}
        if info.repeatable:
            attrs["repeatable"] = "true"
        ET.SubElement(element, q("button"), attrs)
    return element


def parse_buttons(element: ET.Element) -> list[ButtonInfo]:
    return [
        ButtonInfo(b.get("name", ""), b.get("label", ""), b.get("repeatable") == "true")
        for b in element.iter(q("button"))
        if b.get("name")
    ]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def state_element(state: TvState) -> ET.Element:
    attrs = {
        "available": "true" if state.available else "false",
        "power": "on" if state.power else "off",
        "playback": state.playback,
    }
    if state.volume is not None:
        attrs["volume"] = str(state.volume)
    if state.muted is not None:
        attrs["muted"] = "true" if state.muted else "false"
    if state.focused is not None:
        attrs["focused"] = state.focused
    if state.status_message:
        attrs["message"] = state.status_message
    element = ET.Element(q("state"), attrs)
    if state.title is not None or state.player is not None:
        item = ET.SubElement(element, q("playing"))
        for name in ("player", "title"):
            if (value := getattr(state, name)) is not None:
                item.set(name, value)
        for name in ("position", "duration", "speed"):
            if (number := getattr(state, name)) is not None and math.isfinite(number):
                item.set(name, _number(number))
    if (request := state.input_request) is not None:
        ET.SubElement(
            element,
            q("input"),
            {"title": request.title, "kind": request.kind, "value": request.value},
        )
    return element


def _optional_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_state(element: ET.Element) -> TvState:
    """The phone side's reading of a <state/> element; tolerant of missing attributes."""
    volume = element.get("volume")
    muted = element.get("muted")
    playback = element.get("playback", "stopped")
    playing = element.find(q("playing"))
    asked = element.find(q("input"))
    return TvState(
        available=element.get("available", "true") == "true",
        status_message=element.get("message", ""),
        power=element.get("power", "on") == "on",
        volume=int(volume) if volume is not None and volume.isdigit() else None,
        muted=None if muted is None else muted == "true",
        playback=playback if playback in ("playing", "paused") else "stopped",  # type: ignore[arg-type]
        player=playing.get("player") if playing is not None else None,
        title=playing.get("title") if playing is not None else None,
        position=_optional_float(playing.get("position")) if playing is not None else None,
        duration=_optional_float(playing.get("duration")) if playing is not None else None,
        speed=_optional_float(playing.get("speed")) if playing is not None else None,
        focused=element.get("focused"),
        input_request=None
        if asked is None
        else InputRequest(
            asked.get("title", ""), asked.get("kind", "keyboard"), asked.get("value", "")
        ),
    )


def pressed_element(button: str, source: str) -> ET.Element:
    return ET.Element(q("pressed"), {"button": button, "source": source})


def describe_state(state: TvState) -> str:
    """One line for humans (chat replies, the CLI)."""
    if not state.available:
        return f"unavailable: {state.status_message or 'the TV is not reachable'}"
    if not state.power:
        return "power: off"
    parts = ["power: on", f"volume: {state.volume if state.volume is not None else '?'}"]
    if state.muted:
        parts.append("muted")
    if state.playback == "stopped":
        parts.append("stopped")
    else:
        parts.append(f"{state.playback}: {state.title or '(untitled)'}")
    if state.focused:
        parts.append(f"focus: {state.focused}")
    if state.input_request is not None:
        parts.append(f"asks for text: {state.input_request.title or 'input'}")
    return ", ".join(parts)
