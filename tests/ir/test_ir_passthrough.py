"""Keys injected into a real lircd (SIMULATE) reach the press callback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from agent.backends.base import BackendUnavailable
from agent.backends.keymap import KeyMap
from agent.backends.lirc.client import ClientEvent, Connected, Disconnected, LircClient
from agent.backends.lirc.config import PassthroughConfig
from agent.backends.lirc.protocol import KeyEvent
from agent.backends.virtual import VirtualTV
from agent.ir.passthrough import IrPassthrough, PressCallback
from agent.testing.lircd import TestLircd


class Recorder:
    def __init__(self) -> None:
        self.presses: list[tuple[str, str]] = []
        self._changed = trio.Event()

    async def press(self, button: str, source: str) -> None:
        await trio.lowlevel.checkpoint()
        self.presses.append((button, source))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(5):
            while len(self.presses) < count:
                await self._changed.wait()


@asynccontextmanager
async def passthrough_running(
    lircd: TestLircd, press: PressCallback, config: PassthroughConfig | None = None
) -> AsyncIterator[LircClient]:
    client = LircClient(lircd.address, backoff_initial=0.05, backoff_max=0.2)
    passthrough = IrPassthrough(client.subscribe(), KeyMap(), config or PassthroughConfig(), press)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(client.run)
            await nursery.start(passthrough.run)
            await client.command("VERSION")  # lircd has accepted us: broadcasts now reach us
        yield client
        nursery.cancel_scope.cancel()


@pytest.mark.lirc
async def test_simulated_key_reaches_the_virtual_tv(lircd: TestLircd) -> None:
    tv = VirtualTV(volume=50)
    recorder = Recorder()

    async def press(button: str, source: str) -> None:
        await tv.press(button)
        await recorder.press(button, source)

    async with passthrough_running(lircd, press):
        await lircd.simulate("KEY_VOLUMEUP")
        await recorder.wait_for(1)
    assert recorder.presses == [("volume_up", "ir")]
    assert tv.state().volume == 55


@pytest.mark.lirc
async def test_repeats_are_filtered_through_real_lircd(lircd: TestLircd) -> None:
    recorder = Recorder()
    # A repeat delay far longer than the test: only fresh frames may press (deterministic).
    config = PassthroughConfig(repeat_delay=3600.0)
    async with passthrough_running(lircd, recorder.press, config):
        for repeat in range(5):
            await lircd.simulate("KEY_UP", repeat=repeat)
        for repeat in range(5):
            await lircd.simulate("KEY_POWER", repeat=repeat)
        await lircd.simulate("KEY_OK")  # marks the end
        await recorder.wait_for(3)
    assert recorder.presses == [("up", "ir"), ("power", "ir"), ("select", "ir")]


@pytest.mark.lirc
async def test_lircd_restart_mid_test_reconnects_and_keys_arrive_again(lircd: TestLircd) -> None:
    recorder = Recorder()
    async with passthrough_running(lircd, recorder.press) as client:
        changes = client.subscribe()
        await lircd.simulate("KEY_UP")
        await recorder.wait_for(1)

        await lircd.kill()
        with trio.fail_after(5):
            assert isinstance(await next_connection_change(changes), Disconnected)
        await lircd.start()
        with trio.fail_after(5):
            assert isinstance(await next_connection_change(changes), Connected)
            await client.command("VERSION")
        await lircd.simulate("KEY_DOWN")
        await recorder.wait_for(2)
    assert recorder.presses == [("up", "ir"), ("down", "ir")]


async def next_connection_change(events: trio.MemoryReceiveChannel[ClientEvent]) -> ClientEvent:
    async for event in events:
        if isinstance(event, Connected | Disconnected):
            return event
    raise AssertionError("the client stopped publishing events")


async def test_press_errors_do_not_stop_the_passthrough() -> None:
    send, receive = trio.open_memory_channel[ClientEvent](10)
    recorder = Recorder()
    failures = 0

    async def press(button: str, source: str) -> None:
        nonlocal failures
        if button == "power":
            failures += 1
            raise BackendUnavailable("the TV is off the network")
        await recorder.press(button, source)

    passthrough = IrPassthrough(receive, KeyMap(), PassthroughConfig(), press)
    async with trio.open_nursery() as nursery:
        await nursery.start(passthrough.run)
        send.send_nowait(KeyEvent(1, 0, "KEY_POWER", "tv"))
        send.send_nowait(Disconnected("lircd restarting"))
        send.send_nowait(KeyEvent(2, 0, "KEY_MUTE", "tv"))
        await recorder.wait_for(1)
        nursery.cancel_scope.cancel()
    assert failures == 1
    assert recorder.presses == [("mute", "ir")]


async def test_repeats_use_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.open_memory_channel[ClientEvent](100)
    recorder = Recorder()
    passthrough = IrPassthrough(receive, KeyMap(), PassthroughConfig(), recorder.press)
    async with trio.open_nursery() as nursery:
        await nursery.start(passthrough.run)
        for repeat in range(21):  # volume key held for 2 s, a frame every 0.1 s
            await send.send(KeyEvent(1, repeat, "KEY_VOLUMEUP", "tv"))
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    # 1 press at 0 s, then (from 0.5 s, at most every 0.125 s on a 0.1 s grid) one per 0.2 s.
    assert recorder.presses == [("volume_up", "ir")] * 9
