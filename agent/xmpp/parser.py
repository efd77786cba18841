"""Incremental, hardened parsing of an XMPP stream into stream-level events.

Built on expat, with the restrictions of RFC 6120 §11.1 enforced as the bytes arrive: no DTD,
no entity declarations or references beyond the five predefined ones, no comments, no
processing instructions. Limits on depth, attributes and stanza size are checked before the
data is buffered further, so a hostile peer cannot make us hold more than one chunk beyond the
limit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

from agent.xmpp.errors import STREAMS_NS, RemoteProtocolError

XML_NS = "http://www.w3.org/XML/1998/namespace"
_SEP = "\x1f"  # expat's namespace separator: a character no XML name can contain


@dataclass(frozen=True, slots=True)
class Limits:
    max_stanza_bytes: int = 65536
    max_depth: int = 32  # counted from the stanza element (depth 1) downwards
    max_attributes: int = 64


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The opening <stream:stream> tag: its attributes and default namespace."""

    attributes: dict[str, str]
    default_namespace: str

    def get(self, name: str) -> str | None:
        return self.attributes.get(name)


@dataclass(frozen=True, slots=True)
class HeaderParsed:
    header: StreamHeader


@dataclass(frozen=True, slots=True)
class ElementParsed:
    """A complete first-level child of the stream: a stanza, features, a stream error, …"""

    element: ET.Element


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent </stream:stream>."""


ParseEvent = HeaderParsed | ElementParsed | StreamEnded


def _qualify(expat_name: str) -> str:
    """'ns<SEP>local' → '{ns}local' (ElementTree's notation); unqualified names stay as is."""
    namespace, sep, local = expat_name.rpartition(_SEP)
    return f"{{{namespace}}}{local}" if sep else expat_name


class StreamParser:
    """Feed bytes with `feed()`; it returns the events those bytes completed.

    Raises RemoteProtocolError with the matching stream error condition on bad input; after
    that the parser is unusable (the stream must end).
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: list[ParseEvent] = []
        self._stack: list[ET.Element] = []
        self._depth = 0
        self._bytes_fed = 0
        #: Byte offset where the current stanza began, or where the previous one ended.
        self._boundary = 0
        self._default_ns: list[str] = []
        self._failed: RemoteProtocolError | None = None
        self._parser = self._new_expat()

    def _new_expat(self) -> expat.XMLParserType:
        parser = expat.ParserCreate("utf-8", namespace_separator=_SEP)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.buffer_text = True
        parser.ordered_attributes = False
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._ns_start
        parser.StartDoctypeDeclHandler = self._restricted("a DTD")
        parser.EntityDeclHandler = self._restricted("an entity declaration")
        parser.UnparsedEntityDeclHandler = self._restricted("an entity declaration")
        parser.NotationDeclHandler = self._restricted("a notation declaration")
        parser.ExternalEntityRefHandler = self._restricted_external
        parser.CommentHandler = self._restricted("a comment")
        parser.ProcessingInstructionHandler = self._restricted("a processing instruction")
        parser.SkippedEntityHandler = self._restricted("an entity reference")
        return parser

    def feed(self, data: bytes | bytearray) -> list[ParseEvent]:
        if self._failed is not None:
            raise self._failed
        self._bytes_fed += len(data)
        try:
            self._check_size()
            self._parser.Parse(data, False)
            self._check_size()
        except RemoteProtocolError as exc:
            self._failed = exc
            raise
        except expat.ExpatError as exc:
            self._failed = RemoteProtocolError("not-well-formed", expat.errors.messages[exc.code])
            raise self._failed from None
        events, self._events = self._events, []
        return events

    def _check_size(self) -> None:
        # Before the stream header the boundary is 0, so the prolog is bounded the same way.
        pending = self._bytes_fed - self._boundary
        if pending > self.limits.max_stanza_bytes:
            raise RemoteProtocolError(
                "policy-violation", f"stanza larger than {self.limits.max_stanza_bytes} bytes"
            )

    # -- expat callbacks ------------------------------------------------------------------

    def _restricted(self, what: str):  # type: ignore[no-untyped-def]
        def handler(*_args: object) -> None:
            raise RemoteProtocolError("restricted-xml", f"{what} is not allowed in XMPP")

        return handler

    def _restricted_external(self, *_args: object) -> int:
        raise RemoteProtocolError("restricted-xml", "external entities are not allowed in XMPP")

    def _ns_start(self, prefix: str | None, uri: str) -> None:
        if prefix is None and self._depth == 0:
            self._default_ns.append(uri)

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if len(attrs) > self.limits.max_attributes:
            raise RemoteProtocolError("policy-violation", "too many attributes")
        tag = _qualify(name)
        attributes = {_qualify(k): v for k, v in attrs.items()}
        self._depth += 1
        if self._depth == 1:
            if tag != f"{{{STREAMS_NS}}}stream":
                if tag.endswith("}stream") or tag == "stream":
                    raise RemoteProtocolError("invalid-namespace", "wrong stream namespace")
                raise RemoteProtocolError("not-well-formed", f"expected a stream, got {tag}")
            default_ns = self._default_ns[-1] if self._default_ns else ""
            self._events.append(HeaderParsed(StreamHeader(attributes, default_ns)))
            self._boundary = self._parser.CurrentByteIndex
            return
        if self._depth - 1 > self.limits.max_depth:
            raise RemoteProtocolError("policy-violation", "elements nested too deeply")
        if self._depth == 2:
            self._boundary = self._parser.CurrentByteIndex
            element = ET.Element(tag, attributes)
        else:
            element = ET.SubElement(self._stack[-1], tag, attributes)
        self._stack.append(element)

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._events.append(StreamEnded())
            return
        element = self._stack.pop()
        if self._depth == 1:
            self._boundary = self._parser.CurrentByteIndex
            self._events.append(ElementParsed(element))

    def _text(self, data: str) -> None:
        if self._depth == 1:
            if data.strip():
                raise RemoteProtocolError("not-well-formed", "text outside stanzas")
            return  # whitespace keepalive between stanzas
        if not self._stack:
            return
        element = self._stack[-1]
        if len(element):
            last = element[-1]
            last.tail = (last.tail or "") + data
        else:
            element.text = (element.text or "") + data
