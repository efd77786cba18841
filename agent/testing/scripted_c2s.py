"""A scripted XMPP server for the sans-IO client stream's tests (no sockets).

It reads what a `ClientStream` wrote, element by element (a fresh parser after each stream
restart), feeds it server bytes and collects the events, and runs SASL SCRAM against a real
`scramp` server that knows the password "secret".
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import scramp  # type: ignore[import-untyped]

from agent.xmpp.c2s import SASL_NS, ClientStream
from agent.xmpp.parser import ElementParsed, StreamParser

SERVER_PASSWORD = "secret"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode()


class ScriptedServer:
    """Reads what the client wrote; feeds it bytes (or text) and returns its events."""

    def __init__(self, client: ClientStream) -> None:
        self.client = client
        self.parser = StreamParser()

    def read(self) -> list[ET.Element]:
        data = self.client.data_to_send()
        if data.startswith(b"<?xml"):
            self.parser = StreamParser()
        return self.parse(data)

    def parse(self, data: bytes) -> list[ET.Element]:
        return [e.element for e in self.parser.feed(data) if isinstance(e, ElementParsed)]

    def feed(self, data: bytes | str) -> list[object]:
        self.client.receive_data(data.encode() if isinstance(data, str) else data)
        events: list[object] = []
        while (event := self.client.next_event()) is not None:
            events.append(event)
        return events


def scram_login(server: ScriptedServer, mechanism: str) -> list[object]:
    """Answer the client's <auth/> as a SCRAM server; the events after <success/> or
    <failure/> (a wrong client password gets `not-authorized`)."""
    (auth,) = server.read()
    assert auth.tag == f"{{{SASL_NS}}}auth"
    assert auth.get("mechanism") == mechanism
    scram = scramp.ScramMechanism(mechanism)
    info = scram.make_auth_info(SERVER_PASSWORD, iteration_count=4096)
    sasl = scram.make_server(lambda _user: info)
    sasl.set_client_first(unb64(auth.text))
    challenge = f"<challenge xmlns='{SASL_NS}'>{b64(sasl.get_server_first())}</challenge>"
    assert server.feed(challenge) == []
    (response,) = server.read()
    try:
        sasl.set_client_final(unb64(response.text))
    except scramp.ScramException:
        return server.feed(
            f"<failure xmlns='{SASL_NS}'><not-authorized/><text>bad password</text></failure>"
        )
    return server.feed(f"<success xmlns='{SASL_NS}'>{b64(sasl.get_server_final())}</success>")
