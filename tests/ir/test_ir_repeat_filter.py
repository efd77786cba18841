"""Which IR key frames become presses: first frame, rate-limited repeats, no duplicates."""

from __future__ import annotations

import pytest

from agent.backends.keymap import KeyBinding, KeyMap
from agent.backends.lirc.config import PassthroughConfig
from agent.backends.lirc.protocol import KeyEvent
from agent.ir.passthrough import RepeatFilter

CONFIG = PassthroughConfig(repeat_delay=0.5, repeat_interval=0.125, min_gap=0.2)


def frame(key: str, repeat: int = 0, remote: str = "tv") -> KeyEvent:
    return KeyEvent(code=1, repeat=repeat, key=key, remote=remote)


def hold(
    key: str, duration: float, period: float, start: float = 0.0
) -> list[tuple[float, KeyEvent]]:
    """Frames as lircd sends them for a held key: repeat 0, then 1, 2, … every `period`."""
    count = round(duration / period)
    return [(start + n * period, frame(key, n)) for n in range(count + 1)]


def presses(
    frames: list[tuple[float, KeyEvent]], config: PassthroughConfig = CONFIG
) -> list[tuple[float, str]]:
    repeat_filter = RepeatFilter(KeyMap(), config)
    return [(t, b) for t, e in frames if (b := repeat_filter.accept(e, t)) is not None]


def test_a_single_frame_presses_once() -> None:
    assert presses([(0.0, frame("KEY_OK"))]) == [(0.0, "select")]


def test_held_arrow_repeats_after_the_delay_at_the_limited_rate() -> None:
    # lircd repeats every 0.05 s for 1 s: frames at 0.00, 0.05, …, 1.00.
    got = presses(hold("KEY_UP", duration=1.0, period=0.05))
    times = [round(t, 2) for t, _ in got]
    # press at 0; nothing before 0.5; then at most one per 0.125 s (frames on a 0.05 grid).
    assert times == [0.0, 0.5, 0.65, 0.8, 0.95]
    assert {b for _, b in got} == {"up"}


def test_held_non_repeatable_button_presses_once() -> None:
    assert presses(hold("KEY_POWER", duration=2.0, period=0.1)) == [(0.0, "power")]


def test_duplicate_fresh_frames_within_min_gap_are_one_press() -> None:
    # A Harmony-style remote: the same code three times, 40 ms apart, each with repeat 0.
    frames = [(0.0, frame("KEY_MUTE")), (0.04, frame("KEY_MUTE")), (0.08, frame("KEY_MUTE"))]
    # A real second press, after a pause.
    frames.append((0.5, frame("KEY_MUTE")))
    assert presses(frames) == [(0.0, "mute"), (0.5, "mute")]


def test_a_different_key_is_a_new_press_at_once() -> None:
    frames = [(0.0, frame("KEY_UP")), (0.01, frame("KEY_DOWN")), (0.02, frame("KEY_UP"))]
    assert [b for _, b in presses(frames)] == ["up", "down", "up"]


def test_release_frames_unknown_keys_and_other_remotes_are_ignored() -> None:
    config = PassthroughConfig(remotes=["tv"])
    frames = [
        (0.0, frame("KEY_OK_EVUP")),
        (1.0, frame("KEY_WHATEVER")),
        (2.0, frame("KEY_OK", remote="other")),
    ]
    assert presses(frames, config) == []


@pytest.mark.parametrize(("remote", "button"), [("tv", "info"), ("stb", "red")])
def test_per_remote_bindings_win_over_the_default_table(remote: str, button: str) -> None:
    keymap = KeyMap(bindings=[KeyBinding("info", "KEY_F1"), KeyBinding("red", "KEY_F1", "stb")])
    repeat_filter = RepeatFilter(keymap, CONFIG)
    assert repeat_filter.accept(frame("KEY_F1", remote=remote), 0.0) == button
