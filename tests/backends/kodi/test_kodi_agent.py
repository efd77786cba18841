"""The whole path with a real Kodi: phone → agent (real TCP XMPP) → KodiBackend → Kodi."""

from __future__ import annotations

import pytest
import trio

from agent import client
from agent.backends.kodi import KodiBackend
from agent.testing.agents import open_agent
from agent.testing.kodi import HeadlessKodi, eventually, wait_for_state

pytestmark = [pytest.mark.kodi, pytest.mark.netns]
STEP_TIMEOUT = 30.0  # bounds every wait; never asserted on
LOOPBACK = ["127.0.0.1"]


async def announced_status(instance: str, wanted: str) -> client.AgentAddress:
    """Browse (real mDNS in the test namespace) until the agent's TXT status is `wanted`."""
    while True:
        for found in await client.find_agents(seconds=1.0, interfaces=LOOPBACK):
            if found.instance == instance and found.status == wanted:
                return found


async def test_phone_drives_kodi_through_the_agent(real_kodi: HeadlessKodi) -> None:
    backend = KodiBackend(real_kodi.kodi_config())
    async with (
        open_agent(backend, name="kodi-e2e") as agent,
        client.connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
    ):
        with trio.fail_after(STEP_TIMEOUT):
            await wait_for_state(backend, lambda s: s.available)
        await phone.press("volume_down")
        volume = real_kodi.call("Application.GetProperties", {"properties": ["volume"]})
        assert volume["volume"] < 50

        async def phone_sees_volume() -> bool | None:
            return True if (await phone.state()).volume == volume["volume"] else None

        with trio.fail_after(STEP_TIMEOUT):
            await eventually(phone_sees_volume)

        with pytest.raises(client.StanzaErrorReply) as refused:
            await phone.press("stop")  # nothing is playing
        assert refused.value.error.condition == "not-allowed"
        assert "nothing is playing" in refused.value.error.text


async def test_kodi_killed_the_agent_says_dnd_and_recovers(real_kodi: HeadlessKodi) -> None:
    backend = KodiBackend(real_kodi.kodi_config())
    async with (
        open_agent(backend, announce=True, name="kodi-outage") as agent,
        client.connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
    ):
        with trio.fail_after(STEP_TIMEOUT):
            await announced_status(agent.instance, "avail")
        real_kodi.kill()
        with trio.fail_after(STEP_TIMEOUT):
            dnd = await announced_status(agent.instance, "dnd")
        assert str(real_kodi.tcp_port) in dnd.message
        with pytest.raises(client.StanzaErrorReply) as unavailable:
            await phone.press("up")
        assert unavailable.value.error.condition == "service-unavailable"

        await trio.to_thread.run_sync(real_kodi.start)
        with trio.fail_after(STEP_TIMEOUT):
            await announced_status(agent.instance, "avail")
        await phone.press("mute")
        assert real_kodi.call("Application.GetProperties", {"properties": ["muted"]}) == {
            "muted": True
        }
