"""The agent: backend + dispatcher + link-local XMPP server + mDNS presence, in one nursery."""

from __future__ import annotations

import logging
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import trio

from agent.backends.base import Backend, BackendError
from agent.backends.factory import make_backend
from agent.config import Config
from agent.dispatch import AgentInfo, Dispatcher
from agent.hw.gpio import StatusLed
from agent.hybrid import run_hybrid
from agent.logs import kv
from agent.net.server import ServerSettings, XmppServer
from agent.pairing import Notifier, PairingWindow
from agent.peripherals import run_gpio, run_passthrough
from agent.presence import presence_status
from agent.security.keys import FINGERPRINT_TXT_KEY, load_or_create, short_fingerprint
from agent.security.pairing_service import PairingService
from agent.security.tls import ServerContexts
from agent.security.truststore import TrustStore
from agent.web.announce import open_http_announcement
from agent.web.auth import TrustStoreWebAuth
from agent.web.qr import show_pairing_codes
from agent.web.server import WebServer
from agent.xmpp.disco import CAPS_NODE
from agent.xmpp.parser import Limits

log = logging.getLogger(__name__)
#: The agent's trust store (paired phones) inside its state directory.
PEERS_FILE = "peers.json"


def software_version() -> str:
    try:
        return metadata.version("buttons-agent")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Agent:
    """Everything the `buttons-agent` process runs. Tests start it in-process, too."""

    def __init__(
        self, config: Config, backend: Backend | None = None, *, pin_factory: Any = None
    ) -> None:
        self.config = config
        #: gpiozero pin factory override (tests pass a MockFactory they drive).
        self.pin_factory = pin_factory
        self.backend = backend or make_backend(config)
        self.state_dir = Path(config.state_dir).expanduser()
        self.identity = load_or_create(self.state_dir, config.jid, server=True)
        self.trusted = TrustStore(self.state_dir / PEERS_FILE)
        self.pairing = PairingWindow(
            requires_button=config.pairing_requires_button,
            show_pin=self._show_pin,
            on_clear=self._forget_all_peers,
        )
        self.dispatcher = Dispatcher(
            self.backend,
            AgentInfo(jid=config.jid, version=software_version()),
            hold_timeout=config.hold_timeout,
            pairing=PairingService(self.pairing, self.identity, self.trusted),
            chat_fallback=config.chat_fallback,
        )
        self.instance = config.jid
        self.server = XmppServer(
            self.dispatcher,
            ServerSettings(
                port=config.port,
                listen=tuple(config.listen),
                limits=Limits(max_stanza_bytes=config.max_stanza_bytes),
                handshake_timeout=config.handshake_timeout,
                idle_timeout=config.idle_timeout,
                max_streams_per_peer=config.max_streams_per_peer,
                tls_handshake_timeout=config.tls_handshake_timeout,
                connections_per_second=config.connections_per_second,
                connection_burst=config.connection_burst,
            ),
            local_names=lambda: (self.instance,),
            tls=ServerContexts(self.identity, self.trusted),
        )
        self.web_auth = TrustStoreWebAuth(self.pairing, self.trusted)
        self.web = WebServer(
            self.dispatcher,
            config.web,
            self.web_auth,
            limits=Limits(max_stanza_bytes=config.max_stanza_bytes),
        )
        #: The status LED, once GPIO is running (tests read it).
        self.led: StatusLed | None = None
        self.port = 0
        self.web_port = 0
        self.ready = trio.Event()
        self._stopped = trio.Event()

    async def run(
        self,
        *,
        announce: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until `stop()` (or cancellation); `announce=False` skips mDNS (some tests)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.backend.run)
            if self.config.gpio.enabled:
                self.led = await nursery.start(
                    partial(
                        run_gpio,
                        self.config,
                        self.backend,
                        self.dispatcher,
                        self.pairing,
                        pin_factory=self.pin_factory,
                    )
                )
            if self.config.lirc.passthrough.enabled:
                await nursery.start(run_passthrough, self.config, self.backend, self.dispatcher)
            if self.config.xmpp_account.enabled:
                await nursery.start(run_hybrid, self.dispatcher, self.config.xmpp_account)
            async with trio.open_nursery() as serving:
                ports = await serving.start(self.server.serve)
                self.port = ports[0]
                if self.config.web.enabled:
                    await self._start_web(serving, nursery, announce=announce)
                if announce:
                    await nursery.start(self._announce)
                log.info(
                    kv(
                        "agent-ready",
                        name=self.instance,
                        port=self.port,
                        backend=self.backend.name,
                        fingerprint=short_fingerprint(self.identity.fingerprint),
                    )
                )
                self.ready.set()
                task_status.started()
                await self._stopped.wait()
                # Streams say goodbye first; the serving nursery waits for them.
                self.server.shutdown()
                self.web.shutdown()
            nursery.cancel_scope.cancel()  # then mDNS goodbye, then the backend

    def stop(self) -> None:
        self._stopped.set()

    async def _start_web(
        self, serving: trio.Nursery, background: trio.Nursery, *, announce: bool
    ) -> None:
        """The web remote next to the link-local listener; its QR code goes to the screen."""
        web_ports = await serving.start(self.web.serve)
        self.web_port = web_ports[0]
        scheme = "https" if self.web.secure else "http"
        base_url = f"{scheme}://{self.config.host}.local:{self.web_port}/"
        background.start_soon(
            partial(
                show_pairing_codes,
                self.pairing,
                self.web_auth,
                base_url,
                png_path=self.state_dir / "pairing-qr.png",
                # A TV that shows pictures (Kodi on this machine) gets the code on screen;
                # the virtual TV's screen is the terminal.
                show_on_tv=self._show_qr if isinstance(self.backend, Notifier) else None,
            )
        )
        if announce and self.config.web.announce:
            background.start_soon(self._announce_web, self.web_port)

    async def _show_qr(self, url: str, png: Path) -> None:
        assert isinstance(self.backend, Notifier)
        await self.backend.notify("Scan to pair a phone", url, image=str(png))

    async def _announce_web(self, port: int) -> None:
        async with open_http_announcement(
            name=self.config.nick,
            host=self.config.host,
            port=port,
            interfaces=self.config.mdns_interfaces or None,
            secure=self.web.secure,
        ):
            await trio.sleep_forever()

    async def _show_pin(self, pin: str, seconds: float) -> None:
        """The PIN goes to the TV when the backend can show it, to the log otherwise."""
        if isinstance(self.backend, Notifier):
            try:
                await self.backend.notify("Pair a remote", f"Code {pin} (valid {int(seconds)} s)")
                return
            except BackendError as exc:
                log.warning(kv("pairing-pin-not-shown", reason=exc.reason))
        log.warning(kv("pairing-pin", pin=pin, seconds=int(seconds)))

    def _forget_all_peers(self) -> None:
        for peer in list(self.trusted.peers):
            self.trusted.revoke(peer.fingerprint)
        self.server.close_revoked_streams()

    async def _announce(self, *, task_status: trio.TaskStatus[None]) -> None:
        from agent.net.mdns import open_presence, presence_txt

        status, message = presence_status(self.backend.state())
        disco = self.dispatcher.disco
        txt = presence_txt(
            status=status,
            nick=self.config.nick,
            first=self.config.nick,
            msg=message,
            node=CAPS_NODE,
            ver=disco.caps_ver(),
            extra={FINGERPRINT_TXT_KEY: self.identity.fingerprint},
        )
        interfaces = self.config.mdns_interfaces or None
        async with open_presence(
            instance=self.config.jid, port=self.port, txt=txt, interfaces=interfaces
        ) as presence:
            self.instance = presence.instance
            task_status.started()
            announced = (status, message)
            async for state in self.backend.state_changes():
                wanted = presence_status(state)
                if wanted != announced:
                    await presence.update_txt(status=wanted[0], msg=wanted[1])
                    log.info(kv("presence", status=wanted[0], msg=wanted[1]))
                    announced = wanted
