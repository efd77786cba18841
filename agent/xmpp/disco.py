"""Service discovery (XEP-0030), entity capabilities (XEP-0115), ping (XEP-0199) and
software version (XEP-0092): what the agent says about itself."""

from __future__ import annotations

import platform
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from agent.xmpp import caps

DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
CAPS_NS = "http://jabber.org/protocol/caps"
PING_NS = "urn:xmpp:ping"
VERSION_NS = "jabber:iq:version"
CAPS_NODE = "https://buttons-agent.invalid/caps"


@dataclass(frozen=True, slots=True)
class Identity:
    category: str
    type: str
    name: str = ""
    lang: str = ""


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    identities: tuple[Identity, ...]
    features: frozenset[str] = field(default_factory=frozenset)

    def element(self, node: str | None = None) -> ET.Element:
        query = ET.Element(f"{{{DISCO_INFO_NS}}}query", {"node": node} if node else {})
        for identity in self.identities:
            attrs = {"category": identity.category, "type": identity.type}
            if identity.name:
                attrs["name"] = identity.name
            if identity.lang:
                attrs["{http://www.w3.org/XML/1998/namespace}lang"] = identity.lang
            ET.SubElement(query, f"{{{DISCO_INFO_NS}}}identity", attrs)
        for feature in sorted(self.features):
            ET.SubElement(query, f"{{{DISCO_INFO_NS}}}feature", {"var": feature})
        return query

    def caps_ver(self) -> str:
        """XEP-0115 `ver` of this disco#info (what the mDNS TXT record advertises)."""
        return caps.caps_ver(
            [(i.category, i.type, i.lang, i.name) for i in self.identities], self.features
        )


def version_element(name: str, version: str) -> ET.Element:
    query = ET.Element(f"{{{VERSION_NS}}}query")
    ET.SubElement(query, f"{{{VERSION_NS}}}name").text = name
    ET.SubElement(query, f"{{{VERSION_NS}}}version").text = version
    ET.SubElement(query, f"{{{VERSION_NS}}}os").text = platform.system()
    return query
