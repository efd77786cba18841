"""Agent and phone find each other by real mDNS multicast (inside the test network namespace)
and talk over real TCP: the whole vertical slice."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import sys
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pytest
import trio
from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from agent import client
from agent.backends.virtual import VirtualTV
from agent.security.phone import HOME_ENV, load_credentials, phone_home
from agent.testing.agents import open_agent

pytestmark = pytest.mark.netns
LOOPBACK = ["127.0.0.1"]


async def find_one(name: str, seconds: float = 3.0) -> client.AgentAddress:
    with trio.fail_after(15):
        while True:
            agents = await client.find_agents(seconds=seconds, interfaces=LOOPBACK)
            matches = [a for a in agents if a.instance == name]
            if matches:
                return matches[0]


async def test_phone_discovers_agent_and_presses() -> None:
    tv = VirtualTV()
    async with open_agent(tv, announce=True, name="living", nick="Living room") as agent:
        found = await find_one(agent.instance)
        assert (found.port, found.nick, found.status) == (agent.port, "Living room", "avail")
        async with client.connect(found.host, found.port, agent=found.instance) as remote:
            await remote.press("play_pause")
            state = await remote.state()
            names = [b.name for b in await remote.buttons()]
        assert state.playback == "playing"
        assert "play_pause" in names
    assert tv.history == ["play_pause"]


async def test_txt_status_follows_backend_availability() -> None:
    tv = VirtualTV()
    async with open_agent(tv, announce=True, name="den") as agent:
        assert (await find_one(agent.instance)).status == "avail"
        tv.set_reachable(False, "the TV is unplugged")
        with trio.fail_after(20):
            while (found := await find_one(agent.instance, 1.0)).status != "dnd":
                pass
        assert found.message == "the TV is unplugged"
        tv.set_reachable(True)
        with trio.fail_after(20):
            while (await find_one(agent.instance, 1.0)).status != "avail":
                pass


async def test_two_agents_with_one_name_are_told_apart() -> None:
    async with (
        open_agent(announce=True, name="twin") as first,
        open_agent(announce=True, name="twin") as second,
    ):
        assert first.instance == "twin@test"
        assert second.instance == "twin-2@test"
        found = {
            a.instance: a.port for a in await client.find_agents(seconds=2, interfaces=LOOPBACK)
        }
        assert found.get("twin@test") == first.port
        assert found.get("twin-2@test") == second.port
        # Each answers to its own name only.
        async with client.connect("127.0.0.1", second.port, agent="twin-2@test") as remote:
            await remote.press("mute")
        with pytest.raises(client.StreamFailed, match="host-unknown"):
            async with client.connect("127.0.0.1", second.port, agent="twin@test") as remote:
                await remote.press("mute")


def _read_elements(sock: socket.socket | ssl.SSLSocket, *, until: str) -> dict[str, object]:
    """Read one stream's header and first-level children with ElementTree's pull parser,
    until a child tagged `until` arrives or the stream ends."""
    parser = ET.XMLPullParser(events=("start", "end"))
    depth, header, children, ended = 0, None, [], False
    while not ended and not any(c.tag == until for c in children):
        data = sock.recv(65536)
        if not data:
            break
        parser.feed(data)
        for event, element in parser.read_events():
            depth += 1 if event == "start" else -1
            if event == "start" and depth == 1:
                header = element
            elif event == "end" and depth == 1:
                children.append(element)
            elif event == "end" and depth == 0:
                ended = True
    return {"header": header, "children": children, "ended": ended}


def _independent_peer(instance_wanted: str, cert: Path, key: Path) -> dict[str, object]:
    """A minimal XEP-0174 peer: python-zeroconf to browse, a plain socket, the stdlib `ssl`
    module and ElementTree to talk. Nothing of the agent's code is used, so this checks the
    wire format (STARTTLS per RFC 6120 §5 included) against the spec rather than against
    itself. `cert`/`key` are a client certificate the agent already trusts (pre-paired)."""
    zc = Zeroconf(interfaces=LOOPBACK)
    try:
        seen: list[str] = []

        def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:  # fmt: skip
            if state_change is ServiceStateChange.Added:
                seen.append(name)

        browser = ServiceBrowser(zc, "_presence._tcp.local.", handlers=[on_change])
        full = f"{instance_wanted}._presence._tcp.local."
        for _ in range(100):
            if full in seen:
                break
            trio_sleep_blocking(0.05)
        browser.cancel()
        info = ServiceInfo("_presence._tcp.local.", full)
        assert info.request(zc, 3000), "the agent's SRV/TXT did not resolve"
        txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        address = info.parsed_addresses()[0]
        port = info.port
    finally:
        zc.close()
    assert port is not None
    header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' from='indie@peer' to='"
        + instance_wanted.encode()
        + b"' version='1.0'>"
    )
    plain = socket.create_connection((address, port), timeout=5)
    try:
        plain.sendall(header)
        before_tls = _read_elements(plain, until="{http://etherx.jabber.org/streams}features")
        plain.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        answer = _read_elements_continuing(plain)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # checked below by fingerprint, as the TXT says
        context.load_cert_chain(cert, key)
        sock = context.wrap_socket(plain)
        agent_fp = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest()
        sock.sendall(
            header
            + b"<iq type='get' id='disco'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            b"<iq type='set' id='press'>"
            b"<press xmlns='urn:buttons-agent:remote:0' button='mute'/></iq>"
            b"<message type='chat' to='"
            + instance_wanted.encode()
            + b"'><body>vol+</body></message>"
            b"</stream:stream>"
        )
        after_tls = _read_elements(sock, until="-")
        tls_version = sock.version()
    finally:
        plain.close()
    return {
        "txt": txt,
        "before_tls": before_tls,
        "answer": answer,
        "agent_fp": agent_fp,
        "tls_version": tls_version,
        **after_tls,
    }


def _read_elements_continuing(sock: socket.socket) -> str:
    """The receiver's answer to <starttls/>: read byte by byte, so that not one byte of the
    TLS handshake that follows is consumed here."""
    data = b""
    while not data.endswith(b"/>") and len(data) < 200:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def trio_sleep_blocking(seconds: float) -> None:
    import time

    time.sleep(seconds)  # runs in a worker thread: a plain blocking peer


async def test_independent_xep0174_peer_sees_spec_txt_and_stream() -> None:
    tv = VirtualTV()
    async with open_agent(tv, announce=True, name="spec", nick="Spec TV") as agent:
        phone = load_credentials(phone_home())  # open_agent's pre-paired phone
        result = await trio.to_thread.run_sync(
            _independent_peer,
            agent.instance,
            phone.identity.cert_path,
            phone.identity.key_path,
        )
    txt = result["txt"]
    assert isinstance(txt, dict)
    assert txt["fp"] == agent.identity.fingerprint == result["agent_fp"]
    assert result["tls_version"] in ("TLSv1.2", "TLSv1.3")
    before = result["before_tls"]
    assert isinstance(before, dict)
    (features,) = before["children"]
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is not None
    assert "proceed" in str(result["answer"])
    assert "urn:ietf:params:xml:ns:xmpp-tls" in str(result["answer"])
    assert isinstance(txt, dict)
    assert txt["txtvers"] == "1"
    assert txt["port.p2pj"] == str(agent.port)
    assert txt["status"] == "avail"
    assert txt["nick"] == "Spec TV"
    assert txt["hash"] == "sha-1"
    assert txt["ver"] == agent.dispatcher.disco.caps_ver()
    header = result["header"]
    assert isinstance(header, ET.Element)
    assert header.tag == "{http://etherx.jabber.org/streams}stream"
    assert (header.get("from"), header.get("to"), header.get("version")) == (
        agent.instance,
        "indie@peer",
        "1.0",
    )
    children = result["children"]
    assert isinstance(children, list)
    tags = [c.tag for c in children]
    assert tags[0] == "{http://etherx.jabber.org/streams}features"
    by_id = {c.get("id"): c for c in children if c.tag == "{jabber:client}iq"}
    assert by_id["press"].get("type") == "result"
    features = {
        f.get("var") for f in by_id["disco"].iter("{http://jabber.org/protocol/disco#info}feature")
    }
    assert "urn:buttons-agent:remote:0" in features
    chat = [c for c in children if c.tag == "{jabber:client}message"]
    assert chat[0].findtext("{jabber:client}body") == "ok: volume_up"
    assert result["ended"] is True
    assert tv.history == ["mute", "volume_up"]


async def test_cli_discovers_presses_and_lists(tmp_path: object) -> None:
    tv = VirtualTV()
    async with open_agent(tv, announce=True, name="cli", nick="CLI TV") as agent:
        base = [
            sys.executable,
            "-m",
            "agent.cli_entry",
            "--interface",
            "127.0.0.1",
            "--timeout",
            "2",
        ]
        # The CLI runs as open_agent's pre-paired phone.
        run = partial(trio.run_process, env={**os.environ, HOME_ENV: str(phone_home())})
        discovered = await run([*base, "discover"], capture_stdout=True)
        pressed = await run([*base, "press", "play_pause"], capture_stdout=True)
        listed = await run([*base, "list"], capture_stdout=True)
        bad = await run([*base, "press", "warp"], capture_stderr=True, check=False)
    assert f"{agent.instance}\tCLI TV\t127.0.0.1:{agent.port}\tavail" in discovered.stdout.decode()
    out = pressed.stdout.decode()
    assert out.startswith("pressed play_pause")
    assert "playing: Big Buck Bunny" in out
    assert "volume_up\tVolume +" in listed.stdout.decode()
    assert bad.returncode == 1
    assert "item-not-found" in bad.stderr.decode()
    assert tv.history == ["play_pause"]
