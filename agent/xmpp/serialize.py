"""Serialising stanzas and stream headers from element trees.

Every piece of text and every attribute value goes through XML escaping (`escape_text`,
`quote_attribute`: the standard library's rules as translate tables); element and attribute
names come from the tree, never from untrusted strings pasted together.

Stanzas are written in the stream's context: the stream declares `jabber:client` as the
default namespace, so a stanza only declares namespaces that differ from its parent's. Text
that cannot appear in XML 1.0 (control characters, lone surrogates) is replaced, so a hostile
title or chat body from elsewhere can never make us emit a stream our peer must reject.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from agent.xmpp.errors import STREAMS_NS
from agent.xmpp.parser import XML_NS

CLIENT_NS = "jabber:client"
STREAM_CLOSE = b"</stream:stream>"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


#: XML escaping as str.translate tables (the standard library's `escape`/`quoteattr` rules,
#: attribute values always in double quotes): one C-level pass per string on the hot path.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def escape_text(text: str) -> str:
    return xml_safe(text).translate(_TEXT_ESCAPES)


def quote_attribute(value: str) -> str:
    return '"' + xml_safe(value).translate(_ATTRIBUTE_ESCAPES) + '"'


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
        parts.append(f" {local}={quote_attribute(value)}")
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
        out.append(escape_text(element.text))
    for child in element:
        _write(child, namespace if namespace is not None else parent_ns, out)
        if child.tail:
            out.append(escape_text(child.tail))
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
