"""The sans-IO lircd protocol, fed bytes as lircd 0.10.1 really sends them."""

from __future__ import annotations

import pytest

from agent.backends.lirc.protocol import (
    ConnectionClosed,
    Event,
    KeyEvent,
    LircProtocol,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    Sighup,
    encode_command,
)

# Captured from lircd 0.10.1 (see docs/lirc.md).
LIST_REMOTE = (
    b"BEGIN\nLIST samsung_tv\nSUCCESS\nDATA\n2\n"
    b"00000000000040bf KEY_POWER\n000000000000e01f KEY_VOLUMEUP\nEND\n"
)
SIMULATE_ECHO = (
    b"0000000000000001 00 KEY_POWER samsung_tv\n"
    b"BEGIN\nSIMULATE 0000000000000001 00 KEY_POWER samsung_tv\nSUCCESS\nEND\n"
)


def feed(data: bytes, *, one_byte_at_a_time: bool) -> list[Event]:
    protocol = LircProtocol()
    events: list[Event] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if one_byte_at_a_time else [data]
    for chunk in chunks:
        protocol.receive_data(chunk)
        while (event := protocol.next_event()) is not None:
            events.append(event)
    return events


@pytest.fixture(params=[False, True], ids=["whole", "byte-by-byte"])
def one_byte(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_success_reply_with_data(one_byte: bool) -> None:
    assert feed(LIST_REMOTE, one_byte_at_a_time=one_byte) == [
        Reply(
            "LIST samsung_tv",
            True,
            ("00000000000040bf KEY_POWER", "000000000000e01f KEY_VOLUMEUP"),
        )
    ]


def test_error_reply_carries_lircds_message(one_byte: bool) -> None:
    data = b'BEGIN\nSEND_ONCE tv KEY_FOO\nERROR\nDATA\n1\nunknown command: "KEY_FOO"\nEND\n'
    (reply,) = feed(data, one_byte_at_a_time=one_byte)
    assert isinstance(reply, Reply)
    assert not reply.success
    assert reply.message == 'unknown command: "KEY_FOO"'


def test_reply_without_data() -> None:
    data = b"BEGIN\nSEND_ONCE tv KEY_POWER\nSUCCESS\nEND\n"
    assert feed(data, one_byte_at_a_time=False) == [Reply("SEND_ONCE tv KEY_POWER", True)]


def test_key_event_before_a_reply(one_byte: bool) -> None:
    events = feed(SIMULATE_ECHO, one_byte_at_a_time=one_byte)
    assert events == [
        KeyEvent(code=1, repeat=0, key="KEY_POWER", remote="samsung_tv"),
        Reply("SIMULATE 0000000000000001 00 KEY_POWER samsung_tv", True),
    ]


@pytest.mark.parametrize("after", ["BEGIN\n", "LIST tv\n", "SUCCESS\n", "DATA\n", "2\n", "x\n"])
def test_key_event_between_reply_lines(after: str) -> None:
    key = b"000000000000e01f 0a KEY_VOLUMEUP tv\n"
    data = LIST_REMOTE.replace(b"samsung_tv", b"tv")
    split = data.index(after.encode()) + len(after) if after != "x\n" else len(data) - 4
    events = feed(data[:split] + key + data[split:], one_byte_at_a_time=True)
    assert events[0] == KeyEvent(code=0xE01F, repeat=10, key="KEY_VOLUMEUP", remote="tv")
    assert isinstance(events[1], Reply)
    assert len(events[1].data) == 2


def test_sighup_block(one_byte: bool) -> None:
    events = feed(b"BEGIN\nSIGHUP\nEND\n" + LIST_REMOTE, one_byte_at_a_time=one_byte)
    assert events[0] == Sighup()
    assert isinstance(events[1], Reply)


def test_clean_close_is_an_event() -> None:
    protocol = LircProtocol()
    protocol.receive_data(LIST_REMOTE)
    protocol.receive_data(b"")
    assert isinstance(protocol.next_event(), Reply)
    assert protocol.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        protocol.receive_data(b"BEGIN\n")


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",
        b"BEGIN\nLIST\nMAYBE\n",
        b"BEGIN\nLIST\nSUCCESS\nDATUM\n",
        b"BEGIN\nLIST\nSUCCESS\nDATA\nmany\n",
        b"BEGIN\nLIST\nSUCCESS\nDATA\n1\nx\nNOT_END\n",
        b"x" * 5000,
    ],
    ids=["junk", "status", "data-marker", "count", "end", "endless-line"],
)
def test_malformed_input_is_a_remote_protocol_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        feed(data, one_byte_at_a_time=False)


def test_close_in_the_middle_of_a_reply_is_an_error() -> None:
    protocol = LircProtocol()
    protocol.receive_data(b"BEGIN\nLIST\n")
    with pytest.raises(RemoteProtocolError, match="closed in the middle"):
        protocol.receive_data(b"")


def test_encode_command_is_one_line() -> None:
    assert encode_command("SEND_ONCE", "tv", "KEY_POWER") == b"SEND_ONCE tv KEY_POWER\n"


@pytest.mark.parametrize("words", [(), ("SEND_ONCE", "my tv", "KEY_POWER"), ("LIST", "")])
def test_encode_command_refuses_what_lircd_would_misread(words: tuple[str, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_command(*words)
