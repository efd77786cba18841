"""Service discovery (XEP-0030), entity capabilities (XEP-0115), ping (XEP-0199) and
software version (XEP-0092): what the agent says about itself."""

from __future__ import annotations

import base64
import hashlib
import platform
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

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
        return caps_ver(self.identities, self.features)


def verification_string(identities: Iterable[Identity], features: Iterable[str]) -> str:
    """XEP-0115 §5.1 (no data forms): identities sorted, then features sorted, each + '<'."""
    ids = sorted(f"{i.category}/{i.type}/{i.lang}/{i.name}" for i in identities)
    return "".join(f"{s}<" for s in ids) + "".join(f"{f}<" for f in sorted(set(features)))


def caps_ver(identities: Iterable[Identity], features: Iterable[str]) -> str:
    digest = hashlib.sha1(verification_string(identities, features).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def version_element(name: str, version: str) -> ET.Element:
    query = ET.Element(f"{{{VERSION_NS}}}query")
    ET.SubElement(query, f"{{{VERSION_NS}}}name").text = name
    ET.SubElement(query, f"{{{VERSION_NS}}}version").text = version
    ET.SubElement(query, f"{{{VERSION_NS}}}os").text = platform.system()
    return query
