from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from agent.backends.base import InputRequest, TvState
from agent.buttons import codec
from agent.buttons.catalogue import CATALOGUE, in_catalogue_order

COMMANDS: list[codec.Command] = [
    codec.Press("play_pause"),
    codec.Hold("volume_up", "start"),
    codec.Hold("volume_up", "stop"),
    codec.Text("breaking bad"),
    codec.Text("partial", submit=False),
    codec.ListButtons(),
    codec.GetState(),
    codec.Subscribe(),
    codec.Unsubscribe(),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_request_round_trip(command: codec.Command) -> None:
    iq_type, payload = codec.request_element(command)
    assert payload.tag.startswith(f"{{{codec.NS}}}")
    assert codec.parse_request(iq_type, payload) == command


@pytest.mark.parametrize(
    ("iq_type", "xml", "condition"),
    [
        ("set", "<press xmlns='urn:buttons-agent:remote:0'/>", "bad-request"),
        ("get", "<press xmlns='urn:buttons-agent:remote:0' button='up'/>", "bad-request"),
        (
            "set",
            "<hold xmlns='urn:buttons-agent:remote:0' button='up' action='maybe'/>",
            "bad-request",
        ),
        (
            "set",
            "<text xmlns='urn:buttons-agent:remote:0' submit='perhaps'>x</text>",
            "bad-request",
        ),
        ("set", "<launch xmlns='urn:buttons-agent:remote:0'/>", "feature-not-implemented"),
        (
            "set",
            "<text xmlns='urn:buttons-agent:remote:0'>" + "x" * 2000 + "</text>",
            "policy-violation",
        ),
    ],
)
def test_bad_requests_name_the_stanza_error(iq_type: str, xml: str, condition: str) -> None:
    with pytest.raises(codec.CodecError) as caught:
        codec.parse_request(iq_type, ET.fromstring(xml))
    assert caught.value.condition == condition
    assert caught.value.text


def test_buttons_list_round_trip_keeps_catalogue_order() -> None:
    infos = in_catalogue_order(["mute", "up", "power"])
    assert [i.name for i in infos] == ["power", "up", "mute"]
    assert codec.parse_buttons(codec.buttons_element(infos)) == infos


states = hs.builds(
    TvState,
    available=hs.booleans(),
    status_message=hs.text(hs.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    power=hs.booleans(),
    volume=hs.none() | hs.integers(0, 100),
    muted=hs.none() | hs.booleans(),
    playback=hs.sampled_from(["playing", "paused", "stopped"]),
    player=hs.none() | hs.sampled_from(["audio", "video"]),
    title=hs.none() | hs.text(hs.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
    position=hs.none() | hs.integers(0, 10_000).map(float),
    duration=hs.none() | hs.integers(0, 10_000).map(float),
    speed=hs.none() | hs.sampled_from([0.0, 1.0, -2.0, 32.0]),
    focused=hs.none() | hs.sampled_from(["Movies", "Search"]),
    input_request=hs.none() | hs.builds(InputRequest, title=hs.sampled_from(["", "Search"])),
)


@given(states)
def test_state_round_trip(state: TvState) -> None:
    parsed = codec.parse_state(codec.state_element(state))
    if state.player is None and state.title is None:
        # Position and speed are only reported for something that is playing.
        state = state.replace(position=None, duration=None, speed=None)
    assert parsed == state


def test_pressed_push_names_button_and_source() -> None:
    element = codec.pressed_element("mute", "ir")
    assert element.tag == codec.q("pressed")
    assert (element.get("button"), element.get("source")) == ("mute", "ir")


def test_describe_state_is_one_human_line() -> None:
    line = codec.describe_state(TvState(volume=30, playback="playing", title="Up"))
    assert line == "power: on, volume: 30, playing: Up"
    assert codec.describe_state(TvState(available=False, status_message="Kodi is down")) == (
        "unavailable: Kodi is down"
    )


def test_catalogue_has_the_canonical_names() -> None:
    expected = {
        "power", "up", "down", "left", "right", "select", "back", "home", "context_menu",
        "info", "play_pause", "play", "pause", "stop", "next", "previous", "rewind",
        "fast_forward", "volume_up", "volume_down", "mute", "channel_up", "channel_down",
        "red", "green", "yellow", "blue", "subtitles", "audio_track",
        *(f"digit_{n}" for n in range(10)),
    }  # fmt: skip
    assert set(CATALOGUE) == expected
