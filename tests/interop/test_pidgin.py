"""Interop with a stock XEP-0174 chat client: libpurple's Bonjour protocol, driven through finch.

Issue 3 promises that any link-local chat client "sees the agent as a buddy and can type
`pause` to it". Here a real finch (Pidgin's text UI, same libpurple) with a real avahi-daemon
finds the agent over real mDNS inside the test network namespace, opens a chat with it, types
button names, and must show the agent's replies; the virtual TV must really change.
agent/testing/purple.py starts and stops finch and its daemons; docs/interop.md says more.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.config import Config
from agent.testing import netns, purple
from agent.testing.agents import eventually, open_agent

pytestmark = [
    pytest.mark.netns,
    pytest.mark.interop,
    pytest.mark.skipif(
        bool(purple.missing_commands()),
        reason=f"needs {', '.join(purple.missing_commands())}: "
        f"apt-get install -y {' '.join(purple.APT_PACKAGES)}",
    ),
]

# avahi and the agent's zeroconf must share one veth end (see agent/testing/purple.py).
INTERFACE = netns.VETH_NAMES[0]
AGENT_ADDRESS = netns.VETH_ADDRESSES[0]
#: The agent's friendly name; libpurple shows the TXT `1st` (= nick) as the buddy's name.
NICK = "Den TV"
#: Hang guard only: finch shows the buddy ~2-3 s after start, and replies come at once.
WAIT = 20.0


CONFIG_KEYS = {field.name for field in dataclasses.fields(Config)}
#: The security work adds `chat_fallback = "off" | "pin"`, off by default: with "pin" a chat
#: must first type the PIN the TV shows (docs/protocol.md). Before it, chat is always open.
PIN_PROTECTED_CHAT = "chat_fallback" in CONFIG_KEYS


def chat_client_settings() -> dict[str, Any]:
    """Config overrides that let a plain (version-less, TLS-less) chat client use the agent:
    the PIN-protected chat fallback, opened by the chat's request (no pair button here)."""
    wanted = {"chat_fallback": "pin", "pairing_requires_button": False}
    return {key: value for key, value in wanted.items() if key in CONFIG_KEYS}


async def unlock_with_the_pin_on_the_tv(agent: Agent, finch: purple.Finch) -> None:
    """With `chat_fallback = "pin"`: the first words open a pairing window (the TV shows a
    PIN and nothing is pressed); the person types that PIN into the chat, which unlocks it."""
    if not PIN_PROTECTED_CHAT:
        return
    pairing = agent.dispatcher.pairing
    assert pairing is not None, "chat_fallback = 'pin' but the agent has no pairing service"
    await finch.say("play_pause")
    await eventually(lambda: pairing.window.current_pin is not None, seconds=WAIT)
    pin = pairing.window.current_pin
    assert pin is not None
    await finch.say(pin)
    await finch.wait_for_text(f"{NICK}: ok: PIN accepted", seconds=WAIT)
    assert agent.backend.state().playback == "stopped"  # the locked chat pressed nothing


async def test_finch_sees_the_agent_as_a_buddy_and_its_chat_drives_the_tv(tmp_path: Path) -> None:
    async with (
        open_agent(
            announce=True,
            listen=[AGENT_ADDRESS],
            mdns_interfaces=[AGENT_ADDRESS],
            nick=NICK,
            **chat_client_settings(),
        ) as agent,
        purple.open_finch(tmp_path / "purple", interface=INTERFACE) as finch,
    ):
        tv = agent.backend
        assert tv.state().playback == "stopped"

        await finch.open_conversation(NICK, seconds=WAIT)
        await unlock_with_the_pin_on_the_tv(agent, finch)

        await finch.say("play_pause")
        await finch.wait_for_text(f"{NICK}: ok: play_pause", seconds=WAIT)
        assert tv.state().playback == "playing"

        await finch.say("pause")
        await finch.wait_for_text(f"{NICK}: ok: pause", seconds=WAIT)
        assert tv.state().playback == "paused"

        await finch.say("warp speed")
        await finch.wait_for_text(f"{NICK}: unknown command 'warp speed'", seconds=WAIT)
        assert tv.state().playback == "paused"
