from __future__ import annotations

import pytest

from agent.buttons.catalogue import in_catalogue_order
from agent.buttons.chat import (
    ChatHelp,
    ChatPress,
    ChatState,
    ChatText,
    ChatUnknown,
    help_text,
    parse_chat,
)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("pause", ChatPress("pause")),
        ("  Play_Pause ", ChatPress("play_pause")),
        ("volume up", ChatPress("volume_up")),
        ("vol+", ChatPress("volume_up")),
        ("OK", ChatPress("select")),
        ("context-menu", ChatPress("context_menu")),
        ("7", ChatPress("digit_7")),
        ("type Breaking Bad", ChatText("Breaking Bad")),
        ("help", ChatHelp()),
        ("status", ChatState()),
        ("make me a sandwich", ChatUnknown("make me a sandwich")),
    ],
)
def test_parse_chat(said: str, expected: object) -> None:
    assert parse_chat(said) == expected


def test_help_lists_the_buttons() -> None:
    text = help_text(in_catalogue_order(["mute", "up"]))
    assert "up, mute" in text
