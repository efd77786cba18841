"""The trio lircd client over in-memory streams: matching, timeouts, backoff, fan-out."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from agent.backends.lirc.client import (
    ClientEvent,
    Connected,
    Disconnected,
    LircClient,
    LircUnavailable,
    parse_address,
)
from agent.backends.lirc.protocol import KeyEvent, Reply


class ScriptedLircd:
    """Hands out in-memory connections; the test plays lircd on the far end."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: list[float] = []
        self.peers: list[trio.abc.Stream] = []
        self.new_peer = trio.Event()

    async def open_stream(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        self.attempts.append(trio.current_time())
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("lircd is not running")
        ours, theirs = trio.testing.memory_stream_pair()
        self.peers.append(theirs)
        self.new_peer.set()
        self.new_peer = trio.Event()
        return ours


async def read_line(stream: trio.abc.Stream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive_some(1)
    return data


def client_for(lircd: ScriptedLircd, **options: float) -> LircClient:
    return LircClient("test", open_stream=lircd.open_stream, **options)  # type: ignore[arg-type]


async def test_command_gets_its_reply_despite_an_event_in_the_middle() -> None:
    lircd = ScriptedLircd()
    client = client_for(lircd)
    events = client.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        (peer,) = lircd.peers

        async def serve() -> None:
            assert await read_line(peer) == b"LIST tv\n"
            await peer.send_all(b"BEGIN\nLIST tv\n0000000000000001 00 KEY_UP tv\nSUCCESS\n")
            await peer.send_all(b"DATA\n1\n0000000000000001 KEY_UP\nEND\n")

        nursery.start_soon(serve)
        with trio.fail_after(5):
            reply = await client.command("LIST", "tv")
            assert reply == Reply("LIST tv", True, ("0000000000000001 KEY_UP",))
            assert await events.receive() == Connected()
            assert await events.receive() == KeyEvent(1, 0, "KEY_UP", "tv")
        nursery.cancel_scope.cancel()


async def test_not_connected_is_unavailable_naming_the_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = client_for(ScriptedLircd(failures=1000))
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with pytest.raises(LircUnavailable, match=r"not connected: .*lircd is not running"):
            await client.command("VERSION")
        nursery.cancel_scope.cancel()


async def test_reconnect_backoff_doubles_up_to_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lircd = ScriptedLircd(failures=6)
    client = client_for(lircd, backoff_initial=0.1, backoff_max=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with trio.fail_after(60):
            await client.wait_connected()
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 6) for a, b in zip(lircd.attempts, lircd.attempts[1:], strict=False)]
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


async def test_silent_lircd_times_out_and_the_client_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lircd = ScriptedLircd()
    client = client_for(lircd, command_timeout=2.0, backoff_initial=0.1)
    events = client.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with pytest.raises(LircUnavailable, match=r"did not answer 'VERSION' within 2\.0 s"):
            await client.command("VERSION")
        with trio.fail_after(60):
            seen: list[ClientEvent] = [await events.receive() for _ in range(3)]
        assert isinstance(seen[1], Disconnected)
        assert seen[::2] == [Connected(), Connected()]
        assert len(lircd.peers) == 2
        nursery.cancel_scope.cancel()


async def test_a_reply_to_another_command_drops_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lircd = ScriptedLircd()
    client = client_for(lircd)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        peer = lircd.peers[0]

        async def serve_wrong_reply() -> None:
            await read_line(peer)
            await peer.send_all(b"BEGIN\nLIST\nSUCCESS\nEND\n")

        nursery.start_soon(serve_wrong_reply)
        with pytest.raises(
            LircUnavailable, match=r"no reply to 'VERSION': .*while we waited for 'VERSION'"
        ):
            await client.command("VERSION")
        nursery.cancel_scope.cancel()


async def test_a_cancelled_commands_late_reply_is_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lircd = ScriptedLircd()
    client = client_for(lircd)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        peer = lircd.peers[0]
        with trio.move_on_after(0.5):
            await client.command("LIST")  # the caller gives up; lircd answers later

        async def answer_both() -> None:
            assert await read_line(peer) == b"LIST\n"
            assert await read_line(peer) == b"VERSION\n"
            await peer.send_all(b"BEGIN\nLIST\nSUCCESS\nDATA\n1\ntv\nEND\n")
            await peer.send_all(b"BEGIN\nVERSION\nSUCCESS\nDATA\n1\n0.10.1\nEND\n")

        nursery.start_soon(answer_both)
        with trio.fail_after(5):
            reply = await client.command("VERSION")
        assert reply == Reply("VERSION", True, ("0.10.1",))
        assert len(lircd.peers) == 1  # same connection: nothing was dropped
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("/var/run/lirc/lircd", "/var/run/lirc/lircd"),
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("[::1]:8765", ("::1", 8765)),
        ("lircd.sock", "lircd.sock"),
    ],
)
def test_addresses(address: str, parsed: object) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["", "host:port", "host:0", ":8765"])
def test_bad_addresses_are_explained(address: str) -> None:
    with pytest.raises(ValueError, match="lircd address"):
        parse_address(address)
