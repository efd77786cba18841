"""Mock GPIO pins for tests and the demo: press the pair button, read the LED.

Pins are driven from a worker thread (`trio.to_thread.run_sync`), so gpiozero's callbacks
arrive from a foreign thread exactly as they do from lgpio on a Pi.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio


@contextmanager
def mock_pin_factory() -> Iterator[Any]:
    """A fresh gpiozero MockFactory, reset afterwards so pins can be reused."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    try:
        yield factory
    finally:
        factory.reset()


async def press_button(factory: Any, pin: str, *, pull_up: bool = True) -> None:
    """Close the button contact (to ground for a pulled-up button)."""
    mock_pin = factory.pin(pin)
    await trio.to_thread.run_sync(mock_pin.drive_low if pull_up else mock_pin.drive_high)


async def release_button(factory: Any, pin: str, *, pull_up: bool = True) -> None:
    mock_pin = factory.pin(pin)
    await trio.to_thread.run_sync(mock_pin.drive_high if pull_up else mock_pin.drive_low)


def led_is_lit(factory: Any, pin: str, *, active_high: bool = True) -> bool:
    """Whether the LED on `pin` is lit, read from the pin's electrical state."""
    return bool(factory.pin(pin).state) == active_high
