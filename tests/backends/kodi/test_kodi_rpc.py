"""The sans-IO JSON-RPC core: stream splitting, id matching, notifications, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backends.kodi.rpc import (
    ErrorResponse,
    JsonStreamSplitter,
    KodiRpc,
    LocalProtocolError,
    Notification,
    RemoteProtocolError,
    Response,
)

# Strings full of the characters a naive splitter trips over.
TRICKY = '{"a":"}{\\"[]\\\\","b":[{"c":"\\u00e9\\"}"}],"d":"日本 }"}'


def feed_in_pieces(splitter: JsonStreamSplitter, data: bytes, size: int) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(data), size):
        out += splitter.feed(data[start : start + size])
    return out


def test_back_to_back_objects_are_split() -> None:
    stream = b'{"id":1,"result":"OK"}{"method":"X","params":{}}  \n[{"id":2,"result":3}]'
    assert JsonStreamSplitter().feed(stream) == [
        b'{"id":1,"result":"OK"}',
        b'{"method":"X","params":{}}',
        b'[{"id":2,"result":3}]',
    ]


def test_split_at_every_byte_gives_the_same_messages() -> None:
    messages = [TRICKY.encode(), b'{"x":{"y":{"z":"\\\\"}}}', b"{}"]
    stream = b"".join(messages)
    for cut in range(len(stream) + 1):
        splitter = JsonStreamSplitter()
        got = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert got == messages, f"cut at {cut}"
    assert feed_in_pieces(JsonStreamSplitter(), stream, 1) == messages


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=5), min_size=1),
    st.integers(min_value=1, max_value=64),
    st.booleans(),
)
def test_round_trip_any_objects_any_chunking(
    objects: list[dict[str, Any]], chunk: int, ascii_only: bool
) -> None:
    encoded = [json.dumps(obj, ensure_ascii=ascii_only).encode() for obj in objects]
    got = feed_in_pieces(JsonStreamSplitter(), b"".join(encoded), chunk)
    assert [json.loads(raw) for raw in got] == objects


@pytest.mark.parametrize("garbage", [b"hello", b'"str"', b"42", b'{"a":1}x', b"}"])
def test_garbage_between_messages_is_a_remote_protocol_error(garbage: bytes) -> None:
    splitter = JsonStreamSplitter()
    with pytest.raises(RemoteProtocolError):
        splitter.feed(garbage)
    with pytest.raises(RemoteProtocolError):  # and the splitter stays broken
        splitter.feed(b"{}")


def test_a_message_over_the_size_limit_is_refused() -> None:
    splitter = JsonStreamSplitter(max_message_bytes=64)
    splitter.feed(b'{"a":"' + b"x" * 40)
    with pytest.raises(RemoteProtocolError, match="exceeds 64 bytes"):
        splitter.feed(b"y" * 40)


def test_whitespace_only_leaves_nothing_pending() -> None:
    splitter = JsonStreamSplitter()
    assert splitter.feed(b"{} \r\n ") == [b"{}"]
    assert splitter.pending_bytes == 0


def test_responses_match_requests_and_notifications_pass_through() -> None:
    rpc = KodiRpc()
    first, data = rpc.send_request("JSONRPC.Ping")
    second, _ = rpc.send_request("Application.SetVolume", {"volume": "increment"})
    assert json.loads(data) == {"jsonrpc": "2.0", "id": first, "method": "JSONRPC.Ping"}
    assert rpc.pending == {first, second}
    incoming = (
        b'{"jsonrpc":"2.0","method":"Application.OnVolumeChanged",'
        b'"params":{"data":{"muted":false,"volume":55},"sender":"xbmc"}}'
        + json.dumps({"jsonrpc": "2.0", "id": second, "result": 55}).encode()
        + json.dumps(
            {"jsonrpc": "2.0", "id": first, "error": {"code": -32100, "message": "Failed."}}
        ).encode()
    )
    events = [
        event
        for byte in range(len(incoming))
        for event in rpc.receive_data(incoming[byte : byte + 1])
    ]
    assert events == [
        Notification(
            "Application.OnVolumeChanged",
            {"data": {"muted": False, "volume": 55}, "sender": "xbmc"},
        ),
        Response(second, 55),
        ErrorResponse(first, -32100, "Failed."),
    ]
    assert isinstance(events[0], Notification)
    assert events[0].data == {"muted": False, "volume": 55}
    assert rpc.pending == frozenset()


def test_late_answer_to_an_abandoned_request_is_dropped() -> None:
    rpc = KodiRpc()
    request_id, _ = rpc.send_request("Input.Up")
    rpc.abandon(request_id)
    assert rpc.receive_data(json.dumps({"id": request_id, "result": "OK"}).encode()) == []


def test_answer_to_a_request_never_sent_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="never sent"):
        KodiRpc().receive_data(b'{"jsonrpc":"2.0","id":99,"result":"OK"}')


@pytest.mark.parametrize(
    "message",
    [
        b'{"jsonrpc":"2.0","id":1}',
        b'{"jsonrpc":"2.0","id":1,"error":"bad"}',
        b'{"jsonrpc":"2.0","method":5}',
        b'{"jsonrpc":"2.0","method":"X","params":[1]}',
        b"[1, 2]",
        b'{"id":1,"result":"\xff"}',
    ],
)
def test_malformed_messages_are_remote_protocol_errors(message: bytes) -> None:
    rpc = KodiRpc()
    rpc.send_request("JSONRPC.Ping")
    with pytest.raises(RemoteProtocolError):
        rpc.receive_data(message)


def test_eof_inside_a_message_is_reported() -> None:
    rpc = KodiRpc()
    rpc.receive_data(b'{"jsonrpc":')
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        rpc.receive_eof()


def test_empty_method_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        KodiRpc().send_request("")


def test_invalid_params_error_describes_kodis_detail() -> None:
    error = ErrorResponse(
        7,
        -32602,
        "Invalid params.",
        {
            "stack": {
                "message": "Received value does not match any of the defined enum values",
                "name": "action",
            }
        },
    )
    assert error.describe() == (
        "Invalid params: Received value does not match any of the defined enum values "
        "(parameter 'action')"
    )
