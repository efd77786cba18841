"""The PIN window on trio's MockClock: expiry, failures, single use, cooldown, the button."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from agent.pairing import PairingRefused, PairingWindow


class Screen:
    def __init__(self) -> None:
        self.pins: list[str] = []

    async def __call__(self, pin: str, seconds: float) -> None:
        self.pins.append(pin)


async def test_a_request_shows_a_six_digit_pin_once_per_window() -> None:
    screen = Screen()
    window = PairingWindow(show_pin=screen)
    assert await window.request() == pytest.approx(120, abs=1)
    assert await window.request() <= 120  # one window at a time: no new PIN
    (pin,) = screen.pins
    assert len(pin) == 6
    assert pin.isdigit()
    assert window.current_pin == pin


async def test_the_pin_expires_after_120_seconds(mock_clock: trio.testing.MockClock) -> None:
    window = PairingWindow(show_pin=Screen())
    await window.request()
    mock_clock.jump(119.9)
    assert window.is_open
    mock_clock.jump(0.2)
    assert not window.is_open
    with pytest.raises(PairingRefused, match="no pairing window"):
        window.begin_attempt()


async def test_three_wrong_pins_close_the_window_and_start_a_cooldown(
    mock_clock: trio.testing.MockClock,
) -> None:
    screen = Screen()
    window = PairingWindow(show_pin=screen)
    await window.request()
    right = screen.pins[0]
    wrong = "000000" if right != "000000" else "111111"
    assert window.check_pin(wrong) is False
    assert window.check_pin(wrong) is False
    assert window.is_open
    assert window.check_pin(wrong) is False
    assert not window.is_open
    with pytest.raises(PairingRefused, match="no pairing window"):
        window.check_pin(right)  # the right PIN is useless now
    with pytest.raises(PairingRefused, match="wait"):
        await window.request()
    mock_clock.jump(31)
    await window.request()
    assert len(screen.pins) == 2  # a new window, a new PIN on screen


async def test_a_pin_is_single_use() -> None:
    screen = Screen()
    window = PairingWindow(show_pin=screen)
    await window.request()
    assert window.check_pin(screen.pins[0]) is True
    assert not window.is_open
    with pytest.raises(PairingRefused):
        window.check_pin(screen.pins[0])


async def test_requires_button_refuses_requests_until_the_button_opened_a_window(
    mock_clock: trio.testing.MockClock,
) -> None:
    window = PairingWindow(show_pin=Screen(), requires_button=True)
    with pytest.raises(PairingRefused, match="pair button"):
        await window.request()
    window.open()  # the button
    window.close()
    await window.request()  # within 120 s of the button press
    window.close()
    mock_clock.jump(121)
    with pytest.raises(PairingRefused, match="pair button"):
        await window.request()


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)
