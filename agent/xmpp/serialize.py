"""Serialising stanzas and stream headers from element trees.

Every piece of text and every attribute value goes through the standard library's XML
escaping (`escape`, `quoteattr`); element and attribute names come from the tree, never
from untrusted strings pasted together.

Stanzas are written in the stream's context: the stream declares `jabber:client` as the
default namespace, so a stanza only declares namespaces that differ from its parent's. Text
that cannot appear in XML 1.0 (control characters, lone surrogates) is replaced, so a hostile
title or chat body from elsewhere can never make us emit a stream our peer must reject.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from agent.xmpp.errors import STREAMS_NS
from agent.xmpp.parser import XML_NS

CLIENT_NS = "jabber:client"
STREAM_CLOSE = b"</stream:stream>"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return None, tag


def _attributes(attrib: dict[str, str], extra: dict[str, str]) -> str:
    parts = []
    for key, value in [*extra.items(), *attrib.items()]:
        namespace, local = _split(key)
        if namespace == XML_NS:
            local = f"xml:{local}"
        elif namespace is not None:
            raise ValueError(f"namespaced attribute {key!r} is not supported")
        parts.append(f" {local}={quoteattr(xml_safe(value))}")
    return "".join(parts)


def _write(element: ET.Element, parent_ns: str | None, out: list[str]) -> None:
    namespace, local = _split(element.tag)
    declare = {"xmlns": namespace} if namespace is not None and namespace != parent_ns else {}
    out.append(f"<{local}{_attributes(dict(element.attrib), declare)}")
    if element.text is None and len(element) == 0:
        out.append("/>")
        return
    out.append(">")
    if element.text:
        out.append(escape(xml_safe(element.text)))
    for child in element:
        _write(child, namespace if namespace is not None else parent_ns, out)
        if child.tail:
            out.append(escape(xml_safe(child.tail)))
    out.append(f"</{local}>")


def serialize(element: ET.Element, *, stream_ns: str = CLIENT_NS) -> bytes:
    """One first-level element as bytes, in a stream whose default namespace is `stream_ns`."""
    out: list[str] = []
    _write(element, stream_ns, out)
    return "".join(out).encode("utf-8")


def stream_header(attributes: dict[str, str], *, stream_ns: str = CLIENT_NS) -> bytes:
    """`<?xml?>` + the opening `<stream:stream …>` tag (left open, as XMPP requires)."""
    declarations = {"xmlns": stream_ns, "xmlns:stream": STREAMS_NS}
    text = f"<?xml version='1.0'?><stream:stream{_attributes(attributes, declarations)}>"
    return text.encode("utf-8")
