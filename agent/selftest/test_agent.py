"""The agent as it runs on the device: READY, pair button and status LED, IR in and out, a
phone, and a graceful stop. Every test starts its own agent process and lircd."""

from __future__ import annotations

import trio

from agent import client
from agent.security.phone import PhoneCredentials
from agent.selftest.harness import AgentProcess, LoopbackPins, MockPins, led_levels, toggles
from agent.testing.lircd import TEST_REMOTE, TestLircd

# A steady LED shows no change; the pairing pattern changes every 0.15 s.
WATCH_SECONDS = 1.5


async def test_agent_is_ready_and_answers_a_phone(
    agent: AgentProcess, phone: PhoneCredentials
) -> None:
    ready = next(m for m in agent.messages if "READY" in m)
    assert ready["MAINPID"] == str(agent.process.pid if agent.process else None)
    assert agent.port > 0
    async with client.connect(
        "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
    ) as remote:
        assert await remote.ping() >= 0
    await agent.wait_message(lambda m: m == {"WATCHDOG": "1"}, seconds=10)


async def test_status_led_is_steady_on_when_ready(
    agent: AgentProcess, pins: MockPins | LoopbackPins
) -> None:
    # READY can come a moment before the LED leaves its start-up blink: allow a few windows.
    windows = [await led_levels(pins, WATCH_SECONDS) for _ in range(3)]
    assert [True] in windows, f"LED levels per {WATCH_SECONDS} s window: {windows}"


async def test_pair_button_opens_pairing_and_the_led_blinks(
    agent: AgentProcess, pins: MockPins | LoopbackPins
) -> None:
    await pins.set_pair_button(True)
    await trio.sleep(0.1)  # a short press, as a finger makes (not the 10 s clear-all hold)
    await pins.set_pair_button(False)
    levels = await led_levels(pins, WATCH_SECONDS)
    assert toggles(levels) >= 4, f"LED levels while pairing: {levels}"


async def test_remote_key_goes_through_the_agent_and_out_as_ir(
    agent: AgentProcess, lircd: TestLircd, pins: MockPins | LoopbackPins
) -> None:
    """A key from the TV's remote (injected into the real lircd) is routed by the agent:
    `power` goes to the IR backend, so lircd transmits it; the LED flashes for the press."""
    lircd.clear_sent()
    await pins.mark()
    await lircd.simulate("KEY_POWER", TEST_REMOTE)
    with trio.fail_after(10):
        while not lircd.sent_timings():  # noqa: ASYNC110 - lircd writes a file, no event
            await trio.sleep(0.05)
    assert lircd.sent_timings()[0][0] == "pulse"
    await trio.sleep(0.5)  # the flash is a brief inversion
    levels = await pins.levels_since_mark()
    assert toggles(levels) >= 2, f"LED levels around the press: {levels}"


async def test_phone_press_goes_out_as_ir_and_the_tv_state_follows(
    agent: AgentProcess, lircd: TestLircd, phone: PhoneCredentials
) -> None:
    lircd.clear_sent()
    async with client.connect(
        "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
    ) as remote:
        await remote.press("power")
        assert lircd.sent_timings()  # power is routed to IR
        await remote.press("mute")  # the rest to the (virtual) TV
        state = await remote.state()
    assert state.muted is True


async def test_phone_sees_presses_from_the_tv_remote(
    agent: AgentProcess, lircd: TestLircd, phone: PhoneCredentials
) -> None:
    async with client.connect(
        "127.0.0.1", agent.port, agent=agent.instance, credentials=phone
    ) as remote:
        updates = remote.follow()
        first = await updates.__anext__()  # the current state comes first
        assert not isinstance(first, client.Pressed)
        await lircd.simulate("KEY_VOLUMEUP", TEST_REMOTE)
        with trio.fail_after(10):
            async for update in updates:
                if isinstance(update, client.Pressed):
                    break
        assert isinstance(update, client.Pressed)
        assert (update.button, update.source) == ("volume_up", "ir")
        state = await remote.state()
    assert state.volume == 55  # the virtual TV starts at 50


async def test_sigterm_stops_gracefully(agent: AgentProcess) -> None:
    assert await agent.stop() == 0
    stopping = next(m for m in agent.messages if "STOPPING" in m)
    assert stopping["STATUS"].startswith("Stopping (SIGTERM)")
    assert "mdns.unregistered" in agent.log_text()
