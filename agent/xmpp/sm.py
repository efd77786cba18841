"""XEP-0198 Stream Management, client side, sans-IO: stanza acks and session resumption.

A `StreamManagement` holds what must outlive one TCP connection: the resumption id, how many
stanzas we handled from the server (our `h`), and the stanzas we sent that the server has not
acknowledged yet. `ClientStream` drives it; give the same object to the next connection's
`ClientStream` and that connection resumes the session instead of binding a new one.

Counting (§4): our outbound queue starts when we send <enable/> (the server counts what it
receives after it); inbound stanzas count from <enabled/> on, because whatever arrives before
it was sent before the server started counting. A stanza counts as handled the moment
`ClientStream` hands it to the application, so after <resumed/> the server resends exactly
what we never saw: nothing reaches the application twice. Counters wrap at 2^32.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass

from agent.xmpp.errors import LocalProtocolError, RemoteProtocolError

SM_NS = "urn:xmpp:sm:3"
FEATURE = f"{{{SM_NS}}}sm"
ENABLE = f"{{{SM_NS}}}enable"
ENABLED = f"{{{SM_NS}}}enabled"
RESUME = f"{{{SM_NS}}}resume"
RESUMED = f"{{{SM_NS}}}resumed"
FAILED = f"{{{SM_NS}}}failed"
REQUEST = f"{{{SM_NS}}}r"
ANSWER = f"{{{SM_NS}}}a"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
COUNTER_MODULUS = 2**32
#: Unacknowledged stanzas we keep for retransmission (Prosody's own queue default is 500).
MAX_UNACKED = 500
#: An <r/> goes out once this many of our stanzas wait for an ack (and with every keepalive).
#: Not after every stanza: an <r/> riding on each reply stalled each press through Prosody
#: by ~40 ms (bench/kodi_latency.py: 45 ms p50 with it, 5 ms without).
ACK_REQUEST_EVERY = 10


@dataclass(frozen=True, slots=True)
class SmEnabled:
    """The server counts and acks; `max_seconds` is how long it keeps a dropped session."""

    resumable: bool
    max_seconds: int | None


@dataclass(frozen=True, slots=True)
class SmUnavailable:
    """The server refused <enable/>: the stream goes on without acks or resumption."""

    condition: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """The previous session continues on this connection; `retransmitted` stanzas were resent."""

    jid: str
    retransmitted: int


@dataclass(frozen=True, slots=True)
class ResumeFailed:
    """The server could not resume; a new session is bound. `undelivered` never arrived."""

    condition: str
    undelivered: tuple[ET.Element, ...]


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The server acknowledged stanzas up to `h`; `newly_acked` of ours left the queue."""

    h: int
    newly_acked: int


SmEvent = SmEnabled | SmUnavailable | Resumed | ResumeFailed | AckReceived


class HandledCountTooHigh(RemoteProtocolError):
    """The server acknowledged more stanzas than we sent (XEP-0198 §6)."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(
            "undefined-condition",
            f"handled-count-too-high: the server acknowledged h={h}, we sent {send_count}",
        )
        self.h = h
        self.send_count = send_count

    def application_condition(self) -> ET.Element:
        """The §6 application-specific condition that goes into our stream error."""
        return ET.Element(
            f"{{{SM_NS}}}handled-count-too-high",
            {"h": str(self.h), "send-count": str(self.send_count)},
        )


def _counter(element: ET.Element, *, required: bool = True) -> int | None:
    text = element.get("h")
    if text is None and not required:
        return None
    try:
        value = int(text or "")
    except ValueError:
        value = -1
    if not 0 <= value < COUNTER_MODULUS:
        raise RemoteProtocolError("invalid-xml", f"bad 'h' in {element.tag}: {text!r}")
    return value


def _failure_condition(element: ET.Element) -> str:
    for child in element:
        if child.tag.startswith(f"{{{STANZAS_NS}}}"):
            return child.tag.partition("}")[2]
    return "undefined-condition"


class StreamManagement:
    """The XEP-0198 state of one session; survives the connections that carry it."""

    def __init__(
        self, *, max_unacked: int = MAX_UNACKED, ack_request_every: int = ACK_REQUEST_EVERY
    ) -> None:
        self.max_unacked = max_unacked
        self.ack_request_every = ack_request_every
        #: <enable/> was sent and not refused: both sides count stanzas.
        self.counting = False
        #: The server confirmed with <enabled/>: <r/> will be answered.
        self.active = False
        self.resume_id: str | None = None
        #: The server's 'max': seconds it keeps a dropped session for resumption.
        self.resume_max: int | None = None
        #: The full JID the session is bound to (resumption gives it back without binding).
        self.jid: str | None = None
        #: Our 'h': stanzas from the server we handed to the application.
        self.handled = 0
        #: The server's last 'h': how many of our stanzas it has acknowledged.
        self.acked_by_server = 0
        self._unacked: deque[ET.Element] = deque()
        self._ack_requested = False

    @property
    def resumable(self) -> bool:
        return self.counting and self.resume_id is not None and self.jid is not None

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    # -- enabling -------------------------------------------------------------------------

    def enable(self, jid: str) -> ET.Element:
        """A new session on `jid`: the <enable/> to send; counting starts now."""
        self._reset()
        self.counting = True
        self.jid = jid
        return ET.Element(ENABLE, {"resume": "true"})

    def on_enabled(self, element: ET.Element) -> SmEnabled:
        self.active = True
        resumable = element.get("resume") in ("true", "1") and bool(element.get("id"))
        self.resume_id = element.get("id") if resumable else None
        try:
            self.resume_max = int(element.get("max") or "") if resumable else None
        except ValueError:
            self.resume_max = None
        return SmEnabled(resumable, self.resume_max)

    def on_enable_failed(self, element: ET.Element) -> SmUnavailable:
        self._reset()
        return SmUnavailable(_failure_condition(element))

    # -- resuming -------------------------------------------------------------------------

    def resume(self) -> ET.Element:
        if not self.resumable:
            raise LocalProtocolError("undefined-condition", "no resumable session")
        assert self.resume_id is not None
        return ET.Element(RESUME, {"previd": self.resume_id, "h": str(self.handled)})

    def on_resumed(self, element: ET.Element) -> tuple[list[ET.Element], Resumed]:
        """The server took the session back: what it did not get is sent again, then <r/>."""
        if element.get("previd") not in (None, self.resume_id):
            raise RemoteProtocolError("undefined-condition", "resumed a session we did not ask for")
        self._ack_up_to(_counter(element) or 0)
        self._ack_requested = False
        retransmit = list(self._unacked)
        assert self.jid is not None
        event = Resumed(self.jid, len(retransmit))
        return ([*retransmit, self.request_ack()] if retransmit else []), event

    def on_resume_failed(self, element: ET.Element) -> ResumeFailed:
        """The session is gone; with 'h' the server tells us how much of ours it got first."""
        if (h := _counter(element, required=False)) is not None:
            self._ack_up_to(h)
        undelivered = tuple(self._unacked)
        self._reset()
        return ResumeFailed(_failure_condition(element), undelivered)

    def abandon(self) -> tuple[ET.Element, ...]:
        """The session ends for good (we closed it): nothing will be resent."""
        undelivered = tuple(self._unacked)
        self._reset()
        return undelivered

    # -- counting and acks ----------------------------------------------------------------

    def stanza_received(self) -> None:
        if self.active:
            self.handled = (self.handled + 1) % COUNTER_MODULUS

    def track(self, stanza: ET.Element) -> bool:
        """Remember an outbound stanza until it is acked; True when an <r/> should follow."""
        if not self.counting:
            return False
        if len(self._unacked) >= self.max_unacked:
            raise LocalProtocolError(
                "resource-constraint", f"{len(self._unacked)} stanzas wait for the server's ack"
            )
        self._unacked.append(copy.deepcopy(stanza))  # the caller may reuse its element
        return self._ack_due()

    def request_ack(self) -> ET.Element:
        self._ack_requested = True
        return ET.Element(REQUEST)

    def answer(self) -> ET.Element:
        return ET.Element(ANSWER, {"h": str(self.handled)})

    def on_element(self, element: ET.Element) -> tuple[list[ET.Element], SmEvent | None]:
        """A stream management element on an online stream: (what to send back, the event)."""
        if element.tag == REQUEST and self.counting:
            return [self.answer()], None
        if element.tag == ANSWER and self.counting:
            h = _counter(element)
            assert h is not None
            acked = AckReceived(h, self._ack_up_to(h))
            self._ack_requested = False
            # Enough sent after our last <r/> are still open: ask about those too.
            return ([self.request_ack()] if self._ack_due() else []), acked
        if element.tag == ENABLED and self.counting and not self.active:
            return [], self.on_enabled(element)
        if element.tag == FAILED and self.counting and not self.active:
            return [], self.on_enable_failed(element)
        raise RemoteProtocolError("policy-violation", f"unexpected {element.tag} while online")

    def _ack_due(self) -> bool:
        # One request at a time; the keepalive asks in between (ClientStream.request_ack).
        return (
            self.active and not self._ack_requested and len(self._unacked) >= self.ack_request_every
        )

    def _ack_up_to(self, h: int) -> int:
        newly_acked = (h - self.acked_by_server) % COUNTER_MODULUS
        if newly_acked > len(self._unacked):
            raise HandledCountTooHigh(
                h, (self.acked_by_server + len(self._unacked)) % COUNTER_MODULUS
            )
        for _ in range(newly_acked):
            self._unacked.popleft()
        self.acked_by_server = h
        return newly_acked

    def _reset(self) -> None:
        self.counting = self.active = self._ack_requested = False
        self.resume_id = self.resume_max = self.jid = None
        self.handled = self.acked_by_server = 0
        self._unacked.clear()
