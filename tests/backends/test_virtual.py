from __future__ import annotations

import pytest
import trio
import trio.testing

from agent.backends.base import Backend, BackendUnavailable, ButtonNotSupported, TvState
from agent.backends.virtual import HOME_MENU, VirtualTV


def test_virtual_tv_implements_the_backend_protocol() -> None:
    assert isinstance(VirtualTV(), Backend)


async def test_volume_is_clamped_and_mute_toggles() -> None:
    tv = VirtualTV(volume=95)
    for _ in range(3):
        await tv.press("volume_up")
    assert tv.state().volume == 100
    tv2 = VirtualTV(volume=5)
    for _ in range(3):
        await tv2.press("volume_down")
    assert tv2.state().volume == 0
    await tv.press("mute")
    assert tv.state().muted is True
    await tv.press("mute")
    assert tv.state().muted is False


async def test_play_pause_toggles_and_stop_clears() -> None:
    tv = VirtualTV()
    await tv.press("play_pause")
    assert (tv.state().playback, tv.state().speed) == ("playing", 1.0)
    await tv.press("play_pause")
    assert (tv.state().playback, tv.state().speed) == ("paused", 0.0)
    await tv.press("stop")
    assert tv.state().playback == "stopped"
    assert tv.state().title is None


async def test_power_off_ignores_everything_but_power() -> None:
    tv = VirtualTV(volume=40)
    await tv.press("power")
    assert tv.state().power is False
    await tv.press("volume_up")
    await tv.press("play_pause")
    assert tv.state().volume == 40
    assert tv.state().playback == "stopped"
    await tv.press("power")
    assert tv.state().power is True


async def test_menu_focus_and_search_asks_for_text() -> None:
    tv = VirtualTV()
    for _ in range(10):
        await tv.press("down")
    assert tv.state().focused == HOME_MENU[-1]
    await tv.press("up")
    assert tv.state().focused == "Search"
    await tv.press("select")
    assert tv.state().input_request is not None
    await tv.send_text("bunny")
    assert tv.texts == ["bunny"]
    assert tv.state().input_request is None


async def test_unknown_button_and_unreachable_tv_raise() -> None:
    tv = VirtualTV()
    with pytest.raises(ButtonNotSupported):
        await tv.press("self_destruct")
    tv.set_reachable(False, "unplugged")
    assert tv.state().available is False
    with pytest.raises(BackendUnavailable, match="unplugged"):
        await tv.press("up")
    tv.set_reachable(True)
    await tv.press("up")


async def test_hold_repeats_at_the_repeat_rate_until_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tv = VirtualTV(repeat_interval=0.1)
    async with tv.hold("volume_up"):
        await trio.sleep(0.35)
    await trio.sleep(1)  # no more repeats after release
    assert tv.history == ["volume_up"] * 4  # at 0, 0.1, 0.2, 0.3


async def test_state_changes_skip_to_the_newest_for_slow_readers() -> None:
    tv = VirtualTV(volume=10)
    seen: list[TvState] = []
    changes = tv.state_changes()
    seen.append(await changes.__anext__())
    for _ in range(3):
        await tv.press("volume_up")
    with trio.fail_after(1):
        seen.append(await changes.__anext__())
    assert [s.volume for s in seen] == [10, 25]
