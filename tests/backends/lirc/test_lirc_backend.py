"""The LIRC backend against a real lircd 0.10.1 (file driver: sends become timings in a file)."""

from __future__ import annotations

import re

import pytest
import trio

from agent.backends.base import Backend, BackendRefused, BackendUnavailable, ButtonNotSupported
from agent.backends.keymap import KeyBinding, KeyMapError
from agent.backends.lirc import LircBackend, LircConfig, LircValidationError
from agent.testing.lircd import TEST_KEYS, TEST_REMOTE, TestLircd, remote_conf

pytestmark = pytest.mark.lirc

# The NEC frame for `test_tv KEY_POWER`: header, then pre_data 0xE0E0 and code 0x40BF, MSB first.
HEADER = ("pulse", 4500), ("space", 4500)


def config(lircd: TestLircd, **changes: object) -> LircConfig:
    fields: dict[str, object] = {
        "address": lircd.address,
        "remote": TEST_REMOTE,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "startup_timeout": 5.0,
    }
    fields.update(changes)
    return LircConfig(**fields)  # type: ignore[arg-type]


def bits_sent(lircd: TestLircd) -> str:
    """Decode the first frame the file driver wrote back into bits (NEC: long space = 1)."""
    timings = lircd.sent_timings()
    assert tuple(timings[:2]) == HEADER, timings[:4]
    spaces = [value for kind, value in timings[2:] if kind == "space"][:32]
    return "".join("1" if value > 1000 else "0" for value in spaces)


async def test_is_a_backend_offering_the_remotes_keys(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd))
    assert isinstance(backend, Backend)
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        assert backend.state().available
        # Non-strict mode: the default key map, narrowed to the keys test_tv has.
        assert backend.buttons() == {
            "power", "volume_up", "volume_down", "mute", "up", "down", "left", "right",
            "select", "back", "play_pause",
        }  # fmt: skip
        nursery.cancel_scope.cancel()


async def test_press_power_transmits_its_code(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["power", "volume_up"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        with trio.fail_after(5):
            await backend.press("power")
        expected = f"{0xE0E0:016b}{TEST_KEYS['KEY_POWER']:016b}"
        assert bits_sent(lircd) == expected
        assert "SEND_ONCE test_tv KEY_POWER" not in lircd.log_text()  # no error logged
        nursery.cancel_scope.cancel()


async def test_hold_sends_start_then_stop(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["volume_up"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        with trio.fail_after(5):
            async with backend.hold("volume_up"):
                # lircd is repeating now: a second start is refused, which proves the first.
                reply = await lircd.command(f"SEND_START {TEST_REMOTE} KEY_VOLUMEUP")
                assert "already repeating" in reply
            # After the context, lircd has stopped: stopping again is refused.
            reply = await lircd.command(f"SEND_STOP {TEST_REMOTE} KEY_VOLUMEUP")
            assert "not repeating" in reply
        assert lircd.sent_timings()[:2] == list(HEADER)
        nursery.cancel_scope.cancel()


async def test_hold_stops_even_when_cancelled(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["volume_up"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        with trio.move_on_after(0.05):
            async with backend.hold("volume_up"):
                await trio.sleep_forever()
        with trio.fail_after(5):
            reply = await lircd.command(f"SEND_STOP {TEST_REMOTE} KEY_VOLUMEUP")
        assert "not repeating" in reply
        nursery.cancel_scope.cancel()


async def test_unknown_key_and_remote_fail_startup_naming_them(lircd: TestLircd) -> None:
    backend = LircBackend(
        config(
            lircd,
            buttons=["power", "red", "channel_up"],
            keys=[
                KeyBinding("red", "KEY_RED"),
                KeyBinding("channel_up", "KEY_CHANNELUP", remote="set_top_box"),
            ],
        )
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10), pytest.raises(LircValidationError) as caught:
            await nursery.start(backend.run)
    message = str(caught.value)
    assert "KEY_RED on remote 'test_tv' (for red)" in message
    assert "remote 'set_top_box' (for channel_up; it knows: test_tv)" in message
    assert "power" not in message


def test_listed_button_without_any_key_is_a_config_error() -> None:
    with pytest.raises(KeyMapError, match="no remote/key for power"):
        LircBackend(LircConfig(remote="", buttons=["power"]))
    with pytest.raises(KeyMapError, match="did you mean 'volume_up'"):
        LircBackend(LircConfig(remote="tv", buttons=["volume_upp"]))


async def test_unmapped_button_and_text_are_not_supported(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["power"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        with pytest.raises(ButtonNotSupported):
            await backend.press("mute")
        with pytest.raises(ButtonNotSupported):
            await backend.send_text("hello")
        nursery.cancel_scope.cancel()


async def test_lircd_refusal_is_backend_refused(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["volume_up"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        await lircd.command(f"SEND_START {TEST_REMOTE} KEY_VOLUMEUP")  # someone else repeats
        with pytest.raises(BackendRefused, match="already repeating"):
            async with backend.hold("volume_up"):
                pass
        await lircd.command(f"SEND_STOP {TEST_REMOTE} KEY_VOLUMEUP")
        nursery.cancel_scope.cancel()


async def test_lircd_down_then_back(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["power"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        changes = backend.state_changes()
        await lircd.stop()
        with trio.fail_after(5):
            async for state in changes:
                if not state.available:
                    break
        assert re.search(r"lircd", state.status_message)
        with pytest.raises(BackendUnavailable):
            await backend.press("power")
        await lircd.start()
        with trio.fail_after(5):
            async for state in changes:
                if state.available:
                    break
            await backend.press("power")
        nursery.cancel_scope.cancel()


async def test_lircd_absent_at_startup_starts_unavailable(lircd: TestLircd) -> None:
    await lircd.stop()
    backend = LircBackend(config(lircd, buttons=["power"], startup_timeout=0.1))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(backend.run)
        assert not backend.state().available
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await backend.press("power")
        nursery.cancel_scope.cancel()


async def test_reload_with_a_key_removed_makes_it_unavailable(lircd: TestLircd) -> None:
    backend = LircBackend(config(lircd, buttons=["power", "mute"]))
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        changes = backend.state_changes()
        keys = {k: v for k, v in TEST_KEYS.items() if k != "KEY_MUTE"}
        lircd.conf_path.write_text(remote_conf(keys=keys), encoding="utf-8")
        lircd.reload()
        with trio.fail_after(5):
            async for state in changes:
                if not state.available:
                    break
        assert "KEY_MUTE on remote 'test_tv' (for mute)" in state.status_message
        nursery.cancel_scope.cancel()
