"""LIRC key names ↔ canonical Buttons names.

lircd.conf files written for Linux (and every `irrecord --namespace` remote) name keys after
the kernel's input codes: KEY_POWER, KEY_VOLUMEUP, KEY_OK … The default table maps those to
Buttons names; `KeyBinding`s from the config add or override entries, for all remotes or
for one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.buttons.catalogue import ALL_BUTTONS

#: Button → LIRC key names. The first name is the one sent; all of them are understood
#: when received (remotes disagree on OK vs ENTER, BACK vs EXIT …).
DEFAULT_KEYS: Mapping[str, tuple[str, ...]] = {
    "power": ("KEY_POWER",),
    "up": ("KEY_UP",),
    "down": ("KEY_DOWN",),
    "left": ("KEY_LEFT",),
    "right": ("KEY_RIGHT",),
    "select": ("KEY_OK", "KEY_ENTER", "KEY_SELECT"),
    "back": ("KEY_BACK", "KEY_EXIT", "KEY_ESC"),
    "home": ("KEY_HOME", "KEY_HOMEPAGE"),
    "context_menu": ("KEY_MENU", "KEY_CONTEXT_MENU"),
    "info": ("KEY_INFO",),
    "play_pause": ("KEY_PLAYPAUSE",),
    "play": ("KEY_PLAY",),
    "pause": ("KEY_PAUSE",),
    "stop": ("KEY_STOP", "KEY_STOPCD"),
    "next": ("KEY_NEXT", "KEY_NEXTSONG"),
    "previous": ("KEY_PREVIOUS", "KEY_PREVIOUSSONG"),
    "rewind": ("KEY_REWIND",),
    "fast_forward": ("KEY_FASTFORWARD", "KEY_FORWARD"),
    "volume_up": ("KEY_VOLUMEUP",),
    "volume_down": ("KEY_VOLUMEDOWN",),
    "mute": ("KEY_MUTE",),
    "channel_up": ("KEY_CHANNELUP",),
    "channel_down": ("KEY_CHANNELDOWN",),
    **{f"digit_{n}": (f"KEY_{n}", f"KEY_NUMERIC_{n}") for n in range(10)},
    "red": ("KEY_RED",),
    "green": ("KEY_GREEN",),
    "yellow": ("KEY_YELLOW",),
    "blue": ("KEY_BLUE",),
    "subtitles": ("KEY_SUBTITLE",),
    "audio_track": ("KEY_AUDIO", "KEY_LANGUAGE"),
}


class KeyMapError(ValueError):
    """A key binding names an unknown button or an unusable key."""


@dataclass(frozen=True, slots=True)
class KeyBinding:
    """One config entry: `button` is sent as / received from `key`.

    `remote` limits it to one lircd.conf remote; empty means the backend's default remote
    when sending and any remote when receiving.
    """

    button: str
    key: str
    remote: str = ""


def check_button(button: str, where: str) -> None:
    """Raise KeyMapError naming `button` (and the closest real one) if it is not canonical."""
    if button in ALL_BUTTONS:
        return
    close = difflib.get_close_matches(button, ALL_BUTTONS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise KeyMapError(f"{where}: {button!r} is not a Buttons button name{hint}")


def _check_word(value: str, what: str, where: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise KeyMapError(f"{where}: the {what} {value!r} must be one word without spaces")


class KeyMap:
    """Resolves buttons to (remote, key) for sending and (remote, key) to buttons on receipt."""

    def __init__(
        self,
        default_remote: str = "",
        bindings: Iterable[KeyBinding] = (),
        *,
        defaults: Mapping[str, tuple[str, ...]] = DEFAULT_KEYS,
    ) -> None:
        self.default_remote = default_remote
        self._bindings = tuple(bindings)
        for index, binding in enumerate(self._bindings):
            where = f"key binding #{index + 1}"
            check_button(binding.button, where)
            _check_word(binding.key, "key", where)
            if binding.remote:
                _check_word(binding.remote, "remote", where)
        self._defaults = defaults
        self._default_buttons_by_key = {
            key: button for button, keys in defaults.items() for key in keys
        }

    def send_target(self, button: str) -> tuple[str, str] | None:
        """The (remote, key) that performs `button`, or None if nothing does."""
        for binding in reversed(self._bindings):  # later entries override earlier ones
            if binding.button == button:
                remote = binding.remote or self.default_remote
                return (remote, binding.key) if remote else None
        keys = self._defaults.get(button)
        if keys and self.default_remote:
            return self.default_remote, keys[0]
        return None

    def send_targets(self, buttons: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
        """Button → (remote, key) for `buttons` (default: every button)."""
        wanted = ALL_BUTTONS if buttons is None else buttons
        return {b: target for b in wanted if (target := self.send_target(b)) is not None}

    def button_for(self, remote: str, key: str) -> str | None:
        """The button a received key means, or None if it means none."""
        for wanted_remote in (remote, ""):
            for binding in reversed(self._bindings):
                if binding.key == key and binding.remote == wanted_remote:
                    return binding.button
        return self._default_buttons_by_key.get(key)
