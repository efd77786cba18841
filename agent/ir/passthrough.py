"""Physical remote passthrough: lircd's decoded keys → Buttons presses.

Exactly one consumer must act on a key: if Kodi's own LIRC input is also enabled on the same
lircd, every key fires twice. Enable either this passthrough or Kodi's, never both.

Repeats: the first frame of a key presses; while it is held, lircd sends the same key with a
growing repeat count. Those press again only for repeatable buttons (arrows, volume, seeking),
only after `repeat_delay`, and at most once per `repeat_interval`. A fresh frame (repeat 0) of
the same key within `min_gap` of its previous frame is a duplicate — remotes that send each
code several times, RC6 toggle bits and contact bounce all look like that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from agent.backends.base import BackendError
from agent.backends.keymap import KeyMap
from agent.backends.lirc.client import ClientEvent
from agent.backends.lirc.config import PassthroughConfig
from agent.backends.lirc.protocol import KeyEvent
from agent.buttons.catalogue import CATALOGUE

log = logging.getLogger(__name__)

#: lircd --release appends this to a key's name when the key goes up.
RELEASE_SUFFIX = "_EVUP"
SOURCE = "ir"

#: What the dispatcher passes: perform `button`, pushed to phones as pressed by `source`.
PressCallback = Callable[[str, str], Awaitable[None]]


@dataclass(slots=True)
class _Sequence:
    """The key currently down (or last seen)."""

    remote: str
    key: str
    first_press: float
    last_press: float
    last_frame: float


class RepeatFilter:
    """Decides, frame by frame, which key frames become presses. Pure: time is passed in."""

    def __init__(self, keymap: KeyMap, config: PassthroughConfig) -> None:
        self._keymap = keymap
        self._config = config
        self._current: _Sequence | None = None

    def accept(self, event: KeyEvent, now: float) -> str | None:
        """The button to press for this frame, or None to ignore it."""
        if event.key.endswith(RELEASE_SUFFIX):
            return None  # key up: nothing to do, each press is already complete
        if self._config.remotes and event.remote not in self._config.remotes:
            return None
        button = self._keymap.button_for(event.remote, event.key)
        if button is None:
            log.debug("IR key %s from %s means no button", event.key, event.remote)
            return None
        current = self._current
        if current is None or (current.remote, current.key) != (event.remote, event.key):
            self._current = _Sequence(event.remote, event.key, now, now, now)
            return button
        previous_frame, current.last_frame = current.last_frame, now
        if event.repeat == 0:
            if now - previous_frame < self._config.min_gap:
                return None  # duplicate frame or bounce
            current.first_press = current.last_press = now
            return button
        if not CATALOGUE[button].repeatable:
            return None
        if now - current.first_press < self._config.repeat_delay:
            return None
        if now - current.last_press < self._config.repeat_interval:
            return None
        current.last_press = now
        return button


class IrPassthrough:
    """Reads lircd client events and presses the buttons the keys mean."""

    def __init__(
        self,
        events: trio.MemoryReceiveChannel[ClientEvent],
        keymap: KeyMap,
        config: PassthroughConfig,
        press: PressCallback,
    ) -> None:
        self._events = events
        self._filter = RepeatFilter(keymap, config)
        self._press = press

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for event in self._events:
            if not isinstance(event, KeyEvent):
                continue
            button = self._filter.accept(event, trio.current_time())
            if button is None:
                continue
            try:
                await self._press(button, SOURCE)
            except BackendError as exc:
                # The remote keeps working for the next key; the phone-side user sees state.
                log.warning("IR key %s → %s failed: %s", event.key, button, exc.reason)
