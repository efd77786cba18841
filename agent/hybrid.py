"""Hybrid mode: the agent also logs in to a standard XMPP server and serves stanzas from it.

Every stanza the server relays goes through the same `Dispatcher.session(...)` as the
link-local path: one session per sender bare JID, so each sender's stanzas stay in order and
its holds and subscriptions end with it. Replies go back through the server stream.

Authorization: the server vouches only for an account, and the account's password is not
the paired device key. So every session is unpaired (`PeerAuth(server_jid=…)`): plain Buttons
requests are answered `not-authorized`, and only signed commands from a JID linked to a
paired device, signed by that device's key, run (agent/security/linking.py).

Presence: the account's presence mirrors the backend like the mDNS TXT status — available
while the TV can be driven, `dnd` with the reason while it cannot. Linked JIDs that ask to
subscribe are approved; other subscription requests are declined.
"""

from __future__ import annotations

import logging
import ssl
import xml.etree.ElementTree as ET
from contextlib import suppress
from pathlib import Path

import trio

from agent.backends.base import TvState
from agent.config import XmppAccountConfig
from agent.dispatch import Dispatcher, PeerAuth
from agent.logs import kv
from agent.net.c2s import Backoff, C2sSettings, C2sStream, run_c2s_forever
from agent.net.stream import StreamFailed
from agent.presence import presence_status
from agent.xmpp import stanza as st
from agent.xmpp.c2s import bare_jid, split_jid
from agent.xmpp.serialize import CLIENT_NS

log = logging.getLogger(__name__)
#: Stanzas queued per sender before further ones are refused (a flood must not grow memory).
SENDER_QUEUE_DEPTH = 32
#: Distinct senders served at once per server stream.
MAX_SENDERS = 256


def account_settings(account: XmppAccountConfig) -> C2sSettings:
    """Checked settings for the shell; raises ValueError naming the `[xmpp_account]` key."""
    split_jid(account.jid)
    return C2sSettings(
        jid=account.jid,
        password=_password(account),
        host=account.host or None,
        port=account.port,
        tls=_tls_context(account) if account.tls == "required" else None,
        ping_interval=account.ping_interval,
        ping_timeout=account.ping_timeout,
    )


def _password(account: XmppAccountConfig) -> str:
    if account.password_file:
        path = Path(account.password_file).expanduser()
        try:
            return path.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ValueError(f"[xmpp_account] cannot read password_file {path}: {exc}") from None
    if not account.password:
        raise ValueError("[xmpp_account] needs password or password_file")
    return account.password


def _tls_context(account: XmppAccountConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=account.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ServerSessions:
    """One dispatcher session per sender bare JID on one server stream."""

    def __init__(self, dispatcher: Dispatcher, stream: C2sStream, nursery: trio.Nursery) -> None:
        self.dispatcher = dispatcher
        self.stream = stream
        self._nursery = nursery
        self._queues: dict[str, trio.MemorySendChannel[ET.Element]] = {}

    async def route(self, stanza: ET.Element) -> None:
        # The server stamps `from` with the sender's full JID; none means our own account.
        sender = stanza.get("from") or bare_jid(self.stream.jid)
        key = bare_jid(sender)
        if st.kind(stanza) == "presence" and stanza.get("type") == "subscribe":
            await self._answer_subscription(key)
            return
        queue = self._queues.get(key)
        if queue is None:
            if len(self._queues) >= MAX_SENDERS:
                await self._refuse(stanza, "resource-constraint", "too many senders at once")
                return
            queue = await self._nursery.start(self._serve_sender, key, sender)
        try:
            queue.send_nowait(stanza)
        except trio.WouldBlock:
            await self._refuse(stanza, "resource-constraint", "too many requests queued")

    async def _answer_subscription(self, sender: str) -> None:
        """Only a linked phone may see the TV's status: it is the one that can act on it."""
        linking = self.dispatcher.linking
        approved = linking is not None and linking.linked_device(sender) is not None
        answer = "subscribed" if approved else "unsubscribed"
        log.info(kv("hybrid-subscription", sender=sender, answer=answer))
        await self.stream.send(ET.Element(st.PRESENCE, {"to": sender, "type": answer}))

    async def _refuse(self, stanza: ET.Element, condition: str, text: str) -> None:
        log.warning(kv("hybrid-stanza-refused", sender=stanza.get("from"), reason=text))
        if stanza.tag == st.IQ and stanza.get("type") in ("get", "set"):
            await self.stream.send(st.error_reply(stanza, condition, text))

    async def _serve_sender(
        self,
        key: str,
        sender: str,
        task_status: trio.TaskStatus[trio.MemorySendChannel[ET.Element]],
    ) -> None:
        send, receive = trio.open_memory_channel[ET.Element](SENDER_QUEUE_DEPTH)
        self._queues[key] = send
        try:
            # Unpaired: the server's word is not a device key (see module doc); the JID it
            # vouches for may send signed commands, checked against its linked device.
            async with self.dispatcher.session(
                sender, self.stream.send, auth=PeerAuth(server_jid=key)
            ) as session:
                task_status.started(send)
                async with receive:
                    async for stanza in receive:
                        await session.handle(stanza)
        except StreamFailed:
            pass  # the server stream ended under a reply; the reconnect loop logs why
        finally:
            self._queues.pop(key, None)


def presence_for(state: TvState) -> tuple[str, str]:
    """(show, status) for a backend state: the mDNS TXT's mapping; "avail" has no <show/>."""
    status, message = presence_status(state)
    return ("" if status == "avail" else status), message


def presence_element(show: str, status: str) -> ET.Element:
    presence = ET.Element(st.PRESENCE)
    if show:
        ET.SubElement(presence, f"{{{CLIENT_NS}}}show").text = show
    if status:
        ET.SubElement(presence, f"{{{CLIENT_NS}}}status").text = status
    return presence


async def publish_presence(dispatcher: Dispatcher, stream: C2sStream) -> None:
    """Send the backend's status as our presence now and again on every change."""
    backend = dispatcher.backend
    sent = presence_for(backend.state())
    await stream.send(presence_element(*sent))
    async for state in backend.state_changes():
        wanted = presence_for(state)
        if wanted != sent:
            await stream.send(presence_element(*wanted))
            log.info(kv("hybrid-presence", show=wanted[0] or "available", status=wanted[1]))
            sent = wanted


async def serve_server_stream(dispatcher: Dispatcher, stream: C2sStream) -> None:
    """Feed every stanza from the server through the dispatcher until the stream ends."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_publish_presence_quietly, dispatcher, stream)
        sessions = ServerSessions(dispatcher, stream, nursery)
        try:
            async for stanza in stream.incoming:
                await sessions.route(stanza)
        except StreamFailed:
            pass  # the stream ended while we answered; the reconnect loop logs why
        nursery.cancel_scope.cancel()


async def _publish_presence_quietly(dispatcher: Dispatcher, stream: C2sStream) -> None:
    with suppress(StreamFailed):  # the stream ended; the reconnect loop logs why
        await publish_presence(dispatcher, stream)


async def run_hybrid(
    dispatcher: Dispatcher,
    account: XmppAccountConfig,
    *,
    backoff: Backoff | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the agent's server account online and served; never affects the link-local path."""
    if not account.enabled:
        task_status.started()
        return
    try:
        settings = account_settings(account)
    except (ValueError, OSError, ssl.SSLError) as exc:
        log.error(kv("xmpp-account-disabled", reason=str(exc)))
        task_status.started()
        return
    if dispatcher.linking is not None:
        # Signed commands are bound to this account; link replies tell phones where to send.
        dispatcher.linking.agent_jid = account.jid
    task_status.started()

    async def on_online(stream: C2sStream) -> None:
        await serve_server_stream(dispatcher, stream)

    await run_c2s_forever(settings, on_online, backoff=backoff)
