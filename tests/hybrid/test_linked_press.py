"""Identity linking end to end: a real private Prosody, the whole agent, and a paired phone.

The phone links its server account over the LAN, then presses through the server with
commands signed by its paired key. Neither a stranger's account nor the phone's account with
another key (what the server operator or a password thief has) gets a button pressed.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from agent.app import Agent
from agent.backends.virtual import VirtualTV
from agent.buttons import codec
from agent.cli import agent_main, client_main
from agent.client_server import ServerButtonsClient, connect_via_server, server_route
from agent.net.c2s import C2sStream
from agent.net.stream import StanzaErrorReply
from agent.security.linking import NOT_LINKED, OLD_COUNTER, sign_command
from agent.security.phone import (
    CounterReservation,
    PhoneCredentials,
    load_signing_key,
    save_account,
)
from agent.testing.hybrid import (
    PATIENCE,
    agent_jid,
    logged_in,
    open_hybrid_agent,
    phone_account,
    wait_until_online,
)
from agent.testing.pairing import TEST_PHONE_NAME, make_phone
from agent.testing.prosody import PrivateProsody
from agent.xmpp import stanza as st
from agent.xmpp.serialize import CLIENT_NS


@asynccontextmanager
async def hybrid_agent(
    server: PrivateProsody, *, link: bool = True
) -> AsyncIterator[tuple[Agent, VirtualTV, PhoneCredentials]]:
    tv = VirtualTV()
    async with open_hybrid_agent(server, tv, link=link) as (agent, phone):
        yield agent, tv, phone


def press_element(button: str) -> ET.Element:
    return codec.request_element(codec.Press(button))[1]


async def refused_condition(request: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(StanzaErrorReply) as refused:
        await request()  # type: ignore[misc]
    return refused.value.error.condition, refused.value.error.text


async def test_a_linked_phone_presses_and_reads_state_through_the_server(
    prosody: PrivateProsody,
) -> None:
    async with hybrid_agent(prosody) as (agent, tv, phone):
        route = server_route(phone, None)
        assert (route.name, route.server_jid) == (agent.instance, agent_jid(prosody))
        async with connect_via_server(phone, route) as remote:
            assert remote.path == "server"
            await remote.press("play_pause")
            assert tv.state().playback == "playing"
            state = await remote.state()
            assert (state.playback, state.title) == ("playing", tv.state().title)
            await remote.text("breaking bad")
            assert tv.texts == ["breaking bad"]
            # The same account without a signature is still just an account.
            condition, _text = await refused_condition(
                lambda: remote.stream.request(
                    st.iq("set", press_element("pause"), to=agent_jid(prosody))
                )
            )
            assert condition == "not-authorized"
        assert tv.history == ["play_pause"]


async def test_an_unlinked_account_is_not_authorized(prosody: PrivateProsody) -> None:
    async with hybrid_agent(prosody) as (_agent, tv, phone):
        # Even signed by the paired key: mallory's JID is not linked to it.
        async with logged_in(prosody, "mallory") as stream:
            remote = ServerButtonsClient(stream, agent_jid(prosody), phone)
            condition, text = await refused_condition(lambda: remote.press("power"))
        assert (condition, text) == ("not-authorized", NOT_LINKED)
        assert tv.history == []


async def test_a_phone_that_never_linked_is_not_authorized(prosody: PrivateProsody) -> None:
    async with hybrid_agent(prosody, link=False) as (_agent, tv, phone):
        async with logged_in(prosody, "phone") as stream:
            remote = ServerButtonsClient(stream, agent_jid(prosody), phone)
            condition, text = await refused_condition(lambda: remote.press("power"))
        assert (condition, text) == ("not-authorized", NOT_LINKED)
        assert tv.history == []


async def test_the_linked_account_with_another_key_is_refused(
    prosody: PrivateProsody, tmp_path: Path
) -> None:
    """What the account's password (or the server operator) gives: the JID, not the key."""
    impostor = make_phone(tmp_path / "impostor")
    async with hybrid_agent(prosody) as (_agent, tv, _phone):
        async with logged_in(prosody, "phone") as stream:
            remote = ServerButtonsClient(stream, agent_jid(prosody), impostor)
            condition, text = await refused_condition(lambda: remote.press("power"))
        assert (condition, text) == ("not-authorized", "the signature does not verify")
        assert tv.history == []


async def test_a_replayed_signed_command_is_refused(prosody: PrivateProsody) -> None:
    async with hybrid_agent(prosody) as (_agent, tv, phone):
        key = load_signing_key(phone.identity)
        counter = CounterReservation(phone.identity.directory).take()
        signed = sign_command(key, agent_jid(prosody), counter, press_element("mute"))
        async with logged_in(prosody, "phone") as stream:
            await stream.request(st.iq("set", copy.deepcopy(signed), to=agent_jid(prosody)))
            assert tv.state().muted is True
            again = st.iq("set", copy.deepcopy(signed), to=agent_jid(prosody))
            assert await refused_condition(lambda: stream.request(again)) == (
                "not-authorized",
                OLD_COUNTER,
            )
        # A new stream (a new session on the agent) is no way around it either.
        async with logged_in(prosody, "phone") as stream:
            again = st.iq("set", copy.deepcopy(signed), to=agent_jid(prosody))
            assert (await refused_condition(lambda: stream.request(again)))[1] == OLD_COUNTER
        assert tv.history == ["mute"]
        assert tv.state().muted is True


async def test_revoking_the_device_ends_its_server_access(prosody: PrivateProsody) -> None:
    async with hybrid_agent(prosody) as (agent, tv, phone):
        async with connect_via_server(phone, server_route(phone, None)) as remote:
            await remote.press("mute")
            # `buttons-agent peers revoke`, as another process would run it.
            assert (
                agent_main(
                    ["--state-dir", str(agent.state_dir), "peers", "revoke", TEST_PHONE_NAME]
                )
                == 0
            )
            condition, text = await refused_condition(lambda: remote.press("mute"))
        assert (condition, text) == ("not-authorized", NOT_LINKED)
        assert tv.history == ["mute"]


@pytest.mark.parametrize(
    "stop", [PrivateProsody.stop, PrivateProsody.kill], ids=["sigterm", "sigkill"]
)
async def test_after_the_server_restarts_the_next_signed_press_works(
    prosody: PrivateProsody, stop: Callable[[PrivateProsody], None]
) -> None:
    async with hybrid_agent(prosody) as (_agent, tv, phone):
        route = server_route(phone, None)
        async with connect_via_server(phone, route) as remote:
            await remote.press("mute")
        await trio.to_thread.run_sync(stop, prosody)
        await trio.to_thread.run_sync(prosody.start)
        await wait_until_online(prosody)  # the agent logged in again by itself
        async with connect_via_server(phone, route) as remote:
            await remote.press("volume_up")
        assert tv.history == ["mute", "volume_up"]


def presence_of(stanza: ET.Element, sender: str) -> tuple[str, str] | None:
    """(show or 'available', status) when `stanza` is an available presence from `sender`."""
    if st.kind(stanza) != "presence" or stanza.get("from") != sender or stanza.get("type"):
        return None
    show = stanza.findtext(f"{{{CLIENT_NS}}}show") or "available"
    return show, stanza.findtext(f"{{{CLIENT_NS}}}status") or ""


async def next_presence(stream: C2sStream, sender: str) -> tuple[str, str]:
    with trio.fail_after(PATIENCE):
        async for stanza in stream.incoming:
            if (seen := presence_of(stanza, sender)) is not None:
                return seen
    raise AssertionError("the stream ended before a presence came")


async def test_server_presence_follows_the_backend(prosody: PrivateProsody) -> None:
    async with (
        hybrid_agent(prosody) as (_agent, tv, _phone),
        logged_in(prosody, "phone") as stream,
    ):
        bare = agent_jid(prosody).split("/")[0]
        await stream.send(ET.Element(st.PRESENCE, {"to": bare, "type": "subscribe"}))
        assert await next_presence(stream, agent_jid(prosody)) == ("available", "")
        tv.set_reachable(False, "the HDMI cable is out")
        assert await next_presence(stream, agent_jid(prosody)) == ("dnd", "the HDMI cable is out")
        tv.set_reachable(True)
        assert await next_presence(stream, agent_jid(prosody)) == ("available", "")


async def test_an_unlinked_account_may_not_subscribe(prosody: PrivateProsody) -> None:
    roster_query = ET.Element("{jabber:iq:roster}query")
    async with hybrid_agent(prosody) as _running, logged_in(prosody, "mallory") as stream:
        bare = agent_jid(prosody).split("/")[0]
        await stream.send(ET.Element(st.PRESENCE, {"to": bare, "type": "subscribe"}))
        # The request shows in mallory's roster as pending ('ask') until the agent answers;
        # a denial leaves the item without a subscription and without 'ask'.
        with trio.fail_after(PATIENCE):
            while True:
                reply = await stream.request(st.iq("get", copy.deepcopy(roster_query)))
                item = reply.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
                if item is not None and item.get("ask") is None:
                    break
                await trio.sleep(0.1)
        assert (item.get("jid"), item.get("subscription")) == (bare, "none")


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(client_main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_cli_links_then_presses_via_server_local_and_auto(
    prosody: PrivateProsody, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file = tmp_path / "phone.password"
    password_file.write_text("phone-pw\n")
    async with hybrid_agent(prosody, link=False) as (agent, tv, phone):
        home = ["--home", str(phone.identity.directory)]
        near_tv = [*home, "--host", "127.0.0.1", "--port", str(agent.port), "--to", agent.instance]
        code, out, err = await run_cli(
            capsys,
            *near_tv,
            "account",
            "add",
            f"phone@{prosody.domain}",
            "--password-file",
            str(password_file),
            "--server",
            "127.0.0.1",
            "--server-port",
            str(prosody.port),
            "--tls",
            "none",
        )
        assert code == 0, err
        assert f"reachable at {agent_jid(prosody)}" in out

        code, out, err = await run_cli(capsys, *home, "press", "play_pause", "--via", "server")
        assert code == 0, err
        assert out.startswith("pressed play_pause via server in ")
        assert "playing: Big Buck Bunny" in out

        code, out, err = await run_cli(capsys, *home, "state", "--via", "server")
        assert code == 0, err
        assert "via server in " in out

        code, out, err = await run_cli(capsys, *near_tv, "press", "mute", "--via", "local")
        assert code == 0, err
        assert out.startswith("pressed mute via local in ")

        # auto: no agent announces itself by mDNS here (announce=False), so the server it is.
        browse = ["--interface", "127.0.0.1", "--timeout", "0.5"]
        code, out, err = await run_cli(capsys, *home, *browse, "press", "mute")
        assert code == 0, err
        assert out.startswith("pressed mute via server in ")

        code, out, _err = await run_cli(capsys, *home, "account", "show")
        assert out.startswith(f"phone@{prosody.domain}\t")
        assert f"{agent.instance}\t{agent_jid(prosody)}" in out
        assert tv.history == ["play_pause", "mute", "mute"]

        code, out, _err = await run_cli(capsys, *home, "account", "remove")
        assert code == 0
        code, _out, err = await run_cli(capsys, *home, "press", "mute", "--via", "server")
        assert code == 1
        assert "buttons account add" in err


async def test_cli_pairing_links_a_stored_account(
    prosody: PrivateProsody,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new phone with an account: `buttons pair` pairs, links, and the server path works."""
    fresh = make_phone(tmp_path / "fresh-phone")
    home = ["--home", str(fresh.identity.directory)]
    save_account(fresh.identity.directory, phone_account(prosody), "phone-pw")
    async with hybrid_agent(prosody, link=False) as (agent, tv, _phone):
        # The user reads the PIN off the TV when the CLI asks for it.
        token = trio.lowlevel.current_trio_token()
        monkeypatch.setattr(
            "builtins.input",
            lambda _prompt: trio.from_thread.run_sync(
                lambda: agent.pairing.current_pin, trio_token=token
            ),
        )
        lan = ["--host", "127.0.0.1", "--port", str(agent.port)]
        code, out, err = await run_cli(capsys, *home, *lan, "pair", "--name", "cli-phone")
        assert code == 0, err
        assert out.startswith(f"paired with {agent.instance}")
        assert f"reachable at {agent_jid(prosody)}" in out
        code, out, err = await run_cli(capsys, *home, "press", "volume_up", "--via", "server")
        assert code == 0, err
        assert out.startswith("pressed volume_up via server in ")
        assert tv.history == ["volume_up"]
