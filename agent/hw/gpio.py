"""The pair button and the status LED, on gpiozero 2 with an injectable pin factory.

gpiozero reports edges on its own threads (lgpio's on a Pi; on mock pins, whichever thread
drove the pin). Those callbacks do one thing: hand the edge to trio with
`trio.from_thread.run_sync` into a memory channel. Everything else — hold timing, LED
patterns, calling the agent — happens in trio, so it is testable with trio's MockClock and
never touches agent state from a foreign thread. The LED is driven with plain on/off writes
from trio (no gpiozero `blink()` thread).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import trio

log = logging.getLogger(__name__)

Status = Literal["starting", "ready", "pairing", "backend_down", "error"]
#: A pattern: (LED lit?, seconds) steps, repeated.
Pattern = tuple[tuple[bool, float], ...]

PATTERNS: dict[str, Pattern] = {
    "starting": ((True, 0.5), (False, 0.5)),  # slow blink
    "ready": ((True, math.inf),),  # steady on
    "pairing": ((True, 0.15), (False, 0.15)),  # fast blink: a pairing window is open
    "backend_down": ((True, 0.1), (False, 0.1), (True, 0.1), (False, 0.7)),  # double blink
    "error": ((True, 0.1), (False, 0.1)) * 3 + ((False, 1.0),),  # triple blink, pause
    "clearing": ((True, 0.05), (False, 0.05)),  # flicker: pairings are about to be cleared
}
#: A peer pressed a button: the LED inverts this long, then resumes its pattern.
FLASH_SECONDS = 0.1


class GpioError(Exception):
    """The configured pins cannot be used (no GPIO access, pin busy, bad pin name)."""


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """The `[gpio]` table. Pins are gpiozero names: "GPIO27" (BCM) or "BOARD13"."""

    enabled: bool = False
    #: "default": gpiozero picks (lgpio on a Pi); "mock": gpiozero's MockFactory (demo).
    pin_factory: Literal["default", "mock"] = "default"
    #: Default pins avoid GPIO17/18, which the gpio-ir-tx / gpio-ir overlays use.
    pair_button_pin: str = "GPIO27"
    #: True: the button shorts the pin to ground (internal pull-up); False: to 3.3 V.
    pair_button_pull_up: bool = True
    debounce: float = 0.05
    status_led_pin: str = "GPIO22"
    status_led_active_high: bool = True
    #: Holding the pair button this long clears every pairing …
    clear_hold_time: float = 10.0
    #: … after the LED flickers for this long.
    clear_signal_time: float = 2.0


def make_pin_factory(kind: Literal["default", "mock"]) -> Any:
    """None lets gpiozero choose its default factory."""
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    return None


def _gpio_call(what: str, make: Callable[[], Any]) -> Any:
    from gpiozero import GPIOZeroError

    try:
        return make()
    except (GPIOZeroError, OSError, ValueError) as exc:
        raise GpioError(f"cannot use {what}: {exc}") from exc


class _EdgeBridge:
    """Delivers gpiozero callbacks (any thread) into a trio memory channel."""

    def __init__(self, send: trio.MemorySendChannel[bool]) -> None:
        self._send = send
        self._token = trio.lowlevel.current_trio_token()

    def __call__(self, pressed: bool) -> None:
        try:
            trio.from_thread.run_sync(self._deliver, pressed, trio_token=self._token)
        except trio.RunFinishedError:
            pass  # the agent is shutting down
        except RuntimeError:
            self._deliver(pressed)  # called from the trio thread itself (a pin driven there)

    def _deliver(self, pressed: bool) -> None:
        try:
            self._send.send_nowait(pressed)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("dropped a pair-button edge")


class StatusLed:
    """Shows the agent's status as a blink pattern. `show`, `flash` and `signal` may be
    called from any trio task; `run()` drives the pin."""

    def __init__(self, pin: str, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self._pin = pin
        self._active_high = active_high
        self._pin_factory = pin_factory
        self._status: str = "starting"
        self._overlay: Pattern = ()
        self._overlay_until = -math.inf
        self._lit = False
        self._wake = trio.Event()

    @property
    def status(self) -> str:
        return self._status

    @property
    def lit(self) -> bool:
        return self._lit

    def show(self, status: Status) -> None:
        self._status = status
        self._wake.set()

    def flash(self) -> None:
        """A brief inversion (a peer is pressing buttons)."""
        self._set_overlay(((not self._lit, FLASH_SECONDS),), FLASH_SECONDS)

    async def signal(self, pattern: str, duration: float) -> None:
        """Show `pattern` for `duration` seconds, over whatever the status is, and return
        when it is done."""
        self._set_overlay(PATTERNS[pattern], duration)
        await trio.sleep(duration)

    def _set_overlay(self, pattern: Pattern, duration: float) -> None:
        self._overlay = pattern
        self._overlay_until = trio.current_time() + duration
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from gpiozero import LED

        led = _gpio_call(
            f"the status LED on {self._pin}",
            lambda: LED(
                self._pin,
                active_high=self._active_high,
                initial_value=False,
                pin_factory=self._pin_factory,
            ),
        )
        try:
            task_status.started()
            while True:
                await self._play_until_changed(led)
        finally:
            led.close()

    async def _play_until_changed(self, led: Any) -> None:
        wake = self._wake = trio.Event()
        until = self._overlay_until
        if trio.current_time() < until:
            pattern = self._overlay
        else:
            pattern, until = PATTERNS[self._status], math.inf
        for lit, seconds in itertools.cycle(pattern):
            self._lit = lit
            led.value = lit
            with trio.move_on_at(min(trio.current_time() + seconds, until)):
                await wake.wait()
            if wake.is_set() or trio.current_time() >= until:
                return


class PairButton:
    """Short press → `on_pair()`. Held `hold_time` → the LED signals, then
    `on_clear_pairings()`. Both callbacks run in trio."""

    def __init__(
        self,
        pin: str,
        *,
        on_pair: Callable[[], Awaitable[None]],
        on_clear_pairings: Callable[[], Awaitable[None]],
        led: StatusLed | None = None,
        pull_up: bool = True,
        debounce: float = 0.05,
        hold_time: float = 10.0,
        signal_time: float = 2.0,
        pin_factory: Any = None,
    ) -> None:
        self._pin = pin
        self._on_pair = on_pair
        self._on_clear_pairings = on_clear_pairings
        self._led = led
        self._pull_up = pull_up
        self._debounce = debounce or None
        self._hold_time = hold_time
        self._signal_time = signal_time
        self._pin_factory = pin_factory

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from gpiozero import Button

        send, receive = trio.open_memory_channel[bool](32)
        bridge = _EdgeBridge(send)
        button = _gpio_call(
            f"the pair button on {self._pin}",
            lambda: Button(
                self._pin,
                pull_up=self._pull_up,
                bounce_time=self._debounce,
                pin_factory=self._pin_factory,
            ),
        )
        button.when_pressed = lambda: bridge(True)
        button.when_released = lambda: bridge(False)
        try:
            task_status.started()
            async for pressed in receive:
                if pressed:
                    await self._handle_press(receive)
        finally:
            button.close()

    async def _handle_press(self, edges: trio.MemoryReceiveChannel[bool]) -> None:
        with trio.move_on_after(self._hold_time) as hold:
            async for pressed in edges:
                if not pressed:
                    break
        if not hold.cancelled_caught:
            log.info("pair button pressed")
            await self._on_pair()
            return
        log.warning("pair button held %s s: clearing all pairings", self._hold_time)
        if self._led is not None:
            await self._led.signal("clearing", self._signal_time)
        await self._on_clear_pairings()


def open_gpio(
    config: GpioConfig,
    *,
    on_pair: Callable[[], Awaitable[None]],
    on_clear_pairings: Callable[[], Awaitable[None]],
    pin_factory: Any = None,
) -> tuple[StatusLed, PairButton]:
    """Build the LED and button from the config (run both in the agent's nursery)."""
    factory = pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
    led = StatusLed(
        config.status_led_pin, active_high=config.status_led_active_high, pin_factory=factory
    )
    button = PairButton(
        config.pair_button_pin,
        on_pair=on_pair,
        on_clear_pairings=on_clear_pairings,
        led=led,
        pull_up=config.pair_button_pull_up,
        debounce=config.debounce,
        hold_time=config.clear_hold_time,
        signal_time=config.clear_signal_time,
        pin_factory=factory,
    )
    return led, button
