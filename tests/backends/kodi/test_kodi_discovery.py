"""Finding Kodi by mDNS (`kodi.discover`): real multicast on the test namespace's loopback.

The announcements are made with python-zeroconf, as Kodi's own (Avahi) would be: the headless
Kodi here runs without an mDNS daemon. The browsing side is the agent's real code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from agent import client
from agent.backends.base import BackendUnavailable, TvState
from agent.backends.kodi import KodiBackend
from agent.backends.kodi.discovery import HTTP_SERVICE, TCP_SERVICE
from agent.backends.kodi.transport import TcpConnection
from agent.config import KodiConfig
from agent.testing.agents import open_agent
from agent.testing.announce import announced
from agent.testing.fake_kodi import FakeKodi
from agent.testing.kodi import HeadlessKodi, eventually, wait_for_state

pytestmark = pytest.mark.netns

LOOPBACK = ["127.0.0.1"]
#: Bounds every wait (mDNS probing alone takes ~1.5 s); never asserted on.
WAIT = 20.0

StartDiscovering = Callable[..., Awaitable[KodiBackend]]


@pytest.fixture
def start_discovering(nursery: trio.Nursery) -> StartDiscovering:
    async def start(**settings: Any) -> KodiBackend:
        # host is unused with discover; an address nothing answers on would show if it were.
        config = KodiConfig(discover=True, call_timeout=2.0, host="192.0.2.1", **settings)
        backend = KodiBackend(config, max_backoff=0.2, mdns_interfaces=LOOPBACK)
        with trio.fail_after(WAIT):
            await nursery.start(backend.run)
        return backend

    return start


@pytest.fixture
async def second_kodi(nursery: trio.Nursery) -> FakeKodi:
    fake: FakeKodi = await nursery.start(FakeKodi().serve)
    return fake


async def available(backend: KodiBackend) -> TvState:
    with trio.fail_after(WAIT):
        return await wait_for_state(backend, lambda s: s.available)


async def test_nothing_announced_says_what_it_is_looking_for(
    start_discovering: StartDiscovering,
) -> None:
    backend = await start_discovering(instance="Living room")
    state = backend.state()
    assert not state.available
    assert state.status_message == (
        "looking for Kodi 'Living room' on the LAN (mDNS _xbmc-jsonrpc._tcp): none found yet"
    )
    with pytest.raises(BackendUnavailable, match="looking for Kodi 'Living room'"):
        await backend.press("up")


async def test_finds_kodi_and_follows_it_to_a_new_address(
    start_discovering: StartDiscovering, fake_kodi: FakeKodi, second_kodi: FakeKodi
) -> None:
    backend = await start_discovering()
    async with announced(TCP_SERVICE, "Living room", fake_kodi.tcp_port) as kodi:
        await available(backend)
        assert backend.address == f"'Living room' at 127.0.0.1:{fake_kodi.tcp_port}"
        await backend.press("up")
        assert "Input.Up" in fake_kodi.methods_called()

        # Kodi comes back elsewhere (a new DHCP lease, here a new port): the agent follows
        # the announcement, without waiting for the old connection to fail.
        await kodi.move(port=second_kodi.tcp_port)
        moved_to = f"'Living room' at 127.0.0.1:{second_kodi.tcp_port}"

        async def reconnected() -> bool | None:
            return True if backend.address == moved_to and backend.state().available else None

        with trio.fail_after(WAIT):
            await eventually(reconnected)
        await backend.press("down")
        assert "Input.Down" in second_kodi.methods_called()
        assert "Input.Down" not in fake_kodi.methods_called()


@pytest.mark.parametrize("choice", ["bedroom", "uuid-of-the-bedroom"])
async def test_instance_chooses_by_name_or_uuid(
    start_discovering: StartDiscovering,
    fake_kodi: FakeKodi,
    second_kodi: FakeKodi,
    choice: str,
) -> None:
    backend = await start_discovering(instance=choice)
    async with (
        announced(TCP_SERVICE, "Living room", fake_kodi.tcp_port, txt={"uuid": "uuid-1"}),
        announced(
            TCP_SERVICE, "Bedroom", second_kodi.tcp_port, txt={"uuid": "uuid-of-the-bedroom"}
        ),
    ):
        await available(backend)
        await backend.press("select")
    assert "Input.Select" in second_kodi.methods_called()
    assert "Input.Select" not in fake_kodi.methods_called()


async def test_http_transport_browses_the_web_servers_service(
    start_discovering: StartDiscovering, fake_kodi: FakeKodi
) -> None:
    backend = await start_discovering(transport="http", username="kodi", password="secret")
    fake_kodi.username, fake_kodi.password = "kodi", "secret"
    async with (
        # The raw socket's announcement must not be taken for the web server's.
        announced(TCP_SERVICE, "Living room", fake_kodi.tcp_port),
        announced(HTTP_SERVICE, "Living room", fake_kodi.http_port),
    ):
        await available(backend)
        assert backend.address.endswith(f":{fake_kodi.http_port}")
        await backend.press("home")
    assert "Input.Home" in fake_kodi.methods_called()


async def test_agent_configured_to_discover_kodi(fake_kodi: FakeKodi) -> None:
    """`[kodi] discover = true`: the agent browses on its mDNS interfaces (loopback here)."""
    async with (
        open_agent(backend="kodi", kodi={"discover": True, "instance": "Living room"}) as agent,
        client.connect("127.0.0.1", agent.port, agent=agent.instance) as phone,
    ):
        assert "looking for Kodi 'Living room'" in (await phone.state()).status_message
        async with announced(TCP_SERVICE, "Living room", fake_kodi.tcp_port):
            with trio.fail_after(WAIT):
                await wait_for_state(agent.backend, lambda s: s.available)
            await phone.press("back")
    assert "Input.Back" in fake_kodi.methods_called()


# -- the real Kodi --------------------------------------------------------------------------


@pytest.fixture
async def announced_real_kodi(real_kodi: HeadlessKodi) -> AsyncIterator[HeadlessKodi]:
    async with announced(
        TCP_SERVICE, "Kodi (buttons-test)", real_kodi.tcp_port, txt={"uuid": "f1e2d3c4"}
    ):
        yield real_kodi


@pytest.mark.kodi
async def test_a_discovered_real_kodi_takes_presses(
    start_discovering: StartDiscovering,
    announced_real_kodi: HeadlessKodi,
    kodi_direct: TcpConnection,
) -> None:
    backend = await start_discovering(instance="f1e2d3c4")
    state = await available(backend)
    assert backend.address == f"'Kodi (buttons-test)' at 127.0.0.1:{announced_real_kodi.tcp_port}"
    before = state.volume
    assert before is not None
    await backend.press("volume_down")
    after = await kodi_direct.call("Application.GetProperties", {"properties": ["volume"]})
    assert after["volume"] < before
