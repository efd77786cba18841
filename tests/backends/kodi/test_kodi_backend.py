"""KodiBackend against FakeKodi over real loopback TCP: mapping, state machine, failures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio

from agent.backends.base import (
    Backend,
    BackendNotAuthorized,
    BackendRefused,
    BackendUnavailable,
    ButtonNotSupported,
    InputRequest,
)
from agent.backends.kodi import KodiBackend
from agent.backends.kodi.mapping import ACTIONS, BUTTON_CALLS
from agent.buttons.catalogue import ALL_BUTTONS
from agent.config import KodiConfig
from agent.testing.fake_kodi import FakeKodi, FakePlayer
from agent.testing.kodi import eventually, wait_for_state

StartBackend = Callable[[KodiConfig], Awaitable[KodiBackend]]
STEP_TIMEOUT = 10.0  # bounds every wait; never asserted on

NAVIGATION = {
    "up": "Input.Up",
    "down": "Input.Down",
    "left": "Input.Left",
    "right": "Input.Right",
    "select": "Input.Select",
    "back": "Input.Back",
    "home": "Input.Home",
    "context_menu": "Input.ContextMenu",
    "info": "Input.Info",
}


async def start_playing(fake: FakeKodi) -> None:
    """Something else (a Kodi remote) starts playback: Kodi tells its clients."""
    fake.player = FakePlayer(label="tone.wav")
    await fake.notify(
        "Player.OnPlay", {"item": {"type": "song"}, "player": {"playerid": 0, "speed": 1}}
    )


def test_kodi_backend_satisfies_the_protocol() -> None:
    assert isinstance(KodiBackend(KodiConfig()), Backend)


def test_every_catalogue_button_but_power_is_mapped() -> None:
    assert set(BUTTON_CALLS) == ALL_BUTTONS - {"power"}


async def test_connects_and_reports_kodis_state(backend: KodiBackend, fake_kodi: FakeKodi) -> None:
    state = backend.state()
    assert state.available
    assert state.status_message == ""
    assert (state.volume, state.muted, state.playback, state.player) == (
        100,
        False,
        "stopped",
        None,
    )
    assert backend.buttons() == ALL_BUTTONS - {"power"}


@pytest.mark.parametrize(("button", "method"), sorted(NAVIGATION.items()))
async def test_navigation_buttons_call_input_methods(
    backend: KodiBackend, fake_kodi: FakeKodi, button: str, method: str
) -> None:
    await backend.press(button)
    assert fake_kodi.calls[-1] == (method, {})


@pytest.mark.parametrize(("button", "action"), sorted(ACTIONS.items()))
async def test_other_buttons_execute_kodi_actions(
    backend: KodiBackend, fake_kodi: FakeKodi, button: str, action: str
) -> None:
    await backend.press(button)
    assert fake_kodi.calls[-1] == ("Input.ExecuteAction", {"action": action})


async def test_volume_and_mute_change_kodi_and_the_state(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    await backend.press("volume_down")
    await backend.press("volume_down")
    assert fake_kodi.calls[-1] == ("Application.SetVolume", {"volume": "decrement"})
    assert fake_kodi.volume == 90
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(backend, lambda s: s.volume == 90)
    await backend.press("mute")
    assert fake_kodi.muted
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(backend, lambda s: s.muted is True)


async def test_player_buttons_without_a_player_are_refused(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    with pytest.raises(BackendRefused, match="nothing is playing"):
        await backend.press("play_pause")
    assert "Player.PlayPause" not in fake_kodi.methods_called()


async def test_playback_follows_notifications_and_buttons(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    await start_playing(fake_kodi)
    with trio.fail_after(STEP_TIMEOUT):
        state = await wait_for_state(backend, lambda s: s.title == "tone.wav")
    assert (state.playback, state.player, state.speed, state.duration) == (
        "playing",
        "audio",
        1.0,
        30.0,
    )

    await backend.press("play_pause")
    assert fake_kodi.calls[-1] == ("Player.PlayPause", {"playerid": 0})
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(backend, lambda s: s.playback == "paused" and s.speed == 0)

    await backend.press("fast_forward")
    assert fake_kodi.calls[-1] == ("Player.SetSpeed", {"speed": "increment", "playerid": 0})
    await backend.press("next")
    assert fake_kodi.calls[-1] == ("Player.GoTo", {"to": "next", "playerid": 0})

    await backend.press("stop")
    with trio.fail_after(STEP_TIMEOUT):
        state = await wait_for_state(backend, lambda s: s.playback == "stopped")
    assert (state.title, state.player, state.speed) == (None, None, None)
    with pytest.raises(BackendRefused):
        await backend.press("pause")


async def test_a_player_started_before_we_connected_is_found(
    start_backend: StartBackend, fake_kodi: FakeKodi
) -> None:
    fake_kodi.player = FakePlayer(kind="video", label="movie.mkv", speed=0.0, position=61.5)
    backend = await start_backend(fake_kodi.kodi_config())
    state = backend.state()
    assert (state.playback, state.player, state.title, state.position) == (
        "paused",
        "video",
        "movie.mkv",
        61.5,
    )
    before = len(fake_kodi.calls)
    await backend.press("play")
    # The first call is the press itself, with the player found on connect (the OnPlay it
    # triggers then refreshes the player concurrently, so it need not be the last call).
    assert fake_kodi.calls[before] == ("Player.PlayPause", {"play": True, "playerid": 0})


async def test_kodi_error_becomes_backend_refused_with_kodis_message(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    fake_kodi.errors["Input.Up"] = (-32100, "Failed to execute method.")
    with pytest.raises(BackendRefused, match="Failed to execute method"):
        await backend.press("up")
    assert backend.state().available  # a refusal is not an outage


async def test_power_needs_a_configured_action(
    start_backend: StartBackend, fake_kodi: FakeKodi
) -> None:
    plain = await start_backend(fake_kodi.kodi_config())
    with pytest.raises(ButtonNotSupported, match="power_action"):
        await plain.press("power")
    by_action = await start_backend(fake_kodi.kodi_config(power_action="stop"))
    assert "power" in by_action.buttons()
    await by_action.press("power")
    assert fake_kodi.calls[-1] == ("Input.ExecuteAction", {"action": "stop"})
    by_method = await start_backend(fake_kodi.kodi_config(power_action="System.Suspend"))
    await by_method.press("power")
    assert fake_kodi.calls[-1] == ("System.Suspend", {})


async def test_unknown_button_is_not_supported(backend: KodiBackend) -> None:
    with pytest.raises(ButtonNotSupported):
        await backend.press("self_destruct")


async def test_text_goes_to_kodis_keyboard(backend: KodiBackend, fake_kodi: FakeKodi) -> None:
    with pytest.raises(BackendRefused, match="not asking for text"):
        await backend.send_text("breaking bad")
    await fake_kodi.notify(
        "Input.OnInputRequested", {"title": "Search", "type": "keyboard", "value": ""}
    )
    fake_kodi.keyboard_text = ""
    with trio.fail_after(STEP_TIMEOUT):
        state = await wait_for_state(backend, lambda s: s.input_request is not None)
    assert state.input_request == InputRequest(title="Search", kind="keyboard", value="")
    await backend.send_text("breaking bad")
    assert fake_kodi.calls[-1] == ("Input.SendText", {"text": "breaking bad", "done": True})
    assert fake_kodi.keyboard_text is None  # submitted: the fake closed its keyboard
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(backend, lambda s: s.input_request is None)


async def test_hold_repeats_until_released(backend: KodiBackend, fake_kodi: FakeKodi) -> None:
    async def three_downs() -> bool | None:
        return True if fake_kodi.methods_called().count("Input.Down") >= 3 else None

    with trio.fail_after(STEP_TIMEOUT):
        async with backend.hold("down"):
            await eventually(three_downs)
    released = fake_kodi.methods_called().count("Input.Down")
    await backend.press("up")  # a round trip after release: any stray repeat would be in by now
    assert fake_kodi.methods_called().count("Input.Down") == released


async def test_malformed_notifications_do_not_break_anything(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    await fake_kodi.notify("Application.OnVolumeChanged", {"volume": "loud", "muted": "maybe"})
    await fake_kodi.notify("Player.OnPlay", ["not", "an", "object"])
    await fake_kodi.notify("Some.Future.Notification", {"x": 1})
    await fake_kodi.notify("Application.OnVolumeChanged", {"volume": 42, "muted": True})
    with trio.fail_after(STEP_TIMEOUT):
        state = await wait_for_state(backend, lambda s: s.volume == 42)
    assert state.muted is True
    assert state.available
    assert fake_kodi.tcp_connections == 1


async def test_garbage_from_kodi_drops_the_connection_and_reconnects(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    await fake_kodi.send_raw(b"<html>this is not JSON-RPC</html>")
    with trio.fail_after(STEP_TIMEOUT):
        await eventually(lambda: _connections_at_least(fake_kodi, 2))
        await wait_for_state(backend, lambda s: s.available)
    await backend.press("select")
    assert fake_kodi.calls[-1] == ("Input.Select", {})


async def _connections_at_least(fake: FakeKodi, count: int) -> bool | None:
    await trio.lowlevel.checkpoint()
    return True if fake.tcp_connections >= count else None


async def test_replies_split_into_single_bytes_are_reassembled(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    fake_kodi.write_chunk = 1
    await backend.press("volume_up")
    with trio.fail_after(STEP_TIMEOUT):
        await wait_for_state(backend, lambda s: s.volume == 100 and s.muted is False)
    assert fake_kodi.calls[-1] == ("Application.SetVolume", {"volume": "increment"})


async def test_unanswered_call_times_out_as_unavailable(
    start_backend: StartBackend, fake_kodi: FakeKodi
) -> None:
    backend = await start_backend(fake_kodi.kodi_config(call_timeout=0.2))
    fake_kodi.unanswered.add("Input.Info")
    with pytest.raises(BackendUnavailable, match=r"did not answer Input\.Info"):
        await backend.press("info")
    await backend.press("select")  # the late-answer bookkeeping leaves the connection usable
    assert fake_kodi.calls[-1] == ("Input.Select", {})


async def test_kodi_going_away_and_coming_back(
    nursery: trio.Nursery, start_backend: StartBackend
) -> None:
    first: FakeKodi = await nursery.start(FakeKodi().serve)
    backend = await start_backend(first.kodi_config())
    first.stop()
    with trio.fail_after(STEP_TIMEOUT):
        down = await wait_for_state(backend, lambda s: not s.available)
    assert f"127.0.0.1:{first.tcp_port}" in down.status_message
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{first.tcp_port}"):
        await backend.press("up")
    with pytest.raises(BackendUnavailable):
        await backend.send_text("hello")

    second: FakeKodi = await nursery.start(FakeKodi(tcp_port=first.tcp_port, volume=30).serve)
    with trio.fail_after(STEP_TIMEOUT):
        up = await wait_for_state(backend, lambda s: s.available)
    assert up.volume == 30
    await backend.press("up")
    assert second.calls[-1] == ("Input.Up", {})


async def test_kodi_not_running_at_start(
    nursery: trio.Nursery, start_backend: StartBackend
) -> None:
    absent = FakeKodi()
    await nursery.start(absent.serve)
    absent.stop()
    backend = await start_backend(absent.kodi_config())
    state = backend.state()
    assert not state.available
    assert state.status_message.startswith(f"Kodi is not running at 127.0.0.1:{absent.tcp_port}")


# -- HTTP transport --------------------------------------------------------------------------


async def test_http_transport_keeps_one_connection(
    nursery: trio.Nursery, start_backend: StartBackend
) -> None:
    fake: FakeKodi = await nursery.start(FakeKodi(username="kodi", password="s3cret").serve)
    backend = await start_backend(fake.kodi_config(transport="http"))
    assert backend.state().available
    for _ in range(5):
        await backend.press("volume_down")
    assert fake.volume == 75
    await backend.press("home")
    assert fake.calls[-1] == ("Input.Home", {})
    assert fake.http_connections == 1
    assert fake.tcp_connections == 0


async def test_http_wrong_password_is_not_authorized_and_logged_once(
    nursery: trio.Nursery, start_backend: StartBackend, caplog: pytest.LogCaptureFixture
) -> None:
    fake: FakeKodi = await nursery.start(FakeKodi(username="kodi", password="s3cret").serve)
    caplog.set_level(logging.ERROR, logger="agent.backends.kodi")
    backend = await start_backend(fake.kodi_config(transport="http", password="wrong"))
    assert not backend.state().available
    assert "HTTP 401" in backend.state().status_message
    with pytest.raises(BackendNotAuthorized, match="username/password"):
        await backend.press("up")

    async def retried() -> bool | None:  # the backend keeps retrying with backoff
        await trio.lowlevel.checkpoint()
        return True if fake.http_connections >= 3 else None

    with trio.fail_after(STEP_TIMEOUT):
        await eventually(retried)
    auth_lines = [r for r in caplog.records if "HTTP 401" in r.getMessage()]
    assert len(auth_lines) == 1


async def test_concurrent_presses_are_matched_to_their_answers(
    backend: KodiBackend, fake_kodi: FakeKodi
) -> None:
    fake_kodi.write_chunk = 7  # answers arrive in pieces, several per read
    buttons = [name for name in NAVIGATION for _ in range(8)]
    with trio.fail_after(STEP_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for button in buttons:
                nursery.start_soon(backend.press, button)
    assert sorted(fake_kodi.methods_called()[-len(buttons) :]) == sorted(
        NAVIGATION[button] for button in buttons
    )
    assert fake_kodi.tcp_connections == 1


async def test_notify_shows_a_kodi_notification(backend: KodiBackend, fake_kodi: FakeKodi) -> None:
    await backend.notify("Pair a remote", "Code 123456 (valid 120 s)")
    method, params = fake_kodi.calls[-1]
    assert method == "GUI.ShowNotification"
    assert (params["title"], params["message"]) == ("Pair a remote", "Code 123456 (valid 120 s)")
