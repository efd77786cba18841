"""Hostile peers each get their stream error and disconnect, while a paired phone keeps
pressing in the same test without a single failed press."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from agent.backends.virtual import VirtualTV
from agent.client import ButtonsClient, connect
from agent.testing.agents import open_agent
from agent.testing.rawpeer import OPEN, RawPeer, raw_peer

#: Hostile connections come from another loopback address than the phone's.
HOSTILE_ADDRESS = "127.0.0.2"


async def keep_pressing(phone: ButtonsClient, done: trio.Event, presses: list[str]) -> None:
    buttons = ["up", "down"]
    while not done.is_set():
        button = buttons[len(presses) % 2]
        await phone.press(button)  # any failure raises and fails the test
        presses.append(button)
        await trio.sleep(0.01)


async def ended_with(peer: RawPeer, seconds: float = 10) -> str | None:
    await peer.read_until(lambda p: p.ended or p.eof, seconds)
    return peer.stream_error()


async def billion_laughs(port: int) -> str | None:
    async with raw_peer(port) as peer:
        await peer.send(
            "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
            "<lolz>&lol1;</lolz>"
        )
        return await ended_with(peer)


async def external_entity(port: int) -> str | None:
    async with raw_peer(port) as peer:
        await peer.send(
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
            + OPEN.format(attrs="version='1.0'")
            + "<message><body>&e;</body></message>"
        )
        return await ended_with(peer)


async def huge_stanza(port: int) -> str | None:
    async with raw_peer(port) as peer:
        await peer.send(OPEN.format(attrs="version='1.0'") + "<message><body>")
        chunk = b"x" * 65536
        try:
            for _ in range(160):  # 10 MB
                await peer.send(chunk)
        except trio.BrokenResourceError:
            pass  # the agent hung up long before the end: good
        return await ended_with(peer)


async def deep_nesting(port: int) -> str | None:
    async with raw_peer(port) as peer:
        await peer.send(
            OPEN.format(attrs="version='1.0'") + "<message>" + "<a>" * 10_000 + "</a>" * 10_000
        )
        return await ended_with(peer)


async def slow_sender(port: int) -> str | None:
    async with raw_peer(port) as peer:
        try:
            for byte in OPEN.format(attrs="version='1.0'").encode():
                await peer.send(bytes([byte]))
                await trio.sleep(0.2)  # 5 bytes a second: the header would take 40 s
        except trio.BrokenResourceError:
            pass
        return await ended_with(peer)


HOSTILE: dict[str, tuple[Callable[[int], Awaitable[str | None]], str]] = {
    "billion laughs": (billion_laughs, "restricted-xml"),
    "external entity": (external_entity, "restricted-xml"),
    "10 MB stanza": (huge_stanza, "policy-violation"),
    "10 000-deep nesting": (deep_nesting, "policy-violation"),
    "slow sender": (slow_sender, "connection-timeout"),
}


async def test_hostile_inputs_end_their_streams_while_a_phone_keeps_pressing() -> None:
    tv = VirtualTV()
    async with (
        open_agent(tv, handshake_timeout=1.5) as agent,
        connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
    ):
        done, presses = trio.Event(), []
        results: dict[str, str | None] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_pressing, phone, done, presses)

            async def attack(name: str) -> None:
                results[name] = await HOSTILE[name][0](agent.port)

            with trio.fail_after(30):
                async with trio.open_nursery() as attacks:
                    for name in HOSTILE:
                        attacks.start_soon(attack, name)
            done.set()
        assert results == {name: wanted for name, (_, wanted) in HOSTILE.items()}
        assert len(presses) > 5
    assert tv.history == presses


async def test_500_connections_in_a_second_from_one_address() -> None:
    tv = VirtualTV()
    async with (
        open_agent(tv, handshake_timeout=1.0) as agent,
        connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
    ):
        done, presses = trio.Event(), []
        errors: list[str | None] = []

        async def one_connection() -> None:
            stream = await trio.open_tcp_stream(
                "127.0.0.1", agent.port, local_address=HOSTILE_ADDRESS
            )
            async with stream:
                errors.append(await ended_with(RawPeer(stream)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_pressing, phone, done, presses)
            with trio.fail_after(30):
                async with trio.open_nursery() as flood:
                    for _ in range(500):
                        flood.start_soon(one_connection)
            done.set()
        assert len(errors) == 500
        # Beyond the burst (and the per-address stream cap) each is refused at once; the
        # few let in say nothing and time out in the handshake.
        assert errors.count("policy-violation") >= 500 - agent.config.connection_burst
        assert set(errors) <= {"policy-violation", "connection-timeout"}
        assert len(presses) > 5
        await phone.press("select")  # the phone's own address was never limited
    assert tv.history == [*presses, "select"]
