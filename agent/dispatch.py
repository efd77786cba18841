"""Commands → backend calls: iq results and errors, chat replies, state and press pushes.

One Dispatcher per agent, one Session per stream. A session handles its stream's stanzas in
order (presses must not overtake each other) and owns that stream's holds and subscriptions,
so closing the stream releases every held button and ends every push.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import trio

from agent.backends.base import (
    Backend,
    BackendError,
    BackendNotAuthorized,
    BackendRefused,
    BackendUnavailable,
    ButtonNotSupported,
)
from agent.buttons import chat, codec
from agent.buttons.catalogue import CATALOGUE, in_catalogue_order
from agent.groups import single_exception
from agent.holds import Holds
from agent.pairing import PairingRefused
from agent.security.linking import LINK_NS, SIGNED_NS, Linking
from agent.security.pairing_service import PAIR_NS, PairingService, PairingSession
from agent.xmpp import stanza as st
from agent.xmpp.disco import (
    DISCO_INFO_NS,
    PING_NS,
    VERSION_NS,
    DiscoInfo,
    Identity,
    version_element,
)

log = logging.getLogger(__name__)

Send = Callable[[ET.Element], Awaitable[None]]
#: Replies remembered per stream for retransmitted iqs (same id → same answer, no re-run).
IDEMPOTENCY_WINDOW = 64
#: Press notifications queued for a slow subscriber before the oldest are dropped.
PRESS_FEED_DEPTH = 32


@dataclass(frozen=True, slots=True)
class AgentInfo:
    jid: str
    software: str = "buttons-agent"
    version: str = "0"


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """Who is on the other end, as the transport proved it (never the stream's `from`)."""

    #: The stream runs over TLS (pairing is possible).
    secured: bool = False
    #: SHA-256 of the TLS client certificate, when one was presented.
    fingerprint: str | None = None
    #: The trust store's name for that fingerprint: set only for paired devices.
    paired_name: str | None = None
    #: The bare JID an XMPP server vouched for (hybrid mode): who may send signed commands.
    server_jid: str | None = None

    @classmethod
    def paired(cls, name: str, fingerprint: str | None = None) -> PeerAuth:
        """A peer another transport authenticated (e.g. a web session with a valid token)."""
        return cls(secured=True, fingerprint=fingerprint, paired_name=name)


ChatFallback = Literal["off", "pin"]
NOT_PAIRED = "this device is not paired with the TV; pair it first (buttons pair)"


@dataclass(frozen=True, slots=True)
class PressEvent:
    button: str
    source: str
    origin: object  # the Session that pressed, or None for other sources


class Dispatcher:
    def __init__(
        self,
        backend: Backend,
        info: AgentInfo,
        *,
        hold_timeout: float = 10.0,
        pairing: PairingService | None = None,
        chat_fallback: ChatFallback = "off",
        linking: Linking | None = None,
    ) -> None:
        self.backend = backend
        self.info = info
        self.hold_timeout = hold_timeout
        self.pairing = pairing
        self.chat_fallback = chat_fallback
        #: Identity linking lives beside pairing: its links are trust-store entries.
        self.linking = linking or (Linking.beside(pairing.trusted) if pairing else None)
        features = {DISCO_INFO_NS, PING_NS, VERSION_NS, codec.NS}
        if pairing:
            features |= {PAIR_NS}
        if self.linking:
            features |= {LINK_NS, SIGNED_NS}
        self.disco = DiscoInfo(
            identities=(Identity("client", "bot", "buttons-agent"),),
            features=frozenset(features),
        )
        self._press_feeds: set[trio.MemorySendChannel[PressEvent]] = set()

    @asynccontextmanager
    async def session(
        self, peer: str | None, send: Send, *, auth: PeerAuth | None = None
    ) -> AsyncIterator[Session]:
        """A stream's session; only an `auth` naming a paired device may use Buttons."""
        with single_exception():
            async with trio.open_nursery() as nursery:
                session = Session(self, peer, send, nursery, auth or PeerAuth())
                try:
                    yield session
                finally:
                    nursery.cancel_scope.cancel()

    async def press(self, button: str, *, source: str, origin: object = None) -> None:
        """Press through the backend, then tell subscribers (other than `origin`) about it."""
        await self.backend.press(button)
        self.announce_press(PressEvent(button, source, origin))

    def announce_press(self, event: PressEvent) -> None:
        for feed in list(self._press_feeds):
            try:
                feed.send_nowait(event)
            except trio.WouldBlock:
                log.warning("press feed full, dropping %s for a slow subscriber", event.button)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._press_feeds.discard(feed)

    @asynccontextmanager
    async def press_feed(self) -> AsyncIterator[trio.MemoryReceiveChannel[PressEvent]]:
        send, receive = trio.open_memory_channel[PressEvent](PRESS_FEED_DEPTH)
        self._press_feeds.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._press_feeds.discard(send)
            send.close()

    def check_button(self, button: str) -> None:
        if button not in CATALOGUE:
            raise codec.CodecError("item-not-found", f"unknown button {button!r}")
        if button not in self.backend.buttons():
            raise codec.CodecError(
                "feature-not-implemented", f"the {self.backend.name} backend has no {button!r}"
            )


def _stanza_error_for(exc: BackendError) -> tuple[str, str | None]:
    match exc:
        case BackendUnavailable():
            return "service-unavailable", "wait"
        case ButtonNotSupported():
            return "feature-not-implemented", None
        case BackendNotAuthorized():
            return "not-authorized", None
        case BackendRefused():
            return "not-allowed", None
        case _:
            return "undefined-condition", None


class Session:
    """The dispatcher's view of one stream."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        peer: str | None,
        send: Send,
        nursery: trio.Nursery,
        auth: PeerAuth,
    ) -> None:
        self.dispatcher = dispatcher
        self.peer = peer
        self.auth = auth
        #: Paired devices; or, with `chat_fallback = "pin"`, a chat that typed the PIN.
        self.authorized = auth.paired_name is not None
        self._pairing = PairingSession()
        self.send = send
        self._nursery = nursery
        self._replies: OrderedDict[str, ET.Element] = OrderedDict()
        self._holds = Holds(
            dispatcher.backend,
            nursery,
            timeout=dispatcher.hold_timeout,
            source=self.source,
            on_start=lambda button: dispatcher.announce_press(
                PressEvent(button, self.source, self)
            ),
        )
        self._subscription: trio.CancelScope | None = None

    @property
    def source(self) -> str:
        return self.auth.paired_name or self.peer or "xmpp"

    async def handle(self, stanza: ET.Element) -> None:
        """Handle one stanza from the peer. Never raises for the peer's mistakes."""
        kind = st.kind(stanza)
        if kind == "iq":
            await self._handle_iq(stanza)
        elif kind == "message":
            await self._handle_message(stanza)
        # Presence and anything else carry nothing for us.

    # -- iq -------------------------------------------------------------------------------

    async def _handle_iq(self, iq: ET.Element) -> None:
        type_ = iq.get("type")
        if type_ in ("result", "error"):
            return  # replies to requests we never make on inbound streams
        id_ = iq.get("id")
        if type_ not in ("get", "set") or not id_ or len(iq) != 1:
            await self.send(
                st.error_reply(iq, "bad-request", "an iq get/set needs an id and one payload")
            )
            return
        if type_ == "set" and id_ in self._replies:
            await self.send(self._replies[id_])  # a retransmission: answer again, don't re-run
            return
        reply = await self._answer(iq, type_, iq[0])
        if type_ == "set":
            self._replies[id_] = reply
            while len(self._replies) > IDEMPOTENCY_WINDOW:
                self._replies.popitem(last=False)
        await self.send(reply)

    async def _answer(self, iq: ET.Element, type_: str, payload: ET.Element) -> ET.Element:
        namespace = payload.tag.partition("}")[0].lstrip("{")
        try:
            if namespace == codec.NS:
                if not self.authorized:
                    return st.error_reply(iq, "not-authorized", NOT_PAIRED)
                return st.iq_result(iq, await self._run(codec.parse_request(type_, payload)))
            if namespace == PAIR_NS and self.dispatcher.pairing is not None:
                pairing = self.dispatcher.pairing
                reply = await pairing.handle(
                    self._pairing, type_, payload, secured=self.auth.secured
                )
                return st.iq_result(iq, reply)
            if namespace in (LINK_NS, SIGNED_NS) and self.dispatcher.linking is not None:
                return await self._linked(iq, type_, payload, self.dispatcher.linking)
            if type_ == "get" and payload.tag == f"{{{DISCO_INFO_NS}}}query":
                return st.iq_result(iq, self.dispatcher.disco.element(payload.get("node")))
            if type_ == "get" and payload.tag == f"{{{PING_NS}}}ping":
                return st.iq_result(iq)
            if type_ == "get" and payload.tag == f"{{{VERSION_NS}}}query":
                info = self.dispatcher.info
                return st.iq_result(iq, version_element(info.software, info.version))
        except codec.CodecError as exc:
            return st.error_reply(iq, exc.condition, exc.text)
        except BackendError as exc:
            condition, error_type = _stanza_error_for(exc)
            return st.error_reply(iq, condition, exc.reason, error_type)
        except Exception:
            log.exception("request %s from %s failed", payload.tag, self.source)
            return st.error_reply(iq, "internal-server-error", "the agent hit an internal error")
        return st.error_reply(iq, "service-unavailable", f"{payload.tag} is not served here")

    async def _linked(
        self, iq: ET.Element, type_: str, payload: ET.Element, linking: Linking
    ) -> ET.Element:
        """Link requests (paired LAN streams) and signed commands (server senders)."""
        if payload.tag.endswith("}link"):
            fingerprint = self.auth.fingerprint if self.auth.paired_name else None
            return st.iq_result(iq, linking.link(type_, payload, fingerprint=fingerprint))
        opened = linking.verify_signed(self.auth.server_jid, payload)
        # The counter is saved (fsync) before the command runs; in a worker thread, so other
        # phones' presses do not wait for the disk.
        await trio.to_thread.run_sync(linking.accept, opened)
        log.info("signed %s from %s (device %s)", opened.command.tag, self.peer, opened.device)
        return st.iq_result(iq, await self._run(codec.parse_request(type_, opened.command)))

    async def _run(self, command: codec.Command) -> ET.Element | None:
        dispatcher, backend = self.dispatcher, self.dispatcher.backend
        match command:
            case codec.Press(button):
                dispatcher.check_button(button)
                await dispatcher.press(button, source=self.source, origin=self)
            case codec.Hold(button, "start"):
                dispatcher.check_button(button)
                await self._holds.start(button)
            case codec.Hold(button, _):
                self._holds.stop(button)
            case codec.Text(text, submit):
                await backend.send_text(text, submit=submit)
            case codec.ListButtons():
                return codec.buttons_element(in_catalogue_order(backend.buttons()))
            case codec.GetState():
                return codec.state_element(backend.state())
            case codec.Subscribe():
                self._subscribe()
            case codec.Unsubscribe():
                if self._subscription is not None:
                    self._subscription.cancel()
                    self._subscription = None
        return None

    # -- pushes ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        if self._subscription is not None:
            return
        scope = trio.CancelScope()
        self._subscription = scope

        async def push_all() -> None:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._push_states)
                    nursery.start_soon(self._push_presses)

        self._nursery.start_soon(push_all)

    async def _push_states(self) -> None:
        async for state in self.dispatcher.backend.state_changes():
            await self.send(
                st.message(to=self.peer, type_="headline", payload=codec.state_element(state))
            )

    async def _push_presses(self) -> None:
        async with self.dispatcher.press_feed() as feed:
            async for event in feed:
                if event.origin is self:
                    continue
                payload = codec.pressed_element(event.button, event.source)
                await self.send(st.message(to=self.peer, type_="headline", payload=payload))

    # -- chat fallback --------------------------------------------------------------------

    async def _handle_message(self, message: ET.Element) -> None:
        body = message.find(st.BODY)
        if message.get("type") == "error" or body is None or not (body.text or "").strip():
            return
        text = body.text or ""
        if self.authorized:
            reply = await self._chat_reply(chat.parse_chat(text))
        else:
            reply = await self._chat_unlock(text)
        await self.send(st.message(to=message.get("from") or self.peer, type_="chat", body=reply))

    async def _chat_unlock(self, text: str) -> str:
        """`chat_fallback = "pin"`: the PIN typed into the chat trusts this stream only."""
        window = self.dispatcher.pairing.window if self.dispatcher.pairing else None
        if self.dispatcher.chat_fallback != "pin" or window is None:
            return f"error: {NOT_PAIRED}"
        try:
            if window.is_open and text.strip().isdigit():
                if window.check_pin(text):
                    self.authorized = True
                    log.warning("chat peer %s unlocked its stream with the PIN", self.source)
                    return "ok: PIN accepted; this chat may use the TV until it ends"
                return "error: wrong PIN"
            await window.request()
        except PairingRefused as exc:
            return f"error: {exc.text}"
        return "Type the 6-digit code shown on the TV to use it from this chat."

    async def _chat_reply(self, command: chat.ChatCommand) -> str:
        backend = self.dispatcher.backend
        try:
            match command:
                case chat.ChatPress(button):
                    self.dispatcher.check_button(button)
                    await self.dispatcher.press(button, source=self.source, origin=self)
                    return f"ok: {button}"
                case chat.ChatText(text):
                    await backend.send_text(text)
                    return f"ok: typed {text!r}"
                case chat.ChatHelp():
                    return chat.help_text(in_catalogue_order(backend.buttons()))
                case chat.ChatState():
                    return codec.describe_state(backend.state())
                case chat.ChatUnknown(said):
                    return f"unknown command {said!r}; say 'help' for the list"
        except codec.CodecError as exc:
            return f"error: {exc.text}"
        except BackendError as exc:
            return f"error: {exc.reason}"
        return "error: nothing to do"
