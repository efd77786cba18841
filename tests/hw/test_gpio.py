"""Pair button and status LED on gpiozero MockFactory pins, driven from the test.

Pins are driven from a worker thread, so gpiozero calls back from a foreign thread as lgpio
does on a Pi. Hold timing and LED patterns run on trio's clock: the 10 s hold is tested with
a MockClock jumped by hand (no real 10 s wait); the LED is sampled with an autojump clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from agent.hw.gpio import (
    FLASH_SECONDS,
    PATTERNS,
    GpioConfig,
    GpioError,
    PairButton,
    Status,
    StatusLed,
    open_gpio,
)
from agent.testing.gpio import led_is_lit, mock_pin_factory, press_button, release_button

BUTTON, LED_PIN = "GPIO27", "GPIO22"


@pytest.fixture
def pins() -> Iterator[Any]:
    with mock_pin_factory() as factory:
        yield factory


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.changed = trio.Event()

    def recorder(self, name: str) -> Any:
        async def record() -> None:
            await trio.lowlevel.checkpoint()
            self.log.append(name)
            self.changed.set()
            self.changed = trio.Event()

        return record

    async def wait_for(self, name: str) -> None:
        with trio.fail_after(5):
            while name not in self.log:
                await self.changed.wait()


async def test_short_press_opens_pairing(pins: Any) -> None:
    calls = Calls()
    button = PairButton(
        BUTTON,
        on_pair=calls.recorder("pair"),
        on_clear_pairings=calls.recorder("clear"),
        pin_factory=pins,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(button.run)
        await press_button(pins, BUTTON)
        await release_button(pins, BUTTON)
        await calls.wait_for("pair")
        nursery.cancel_scope.cancel()
    assert calls.log == ["pair"]


async def test_ten_second_hold_signals_then_clears_pairings(
    pins: Any, mock_clock: trio.testing.MockClock
) -> None:
    calls = Calls()
    led = StatusLed(LED_PIN, pin_factory=pins)
    led.show("ready")
    button = PairButton(
        BUTTON,
        on_pair=calls.recorder("pair"),
        on_clear_pairings=calls.recorder("clear"),
        led=led,
        hold_time=10.0,
        signal_time=2.0,
        pin_factory=pins,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        await nursery.start(button.run)
        await press_button(pins, BUTTON)  # a real thread; the mock clock stands still
        await trio.testing.wait_all_tasks_blocked()

        mock_clock.jump(9.9)
        await trio.testing.wait_all_tasks_blocked()
        assert calls.log == []
        assert led_is_lit(pins, LED_PIN)  # still plain "ready"

        mock_clock.jump(0.2)  # 10.1 s held: the LED flickers, nothing cleared yet
        await trio.testing.wait_all_tasks_blocked()
        assert calls.log == []
        assert led_is_lit(pins, LED_PIN)  # flicker's first step: on
        mock_clock.jump(0.05)
        await trio.testing.wait_all_tasks_blocked()
        assert not led_is_lit(pins, LED_PIN)  # … then off: it is flickering

        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        assert calls.log == ["clear"]
        await release_button(pins, BUTTON)
        await trio.testing.wait_all_tasks_blocked()
        assert calls.log == ["clear"]  # the release after a hold is not a short press
        assert led_is_lit(pins, LED_PIN)  # back to "ready"
        nursery.cancel_scope.cancel()


def expected_levels(pattern: tuple[tuple[bool, float], ...]) -> list[tuple[float, bool]]:
    """(time since start, lit) at the middle of every step, over two cycles."""
    samples, start = [], 0.0
    for lit, seconds in pattern * 2:
        samples.append((start + seconds / 2, lit))
        start += seconds
    return samples


@pytest.mark.parametrize("status", ["starting", "pairing", "backend_down", "error"])
@pytest.mark.parametrize("active_high", [True, False])
async def test_led_follows_the_status_pattern(
    pins: Any, autojump_clock: trio.testing.MockClock, status: Status, active_high: bool
) -> None:
    led = StatusLed(LED_PIN, active_high=active_high, pin_factory=pins)
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        led.show(status)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        seen = []
        for offset, _ in expected_levels(PATTERNS[status]):
            await trio.sleep_until(start + offset)
            seen.append((offset, led_is_lit(pins, LED_PIN, active_high=active_high)))
        nursery.cancel_scope.cancel()
    assert seen == expected_levels(PATTERNS[status])


async def test_ready_is_steady_and_a_peer_press_flashes(
    pins: Any, autojump_clock: trio.testing.MockClock
) -> None:
    led = StatusLed(LED_PIN, pin_factory=pins)
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        led.show("ready")
        await trio.sleep(60)
        assert led_is_lit(pins, LED_PIN)
        led.flash()
        await trio.sleep(FLASH_SECONDS / 2)
        assert not led_is_lit(pins, LED_PIN)
        await trio.sleep(FLASH_SECONDS)
        assert led_is_lit(pins, LED_PIN)
        nursery.cancel_scope.cancel()


async def test_busy_pin_is_a_clear_error(pins: Any) -> None:
    first = StatusLed(LED_PIN, pin_factory=pins)
    second = StatusLed(LED_PIN, pin_factory=pins)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        with pytest.raises(GpioError, match="cannot use the status LED on GPIO22"):
            await nursery.start(second.run)
        nursery.cancel_scope.cancel()


async def test_open_gpio_builds_both_from_config(pins: Any) -> None:
    calls = Calls()
    config = GpioConfig(enabled=True, pair_button_pin="GPIO5", status_led_pin="GPIO6")
    led, button = open_gpio(
        config,
        on_pair=calls.recorder("pair"),
        on_clear_pairings=calls.recorder("clear"),
        pin_factory=pins,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        await nursery.start(button.run)
        led.show("ready")
        await press_button(pins, "GPIO5")
        await release_button(pins, "GPIO5")
        await calls.wait_for("pair")
        assert led_is_lit(pins, "GPIO6")
        nursery.cancel_scope.cancel()
    assert calls.log == ["pair"]
