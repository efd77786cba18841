"""mDNS presence and browsing with real zeroconf multicast, inside the test network namespace.

tests/conftest.py moved the whole session into a private network namespace; tests marked
`netns` refuse to run outside it, so nothing here multicasts on the machine's real network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import trio

from agent.net import mdns
from agent.net.mdns import MdnsError, PeerEvent, PeerFound, PeerLost
from agent.testing import netns

LOOPBACK = ["127.0.0.1"]
WAIT = 20  # seconds; registration probes take ~1.5 s, so this is only a hang guard
TXT = mdns.presence_txt(
    status="avail",
    nick="Living room TV",
    first="TV",
    msg="",
    node="https://example.org/buttons-agent",
    ver="QgayPKawpkPSDYmwT/WM94uAlu0=",
)


async def next_event(
    events: trio.MemoryReceiveChannel[PeerEvent], wanted: Callable[[PeerEvent], bool]
) -> PeerEvent:
    """The next event that `wanted` accepts; fails the test if none comes within WAIT."""
    with trio.fail_after(WAIT):
        async for event in events:
            if wanted(event):
                return event
    raise AssertionError("the browser stopped before the expected event")


def found(instance: str, **txt: str) -> Callable[[PeerEvent], bool]:
    def match(event: PeerEvent) -> bool:
        return (
            isinstance(event, PeerFound)
            and event.instance == instance
            and all(event.txt.get(key) == value for key, value in txt.items())
        )

    return match


def lost(instance: str) -> Callable[[PeerEvent], bool]:
    return lambda event: isinstance(event, PeerLost) and event.instance == instance


def zeroconf_threads() -> set[str]:
    """Threads zeroconf owns: its event-loop thread and ServiceBrowser threads."""
    return {t.name for t in threading.enumerate() if "_run_loop" in t.name or "zeroconf" in t.name}


# --- TXT record building (pure) -------------------------------------------------------------


def test_presence_txt_has_xep0174_keys_with_txtvers_first() -> None:
    txt = mdns.presence_txt(
        status="dnd",
        nick="TV",
        first="Living",
        msg="Kodi is not running",
        node="https://example.org/b",
        ver="abc=",
        jid="tv@example.org",
        extra={"vc": "!"},
        port=5298,
    )
    assert list(txt) == [
        "txtvers",
        "port.p2pj",
        "status",
        "1st",
        "nick",
        "msg",
        "node",
        "ver",
        "hash",
        "jid",
        "vc",
    ]
    assert txt["txtvers"] == "1"
    assert txt["port.p2pj"] == "5298"
    assert txt["status"] == "dnd"
    assert txt["1st"] == "Living"
    assert txt["hash"] == "sha-1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "busy"}, "status must be one of avail, away, dnd"),
        ({"extra": {"status": "away"}}, "would replace a XEP-0174 key"),
        ({"extra": {"a=b": "x"}}, "printable ASCII characters without '='"),
        ({"nick": "x" * 300}, "longer than 255 bytes"),
    ],
)
def test_presence_txt_rejects_bad_input_clearly(changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "status": "avail",
        "nick": "TV",
        "first": "TV",
        "msg": "",
        "node": "n",
        "ver": "v",
    }
    with pytest.raises(MdnsError, match=message):
        mdns.presence_txt(**(arguments | changes))  # type: ignore[arg-type]


def test_long_msg_is_shortened_on_a_character_boundary() -> None:
    txt = mdns.presence_txt(status="away", nick="TV", first="TV", msg="é" * 200, node="n", ver="v")
    assert len(f"msg={txt['msg']}".encode()) <= mdns.MAX_TXT_ENTRY_BYTES
    assert txt["msg"].endswith("…")
    assert set(txt["msg"][:-1]) == {"é"}


@pytest.mark.parametrize(
    ("instance", "interfaces", "message"),
    [
        ("no-at-sign", LOOPBACK, "must be 'user@host'"),
        ("buttons@bad_host", LOOPBACK, "must be 'user@host'"),
        ("buttons@tv", ["eth0"], "'eth0' is not an IP address"),
    ],
)
async def test_open_presence_rejects_bad_arguments(
    instance: str, interfaces: list[str], message: str
) -> None:
    with pytest.raises(MdnsError, match=message):
        async with mdns.open_presence(instance=instance, port=5298, txt=TXT, interfaces=interfaces):
            pass  # pragma: no cover - never reached


# --- The namespace the real-multicast tests rely on -----------------------------------------


@pytest.mark.netns
async def test_session_runs_in_private_namespace_inherited_by_children() -> None:
    assert netns.isolation_active()
    ours = netns.current_namespace()
    child = await trio.run_process(
        ["readlink", "/proc/self/ns/net"], capture_stdout=True, check=True
    )
    assert child.stdout.decode().strip() == ours
    in_thread = await trio.to_thread.run_sync(netns.current_namespace)
    assert in_thread == ours
    links = await trio.run_process(["ip", "-o", "link", "show"], capture_stdout=True, check=True)
    lines = links.stdout.decode().splitlines()
    names = {line.split(":")[1].strip().split("@")[0] for line in lines}
    assert names == {"lo", *netns.VETH_NAMES}  # no real interface is visible


# --- Real multicast ---------------------------------------------------------------------------


@pytest.mark.netns
async def test_register_and_browse_find_each_other_with_xep0174_records() -> None:
    async with (
        mdns.open_browser(LOOPBACK) as events,
        mdns.open_presence(
            instance="buttons@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ) as presence,
    ):
        assert presence.instance == "buttons@tvhost"
        event = await next_event(events, found("buttons@tvhost"))
    assert isinstance(event, PeerFound)
    assert event.addresses == ("127.0.0.1",)
    assert event.port == 5298
    assert next(iter(event.txt)) == "txtvers"  # order as received on the wire
    assert event.txt["txtvers"] == "1"
    assert event.txt["port.p2pj"] == "5298"
    assert event.txt["status"] == "avail"
    assert event.txt["nick"] == "Living room TV"
    assert event.txt["1st"] == "TV"
    assert event.txt["node"] == "https://example.org/buttons-agent"
    assert event.txt["ver"] == "QgayPKawpkPSDYmwT/WM94uAlu0="
    assert event.txt["hash"] == "sha-1"


@pytest.mark.netns
async def test_srv_target_is_host_dot_local() -> None:
    async with (
        mdns.open_presence(instance="srv@tvhost", port=7000, txt=TXT, interfaces=LOOPBACK),
        mdns._open_zeroconf(LOOPBACK) as zc,
    ):
        name = f"srv@tvhost.{mdns.PRESENCE_TYPE}"
        info = await trio.to_thread.run_sync(zc.get_service_info, mdns.PRESENCE_TYPE, name)
    assert info is not None
    assert info.server == "tvhost.local."
    assert info.port == 7000


@pytest.mark.netns
async def test_update_txt_is_seen_by_a_browser() -> None:
    async with (
        mdns.open_browser(LOOPBACK) as events,
        mdns.open_presence(
            instance="update@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ) as presence,
    ):
        await next_event(events, found("update@tvhost", status="avail"))
        await presence.update_txt(status="dnd", msg="Kodi is not running")
        event = await next_event(events, found("update@tvhost", status="dnd"))
        assert isinstance(event, PeerFound)
        assert event.txt["msg"] == "Kodi is not running"
        assert event.txt["nick"] == "Living room TV"  # untouched keys stay
        with pytest.raises(MdnsError, match="status must be one of"):
            await presence.update_txt(status="sleeping")


@pytest.mark.netns
async def test_second_registration_of_same_name_is_renamed() -> None:
    async with (
        mdns.open_browser(LOOPBACK) as events,
        mdns.open_presence(
            instance="twin@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ) as first,
        mdns.open_presence(
            instance="twin@tvhost", port=5299, txt=TXT, interfaces=LOOPBACK
        ) as second,
    ):
        assert first.instance == "twin@tvhost"
        assert second.instance == "twin-2@tvhost"
        renamed = await next_event(events, found("twin-2@tvhost"))
        assert isinstance(renamed, PeerFound)
        assert renamed.port == 5299


@pytest.mark.netns
async def test_unregister_on_exit_makes_peer_lost_arrive() -> None:
    async with mdns.open_browser(LOOPBACK) as events:
        async with mdns.open_presence(
            instance="leaving@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ):
            await next_event(events, found("leaving@tvhost"))
        # PTR records live 75 minutes: only the goodbye can make this arrive in time.
        await next_event(events, lost("leaving@tvhost"))


@pytest.mark.netns
async def test_cancellation_sends_goodbye_and_stops_zeroconf() -> None:
    threads_before = zeroconf_threads()

    async def announce_forever(task_status: trio.TaskStatus[str]) -> None:
        async with mdns.open_presence(
            instance="cancelled@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ) as presence:
            task_status.started(presence.instance)
            await trio.sleep_forever()

    async with mdns.open_browser(LOOPBACK) as events, trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            instance = await nursery.start(announce_forever)
        await next_event(events, found(instance))
        nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await next_event(events, lost(instance))
    assert zeroconf_threads() == threads_before


@pytest.mark.netns
async def test_goodbye_is_sent_when_the_body_raises() -> None:
    async def announce_then_crash(events: trio.MemoryReceiveChannel[PeerEvent]) -> None:
        async with mdns.open_presence(
            instance="crash@tvhost", port=5298, txt=TXT, interfaces=LOOPBACK
        ):
            await next_event(events, found("crash@tvhost"))
            raise RuntimeError("backend exploded")

    async with mdns.open_browser(LOOPBACK) as events:
        # The body's own exception comes out unwrapped (no ExceptionGroup) ...
        with pytest.raises(RuntimeError, match="backend exploded"):
            await announce_then_crash(events)
        # ... and the goodbye went out anyway.
        await next_event(events, lost("crash@tvhost"))


@pytest.mark.netns
async def test_discover_lists_peers_and_leaves_out_ignored_names() -> None:
    async with (
        mdns.open_presence(instance="tv@kitchen", port=5301, txt=TXT, interfaces=LOOPBACK),
        mdns.open_presence(instance="phone@pocket", port=5302, txt=TXT, interfaces=LOOPBACK),
    ):
        peers = await mdns.discover(timeout=3, interfaces=LOOPBACK, ignore=["phone@pocket"])
    assert [peer.instance for peer in peers] == ["tv@kitchen"]
    assert peers[0].port == 5301


@pytest.mark.netns
async def test_all_interfaces_announce_routable_addresses_and_follow_changes() -> None:
    extra_address = "169.254.78.9"
    device = netns.VETH_NAMES[0]
    async with (
        mdns.open_browser(None) as events,
        mdns.open_presence(
            instance="roaming@tvhost",
            port=5298,
            txt=TXT,
            interfaces=None,
            address_poll_seconds=0.2,
        ),
    ):
        first = await next_event(events, found("roaming@tvhost"))
        assert isinstance(first, PeerFound)
        assert set(first.addresses) == set(netns.VETH_ADDRESSES)  # no loopback, no fe80::
        await trio.run_process(["ip", "addr", "add", f"{extra_address}/16", "dev", device])
        try:
            changed = await next_event(
                events,
                lambda e: isinstance(e, PeerFound) and extra_address in e.addresses,
            )
        finally:
            await trio.run_process(["ip", "addr", "del", f"{extra_address}/16", "dev", device])
        assert changed.instance == "roaming@tvhost"
