"""The old IR remote drives the real Kodi: a key decoded by a real lircd goes through the
agent's passthrough and router to Kodi, and a subscribed phone is told about it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agent.client import Pressed, connect
from agent.testing.agents import open_agent
from agent.testing.kodi import HeadlessKodi
from agent.testing.lircd import TEST_REMOTE, TestLircd, open_test_lircd

pytestmark = [pytest.mark.kodi, pytest.mark.lirc]
STEP_TIMEOUT = 15.0


@pytest.fixture
async def lircd(tmp_path: Path) -> AsyncIterator[TestLircd]:
    async with open_test_lircd(tmp_path / "lircd") as daemon:
        yield daemon


async def test_ir_key_reaches_kodi_and_the_phone(real_kodi: HeadlessKodi, lircd: TestLircd) -> None:
    settings = {
        "backend": "router",
        "kodi": dataclasses.asdict(real_kodi.kodi_config()),
        "lirc": {"address": lircd.address, "remote": TEST_REMOTE,
                 "passthrough": {"enabled": True}},
        "router": {"default": "kodi", "routes": [{"backend": "lirc", "buttons": ["power"]}]},
    }  # fmt: skip
    async with open_agent(**settings) as agent:
        async with connect("127.0.0.1", agent.port, agent=agent.instance) as phone:
            updates = phone.follow()
            with trio.fail_after(STEP_TIMEOUT):
                first = await updates.__anext__()
                while isinstance(first, Pressed) or not first.available:
                    first = await updates.__anext__()
            assert first.volume == 50  # the harness resets Kodi to 50
            await lircd.simulate("KEY_VOLUMEUP")
            pressed: Pressed | None = None
            volume = first.volume
            with trio.fail_after(STEP_TIMEOUT):
                async for update in updates:
                    if isinstance(update, Pressed):
                        pressed = update
                    elif update.volume is not None:
                        volume = update.volume
                    if pressed is not None and volume > 50:
                        break
        assert pressed is not None
        assert (pressed.button, pressed.source) == ("volume_up", "ir")
        assert volume > 50  # Kodi's own OnVolumeChanged, pushed to the phone
