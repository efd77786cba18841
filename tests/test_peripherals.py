"""The agent with its optional parts switched on: IR passthrough from a real lircd to a
subscribed phone, IR blasting through the router, and the pair button / status LED."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agent.backends.lirc import LircBackend
from agent.backends.router import RouterBackend
from agent.backends.virtual import VirtualTV
from agent.client import Pressed, StreamFailed, connect
from agent.testing.agents import eventually, open_agent
from agent.testing.gpio import mock_pin_factory, press_button, release_button
from agent.testing.lircd import TEST_REMOTE, TestLircd, open_test_lircd


@pytest.fixture
async def lircd(tmp_path: Path) -> AsyncIterator[TestLircd]:
    async with open_test_lircd(tmp_path / "lircd") as daemon:
        yield daemon


def lirc_settings(lircd: TestLircd) -> dict[str, object]:
    return {
        "backend": "router",
        "lirc": {"address": lircd.address, "remote": TEST_REMOTE,
                 "passthrough": {"enabled": True, "min_gap": 0.0}},
        "router": {"default": "virtual", "state_from": "virtual",
                   "routes": [{"backend": "lirc", "buttons": ["power"]}]},
    }  # fmt: skip


@pytest.mark.lirc
async def test_physical_remote_drives_the_tv_and_phones_see_it(lircd: TestLircd) -> None:
    async with open_agent(**lirc_settings(lircd)) as agent:
        async with connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
            updates = phone.follow()
            first = await updates.__anext__()  # the current state
            assert not isinstance(first, Pressed)
            await lircd.simulate("KEY_VOLUMEUP")
            with trio.fail_after(5):
                async for update in updates:
                    if isinstance(update, Pressed):
                        break
            assert (update.button, update.source) == ("volume_up", "ir")
            state = await phone.state()
        assert state.volume == 55  # the router's virtual TV started at 50


@pytest.mark.lirc
async def test_power_goes_out_as_ir_and_the_rest_to_the_tv(lircd: TestLircd) -> None:
    settings = lirc_settings(lircd)
    async with open_agent(**settings) as agent:
        assert isinstance(agent.backend, RouterBackend)
        lirc = agent.backend.children["lirc"]
        assert isinstance(lirc, LircBackend)
        async with connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
            lircd.clear_sent()
            await phone.press("power")
            await phone.press("mute")
            state = await phone.state()
        assert lircd.sent_timings()  # lircd transmitted the power code
        assert state.muted is True
        assert state.power is True  # power went to IR, not to the virtual TV


async def test_pair_button_opens_pairing_and_led_follows_state() -> None:
    tv = VirtualTV()
    with mock_pin_factory() as pins:
        gpio = {"enabled": True, "pair_button_pin": "GPIO27", "status_led_pin": "GPIO22"}
        async with open_agent(tv, gpio=gpio, pin_factory=pins) as agent:
            led = agent.led
            assert led is not None
            assert led.status == "ready"
            await press_button(pins, "GPIO27")
            await release_button(pins, "GPIO27")
            await eventually(lambda: agent.pairing.is_open)
            await eventually(lambda: led.status == "pairing")
            agent.pairing.close()
            tv.set_reachable(False)
            await eventually(lambda: led.status == "backend_down")
            tv.set_reachable(True)
            await eventually(lambda: led.status == "ready")


async def test_holding_the_pair_button_clears_every_pairing() -> None:
    with mock_pin_factory() as pins:
        gpio = {"enabled": True, "clear_hold_time": 0.6, "clear_signal_time": 0.2}
        async with open_agent(gpio=gpio, pin_factory=pins) as agent:
            assert agent.trusted.peers  # open_agent paired a default phone
            async with connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
                await phone.press("up")
            await press_button(pins, "GPIO27")
            await eventually(lambda: not agent.trusted.peers)
            await release_button(pins, "GPIO27")
            assert not agent.pairing.is_open  # a long hold is not also a short press
            with pytest.raises(StreamFailed):
                async with connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
                    await phone.press("up")
