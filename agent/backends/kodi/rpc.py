"""Sans-IO JSON-RPC 2.0 as Kodi speaks it on its raw TCP socket (and inside HTTP bodies).

Kodi writes JSON objects back to back with no delimiter (`{…}{…}`), so the byte stream is
split by tracking bracket depth outside strings. No sockets, no trio, no clock here: bytes in,
events out; requests in, bytes out.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Large enough for a whole library listing; small enough that a runaway peer can't exhaust memory.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class RemoteProtocolError(Exception):
    """The peer sent something that is not Kodi's JSON-RPC; the connection must be dropped."""


class LocalProtocolError(Exception):
    """We tried to do something the protocol does not allow (a bug on our side)."""


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A JSON-RPC error object. `id` is None when Kodi could not even parse our request."""

    id: int | None
    code: int
    message: str
    data: Any = None

    def describe(self) -> str:
        """Kodi's message, with the detail Kodi adds for invalid parameters when present."""
        detail = ""
        if isinstance(self.data, Mapping):
            stack = self.data.get("stack")
            if isinstance(stack, Mapping) and isinstance(stack.get("message"), str):
                name = stack.get("name")
                detail = stack["message"] + (f" (parameter {name!r})" if name else "")
        message = self.message.rstrip(".") or f"error {self.code}"
        return f"{message}: {detail}" if detail else message


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Mapping[str, Any]

    @property
    def data(self) -> Any:
        """Kodi puts the payload under params.data (and the origin under params.sender)."""
        return self.params.get("data")


Event = Response | ErrorResponse | Notification

# Outside a string only brackets and quotes matter; inside one, only quotes and escapes.
_STRUCTURAL = re.compile(rb'[{}\[\]"]')
_IN_STRING = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


class JsonStreamSplitter:
    """Cuts a byte stream of concatenated JSON objects (or arrays) into one bytes per message.

    Feed any chunking, down to one byte at a time. UTF-8 continuation bytes are never ASCII
    brackets or quotes, so scanning bytes is exact.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already scanned
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._broken: RemoteProtocolError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished message held (non-zero at EOF means a truncated message)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        if self._broken is not None:
            raise self._broken
        try:
            return self._feed(data)
        except RemoteProtocolError as exc:
            self._broken = exc
            raise

    def _feed(self, data: bytes | bytearray) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        pos = self._scanned
        buf = self._buffer
        while pos < len(buf):
            if self._depth == 0:
                # Between messages: skip whitespace, then a message must open.
                while pos < len(buf) and buf[pos] in _WHITESPACE:
                    pos += 1
                if pos == len(buf):
                    del buf[:]
                    pos = 0
                    break
                if buf[pos] not in b"{[":
                    raise RemoteProtocolError(
                        f"expected a JSON object from Kodi, got {bytes(buf[pos : pos + 20])!r}"
                    )
                del buf[:pos]
                pos = 0
            pos = self._scan(buf, pos)
            if self._depth == 0 and pos > 0:
                messages.append(bytes(buf[:pos]))
                del buf[:pos]
                pos = 0
        if len(buf) > self._max:
            raise RemoteProtocolError(f"a message from Kodi exceeds {self._max} bytes")
        self._scanned = pos
        return messages

    def _scan(self, buf: bytearray, pos: int) -> int:
        """Advance through one message; stop after its closing bracket or at the buffer's end."""
        while pos < len(buf):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                    pos += 1
                    continue
                match = _IN_STRING.search(buf, pos)
                if match is None:
                    return len(buf)
                pos = match.end()
                if match.group() == b"\\":
                    self._escaped = True
                else:
                    self._in_string = False
                continue
            match = _STRUCTURAL.search(buf, pos)
            if match is None:
                return len(buf)
            pos = match.end()
            char = match.group()
            if char == b'"':
                self._in_string = True
            elif char in (b"{", b"["):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return pos
        return pos


def parse_message(raw: bytes) -> list[Event]:
    """Decode one complete JSON-RPC message (an object, or a batch array) into events."""
    try:
        decoded = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteProtocolError(f"Kodi sent invalid JSON ({exc})") from None
    items = decoded if isinstance(decoded, list) else [decoded]
    return [_to_event(item) for item in items]


def _to_event(item: Any) -> Event:
    if not isinstance(item, dict):
        raise RemoteProtocolError(f"expected a JSON-RPC object, got {type(item).__name__}")
    if "method" in item and "id" not in item:
        params = item.get("params", {})
        if not isinstance(item["method"], str) or not isinstance(params, dict):
            raise RemoteProtocolError(f"malformed notification {item!r:.200}")
        return Notification(item["method"], params)
    request_id = item.get("id")
    if "error" in item:
        error = item["error"]
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            raise RemoteProtocolError(f"malformed error object {error!r:.200}")
        if request_id is not None and not _is_id(request_id):
            raise RemoteProtocolError(f"error response with a foreign id {request_id!r:.50}")
        return ErrorResponse(
            request_id, error["code"], str(error.get("message", "")), error.get("data")
        )
    if "result" in item and isinstance(request_id, int) and not isinstance(request_id, bool):
        return Response(request_id, item["result"])
    raise RemoteProtocolError(f"neither a response nor a notification: {item!r:.200}")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def encode_request(request_id: int, method: str, params: Mapping[str, Any] | None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = dict(params)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


class KodiRpc:
    """One JSON-RPC conversation: numbers requests, matches responses, yields notifications.

    A caller that stops waiting (timeout, cancellation) calls `abandon(id)`; a late response to
    it is then dropped quietly, while a response to an id never sent is a protocol error.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._splitter = JsonStreamSplitter(max_message_bytes)
        self._ids = itertools.count(1)
        self._pending: set[int] = set()
        self._abandoned: set[int] = set()

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)

    def send_request(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> tuple[int, bytes]:
        if not method:
            raise LocalProtocolError("a JSON-RPC request needs a method name")
        request_id = next(self._ids)
        self._pending.add(request_id)
        return request_id, encode_request(request_id, method, params)

    def abandon(self, request_id: int) -> None:
        if request_id in self._pending:
            self._pending.discard(request_id)
            self._abandoned.add(request_id)

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Events completed by `data`, in arrival order (responses only to pending requests)."""
        events: list[Event] = []
        for raw in self._splitter.feed(data):
            for event in parse_message(raw):
                if isinstance(event, Notification):
                    events.append(event)
                elif event.id is None:
                    # Kodi answers an unparseable request with id null: nothing to match.
                    raise RemoteProtocolError(f"Kodi rejected a request: {event.describe()}")
                elif event.id in self._pending:
                    self._pending.discard(event.id)
                    events.append(event)
                elif event.id in self._abandoned:
                    self._abandoned.discard(event.id)
                else:
                    raise RemoteProtocolError(f"Kodi answered request {event.id}, never sent")
        return events

    def receive_eof(self) -> None:
        if self._splitter.pending_bytes:
            raise RemoteProtocolError("Kodi closed the connection in the middle of a message")
