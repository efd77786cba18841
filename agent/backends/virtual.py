"""An in-memory TV: the demo's backend and the fast tests' stand-in for a real one.

It behaves like a simple TV + media centre: volume 0–100 clamped, mute toggles, play_pause
toggles, a home menu whose focus moves with the arrows, a search entry that asks for text,
and while powered off it ignores everything but `power`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import trio

from agent.backends.base import BackendUnavailable, ButtonNotSupported, InputRequest, TvState
from agent.backends.common import StateHub, repeat_while_held
from agent.buttons.catalogue import ALL_BUTTONS

HOME_MENU = ("Movies", "TV shows", "Music", "Search", "Settings")
DEMO_TITLE = "Big Buck Bunny"
VOLUME_STEP = 5
SPEEDS = (-32.0, -16.0, -8.0, -4.0, -2.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def _unchanged(state: TvState) -> TvState:
    return state


class VirtualTV:
    """Implements the Backend protocol entirely in memory."""

    name = "virtual"

    def __init__(self, *, repeat_interval: float = 0.1, volume: int = 50) -> None:
        self.repeat_interval = repeat_interval
        self._hub = StateHub(TvState(volume=volume, muted=False, focused=HOME_MENU[0]))
        #: Every press performed, in order (tests and the demo's log read this).
        self.history: list[str] = []
        #: Text received by `send_text`, in order.
        self.texts: list[str] = []
        self._reachable = True
        self._actions: dict[str, Callable[[TvState], TvState]] = {
            "up": lambda s: self._move_focus(s, -1),
            "down": lambda s: self._move_focus(s, +1),
            "left": lambda s: s,
            "right": lambda s: s,
            "select": self._select,
            "back": lambda s: s.replace(input_request=None),
            "home": lambda s: s.replace(focused=HOME_MENU[0], input_request=None),
            "play_pause": self._play_pause,
            "play": lambda s: self._play(s),
            "pause": lambda s: s.replace(playback="paused", speed=0.0) if s.title else s,
            "stop": lambda s: s.replace(
                playback="stopped", player=None, title=None, position=None, speed=None
            ),
            "rewind": lambda s: self._change_speed(s, -1),
            "fast_forward": lambda s: self._change_speed(s, +1),
            "volume_up": lambda s: s.replace(volume=min(100, (s.volume or 0) + VOLUME_STEP)),
            "volume_down": lambda s: s.replace(volume=max(0, (s.volume or 0) - VOLUME_STEP)),
            "mute": lambda s: s.replace(muted=not s.muted),
        }

    # -- Backend protocol -------------------------------------------------------------------

    def buttons(self) -> frozenset[str]:
        return ALL_BUTTONS

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def press(self, button: str) -> None:
        await trio.lowlevel.checkpoint()
        if button not in ALL_BUTTONS:
            raise ButtonNotSupported(f"the virtual TV has no {button!r} button")
        self._check_reachable()
        self.history.append(button)
        state = self._hub.current
        if button == "power":
            self._hub.publish(self._toggle_power(state))
        elif state.power:
            # Buttons without a modelled effect (digits, colours, …) are accepted and recorded.
            self._hub.publish(self._actions.get(button, _unchanged)(state))

    def hold(self, button: str) -> AbstractAsyncContextManager[None]:
        return repeat_while_held(lambda: self.press(button), interval=self.repeat_interval)

    async def send_text(self, text: str, *, submit: bool = True) -> None:
        await trio.lowlevel.checkpoint()
        self._check_reachable()
        self.texts.append(text)
        if submit:
            self._hub.update(input_request=None)

    def state(self) -> TvState:
        return self._hub.current

    def state_changes(self) -> AsyncIterator[TvState]:
        return self._hub.changes()

    # -- test and demo controls -------------------------------------------------------------

    def set_reachable(self, reachable: bool, message: str = "the TV is not responding") -> None:
        """Simulate the device going away (presses fail) and coming back."""
        self._reachable = reachable
        self._hub.update(available=reachable, status_message="" if reachable else message)

    def request_input(self, title: str = "Search") -> None:
        """Simulate the TV opening its on-screen keyboard."""
        self._hub.update(input_request=InputRequest(title=title))

    def start_playing(self, title: str = DEMO_TITLE, player: str = "video") -> None:
        self._hub.update(playback="playing", player=player, title=title, position=0.0, speed=1.0)

    # -- the model ----------------------------------------------------------------------------

    def _check_reachable(self) -> None:
        if not self._reachable:
            raise BackendUnavailable(self._hub.current.status_message or "the TV is unavailable")

    @staticmethod
    def _toggle_power(state: TvState) -> TvState:
        if state.power:
            return state.replace(
                power=False,
                playback="stopped",
                player=None,
                title=None,
                position=None,
                speed=None,
                input_request=None,
            )
        return state.replace(power=True, focused=HOME_MENU[0])

    @staticmethod
    def _move_focus(state: TvState, step: int) -> TvState:
        index = HOME_MENU.index(state.focused) if state.focused in HOME_MENU else 0
        return state.replace(focused=HOME_MENU[max(0, min(len(HOME_MENU) - 1, index + step))])

    @staticmethod
    def _select(state: TvState) -> TvState:
        if state.focused == "Search":
            return state.replace(input_request=InputRequest(title="Search"))
        if state.focused in ("Movies", "TV shows"):
            return VirtualTV._play(state.replace(title=state.title or DEMO_TITLE))
        return state

    @staticmethod
    def _play(state: TvState) -> TvState:
        return state.replace(
            playback="playing",
            speed=1.0,
            player=state.player or "video",
            title=state.title or DEMO_TITLE,
            position=state.position or 0.0,
        )

    @staticmethod
    def _play_pause(state: TvState) -> TvState:
        if state.playback == "playing":
            return state.replace(playback="paused", speed=0.0)
        return VirtualTV._play(state)

    @staticmethod
    def _change_speed(state: TvState, direction: int) -> TvState:
        if state.playback == "stopped":
            return state
        current = state.speed if state.speed in SPEEDS else 1.0
        index = SPEEDS.index(current) + direction
        speed = SPEEDS[max(0, min(len(SPEEDS) - 1, index))]
        return state.replace(speed=speed, playback="playing")
