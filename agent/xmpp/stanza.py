"""Stanza helpers: building replies and errors, reading addresses, and matching iq replies."""

from __future__ import annotations

import itertools
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from agent.xmpp.errors import STANZA_ERROR_TYPES, STANZA_ERRORS_NS
from agent.xmpp.serialize import CLIENT_NS

IQ = f"{{{CLIENT_NS}}}iq"
MESSAGE = f"{{{CLIENT_NS}}}message"
PRESENCE = f"{{{CLIENT_NS}}}presence"
BODY = f"{{{CLIENT_NS}}}body"
ERROR = f"{{{CLIENT_NS}}}error"
STANZA_KINDS = frozenset({IQ, MESSAGE, PRESENCE})


def kind(stanza: ET.Element) -> str:
    """'iq', 'message', 'presence', or the tag of anything else."""
    return stanza.tag.removeprefix(f"{{{CLIENT_NS}}}")


def new_id() -> str:
    return secrets.token_hex(6)


def iq(
    type_: str, payload: ET.Element | None = None, *, id_: str | None = None, to: str | None = None
) -> ET.Element:
    stanza = ET.Element(IQ, {"type": type_, "id": id_ or new_id()})
    if to:
        stanza.set("to", to)
    if payload is not None:
        stanza.append(payload)
    return stanza


def message(
    *,
    to: str | None = None,
    type_: str | None = None,
    body: str | None = None,
    payload: ET.Element | None = None,
) -> ET.Element:
    stanza = ET.Element(MESSAGE, {"id": new_id()})
    if to:
        stanza.set("to", to)
    if type_:
        stanza.set("type", type_)
    if body is not None:
        ET.SubElement(stanza, BODY).text = body
    if payload is not None:
        stanza.append(payload)
    return stanza


def _addressed_reply(request: ET.Element, type_: str) -> ET.Element:
    reply = ET.Element(request.tag, {"type": type_})
    if (id_ := request.get("id")) is not None:
        reply.set("id", id_)
    if (sender := request.get("from")) is not None:
        reply.set("to", sender)
    if (recipient := request.get("to")) is not None:
        reply.set("from", recipient)
    return reply


def iq_result(request: ET.Element, payload: ET.Element | None = None) -> ET.Element:
    reply = _addressed_reply(request, "result")
    if payload is not None:
        reply.append(payload)
    return reply


def error_element(
    condition: str, text: str = "", type_: str | None = None, application: ET.Element | None = None
) -> ET.Element:
    """An RFC 6120 §8.3 <error/>, its type defaulting to the condition's usual one."""
    if condition not in STANZA_ERROR_TYPES:
        raise ValueError(f"not a stanza error condition: {condition!r}")
    error = ET.Element(ERROR, {"type": type_ or STANZA_ERROR_TYPES[condition]})
    ET.SubElement(error, f"{{{STANZA_ERRORS_NS}}}{condition}")
    if text:
        ET.SubElement(
            error,
            f"{{{STANZA_ERRORS_NS}}}text",
            {"{http://www.w3.org/XML/1998/namespace}lang": "en"},
        ).text = text
    if application is not None:
        error.append(application)
    return error


def error_reply(
    request: ET.Element, condition: str, text: str = "", type_: str | None = None
) -> ET.Element:
    reply = _addressed_reply(request, "error")
    reply.append(error_element(condition, text, type_))
    return reply


@dataclass(frozen=True, slots=True)
class StanzaError:
    condition: str
    type: str
    text: str

    @classmethod
    def from_stanza(cls, stanza: ET.Element) -> StanzaError:
        error = stanza.find(ERROR)
        if error is None:
            return cls("undefined-condition", "cancel", "")
        condition, text = "undefined-condition", ""
        for child in error:
            if child.tag == f"{{{STANZA_ERRORS_NS}}}text":
                text = child.text or ""
            elif child.tag.startswith(f"{{{STANZA_ERRORS_NS}}}"):
                condition = child.tag.partition("}")[2]
        return cls(condition, error.get("type", "cancel"), text)

    def __str__(self) -> str:
        return f"{self.condition} ({self.type})" + (f": {self.text}" if self.text else "")


class IqTracker:
    """Matches iq results/errors to the requests we sent, by id (sans-IO)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._pending: set[str] = set()

    def prepare(self, request: ET.Element) -> str:
        """Give `request` a fresh id and remember it; returns the id."""
        id_ = f"q{next(self._counter)}-{new_id()}"
        request.set("id", id_)
        self._pending.add(id_)
        return id_

    def is_reply(self, stanza: ET.Element) -> bool:
        return (
            stanza.tag == IQ
            and stanza.get("type") in ("result", "error")
            and stanza.get("id") in self._pending
        )

    def complete(self, stanza: ET.Element) -> str:
        """Mark the reply's request as answered; returns its id."""
        id_ = stanza.get("id", "")
        self._pending.discard(id_)
        return id_

    def forget(self, id_: str) -> None:
        self._pending.discard(id_)
