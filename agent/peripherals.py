"""The agent's optional parts around the core: IR passthrough, pair button and status LED."""

from __future__ import annotations

import logging
from typing import Any

import trio

from agent.backends.base import Backend, TvState
from agent.backends.factory import find_lirc
from agent.config import Config
from agent.dispatch import Dispatcher
from agent.hw.gpio import Status, StatusLed, open_gpio
from agent.ir.passthrough import IrPassthrough
from agent.pairing import PairingWindow

log = logging.getLogger(__name__)


class PeripheralError(Exception):
    pass


async def run_passthrough(
    config: Config, backend: Backend, dispatcher: Dispatcher, *, task_status: trio.TaskStatus[None]
) -> None:
    """Keys from the physical remote (via lircd) → presses through the dispatcher."""
    lirc = find_lirc(backend)
    if lirc is None:
        raise PeripheralError(
            'lirc.passthrough.enabled needs the lirc backend: set backend = "lirc", or '
            'backend = "router" with a route to "lirc"'
        )

    async def press(button: str, source: str) -> None:
        await dispatcher.press(button, source=source)

    passthrough = IrPassthrough(
        lirc.client.subscribe(), lirc.keymap, config.lirc.passthrough, press
    )
    await passthrough.run(task_status=task_status)


def led_status(state: TvState, pairing_open: bool) -> Status:
    if pairing_open:
        return "pairing"
    return "ready" if state.available else "backend_down"


async def run_gpio(
    config: Config,
    backend: Backend,
    dispatcher: Dispatcher,
    pairing: PairingWindow,
    *,
    pin_factory: Any = None,
    task_status: trio.TaskStatus[StatusLed],
) -> None:
    """Pair button and status LED; the LED follows backend state, pairing and presses."""

    async def on_pair() -> None:
        pairing.open()
        await pairing.show_current()

    led, button = open_gpio(
        config.gpio, on_pair=on_pair, on_clear_pairings=pairing.clear_all, pin_factory=pin_factory
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        await nursery.start(button.run)

        async def follow_state() -> None:
            async for state in backend.state_changes():
                led.show(led_status(state, pairing.is_open))

        async def follow_pairing() -> None:
            while True:
                await pairing.wait_changed()
                led.show(led_status(backend.state(), pairing.is_open))

        async def flash_on_press() -> None:
            async with dispatcher.press_feed() as feed:
                async for _event in feed:
                    led.flash()

        nursery.start_soon(follow_state)
        nursery.start_soon(follow_pairing)
        nursery.start_soon(flash_on_press)
        task_status.started(led)
