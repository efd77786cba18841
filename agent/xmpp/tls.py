"""STARTTLS (RFC 6120 §5) elements: the feature, the request and the receiver's answers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
STARTTLS = f"{{{TLS_NS}}}starttls"
PROCEED = f"{{{TLS_NS}}}proceed"
FAILURE = f"{{{TLS_NS}}}failure"


def starttls_feature() -> ET.Element:
    return ET.Element(STARTTLS)


def offers_starttls(features: ET.Element) -> bool:
    return features.find(STARTTLS) is not None
