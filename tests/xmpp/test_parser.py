from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from agent.xmpp.errors import RemoteProtocolError
from agent.xmpp.parser import ElementParsed, HeaderParsed, Limits, StreamEnded, StreamParser
from agent.xmpp.serialize import serialize

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='tv@pi' from='me@phone' version='1.0'>"
)
STANZA = (
    b"<message to='tv@pi' type='chat'><body>hi &amp; &#x263A; there</body>"
    b"<press xmlns='urn:buttons-agent:remote:0' button='up'/></message>"
)


def describe(events: list[object]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, HeaderParsed):
            out.append(("header", event.header.attributes, event.header.default_namespace))
        elif isinstance(event, ElementParsed):
            out.append(("element", ET.tostring(event.element)))
        else:
            out.append(("end",))
    return out


def test_whole_stream_parses_into_header_stanza_end() -> None:
    events = StreamParser().feed(HEADER + b" \n" + STANZA + b"</stream:stream>")
    assert [type(e) for e in events] == [HeaderParsed, ElementParsed, StreamEnded]
    header = events[0]
    assert isinstance(header, HeaderParsed)
    assert header.header.get("to") == "tv@pi"
    assert header.header.default_namespace == "jabber:client"
    message = events[1]
    assert isinstance(message, ElementParsed)
    assert message.element.tag == "{jabber:client}message"
    assert message.element.findtext("{jabber:client}body") == "hi & \u263a there"
    press = message.element.find("{urn:buttons-agent:remote:0}press")
    assert press is not None
    assert press.get("button") == "up"


def test_feeding_one_byte_at_a_time_gives_the_same_events() -> None:
    data = HEADER + STANZA + b" " + STANZA + b"</stream:stream>"
    whole = describe(StreamParser().feed(data))
    parser = StreamParser()
    pieces: list[object] = []
    for index in range(len(data)):
        pieces.extend(parser.feed(data[index : index + 1]))
    assert describe(pieces) == whole
    assert len(whole) == 4


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (b"<!DOCTYPE stream [<!ENTITY lol 'lol'>]>", "restricted-xml"),
        (
            b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
            b"<lolz>&lol2;</lolz>",
            "restricted-xml",
        ),
        (b"<!DOCTYPE x SYSTEM 'file:///etc/passwd'><x/>", "restricted-xml"),
        (HEADER + b"<!-- a comment -->", "restricted-xml"),
        (HEADER + b"<?evil instruction?>", "restricted-xml"),
        (HEADER + b"<message><body>&xxe;</body></message>", "not-well-formed"),
        (HEADER + b"<message></iq>", "not-well-formed"),
        (HEADER + b"stray text", "not-well-formed"),
        (b"<stream:stream xmlns:stream='urn:wrong'>", "invalid-namespace"),
        (b"<hello/>", "not-well-formed"),
    ],
)
def test_bad_input_raises_the_right_stream_error(payload: bytes, condition: str) -> None:
    parser = StreamParser()
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(payload)
    assert caught.value.condition == condition
    # The parser stays failed: nothing more is accepted from this peer.
    with pytest.raises(RemoteProtocolError):
        parser.feed(STANZA)


def test_oversized_stanza_is_refused_before_it_is_buffered() -> None:
    limit = 4096
    parser = StreamParser(Limits(max_stanza_bytes=limit))
    parser.feed(HEADER)
    parser.feed(b"<message><body>")
    chunk = b"x" * 1024
    fed = 0
    refused: RemoteProtocolError | None = None
    for _ in range(10 * 1024):  # would be 10 MB
        try:
            parser.feed(chunk)
        except RemoteProtocolError as exc:
            refused = exc
            break
        fed += len(chunk)
    assert refused is not None
    assert refused.condition == "policy-violation"
    assert fed <= limit  # refused within one chunk of the limit


def test_many_small_stanzas_never_trip_the_size_limit() -> None:
    parser = StreamParser(Limits(max_stanza_bytes=512))
    parser.feed(HEADER)
    events = []
    for _ in range(100):
        events.extend(parser.feed(STANZA + b" "))
    assert len(events) == 100


def test_unterminated_start_tag_counts_against_the_limit() -> None:
    parser = StreamParser(Limits(max_stanza_bytes=1000))
    parser.feed(HEADER)
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(b"<message " + b"a" * 2000)
    assert caught.value.condition == "policy-violation"


def test_deep_nesting_is_refused() -> None:
    parser = StreamParser(Limits(max_depth=10))
    parser.feed(HEADER)
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(b"<a>" * 10_000)
    assert caught.value.condition == "policy-violation"


def test_too_many_attributes_are_refused() -> None:
    parser = StreamParser(Limits(max_attributes=8))
    parser.feed(HEADER)
    attrs = b" ".join(b"a%d='x'" % i for i in range(9))
    with pytest.raises(RemoteProtocolError) as caught:
        parser.feed(b"<message " + attrs + b"/>")
    assert caught.value.condition == "policy-violation"


xml_text = hs.text(hs.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
names = hs.sampled_from(["a", "body", "press", "x-y", "item_1"])


@hs.composite
def elements(draw: hs.DrawFn, depth: int = 0) -> ET.Element:
    namespace = draw(hs.sampled_from(["jabber:client", "urn:buttons-agent:remote:0", "urn:x"]))
    element = ET.Element(f"{{{namespace}}}{draw(names)}")
    for key in draw(hs.lists(names, max_size=3, unique=True)):
        element.set(key, draw(xml_text))
    element.text = draw(hs.none() | xml_text.filter(bool))
    if depth < 3:
        for child in draw(hs.lists(elements(depth + 1), max_size=3)):
            child.tail = draw(hs.none() | xml_text.filter(bool))
            element.append(child)
    return element


def canonical(element: ET.Element) -> object:
    return (
        element.tag,
        sorted(element.attrib.items()),
        element.text or "",
        [(canonical(child), child.tail or "") for child in element],
    )


@given(elements())
def test_serialise_then_parse_round_trips(element: ET.Element) -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    events = parser.feed(serialize(element))
    assert len(events) == 1
    parsed = events[0]
    assert isinstance(parsed, ElementParsed)
    assert canonical(parsed.element) == canonical(element)


@given(xml_text)
def test_escaping_matches_the_standard_library(text: str) -> None:
    from xml.sax.saxutils import escape

    from agent.xmpp.serialize import escape_text, quote_attribute

    assert escape_text(text) == escape(text)
    # Any parser reads the attribute back exactly, quotes, tabs and newlines included.
    assert ET.fromstring(f"<a v={quote_attribute(text + chr(9) + chr(10))}/>").get("v") == (
        text + "\t\n"
    )
