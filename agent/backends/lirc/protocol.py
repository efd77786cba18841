"""Sans-IO lircd socket protocol: bytes in → events, commands out → bytes.

lircd speaks lines. A client command is one line (`SEND_ONCE remote key`); lircd answers with
a block::

    BEGIN
    <the command, echoed>
    SUCCESS | ERROR
    [DATA
     <n>
     <n lines>]
    END

and broadcasts every decoded IR key to every client as `<code> <repeat> <key> <remote>`
(code and repeat count in hex). A reload sends the block `BEGIN / SIGHUP / END`. Key lines can
arrive before a reply or between its lines (lircd 0.10.1 interleaves them), so they are
recognised in every state. No sockets, no trio, no clock here.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import Enum, auto

#: Longest line we buffer; lircd's own limit for a packet is far below this.
MAX_LINE_BYTES = 4096
#: Largest DATA count we accept (a big remote's LIST has a few hundred lines).
MAX_DATA_LINES = 65536
# `%016llx %02x %s %s`: four fields, the first two hex. Reply payload lines never have this
# shape (LIST gives `code name` or `name`; errors start with a word), so it is unambiguous.
_KEY_LINE = re.compile(r"([0-9A-Fa-f]+) ([0-9A-Fa-f]+) (\S+) (\S+)")
# Bytes that are not valid UTF-8 (a Latin-1 remote name) survive a round trip unchanged.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class RemoteProtocolError(Exception):
    """lircd (or whatever is on the socket) sent something that is not the lircd protocol."""


class LocalProtocolError(Exception):
    """We were asked to send something the protocol cannot carry (our bug or bad config)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """lircd's answer to one command."""

    command: str
    success: bool
    data: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The payload as one line (lircd puts its error message there)."""
        return " ".join(self.data)


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key lircd decoded (or was told to SIMULATE). `repeat` is 0 for a fresh press."""

    code: int
    repeat: int
    key: str
    remote: str


@dataclass(frozen=True, slots=True)
class Sighup:
    """lircd reloaded its configuration: remotes and keys may have changed."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection at a clean boundary."""


Event = Reply | KeyEvent | Sighup | ConnectionClosed


class _State(Enum):
    IDLE = auto()  # between blocks
    COMMAND = auto()  # after BEGIN: the echoed command (or SIGHUP)
    STATUS = auto()  # SUCCESS / ERROR
    AFTER_STATUS = auto()  # DATA or END
    COUNT = auto()  # the number of data lines
    DATA = auto()  # data lines
    END = auto()  # END
    CLOSED = auto()


def encode_command(*words: str) -> bytes:
    """One whole command line. lircd drops a connection whose command spans two writes, so
    callers must send the returned bytes in a single write."""
    if not words:
        raise LocalProtocolError("a lircd command needs at least a directive")
    for word in words:
        if not word or any(ch.isspace() for ch in word):
            raise LocalProtocolError(
                f"lircd command words must be non-empty and contain no whitespace: {word!r}"
            )
    line = " ".join(words).encode(_ENCODING, _ERRORS) + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise LocalProtocolError(f"lircd command longer than {MAX_LINE_BYTES} bytes")
    return line


def parse_key_line(line: str) -> KeyEvent | None:
    match = _KEY_LINE.fullmatch(line)
    if match is None:
        return None
    code, repeat, key, remote = match.groups()
    return KeyEvent(code=int(code, 16), repeat=int(repeat, 16), key=key, remote=remote)


class LircProtocol:
    """Incremental parser of lircd's output, h11 style: `receive_data()` then `next_event()`
    until it returns None (needs more data)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._events: deque[Event] = deque()
        self._state = _State.IDLE
        self._eof = False
        # The reply being assembled.
        self._command = ""
        self._success = False
        self._remaining = 0
        self._data: list[str] = []

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the socket; `b""` means the peer closed the connection."""
        if self._state is _State.CLOSED or self._eof:
            raise LocalProtocolError("data received after the connection closed")
        if not data:
            self._eof = True
        else:
            self._buffer += data
        self._parse_lines()

    def next_event(self) -> Event | None:
        if self._events:
            return self._events.popleft()
        return None

    def _parse_lines(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._handle_line(raw.decode(_ENCODING, _ERRORS))
        if len(self._buffer) > MAX_LINE_BYTES:
            raise RemoteProtocolError(f"lircd line longer than {MAX_LINE_BYTES} bytes")
        if self._eof:
            if self._buffer or self._state is not _State.IDLE:
                raise RemoteProtocolError("connection closed in the middle of a lircd message")
            self._state = _State.CLOSED
            self._events.append(ConnectionClosed())

    def _handle_line(self, line: str) -> None:
        # A key line is recognised anywhere except where a payload line could look the same
        # (DATA), and even there the four-field shape is one no lircd reply uses.
        key = parse_key_line(line)
        if key is not None:
            self._events.append(key)
            return
        state = self._state
        if state is _State.IDLE:
            self._expect(line, "BEGIN")
            self._state = _State.COMMAND
        elif state is _State.COMMAND:
            self._command = line
            self._state = _State.END if line == "SIGHUP" else _State.STATUS
        elif state is _State.STATUS:
            if line not in ("SUCCESS", "ERROR"):
                raise RemoteProtocolError(f"expected SUCCESS or ERROR, got {line!r}")
            self._success = line == "SUCCESS"
            self._state = _State.AFTER_STATUS
        elif state is _State.AFTER_STATUS:
            if line == "END":
                self._finish_block()
            else:
                self._expect(line, "DATA")
                self._state = _State.COUNT
        elif state is _State.COUNT:
            self._start_data(line)
        elif state is _State.DATA:
            self._data.append(line)
            self._remaining -= 1
            if self._remaining == 0:
                self._state = _State.END
        elif state is _State.END:
            self._expect(line, "END")
            self._finish_block()
        else:  # pragma: no cover - CLOSED never reaches here: receive_data refuses
            raise LocalProtocolError("parser used after close")

    def _start_data(self, line: str) -> None:
        if not line.isdigit() or int(line) > MAX_DATA_LINES:
            raise RemoteProtocolError(f"expected a DATA line count, got {line!r}")
        self._remaining = int(line)
        self._state = _State.DATA if self._remaining else _State.END

    def _finish_block(self) -> None:
        if self._command == "SIGHUP" and not self._data and not self._success:
            self._events.append(Sighup())
        else:
            self._events.append(Reply(self._command, self._success, tuple(self._data)))
        self._command, self._success, self._data = "", False, []
        self._state = _State.IDLE

    @staticmethod
    def _expect(line: str, wanted: str) -> None:
        if line != wanted:
            raise RemoteProtocolError(f"expected {wanted}, got {line!r}")
