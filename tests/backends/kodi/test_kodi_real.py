"""KodiBackend against a real headless Kodi: effects are checked through Kodi's own API."""

from __future__ import annotations

import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from agent.backends.base import BackendNotAuthorized, BackendRefused, BackendUnavailable
from agent.backends.kodi import KodiBackend
from agent.backends.kodi.mapping import ACTIONS
from agent.backends.kodi.transport import TcpConnection
from agent.config import KodiConfig
from agent.testing.kodi import HOME_WINDOW, HeadlessKodi, eventually, wait_for_state

pytestmark = pytest.mark.kodi

StartBackend = Callable[[KodiConfig], Awaitable[KodiBackend]]
STEP_TIMEOUT = 15.0  # bounds every wait; never asserted on
SETTINGS_WINDOW = 10004
KEYBOARD_WINDOW = 10103
KEYBOARD_EDIT_LABEL = "Control.GetLabel(312).index(1)"  # the keyboard's text, in Estuary


def write_silence(path: Path, seconds: int = 900) -> Path:
    """A WAV of silence. Long: Kodi's null audio device plays it ~30x faster than real time."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * 8000 * seconds)
    return path


async def application(kodi: TcpConnection) -> dict[str, Any]:
    result: dict[str, Any] = await kodi.call(
        "Application.GetProperties", {"properties": ["volume", "muted"]}
    )
    return result


async def window_becomes(kodi: TcpConnection, window_id: int) -> None:
    async def check() -> bool | None:
        window = await kodi.call("GUI.GetProperties", {"properties": ["currentwindow"]})
        return True if window["currentwindow"]["id"] == window_id else None

    with trio.fail_after(STEP_TIMEOUT):
        await eventually(check)


async def speed_becomes(kodi: TcpConnection, speed: float) -> None:
    async def check() -> bool | None:
        players = await kodi.call("Player.GetActivePlayers")
        if not players:
            return None
        props = await kodi.call(
            "Player.GetProperties", {"playerid": players[0]["playerid"], "properties": ["speed"]}
        )
        return True if props["speed"] == speed else None

    with trio.fail_after(STEP_TIMEOUT):
        await eventually(check)


@pytest.fixture
async def kodi_backend(start_backend: StartBackend, real_kodi: HeadlessKodi) -> KodiBackend:
    backend = await start_backend(real_kodi.kodi_config())
    assert backend.state().available, backend.state().status_message
    return backend


async def test_volume_and_mute(kodi_backend: KodiBackend, kodi_direct: TcpConnection) -> None:
    before = await application(kodi_direct)
    assert before == {"volume": 50, "muted": False}
    await kodi_backend.press("volume_down")
    lowered = (await application(kodi_direct))["volume"]
    assert lowered < 50
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.volume == lowered)
    await kodi_backend.press("volume_up")
    assert (await application(kodi_direct))["volume"] > lowered

    await kodi_backend.press("mute")
    assert (await application(kodi_direct))["muted"] is True
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.muted is True)
    await kodi_backend.press("mute")
    assert (await application(kodi_direct))["muted"] is False


async def test_home_and_back_change_the_window(
    kodi_backend: KodiBackend, kodi_direct: TcpConnection
) -> None:
    await kodi_direct.call("GUI.ActivateWindow", {"window": "settings"})
    await window_becomes(kodi_direct, SETTINGS_WINDOW)
    await kodi_backend.press("back")
    await window_becomes(kodi_direct, HOME_WINDOW)

    await kodi_direct.call("GUI.ActivateWindow", {"window": "settings"})
    await window_becomes(kodi_direct, SETTINGS_WINDOW)
    await kodi_backend.press("home")
    await window_becomes(kodi_direct, HOME_WINDOW)


async def test_play_pause_resume_stop_a_real_file(
    kodi_backend: KodiBackend, kodi_direct: TcpConnection, tmp_path: Path
) -> None:
    with pytest.raises(BackendRefused, match="nothing is playing"):
        await kodi_backend.press("play_pause")

    wav = write_silence(tmp_path / "silence.wav")
    await kodi_direct.call("Player.Open", {"item": {"file": str(wav)}})
    with trio.fail_after(STEP_TIMEOUT):
        playing = await wait_for_state(
            kodi_backend, lambda s: s.playback == "playing" and s.title == "silence.wav"
        )
    assert playing.player == "audio"

    await kodi_backend.press("play_pause")
    await speed_becomes(kodi_direct, 0)
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.playback == "paused" and s.speed == 0)

    await kodi_backend.press("play_pause")
    await speed_becomes(kodi_direct, 1)
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.playback == "playing" and s.speed == 1)

    await kodi_backend.press("stop")

    async def stopped() -> bool | None:
        return True if await kodi_direct.call("Player.GetActivePlayers") == [] else None

    with trio.fail_after(STEP_TIMEOUT):
        await eventually(stopped)
        state = await wait_for_state(kodi_backend, lambda s: s.playback == "stopped")
    assert (state.title, state.player) == (None, None)


async def test_text_reaches_the_keyboard(
    kodi_backend: KodiBackend, kodi_direct: TcpConnection
) -> None:
    with pytest.raises(BackendRefused, match="not asking for text"):
        await kodi_backend.send_text("too early")
    await kodi_direct.call("GUI.ActivateWindow", {"window": "virtualkeyboard"})
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.input_request is not None)

    await kodi_backend.send_text("breaking bad", submit=False)

    async def typed() -> str | None:
        labels = await kodi_direct.call("XBMC.GetInfoLabels", {"labels": [KEYBOARD_EDIT_LABEL]})
        return labels[KEYBOARD_EDIT_LABEL] or None

    with trio.fail_after(STEP_TIMEOUT):
        assert await eventually(typed) == "breaking bad"
    await kodi_backend.press("back")
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.input_request is None)


async def test_every_action_name_is_one_kodi_knows(kodi_direct: TcpConnection) -> None:
    description = await kodi_direct.call(
        "JSONRPC.Introspect", {"filter": {"id": "Input.Action", "type": "type"}}
    )
    known = set(description["types"]["Input.Action"]["enums"])
    assert set(ACTIONS.values()) <= known


async def test_kodi_refusal_reaches_the_caller(
    start_backend: StartBackend, real_kodi: HeadlessKodi
) -> None:
    backend = await start_backend(real_kodi.kodi_config(power_action="no_such_action"))
    with pytest.raises(BackendRefused, match="Invalid params"):
        await backend.press("power")
    assert backend.state().available


async def test_http_transport_with_basic_auth(
    start_backend: StartBackend, real_kodi: HeadlessKodi, kodi_direct: TcpConnection
) -> None:
    backend = await start_backend(real_kodi.kodi_config(transport="http"))
    assert backend.state().available, backend.state().status_message
    await backend.press("volume_down")
    assert (await application(kodi_direct))["volume"] < 50

    wrong = await start_backend(real_kodi.kodi_config(transport="http", password="wrong"))
    assert not wrong.state().available
    with pytest.raises(BackendNotAuthorized):
        await wrong.press("up")


async def test_kodi_killed_then_restarted(
    kodi_backend: KodiBackend, real_kodi: HeadlessKodi
) -> None:
    await kodi_backend.press("down")
    real_kodi.kill()
    with trio.fail_after(STEP_TIMEOUT):
        down = await wait_for_state(kodi_backend, lambda s: not s.available)
    assert str(real_kodi.tcp_port) in down.status_message
    with pytest.raises(BackendUnavailable):
        await kodi_backend.press("down")

    await trio.to_thread.run_sync(real_kodi.start)
    with trio.fail_after(STEP_TIMEOUT):
        up = await wait_for_state(kodi_backend, lambda s: s.available)
    before = up.volume
    assert before  # Kodi starts above 0, so volume_down must show
    await kodi_backend.press("volume_down")
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(kodi_backend, lambda s: s.volume != before)


async def test_notify_puts_a_toast_on_screen(
    kodi_backend: KodiBackend, kodi_direct: TcpConnection
) -> None:
    toast = "Window.IsVisible(notification)"

    async def visible() -> bool | None:
        shown = await kodi_direct.call("XBMC.GetInfoBooleans", {"booleans": [toast]})
        return True if shown[toast] else None

    assert await visible() is None  # nothing on screen before
    await kodi_backend.notify("Pair a remote", "Code 123456 (valid 120 s)")
    with trio.fail_after(STEP_TIMEOUT):
        await eventually(visible)
