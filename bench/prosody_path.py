"""The server-mediated baseline: phone → Prosody → bot → Kodi, with slixmpp on both ends.

This is how the original Buttons prototype reached the TV: both the phone and a bot next to
Kodi log in to an XMPP server; a press is an iq from phone to bot, relayed by the server; the
bot calls Kodi's JSON-RPC and answers. Run against a private Prosody on loopback (plaintext:
TLS would only make this baseline slower) and the same Kodi as the agent path.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

from agent.backends.kodi.mapping import BUTTON_CALLS
from agent.backends.kodi.rpc import KodiRpc, Response
from agent.buttons.codec import NS
from agent.testing.prosody import PrivateProsody

TIMEOUT = 30.0


class KodiLink:
    """One asyncio TCP connection to Kodi's JSON-RPC, framed by the agent's sans-IO splitter."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.rpc = KodiRpc()

    async def call(self, method: str, params: dict[str, object] | None) -> None:
        request_id, data = self.rpc.send_request(method, params)
        self.writer.write(data)
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("Kodi closed the connection")
            for event in self.rpc.receive_data(chunk):
                if isinstance(event, Response) and event.id == request_id:
                    return


def _plaintext_client(jid: str, password: str) -> ClientXMPP:
    xmpp = ClientXMPP(jid, password)
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False
    xmpp.enable_plaintext = True
    xmpp.register_plugin("feature_mechanisms")
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp["feature_mechanisms"].unencrypted_scram = True
    return xmpp


async def _online(xmpp: ClientXMPP, port: int) -> None:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def started(_event: object) -> None:
        if not ready.done():
            ready.set_result(None)

    xmpp.add_event_handler("session_start", started)
    xmpp.connect(host="127.0.0.1", port=port)
    await asyncio.wait_for(ready, TIMEOUT)
    xmpp.send_presence()


async def _measure(
    kodi_host: str, kodi_port: int, presses: int, buttons: tuple[str, str], server: PrivateProsody
) -> list[float]:
    bot = _plaintext_client(server.register("bot", "bot-pw") + "/tv", "bot-pw")
    phone = _plaintext_client(server.register("phone", "phone-pw") + "/app", "phone-pw")
    reader, writer = await asyncio.open_connection(kodi_host, kodi_port)
    kodi = KodiLink(reader, writer)

    async def on_press(stanza: StanzaBase) -> None:
        press = stanza.xml.find(f"{{{NS}}}press")
        call = BUTTON_CALLS[press.get("button", "") if press is not None else ""]
        await kodi.call(call.method, dict(call.params) if call.params else None)
        stanza.reply().send()

    bot.register_handler(
        CoroutineCallback("press", MatchXPath(f"{{jabber:client}}iq/{{{NS}}}press"), on_press)
    )
    await _online(bot, server.port)
    await _online(phone, server.port)
    samples: list[float] = []
    try:
        for index in range(presses + 10):
            iq = phone.Iq()
            iq["type"] = "set"
            iq["to"] = str(bot.boundjid)
            iq.xml.append(ET.Element(f"{{{NS}}}press", {"button": buttons[index % 2]}))
            started = time.perf_counter()
            await iq.send(timeout=TIMEOUT)  # type: ignore[no-untyped-call]
            if index >= 10:  # the first ten warm up
                samples.append(time.perf_counter() - started)
    finally:
        phone.disconnect()
        bot.disconnect()
        writer.close()
    return samples


def measure(kodi_host: str, kodi_port: int, presses: int, buttons: tuple[str, str]) -> list[float]:
    """Press round trips (seconds) through a private Prosody; starts and stops the server."""
    logging.getLogger("slixmpp").setLevel(logging.ERROR)
    with (
        tempfile.TemporaryDirectory() as tmp,
        PrivateProsody(Path(tmp), log_level="warn") as server,
    ):
        return asyncio.run(_measure(kodi_host, kodi_port, presses, buttons, server))


__all__ = ["measure"]
